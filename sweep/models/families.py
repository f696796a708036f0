"""The student families: a shared skeleton and the blocks each family stacks in it.

Each family is a builder registered with :func:`~sweep.models.registry.register_student`;
its keyword parameters are its searchable options (``student.<name>`` in a space).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Annotated

import torch
from torch import Tensor, nn
from torchvision.models import MobileNetV3, ShuffleNetV2
from torchvision.models._utils import _make_divisible
from torchvision.models.mobilenetv3 import InvertedResidualConfig
from torchvision.models.shufflenetv2 import InvertedResidual as ShuffleUnit

from sweep.bounds import Bound
from sweep.errors import ConfigError
from sweep.models.registry import (
    Count,
    EvenWidths,
    Kernel,
    Multiplier,
    Rate,
    Steps,
    Stride,
    Widths,
    register_student,
)

# make_block(c_in, c_out, stride) -> one block; a stage is (width, first stride, blocks).
BlockFactory = Callable[[int, int, int], nn.Module]


class StudentNet(nn.Module):
    """``features`` (stem, then one module per stage), global average pool, ``classifier``.

    ``features[0]`` is the stem and ``features[i]`` ends stage i (taps for feature distillation).
    Every family is one, so taps, pruning, counting and export treat them alike.

    Args:
        layers: the stem, then each stage.
        width: channels out of the last stage.
        num_classes: size of the logits.
        dropout: dropout before the classifier.
        classifier: a head of the family's own (default: dropout then one ``Linear``).
        init: MobileNet's initialisation of convs and linears (families built by torchvision
            come initialised).
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        width: int,
        num_classes: int,
        dropout: float,
        classifier: nn.Module | None = None,
        init: bool = True,
    ):
        super().__init__()
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        # Dropout stays even at p=0 so the Linear is always ``classifier.1``: checkpoints load
        # whatever dropout the trial used.
        self.classifier = classifier or nn.Sequential(
            nn.Dropout(dropout), nn.Linear(width, num_classes)
        )
        if not init:
            return
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


def stage_strides(strides: Sequence[int], full_res_stages: int) -> list[int]:
    """The family's stage strides, with the first ``full_res_stages`` stages at stride 1.

    Keeping the early stages at full resolution is what a small input needs (a 32-px image
    halved five times is 1x1); the defaults (0) halve as the 224-px designs do.
    """
    return [1 if i < full_res_stages else s for i, s in enumerate(strides)]


def stack_stages(
    c_in: int, stages: Sequence[tuple[int, int, int]], make_block: BlockFactory
) -> tuple[list[nn.Module], int]:
    """One Sequential per ``(width, first stride, blocks)``, and the last stage's width."""
    layers: list[nn.Module] = []
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
    return layers, c_in


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
        depthwise = _conv_bn(c_in, c_in, kernel_size, stride, groups=c_in)
        return nn.Sequential(depthwise, _conv_bn(c_in, c_out, 1))

    strides = stage_strides([2] * len(widths), full_res_stages)
    stages = [(w, s, blocks_per_stage) for w, s in zip(widths, strides, strict=True)]
    layers, width = stack_stages(stem, stages, block)
    return StudentNet([_conv_bn(3, stem, 3, stem_stride), *layers], width, num_classes, dropout)


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
# 224-px input to 7x7 (a 32-px one to 1x1: use stem_stride 1 and downsample 2 there).
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
        (_round_width(base * width_mult), stride, depth)
        for base, stride in zip(_IR_WIDTHS, strides, strict=True)
    ]
    layers, width = stack_stages(stem, stages, block)
    stem_layer = _conv_bn(3, stem, 3, stem_stride, act=nn.ReLU6)
    return StudentNet([stem_layer, *layers], width, num_classes, dropout)


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
    layers: list[nn.Module] = [_conv_bn(3, stem, kernel_size, stem_stride)]
    c_in = stem
    scaled = [w if width_mult == 1 else _round_width(w * width_mult) for w in widths]
    for width, stride in zip(scaled, strides, strict=True):
        pool = [nn.MaxPool2d(2)] if stride == 2 else []
        convs = [
            _conv_bn(c_in if i == 0 else width, width, kernel_size) for i in range(convs_per_stage)
        ]
        layers.append(nn.Sequential(*pool, *convs))
        c_in = width
    return StudentNet(layers, c_in, num_classes, dropout)


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
        self.primary = _conv_bn(c_in, primary, 1, act=act)
        cheap = primary * (ratio - 1)
        self.cheap = _conv_bn(primary, cheap, kernel_size, groups=primary, act=act)
        self.strided = nn.ModuleList(
            _conv_bn(width, width, stride_kernel, stride, groups=width, act=None)
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
                _conv_bn(c_in, c_in, kernel_size, stride, groups=c_in, act=None),
                _conv_bn(c_in, c_out, 1, act=None),
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
    ratio: Annotated[int, Bound(ge=2, le=4)] = 2,
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
    return StudentNet([_conv_bn(3, stem, 3, stem_stride), *layers], width, num_classes, dropout)


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
        widths = [_round_width(w * width_mult) for w in widths]
    channels = [stem, *widths, last_conv]
    net = ShuffleNetV2(list(repeats), channels, num_classes, inverted_residual=ShuffleBlock)
    net.conv1[0].stride = (stem_stride, stem_stride)
    stem_layer = nn.Sequential(net.conv1, net.maxpool if stem_pool else nn.Identity())
    layers = [stem_layer, net.stage2, net.stage3, nn.Sequential(net.stage4, net.conv5)]
    return StudentNet(layers, last_conv, num_classes, dropout, init=False)


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
    setting, c_in, ends = [], _make_divisible(16 * width_mult, 8), []
    for i, ((width, ratio, kernel, act), stride) in enumerate(
        zip(_MNV3_STAGES, strides, strict=True)
    ):
        use_act = act if activation == "hardswish" else "RE"
        se = squeeze_excite and i != 1
        for block in range(depth):
            c_out = _make_divisible(width * width_mult, 8)
            hidden = _make_divisible(c_in * ratio * expansion, 8)
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


# Options that keep a 32-px input at 4x4 or more after the last stage, per family: what a
# search space for small images sets (the defaults are the 224-px designs).
SMALL_INPUT_OPTIONS: dict[str, dict[str, object]] = {
    "dsconv": {"stem_stride": 1},
    "inverted_residual": {"stem_stride": 1, "full_res_stages": 2},
    "plain": {"stem_stride": 1, "full_res_stages": 1},
    "ghostnet": {"stem_stride": 1, "full_res_stages": 1},
    "shufflenet_v2": {"stem_stride": 1, "stem_pool": False},
    "mobilenet_v3": {"stem_stride": 1, "full_res_stages": 1},
}
