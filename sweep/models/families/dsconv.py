"""MobileNet-v1-like students: depthwise-separable blocks."""

from __future__ import annotations

from torch import nn
from torchvision.ops import Conv2dNormActivation

from sweep.models.families.skeleton import StudentNet, stack_stages, stage_strides
from sweep.models.registry import Count, Kernel, Rate, Steps, Stride, Widths, register_student


@register_student("dsconv")
def dsconv(
    num_classes: int,
    stem: Count = 32,
    # The 1x1 convs dominate (c_in * c_out), so the last stage costs most: these widths give
    # 50,123 parameters at 11 classes, leaving ~10k of the 60k budget for a search to widen a
    # stage. 3 stages (+ the stem) reach 1/16 of the input: 14x14 at 224 px, 2x2 at 32 px.
    widths: Widths = (64, 128, 256),
    blocks_per_stage: Count = 1,
    kernel_size: Kernel = 3,
    dropout: Rate = 0.0,
    stem_stride: Stride = 2,
    full_res_stages: Steps = 0,
) -> StudentNet:
    """MobileNet-v1-like plain stack: 3x3 stem, then depthwise-separable blocks.

    Args:
        num_classes: size of the logits.
        stem: output channels of the stem conv.
        widths: output channels of each stage; the list's length is the number of stages.
        blocks_per_stage: blocks per stage; only the first may have stride 2.
        kernel_size: the depthwise kernel.
        dropout: dropout before the classifier.
        stem_stride: the stem conv's stride (1 keeps a small input's resolution).
        full_res_stages: how many first stages keep the stem's resolution (stride 1).
    """

    def block(c_in: int, c_out: int, stride: int) -> nn.Module:
        depthwise = Conv2dNormActivation(c_in, c_in, kernel_size, stride, groups=c_in)
        return nn.Sequential(depthwise, Conv2dNormActivation(c_in, c_out, 1))

    strides = stage_strides([2] * len(widths), full_res_stages)
    stages = [(w, s, blocks_per_stage) for w, s in zip(widths, strides, strict=True)]
    layers, width = stack_stages(stem, stages, block)
    return StudentNet(
        [Conv2dNormActivation(3, stem, 3, stem_stride), *layers], width, num_classes, dropout
    )
