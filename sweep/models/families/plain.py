"""Plain CNN students: 3x3 conv-BN-ReLU stacks, max-pooled between stages."""

from __future__ import annotations

from torch import nn
from torchvision.ops import Conv2dNormActivation

from sweep.models.families.skeleton import StudentNet, stage_strides
from sweep.models.registry import (
    Count,
    Kernel,
    Multiplier,
    Rate,
    Steps,
    Stride,
    Widths,
    register_student,
)
from sweep.models.torch_internals import make_divisible


@register_student("plain")
def plain(
    num_classes: int,
    # 16 -> 32 -> 48 -> 64 plain 3x3 convs: 47,547 parameters at 11 classes. At small budgets
    # and inputs an ordinary conv stack can beat depthwise-separable blocks (the course's
    # plain-CNN students), so the search is free to pick it.
    stem: Count = 16,
    widths: Widths = (32, 48, 64),
    width_mult: Multiplier = 1.0,
    convs_per_stage: Count = 1,
    kernel_size: Kernel = 3,
    dropout: Rate = 0.0,
    stem_stride: Stride = 2,
    full_res_stages: Steps = 0,
) -> StudentNet:
    """Plain CNN: 3x3 conv-BN-ReLU stacks, each stage after the first max-pooled to half size.

    Args:
        num_classes: size of the logits.
        stem: output channels of the stem conv.
        widths: output channels of each stage's convs.
        width_mult: scales ``widths`` (rounded to multiples of 8), one knob for a search.
        convs_per_stage: convs per stage.
        kernel_size: every conv's kernel.
        dropout: dropout before the classifier.
        stem_stride: the stem conv's stride (1 keeps a small input's resolution).
        full_res_stages: how many first stages skip the 2x2 max-pool (keep the resolution).
    """
    strides = stage_strides([2] * len(widths), full_res_stages)
    layers: list[nn.Module] = [Conv2dNormActivation(3, stem, kernel_size, stem_stride)]
    c_in = stem
    scaled = [w if width_mult == 1 else make_divisible(w * width_mult, 8) for w in widths]
    for width, stride in zip(scaled, strides, strict=True):
        pool = [nn.MaxPool2d(2)] if stride == 2 else []
        convs = [
            Conv2dNormActivation(c_in if i == 0 else width, width, kernel_size)
            for i in range(convs_per_stage)
        ]
        layers.append(nn.Sequential(*pool, *convs))
        c_in = width
    return StudentNet(layers, c_in, num_classes, dropout)
