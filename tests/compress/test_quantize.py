"""Static int8 post-training quantization of students (PT2E, X86InductorQuantizer)."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import Tensor, nn

pytest.importorskip("torchao.quantization.pt2e", reason="int8 quantization needs torchao")

from sweep.compress.quantize import (  # noqa: E402 -- after the skip, which must come first
    QuantizedResult,
    load_quantized,
    quantize_int8,
    save_quantized,
)
from sweep.models.registry import create_student  # noqa: E402

SIZE = 16
CLASSES = 4
# depth 2 puts a residual add in every stage after its first block, so the int8 graph has to
# handle adds; the family's default depth 1 has none.
STUDENTS = {"dsconv": {}, "inverted_residual": {"depth": 2}}


def _images(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Smooth noise plus a class signal that survives global pooling, and the labels.

    Class c < 3 brightens colour channel c, class 3 darkens all three. Structured
    rather than white noise, so activations have the skewed, correlated ranges calibration
    has to cope with in real images.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(CLASSES, (n,), generator=gen)
    coarse = torch.randn(n, 3, 4, 4, generator=gen)
    images = nn.functional.interpolate(coarse, size=SIZE, mode="bilinear", align_corners=False)
    for channel in range(3):
        images[labels == channel, channel] += 1.0
    images[labels == 3] -= 1.0
    return images, labels


@functools.cache  # shared by the tests, which copy it before changing anything
def _trained(family: str) -> nn.Module:
    """A student trained for 30 steps (~1 s), so its logits separate the classes with margins.

    An untrained student is a poor stand-in: its features are random, so int8 noise that
    compounds over the layers is as large as the tiny differences between its logits.
    """
    torch.manual_seed(0)
    model = create_student(family, CLASSES, STUDENTS[family])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(30):
        x, y = _images(64, seed=100 + step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    # After 30 fast-moving steps BatchNorm's running averages (momentum 0.1) still lag the
    # weights; re-estimated as a plain average over a few batches they match them.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None
        for step in range(3):
            model(_images(64, seed=150 + step)[0])
    return model.eval()


def _calibration() -> list[tuple[Tensor, Tensor]]:
    # (images, labels) as a DataLoader yields them; quantize_int8 uses the images only.
    return [_images(32, seed=200 + i) for i in range(3)]


@functools.cache
def _quantized(family: str) -> tuple[nn.Module, QuantizedResult]:
    model = _trained(family)
    return model, quantize_int8(model, _calibration(), SIZE)


@pytest.fixture(params=sorted(STUDENTS))
def quantized(request: pytest.FixtureRequest) -> tuple[nn.Module, QuantizedResult]:
    return _quantized(request.param)


def test_int8_outputs_follow_the_float_model(quantized) -> None:
    model, result = quantized
    x, y = _images(256, seed=300)
    with torch.no_grad():
        expected, got = model(x), result.model(x)
    assert got.shape == expected.shape == (256, CLASSES)
    assert got.dtype == torch.float32
    agreement = (got.argmax(1) == expected.argmax(1)).float().mean().item()
    correlation = torch.corrcoef(torch.stack([got.flatten(), expected.flatten()]))[0, 1].item()
    assert agreement >= 0.9
    assert correlation > 0.95
    assert not torch.equal(got, expected)  # actually quantized, not the float graph
    # The float model learned the classes, so agreement is not between two near-constant
    # argmaxes.
    assert (expected.argmax(1) == y).float().mean().item() > 0.8


def test_int8_weights_are_int8_and_smaller(quantized) -> None:
    model, result = quantized
    tensors = {**result.program.state_dict, **result.program.constants}
    int8 = [t for t in tensors.values() if t.dtype == torch.int8]
    # Every conv and the classifier: nothing left in float but biases, scales, zero points.
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(int8) == len(layers)
    assert sum(t.numel() for t in int8) == sum(m.weight.numel() for m in layers)
    assert result.int8_bytes < 0.5 * result.float_bytes
    if isinstance(model.features[1][0], nn.Sequential):  # dsconv: ~49k params, 94% in convs
        assert result.int8_bytes < 0.35 * result.float_bytes


def test_saved_program_reloads_for_any_batch(quantized, tmp_path) -> None:
    _, result = quantized
    path = tmp_path / "student_int8.pt2"
    save_quantized(result, path)
    # Entry names in the archive derive from the file name, so sizes differ by a few bytes.
    assert path.stat().st_size == pytest.approx(result.program_bytes, rel=0.01)
    reloaded = load_quantized(path)
    for batch in (1, 5):
        x, _ = _images(batch, seed=400 + batch)
        with torch.no_grad():
            # The same int8 program; its float edges (quantize in, dequantize out) may round
            # differently across thread splits, so not bit-for-bit: a wrong reload differs by
            # whole quantization steps (> 1e-2).
            torch.testing.assert_close(reloaded(x), result.model(x), rtol=0, atol=1e-5)


def test_quantization_is_deterministic_and_leaves_the_model_alone() -> None:
    model, result = _quantized("dsconv")
    model = copy.deepcopy(model).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    again = quantize_int8(model, _calibration(), SIZE)
    x, _ = _images(16, seed=500)
    with torch.no_grad():
        assert torch.equal(again.model(x), result.model(x))
    assert again.int8_bytes == result.int8_bytes
    assert model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_empty_calibration_is_refused() -> None:
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(create_student("dsconv", CLASSES), [], SIZE)


def test_residual_adds_are_quantized() -> None:
    _, result = _quantized("inverted_residual")
    adds = [n for n in result.program.graph.nodes if n.target == torch.ops.aten.add.Tensor]
    assert adds
    for add in adds:  # the sum goes to int8 before the next block reads it
        assert all("quantize_per_tensor" in str(user.target) for user in add.users)
