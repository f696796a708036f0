"""ShuffleNetV2 students, built by torchvision with the channel shuffle as a module."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models import ShuffleNetV2
from torchvision.models.shufflenetv2 import InvertedResidual as ShuffleUnit

from sweep.errors import ConfigError
from sweep.models.families.skeleton import StudentNet
from sweep.models.registry import (
    Count,
    EvenWidths,
    Multiplier,
    Rate,
    Stride,
    Widths,
    register_student,
)
from sweep.models.torch_internals import make_divisible


class ChannelShuffle(nn.ChannelShuffle):
    """``nn.ChannelShuffle`` that knows its channel count (structured pruning's graph asks)."""

    def __init__(self, groups: int, channels: int) -> None:
        super().__init__(groups)
        self.channels = channels


class ShuffleBlock(ShuffleUnit):
    """torchvision's ShuffleNetV2 unit with its channel shuffle as a module.

    torchvision shuffles with a function (``view``, ``transpose``, ``view``); as an
    ``nn.ChannelShuffle`` the shuffle is one node that structured pruning can see and leave
    whole (:data:`sweep.compress.prune.CHANNEL_SHUFFLE`), while the channels inside each branch
    and the stem's and ``conv5``'s outputs stay prunable.
    """

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__(inp, oup, stride)
        self.shuffle = ChannelShuffle(2, oup)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            # Split by sizes, not chunk: Torch-Pruning 1.6 reads the sizes only from this op's
            # saved fields (torch 2.x renamed chunk's), else it guesses wrong offsets.
            half = x.shape[1] // 2
            x1, x2 = x.split([half, half], dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return self.shuffle(out)


@register_student("shufflenet_v2")
def shufflenet_v2(
    num_classes: int,
    # The project deck's student was x0.5 (24; 48, 96, 192) with conv5 narrowed to 64:
    # 156,267 parameters, pruned 50-60% to fit. These defaults fit as they are: 55,275.
    stem: Count = 16,
    widths: EvenWidths = (32, 64, 128),
    width_mult: Multiplier = 1.0,
    repeats: Widths = (2, 4, 2),
    last_conv: Count = 128,
    dropout: Rate = 0.0,
    stem_stride: Stride = 2,
    stem_pool: bool = True,
) -> StudentNet:
    """ShuffleNetV2 (Ma et al., 2018), built by torchvision's ``ShuffleNetV2``.

    torchvision's ``conv1`` and ``maxpool`` form the stem, its ``stage2..4`` the stages (each
    halves the map; ``conv5``, the last 1x1 conv, ends the last stage), then the pool and a
    classifier as in every family.

    Args:
        num_classes: size of the logits.
        stem: output channels of ``conv1``.
        widths: output channels of the three stages (even: each block splits them in two).
        width_mult: scales ``widths`` (rounded to multiples of 8), one knob for a search.
        repeats: blocks in each of the three stages.
        last_conv: output channels of ``conv5``.
        dropout: dropout before the classifier.
        stem_stride: ``conv1``'s stride (1 keeps a small input's resolution).
        stem_pool: keep the stem's 3x3 stride-2 max-pool (off for small inputs).
    """
    if len(widths) != 3 or len(repeats) != 3:
        key = "widths" if len(widths) != 3 else "repeats"
        raise ConfigError("student", f"student.{key}", "shufflenet_v2 has 3 stages: give 3")
    if width_mult != 1:
        widths = [make_divisible(w * width_mult, 8) for w in widths]
    channels = [stem, *widths, last_conv]
    net = ShuffleNetV2(list(repeats), channels, num_classes, inverted_residual=ShuffleBlock)
    net.conv1[0].stride = (stem_stride, stem_stride)
    stem_layer = nn.Sequential(net.conv1, net.maxpool if stem_pool else nn.Identity())
    layers = [stem_layer, net.stage2, net.stage3, nn.Sequential(net.stage4, net.conv5)]
    return StudentNet(layers, last_conv, num_classes, dropout, init=False)
