"""A student as one Python file that needs torch alone: the ``student.py`` of an export.

The model is traced with ``torch.fx`` down to ``torch.nn`` layers; the file builds those
layers under the names they have in the model (so ``student_best.ckpt`` loads with
``strict=True``) and its ``forward`` is the traced graph's code, calls and all. Nothing of
sweep is imported or pickled: the file reads as the architecture it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from torch import fx, nn

from sweep.errors import SweepError

# Names the traced code may use: what the file imports, or Python's own.
_ALLOWED_GLOBALS = {"torch", "getattr", "inf", "nan", "NoneType", "device", "_Tensor_"}
_UNUSED_GLOBALS = {"fx_pytree", "pytree"}  # fx's codegen always lists them


class _TorchLeaves(fx.Tracer):
    """Traces into every module that is not one of ``torch.nn``'s own."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return _is_torch_layer(module) and super().is_leaf_module(module, qualified_name)


def _is_torch_layer(module: nn.Module) -> bool:
    cls = type(module)
    return getattr(nn, cls.__name__, None) is cls


def _holds_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(
        True for _ in module.buffers(recurse=False)
    )


def _constructor(name: str, module: nn.Module) -> str:
    """The ``nn.<Layer>(...)`` call that builds ``module``'s shape (weights come later)."""
    if not _is_torch_layer(module):
        raise SweepError(f"student.py: layer {name} ({type(module).__name__}) is not torch.nn's")
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        # Spelled out: newer torch prints arguments (bias=) that older torch refuses.
        if not (module.affine and module.track_running_stats):
            raise SweepError(f"student.py: BatchNorm {name} without affine or running stats")
        cls = type(module).__name__
        return f"nn.{cls}({module.num_features}, eps={module.eps}, momentum={module.momentum})"
    if list(module.parameters(recurse=False)) and not isinstance(
        module, nn.modules.conv._ConvNd | nn.Linear
    ):
        raise SweepError(f"student.py: no constructor for {name} ({type(module).__name__})")
    return f"nn.{type(module).__name__}({module.extra_repr()})"


def _forward_source(graph: fx.Graph) -> str:
    """The traced ``forward`` as readable source: ``self.features[1][0]``, no ``x = None``."""
    code = graph.python_code(root_module="self")
    unknown = set(code.globals) - _ALLOWED_GLOBALS - _UNUSED_GLOBALS
    if unknown:
        raise SweepError(f"student.py: the traced forward uses {', '.join(sorted(unknown))}")
    source = code.src.strip("\n")
    previous = None
    while previous != source:  # innermost first: getattr(getattr(a, "1"), "0") -> a[1][0]
        previous = source
        source = re.sub(r'getattr\(([\w.\[\]]+), "(\d+)"\)', r"\1[\2]", source)
    source = re.sub(r";  (\w+ = )+None$", "", source, flags=re.MULTILINE)  # fx frees early
    source = source.replace("_Tensor_", "torch.Tensor")
    return "\n".join("    " + line if line else "" for line in source.splitlines())


def standalone_source(
    model: nn.Module,
    *,
    title: str,
    image_size: int,
    resize: int,
    mean: Sequence[float],
    std: Sequence[float],
    class_names: Sequence[str],
    weights: str,
) -> str:
    """The text of ``student.py``: ``Student``, ``load_student`` and a ``__main__`` check.

    Args:
        model: the student, as exported (pruned, factorized: any ``torch.nn`` layers).
        title: the docstring's first line (family, study, trial, count).
        image_size, resize, mean, std: its preprocessing, stated as constants.
        class_names: index order.
        weights: the checkpoint's file name, next to ``student.py``.

    Raises:
        SweepError: the model holds a layer that is not ``torch.nn``'s, or its forward
            cannot be traced to plain torch code.
    """
    graph = _TorchLeaves().trace(model)
    called = {node.target for node in graph.nodes if node.op == "call_module"}
    layers = [  # what forward calls, and whatever holds weights (for a strict load)
        (name, _constructor(name, module))
        for name, module in model.named_modules()
        if name in called or (name and not list(module.children()) and _holds_state(module))
    ]
    body = "\n".join(f'        _put(self, "{name}", {call})' for name, call in layers)
    return _TEMPLATE.format(
        title=title,
        weights=weights,
        image_size=image_size,
        resize=resize,
        mean=tuple(mean),
        std=tuple(std),
        classes=list(class_names),
        layers=body,
        forward=_forward_source(graph),
    )


def load_module_state(source: str, state_dict: Mapping[str, Any]) -> nn.Module:
    """Run ``source`` (a ``student.py``) and load ``state_dict`` into its ``Student``."""
    namespace: dict[str, Any] = {"__name__": "student", "__file__": "student.py"}
    exec(compile(source, "student.py", "exec"), namespace)  # noqa: S102 - our own output
    model = namespace["Student"]()
    model.load_state_dict(state_dict)
    return model.eval()


_TEMPLATE = '''"""{title}

Written by `sweep export`; needs torch alone. Rebuilds the architecture and loads
{weights} from this folder:

    from student import load_student
    model = load_student()   # eval mode
    logits = model(images)   # images: [N, 3, IMAGE_SIZE, IMAGE_SIZE], RGB in [0, 1],
                             # normalized by MEAN and STD

Preprocessing as trained: resize the shorter side to RESIZE, center-crop IMAGE_SIZE.
`python student.py` prints the parameter count and checks one forward pass.
"""

from pathlib import Path

import torch
from torch import nn

IMAGE_SIZE = {image_size}
RESIZE = {resize}
MEAN = {mean}
STD = {std}
CLASSES = {classes}
WEIGHTS = Path(__file__).with_name("{weights}")


class Block(nn.Module):
    """A container of layers; numbered children are also reached by index."""

    def __getitem__(self, index):
        return getattr(self, str(index))


def _put(root, path, layer):
    *parents, name = path.split(".")
    for parent in parents:
        if not hasattr(root, parent):
            root.add_module(parent, Block())
        root = getattr(root, parent)
    root.add_module(name, layer)


class Student(nn.Module):
    def __init__(self):
        super().__init__()
{layers}

{forward}


def load_student(weights=WEIGHTS):
    """The student with its trained weights, in eval mode."""
    model = Student()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


if __name__ == "__main__":
    model = load_student()
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    assert logits.shape == (1, len(CLASSES)), logits.shape
    print(f"parameters: {{sum(p.numel() for p in model.parameters()):,}}")
    print(f"output: {{tuple(logits.shape)}} for a 1x3x{{IMAGE_SIZE}}x{{IMAGE_SIZE}} input")
'''
