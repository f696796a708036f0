"""MobileNetV2-style students: inverted residual blocks (expand, depthwise, project)."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from sweep.models.families.skeleton import (
    StudentNet,
    stack_stages,
    stage_strides,
)
from sweep.models.registry import Count, Kernel, Multiplier, Rate, Steps, Stride, register_student
from sweep.models.torch_internals import make_divisible


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise, linear 1x1 project, residual if shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int, kernel_size: int):
        super().__init__()
        hidden = c_in * expansion
        expand = (
            [Conv2dNormActivation(c_in, hidden, 1, activation_layer=nn.ReLU6)]
            if expansion > 1
            else []
        )
        self.block = nn.Sequential(
            *expand,
            Conv2dNormActivation(
                hidden, hidden, kernel_size, stride, groups=hidden, activation_layer=nn.ReLU6
            ),
            Conv2dNormActivation(hidden, c_out, 1, activation_layer=None),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.residual else out


# MobileNetV2's first five stage widths; with the stride-2 stem, four stride-2 stages bring a
# 224-px input to 7x7 (a 32-px one to 1x1: use stem_stride 1 and downsample 2 there).
_IR_WIDTHS = (16, 24, 32, 64, 96)
_IR_STRIDES = (1, 2, 2, 2, 2)


@register_student("inverted_residual")
def inverted_residual(
    num_classes: int,
    # 0.5 gives stage widths 8, 16, 16, 32, 48 and 23,483 parameters at 11 classes, so
    # width_mult, expansion and depth each have room to grow within the 60k budget.
    width_mult: Multiplier = 0.5,
    expansion: Count = 4,
    depth: Count = 1,
    stem: Count = 16,
    kernel_size: Kernel = 3,
    dropout: Rate = 0.0,
    stem_stride: Stride = 2,
    full_res_stages: Steps = 0,
) -> StudentNet:
    """MobileNetV2-style student: 3x3 stem, then five stages of inverted residuals.

    Args:
        num_classes: size of the logits.
        width_mult: scales the base widths (16, 24, 32, 64, 96), rounded to multiples of 8.
        expansion: hidden width of each block as a multiple of its input width.
        depth: blocks per stage; only a stage's first block may have stride 2.
        stem: output channels of the stem conv (not scaled by ``width_mult``).
        kernel_size: the depthwise kernel.
        dropout: dropout before the classifier.
        stem_stride: the stem conv's stride (1 keeps a small input's resolution).
        full_res_stages: how many first stages keep the stem's resolution (the first always
            does, as in MobileNetV2).
    """

    def block(c_in: int, c_out: int, stride: int) -> nn.Module:
        return InvertedResidual(c_in, c_out, stride, expansion, kernel_size)

    strides = stage_strides(_IR_STRIDES, full_res_stages)
    stages = [
        (make_divisible(base * width_mult, 8), stride, depth)
        for base, stride in zip(_IR_WIDTHS, strides, strict=True)
    ]
    layers, width = stack_stages(stem, stages, block)
    stem_layer = Conv2dNormActivation(3, stem, 3, stem_stride, activation_layer=nn.ReLU6)
    return StudentNet([stem_layer, *layers], width, num_classes, dropout)
