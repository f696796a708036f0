"""Where feature distillation reads a network: forward-hook taps, and FitNet's hint regressor.

Taps name a network's stage outputs (``stage1``..) and its pooled ``embedding``, for the
students (:func:`student_taps`) and the ResNet18 teacher (:func:`teacher_taps`), so a loss
can pair a student stage with a teacher stage without knowing either architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeatureTap:
    """Forward hooks keeping the latest output of named submodules in :attr:`features`.

    ``with FeatureTap(student_taps(model)) as tap: logits = model(x)`` leaves the stage maps in
    ``tap.features``. Each forward replaces the last one's tensors, so no more than one batch
    is kept alive; :meth:`clear` drops it, :meth:`close` (or leaving the ``with``) removes the
    hooks. Register before ``torch.compile``, which traces the hooks into the graph.

    Args:
        modules: ``{tap name: submodule}``, e.g. from :func:`student_taps`.
        flatten: tap names whose outputs are flattened to ``[B, -1]`` (the pooled embedding).
    """

    def __init__(self, modules: Mapping[str, nn.Module], flatten: Iterable[str] = ("embedding",)):
        self.features: dict[str, Tensor] = {}
        flat = set(flatten)
        self._handles = [
            module.register_forward_hook(self._hook(name, name in flat))
            for name, module in modules.items()
        ]

    def _hook(self, name: str, flatten: bool) -> Callable[[nn.Module, Any, Tensor], None]:
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
            self.features[name] = output.flatten(1) if flatten else output

        return hook

    def clear(self) -> None:
        """Drop the captured tensors."""
        self.features = {}

    def close(self) -> None:
        """Remove the hooks and drop the captured tensors."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def student_taps(model: nn.Module) -> dict[str, nn.Module]:
    """Taps of a ``StudentNet``: ``stage1``.. (``features[1:]``) and the pooled ``embedding``."""
    taps = {f"stage{i}": model.features[i] for i in range(1, len(model.features))}
    return {**taps, "embedding": model.pool}


def teacher_taps(resnet: nn.Module) -> dict[str, nn.Module]:
    """Taps of a torchvision ResNet: ``stage1..stage4`` (``layer1..4``) and ``embedding``."""
    taps = {f"stage{i}": getattr(resnet, f"layer{i}") for i in range(1, 5)}
    return {**taps, "embedding": resnet.avgpool}


def tap_shapes(
    model: nn.Module, taps: Mapping[str, nn.Module], image_size: int
) -> dict[str, tuple[int, ...]]:
    """Return each tap's output shape without the batch dimension, from a dry forward.

    The forward runs on zeros ``[1, 3, S, S]`` in eval mode (BatchNorm statistics untouched)
    under ``no_grad``; every submodule's mode and the RNG state are restored afterwards.
    """
    modes = {module: module.training for module in model.modules()}
    param = next(model.parameters())
    devices = [param.device.index or 0] if param.device.type == "cuda" else []
    x = torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype)
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), FeatureTap(taps) as tap:
            model.eval()
            model(x)
            return {name: tuple(out.shape[1:]) for name, out in tap.features.items()}
    finally:
        for module, training in modes.items():
            module.training = training


def pick_hint_pair(student: nn.Module, teacher: nn.Module, image_size: int) -> tuple[str, str]:
    """FitNet's hint pair: the student's last stage and the teacher stage closest in size.

    Closest means the least ``|dH| + |dW|`` at ``image_size``; ties go to the deeper stage.

    Returns:
        ``(student tap name, teacher tap name)``, e.g. ``("stage3", "stage3")``.
    """
    s_name = f"stage{len(student.features) - 1}"
    height, width = tap_shapes(student, {s_name: student.features[-1]}, image_size)[s_name][1:]
    gaps = {
        name: abs(shape[1] - height) + abs(shape[2] - width)
        for name, shape in tap_shapes(teacher, teacher_taps(teacher), image_size).items()
        if name.startswith("stage")
    }
    # min keeps the first of equal keys: scanning deepest first breaks ties towards depth.
    return s_name, min(reversed(gaps), key=gaps.__getitem__)


class HintRegressor(nn.Module):
    """FitNet's regressor: 1x1 conv (+ BatchNorm) from student to teacher channels.

    A map of another size is resized to the teacher's: area-averaged by
    ``F.adaptive_avg_pool2d`` when larger (every student position counts, and it is exact
    average pooling when the sizes divide), bilinearly interpolated when smaller. Resizing and a
    1x1 conv commute (one acts over space with weights summing to 1, the other over channels),
    so the resize runs on the smaller side: before the conv when pooling, after it when
    upsampling. Trained with the student but kept out of it, so the export never carries it.

    Args:
        student_channels: channels of the student's map.
        teacher_channels: channels of the teacher's map.
        size: the teacher map's ``(H, W)``, or None to keep the student's size.
        batch_norm: a BatchNorm after the conv (which then has no bias).
        hint_pair: the ``(student tap, teacher tap)`` it joins, read by :func:`method_loss`.
    """

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        size: tuple[int, int] | None = None,
        *,
        batch_norm: bool = True,
        hint_pair: tuple[str, str] | None = None,
    ):
        super().__init__()
        self.size = tuple(size) if size is not None else None
        self.hint_pair = hint_pair
        self.conv = nn.Conv2d(student_channels, teacher_channels, 1, bias=not batch_norm)
        self.norm = nn.BatchNorm2d(teacher_channels) if batch_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        size = self.size
        if size is None or tuple(x.shape[-2:]) == size:
            return self.norm(self.conv(x))
        if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
            return self.norm(self.conv(F.adaptive_avg_pool2d(x, size)))
        up = F.interpolate(self.conv(x), size=size, mode="bilinear", align_corners=False)
        return self.norm(up)


def build_hint_regressor(student: nn.Module, teacher: nn.Module, image_size: int) -> HintRegressor:
    """A :class:`HintRegressor` for :func:`pick_hint_pair`'s pair, on the student's device."""
    s_name, t_name = pick_hint_pair(student, teacher, image_size)
    s_shape = tap_shapes(student, {s_name: student.features[-1]}, image_size)[s_name]
    t_shape = tap_shapes(teacher, {t_name: teacher_taps(teacher)[t_name]}, image_size)[t_name]
    regressor = HintRegressor(s_shape[0], t_shape[0], t_shape[1:], hint_pair=(s_name, t_name))
    return regressor.to(next(student.parameters()).device)
