"""GhostNet-style students: ghost modules (a few primary channels and cheap depthwise ones)."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from sweep.models.families.skeleton import StudentNet, stack_stages, stage_strides
from sweep.models.registry import Count, Kernel, Multiplier, Rate, Steps, Stride, register_student


class GhostModule(nn.Module):
    """A ghost module (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020).

    A 1x1 primary conv makes ``c_out / ratio`` channels; a depthwise "cheap operation" makes
    the other ``c_out - c_out / ratio`` from them, and the two are concatenated. ``c_out``
    is a multiple of ``ratio``, so no channel is sliced off (which would hide channels from
    structured pruning). With ``stride`` 2 each half then passes a depthwise stride-2 conv:
    the paper's one depthwise conv over the concatenation, split by channel (the same
    function and parameters), because Torch-Pruning cannot prune a depthwise conv that
    follows the concatenation.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        ratio: int,
        kernel_size: int,
        relu: bool = True,
        stride: int = 1,
        stride_kernel: int = 3,
    ):
        super().__init__()
        primary = c_out // ratio
        act = nn.ReLU if relu else None
        self.primary = Conv2dNormActivation(c_in, primary, 1, activation_layer=act)
        cheap = primary * (ratio - 1)
        self.cheap = Conv2dNormActivation(
            primary, cheap, kernel_size, groups=primary, activation_layer=act
        )
        self.strided = nn.ModuleList(
            Conv2dNormActivation(
                width, width, stride_kernel, stride, groups=width, activation_layer=None
            )
            for width in ((primary, cheap) if stride > 1 else ())
        )

    def forward(self, x: Tensor) -> Tensor:
        primary = self.primary(x)
        halves = [primary, self.cheap(primary)]
        if self.strided:
            halves = [down(half) for down, half in zip(self.strided, halves, strict=True)]
        return torch.cat(halves, dim=1)


class GhostBottleneck(nn.Module):
    """Ghost module (downsampling when strided), ghost module; and a shortcut."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, hidden: int, ratio: int, kernel_size: int
    ):
        super().__init__()
        self.block = nn.Sequential(
            GhostModule(c_in, hidden, ratio, 3, stride=stride, stride_kernel=kernel_size),
            GhostModule(hidden, c_out, ratio, 3, relu=False),
        )
        if stride == 1 and c_in == c_out:
            self.shortcut: nn.Module = nn.Identity()
        else:  # the paper's: a depthwise conv at the block's stride, then a 1x1 to c_out
            self.shortcut = nn.Sequential(
                Conv2dNormActivation(
                    c_in, c_in, kernel_size, stride, groups=c_in, activation_layer=None
                ),
                Conv2dNormActivation(c_in, c_out, 1, activation_layer=None),
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x) + self.shortcut(x)


_GHOST_WIDTHS = (16, 24, 40, 80)  # GhostNet's stage widths, at width_mult 1
_GHOST_STRIDES = (1, 2, 2, 2)


@register_student("ghostnet")
def ghostnet(
    num_classes: int,
    # 1.5 and expansion 3 give widths 24, 36, 60, 120 and 47,055 parameters at 11 classes.
    width_mult: Multiplier = 1.5,
    ratio: Annotated[int, Field(ge=2, le=4)] = 2,
    expansion: Multiplier = 3.0,
    depth: Count = 1,
    stem: Count = 16,
    kernel_size: Kernel = 3,
    dropout: Rate = 0.0,
    stem_stride: Stride = 2,
    full_res_stages: Steps = 0,
) -> StudentNet:
    """GhostNet-style student: 3x3 stem, then four stages of ghost bottlenecks.

    Args:
        num_classes: size of the logits.
        width_mult: scales the base widths (16, 24, 40, 80); widths round to multiples of
            ``ratio`` (at least 4 * ratio).
        ratio: channels of a ghost module's output per primary channel (the paper's s).
        expansion: a bottleneck's hidden width as a multiple of its input width.
        depth: bottlenecks per stage; only a stage's first may have stride 2.
        stem: output channels of the stem conv (not scaled by ``width_mult``).
        kernel_size: the depthwise kernel of downsampling convs and shortcuts.
        dropout: dropout before the classifier.
        stem_stride: the stem conv's stride (1 keeps a small input's resolution).
        full_res_stages: how many first stages keep the stem's resolution.
    """

    def multiple(width: float) -> int:
        return max(4 * ratio, int(round(width / ratio)) * ratio)

    def block(c_in: int, c_out: int, stride: int) -> nn.Module:
        hidden = multiple(c_in * expansion)
        return GhostBottleneck(c_in, c_out, stride, hidden, ratio, kernel_size)

    strides = stage_strides(_GHOST_STRIDES, full_res_stages)
    stages = [
        (multiple(base * width_mult), stride, depth)
        for base, stride in zip(_GHOST_WIDTHS, strides, strict=True)
    ]
    layers, width = stack_stages(stem, stages, block)
    return StudentNet(
        [Conv2dNormActivation(3, stem, 3, stem_stride), *layers], width, num_classes, dropout
    )
