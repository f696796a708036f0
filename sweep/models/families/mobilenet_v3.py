"""MobileNetV3-Small-style students, built by torchvision's ``MobileNetV3``."""

from __future__ import annotations

import functools

from torch import nn
from torchvision.models import MobileNetV3
from torchvision.models.mobilenetv3 import InvertedResidualConfig

from sweep.errors import ConfigError
from sweep.models.families.skeleton import StudentNet, stage_strides
from sweep.models.registry import Count, Multiplier, Rate, Steps, Stride, register_student
from sweep.models.torch_internals import make_divisible

# MobileNetV3-Small's stages, at width_mult 1: (width, expansion, kernel, activation), each
# with squeeze-and-excitation but the second (as in the paper's table).
_MNV3_STAGES = ((16, 1.0, 3, "RE"), (24, 4.0, 3, "RE"), (40, 4.0, 5, "HS"), (48, 3.0, 5, "HS"))
_MNV3_STRIDES = (2, 2, 2, 1)


@register_student("mobilenet_v3")
def mobilenet_v3(
    num_classes: int,
    # 0.5 gives widths 8, 16, 24, 24 (and a 144-wide last conv): 41,219 parameters at 11
    # classes, most of them in the classifier's hidden layer.
    width_mult: Multiplier = 0.5,
    expansion: Multiplier = 1.0,
    depth: Count = 1,
    squeeze_excite: bool = True,
    activation: str = "hardswish",
    last_channel: Count = 128,
    dropout: Rate = 0.2,
    stem_stride: Stride = 2,
    full_res_stages: Steps = 0,
) -> StudentNet:
    """MobileNetV3-Small-style student, built by torchvision's ``MobileNetV3``.

    torchvision's stem conv is the stem; its inverted residual blocks, grouped by stage, the
    stages (the last 1x1 conv ends the last); its classifier (``Linear`` to
    ``last_channel``, Hardswish, dropout, ``Linear``) the classifier.

    Args:
        num_classes: size of the logits.
        width_mult: scales the stage widths (16, 24, 40, 48), as torchvision rounds them.
        expansion: scales each stage's expansion ratio (1, 4, 4, 3).
        depth: blocks per stage; only a stage's first may have stride 2.
        squeeze_excite: squeeze-and-excitation where MobileNetV3-Small has it.
        activation: ``hardswish`` where the paper has it (ReLU elsewhere), or ``relu``.
        last_channel: width of the classifier's hidden layer.
        dropout: dropout inside the classifier.
        stem_stride: the stem conv's stride (1 keeps a small input's resolution).
        full_res_stages: how many first stages keep the stem's resolution.
    """
    if activation not in ("hardswish", "relu"):
        raise ConfigError("student", "student.activation", "must be hardswish or relu")
    strides = stage_strides(_MNV3_STRIDES, full_res_stages)
    setting, c_in, ends = [], make_divisible(16 * width_mult, 8), []
    for i, ((width, ratio, kernel, act), stride) in enumerate(
        zip(_MNV3_STAGES, strides, strict=True)
    ):
        use_act = act if activation == "hardswish" else "RE"
        se = squeeze_excite and i != 1
        for block in range(depth):
            c_out = make_divisible(width * width_mult, 8)
            hidden = make_divisible(c_in * ratio * expansion, 8)
            first = stride if block == 0 else 1
            # width_mult 1: the channels above are already scaled.
            setting.append(
                InvertedResidualConfig(c_in, kernel, hidden, c_out, se, use_act, first, 1, 1.0)
            )
            c_in = c_out
        ends.append(len(setting))
    # torchvision's BatchNorm momentum (0.01) is for 600-epoch ImageNet runs: after a search
    # trial's few hundred steps its running statistics are still near their start, and the
    # evaluated model scored chance (0.10 on the demo digits after 5 epochs). PyTorch's 0.1.
    norm = functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.1)
    net = MobileNetV3(
        setting, last_channel, num_classes=num_classes, dropout=dropout, norm_layer=norm
    )
    net.features[0][0].stride = (stem_stride, stem_stride)
    blocks = list(net.features)
    stages = [
        nn.Sequential(*blocks[1 + a : 1 + b]) for a, b in zip([0, *ends[:-1]], ends, strict=True)
    ]
    stages[-1].append(blocks[-1])  # the last 1x1 conv
    width = blocks[-1][0].out_channels
    return StudentNet([blocks[0], *stages], width, num_classes, dropout, net.classifier, False)
