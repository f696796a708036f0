"""sweep.models.torch_internals: each touch of torch's and torchvision's private names still
holds in the installed versions. A failure here names what an upgrade moved."""

from __future__ import annotations

import torch

from sweep.models.torch_internals import make_divisible, register_quantized_ops


def test_make_divisible_is_mobilenets_rounding() -> None:
    assert make_divisible(12) == 16  # to the nearest multiple of 8
    assert make_divisible(35) == 32  # down, as 32 stays within 10%
    assert make_divisible(10) == 16  # 8 would be over 10% below
    assert make_divisible(3) == 8  # never below the divisor
    assert make_divisible(27) == 32  # 24 would be over 10% below
    assert make_divisible(50, 4) == 52


def test_register_quantized_ops_makes_the_int8_operators_resolvable() -> None:
    register_quantized_ops()
    op = torch.ops.quantized_decomposed.dequantize_per_tensor
    x = torch.tensor([0, 2, 4], dtype=torch.uint8)
    out = op(x, 0.5, 2, 0, 255, torch.uint8)
    assert out.tolist() == [-1.0, 0.0, 1.0]
