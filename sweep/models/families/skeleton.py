"""What every family shares: the skeleton a student is built in and its stages.

The blocks are made of torchvision's ``Conv2dNormActivation`` (conv without bias, BN, an
activation) and widths rounded as torchvision rounds MobileNet's
(:func:`sweep.models.torch_internals.make_divisible`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

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
