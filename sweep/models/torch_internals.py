"""Every touch of torch's and torchvision's private names, in one place.

``tests/models/test_torch_internals.py`` checks each against the installed versions, so an
upgrade that moves one fails there, by name, instead of deep inside a trial.
"""

from __future__ import annotations

from torchvision.models._utils import _make_divisible


def make_divisible(width: float, divisor: int = 8) -> int:
    """MobileNet's width rounding, as torchvision's MobileNets do it: the nearest multiple of
    ``divisor`` (at least ``divisor``), never more than 10% below ``width``."""
    return _make_divisible(width, divisor)


def register_quantized_ops() -> None:
    """Register ``torch.ops.quantized_decomposed`` (what an int8 ``.pt2`` program calls).

    torch defines the operators but registers them only when this module is imported, as
    torchao's convert does; without it loading a program fails with "failed to resolve ...
    dequantize_per_channel".
    """
    from torch.ao.quantization.fx._decomposed import quantized_decomposed_lib  # noqa: F401
