"""The student families: a shared skeleton and the blocks each family stacks in it.

Each family is a builder registered with :func:`~sweep.models.registry.register_student`;
its keyword parameters are its searchable options (``student.<name>`` in a space).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from sweep.models.registry import Count, Kernel, Multiplier, Rate, Widths, register_student

# make_block(c_in, c_out, stride) -> one block; a stage is (width, first stride, blocks).
BlockFactory = Callable[[int, int, int], nn.Module]


class StudentNet(nn.Module):
    """``features`` (stem, then one Sequential per stage), global average pool, ``classifier``.

    ``features[0]`` is the stem and ``features[i]`` ends stage i (taps for feature distillation).
    """

    def __init__(
        self,
        stem: nn.Module,
        stem_width: int,
        stages: Sequence[tuple[int, int, int]],
        make_block: BlockFactory,
        num_classes: int,
        dropout: float,
    ):
        super().__init__()
        layers, c_in = [stem], stem_width
        for width, stride, blocks in stages:  # only a stage's first block changes the size
            layers.append(
                nn.Sequential(
                    *(
                        make_block(c_in if i == 0 else width, width, stride if i == 0 else 1)
                        for i in range(blocks)
                    )
                )
            )
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        # Dropout stays even at p=0 so the Linear is always ``classifier.1``: checkpoints load
        # whatever dropout the trial used.
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, num_classes))
        # torchvision's MobileNet initialisation, as these are MobileNet's blocks. Skipped on the
        # meta device (the budget count), which holds no values and whose normal_ would cost a
        # one-off ~1 s import of torch's meta kernels.
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear) and not m.weight.is_meta:
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _conv_bn(
    c_in: int,
    c_out: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
    layers = [conv, nn.BatchNorm2d(c_out)]  # BN's shift makes a conv bias redundant
    return nn.Sequential(*layers, act(inplace=True)) if act else nn.Sequential(*layers)


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
) -> StudentNet:
    """MobileNet-v1-like plain stack: 3x3 stride-2 stem, then depthwise-separable blocks.

    Args:
        num_classes: size of the logits.
        stem: output channels of the stem conv.
        widths: output channels of each stage; the list's length is the number of stages.
        blocks_per_stage: blocks per stage; the first has stride 2, the rest stride 1.
        kernel_size: the depthwise kernel.
        dropout: dropout before the classifier.
    """

    def block(c_in: int, c_out: int, stride: int) -> nn.Module:
        depthwise = _conv_bn(c_in, c_in, kernel_size, stride, groups=c_in)
        return nn.Sequential(depthwise, _conv_bn(c_in, c_out, 1))

    stages = [(width, 2, blocks_per_stage) for width in widths]
    return StudentNet(_conv_bn(3, stem, 3, 2), stem, stages, block, num_classes, dropout)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise, linear 1x1 project, residual if shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int, kernel_size: int):
        super().__init__()
        hidden = c_in * expansion
        expand = [_conv_bn(c_in, hidden, 1, act=nn.ReLU6)] if expansion > 1 else []
        self.block = nn.Sequential(
            *expand,
            _conv_bn(hidden, hidden, kernel_size, stride, groups=hidden, act=nn.ReLU6),
            _conv_bn(hidden, c_out, 1, act=None),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.residual else out


# MobileNetV2's first five stage widths; with the stride-2 stem, four stride-2 stages bring a
# 224-px input to 7x7 (and a 32-px one to 1x1, where global pooling still works).
_IR_WIDTHS = (16, 24, 32, 64, 96)
_IR_STRIDES = (1, 2, 2, 2, 2)


def _round_width(width: float, divisor: int = 8) -> int:
    """MobileNet's rounding: nearest multiple of ``divisor`` (at least it), never 10% below."""
    rounded = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * width else rounded


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
) -> StudentNet:
    """MobileNetV2-style student: 3x3 stride-2 stem, then five stages of inverted residuals.

    Args:
        num_classes: size of the logits.
        width_mult: scales the base widths (16, 24, 32, 64, 96), rounded to multiples of 8.
        expansion: hidden width of each block as a multiple of its input width.
        depth: blocks per stage; only a stage's first block may have stride 2.
        stem: output channels of the stem conv (not scaled by ``width_mult``).
        kernel_size: the depthwise kernel.
        dropout: dropout before the classifier.
    """

    def block(c_in: int, c_out: int, stride: int) -> nn.Module:
        return InvertedResidual(c_in, c_out, stride, expansion, kernel_size)

    stages = [
        (_round_width(base * width_mult), stride, depth)
        for base, stride in zip(_IR_WIDTHS, _IR_STRIDES, strict=True)
    ]
    stem_layer = _conv_bn(3, stem, 3, 2, act=nn.ReLU6)
    return StudentNet(stem_layer, stem, stages, block, num_classes, dropout)
