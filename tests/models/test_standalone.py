"""``student.py``: every family, pruned and factorized students, rebuilt by torch alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.compress.lowrank import factorize_model
from sweep.compress.prune import prune_step, structured_pruner
from sweep.errors import SweepError
from sweep.models.registry import create_student
from sweep.models.standalone import load_module_state, standalone_source

FAMILIES = ["dsconv", "inverted_residual", "plain", "ghostnet", "shufflenet_v2", "mobilenet_v3"]
SIZE = 32

pytestmark = pytest.mark.usefixtures("one_thread")


def source_of(model: nn.Module) -> str:
    return standalone_source(
        model,
        title="a test student.",
        image_size=SIZE,
        resize=36,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        class_names=[f"c{i}" for i in range(11)],
        weights="student_best.ckpt",
    )


def assert_rebuilt(model: nn.Module) -> str:
    model.eval()
    source = source_of(model)
    rebuilt = load_module_state(source, model.state_dict())  # strict: every key, every shape
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images), model(images))
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(
        p.numel() for p in model.parameters()
    )
    return source


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_is_rebuilt_by_torch_alone(family: str) -> None:
    torch.manual_seed(0)
    source = assert_rebuilt(create_student(family, 11))
    imports = [line for line in source.splitlines() if line.startswith(("import", "from"))]
    assert imports == ["from pathlib import Path", "import torch", "from torch import nn"]
    forward = source[source.index("    def forward") : source.index("def load_student")]
    assert "getattr(" not in forward and "= None" not in forward  # reads a[1][0]; no frees


@pytest.mark.parametrize("family", ["shufflenet_v2", "ghostnet", "inverted_residual"])
def test_pruned_students_are_rebuilt_at_their_pruned_widths(family: str) -> None:
    torch.manual_seed(0)
    model = create_student(family, 11)
    prune_step(structured_pruner(model, SIZE, ratio=0.4), model)
    assert_rebuilt(model)


def test_factorized_students_are_rebuilt() -> None:
    torch.manual_seed(0)
    model = create_student("plain", 11)
    assert factorize_model(model, 0.25)
    assert_rebuilt(model)


def test_a_layer_torch_does_not_define_is_refused() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gain

    model = nn.Sequential(nn.Conv2d(3, 4, 3), Scale(), nn.Flatten(), nn.LazyLinear(11))
    model(torch.zeros(1, 3, SIZE, SIZE))
    with pytest.raises(SweepError, match=r"student.py: .*1 \(Scale\)"):
        source_of(model)
