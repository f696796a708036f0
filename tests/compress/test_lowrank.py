"""SVD factorization of convs and linear layers, and of whole students."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.compress.lowrank import factorize_conv, factorize_linear, factorize_model
from sweep.models.budget import count_params
from sweep.models.registry import create_student


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomize(layer: nn.Module, seed: int = 0) -> nn.Module:
    # Default inits are small and nearly full-spectrum alike; random normals with a nonzero
    # bias make a bias that is dropped or misplaced visible in the output.
    gen = _seeded(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return layer


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (nn.Conv2d(5, 7, 3, stride=2, padding=1), (3, 5, 9, 9)),
        (nn.Conv2d(6, 4, 1), (3, 6, 5, 5)),
        (nn.Conv2d(3, 8, (3, 5), padding=(2, 1), dilation=(2, 1), bias=False), (2, 3, 8, 8)),
        (nn.Linear(9, 5), (4, 9)),
        (nn.Linear(5, 12, bias=False), (4, 5)),
    ],
    ids=["conv3x3-s2", "conv1x1", "conv-dilated-nobias", "linear", "linear-nobias"],
)
def test_full_rank_reproduces_the_layer(layer: nn.Module, shape: tuple[int, ...]) -> None:
    _randomize(layer)
    x = torch.randn(shape, generator=_seeded(1))
    if isinstance(layer, nn.Linear):
        full = min(layer.in_features, layer.out_features)
        factored = factorize_linear(layer, full)
    else:
        full = min(layer.out_channels, layer.weight[0].numel())
        factored = factorize_conv(layer, full)
    with torch.no_grad():
        expected, got = layer(x), factored(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    assert factored[0].bias is None
    assert (factored[1].bias is None) == (layer.bias is None)


def test_factorized_conv_keeps_geometry() -> None:
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, padding_mode="reflect")
    first, second = factorize_conv(conv, 2)
    assert (first.in_channels, first.out_channels, first.kernel_size) == (4, 2, (3, 3))
    assert (first.stride, first.padding, first.padding_mode) == ((2, 2), (1, 1), "reflect")
    assert (second.in_channels, second.out_channels, second.kernel_size) == (2, 6, (1, 1))
    assert second.stride == (1, 1)


def test_lower_rank_error_is_the_discarded_spectrum_and_falls_with_rank() -> None:
    conv = _randomize(nn.Conv2d(8, 12, 3, padding=1), seed=2)
    matrix = conv.weight.detach().reshape(12, -1)
    singular = torch.linalg.svdvals(matrix.double())
    x = torch.randn(64, 8, 6, 6, generator=_seeded(3))
    with torch.no_grad():
        reference = conv(x)
    errors = []
    for rank in (1, 3, 6, 9, 12):
        first, second = factorize_conv(conv, rank)
        rebuilt = second.weight.reshape(12, rank) @ first.weight.reshape(rank, -1)
        # Eckart-Young: the best rank-r approximation misses by the discarded singular values.
        tail = singular[rank:].square().sum().sqrt().item()
        assert (rebuilt - matrix).norm().item() == pytest.approx(tail, rel=1e-4, abs=1e-4)
        with torch.no_grad():
            out = second(first(x))
        errors.append(((out - reference).norm() / reference.norm()).item())
    assert errors[0] < 1.0  # even rank 1 is closer than predicting zeros
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-5


def test_bad_rank_or_grouped_conv_is_refused() -> None:
    with pytest.raises(ValueError, match="rank"):
        factorize_linear(nn.Linear(4, 6), 5)
    with pytest.raises(ValueError, match="rank"):
        factorize_conv(nn.Conv2d(4, 6, 1), 0)
    with pytest.raises(ValueError, match="groups"):
        factorize_conv(nn.Conv2d(4, 4, 3, groups=4), 1)


def _depthwise(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1}


def test_factorize_dsconv_student_at_quarter_rank() -> None:
    torch.manual_seed(0)
    model = create_student("dsconv", 11)
    depthwise = _depthwise(model)
    before = count_params(model)
    x = torch.randn(4, 3, 32, 32, generator=_seeded(4))
    report = factorize_model(model, 0.25)
    after = count_params(model)

    assert after < before
    assert sum(b - a for b, a in report.values()) == before - after
    for name, (b, a) in report.items():
        replaced = model.get_submodule(name)
        assert isinstance(replaced, nn.Sequential) and len(replaced) == 2
        assert count_params(replaced) == a < b
    # The stem, every pointwise conv and the classifier; no depthwise conv.
    assert set(report) == {
        "features.0.0",
        "features.1.0.1.0",
        "features.2.0.1.0",
        "features.3.0.1.0",
        "classifier.1",
    }
    assert _depthwise(model) == depthwise  # the same module objects, untouched

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    old = model.get_submodule("features.3.0.1.0")[0].weight.detach().clone()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(model.get_submodule("features.3.0.1.0")[0].weight, old)
    model.eval()
    assert model(x).shape == (4, 11)


def test_inverted_residual_student_keeps_its_output_shape() -> None:
    torch.manual_seed(0)
    model = create_student("inverted_residual", 5).eval()
    depthwise, before = _depthwise(model), count_params(model)
    report = factorize_model(model, 0.5)
    assert not any(m.training for m in model.modules())
    assert report and count_params(model) == before - sum(b - a for b, a in report.values())
    assert _depthwise(model) == depthwise
    assert model.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_layers_that_would_not_shrink_are_left_alone() -> None:
    # At ratio 0.75: Linear(4, 4) -> rank 3 costs 3 * 8 = 24 > 16 weights; the 3x3 stem with
    # 27 inputs -> rank 6 of 8 costs 6 * 35 = 210 < 216, a saving of 6 parameters.
    stem, square = nn.Conv2d(3, 8, 3), nn.Linear(4, 4)
    model = nn.Sequential(stem, nn.Conv2d(8, 8, 3, groups=8), nn.Flatten(), square)
    assert factorize_model(model, 0.75) == {"0": (224, 218)}
    assert model[3] is square and model[1].groups == 8

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(4, 4))
    assert factorize_model(model, 0.75, min_params_saved=7) == {}
    assert factorize_model(model, 1.0) == {}  # full rank never saves


def test_shared_layer_is_replaced_everywhere_and_counted_once() -> None:
    shared = nn.Linear(32, 32)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    before = count_params(model)
    report = factorize_model(model, 0.25)
    assert report == {"0": (32 * 32 + 32, 8 * 64 + 32)}
    assert model[0] is model[2] and isinstance(model[0], nn.Sequential)
    assert count_params(model) == before - (32 * 32 - 8 * 64)


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5])
def test_rank_ratio_out_of_range_is_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match="rank_ratio"):
        factorize_model(nn.Linear(8, 8), ratio)
