"""Post-training static int8 quantization of a trained student, on CPU.

The flow is PT2E: ``torch.export.export`` captures the model as an aten graph,
``prepare_pt2e`` with torchao's ``X86InductorQuantizer`` folds BatchNorm into the convs and
inserts observers, a few calibration batches set the activation ranges, and ``convert_pt2e``
replaces the observers by quantize/dequantize pairs and folds the weights to int8.

Why PT2E, and why from torchao (not a torch API):

* torch 2.14 still ships the eager (``prepare``/``convert``/``quantize``) and FX
  (``prepare_fx``/``convert_fx``) static flows in ``torch.ao.quantization``, but decorated
  ``@deprecated``: "torch.ao.quantization is deprecated and will be removed in 2.10", pointing
  eager users to torchao's ``quantize_`` and FX users to PT2E (pytorch/ao issue 2259). The
  TorchScript flow (``quantize_jit``) rests on TorchScript, deprecated since 2.5.
* The PT2E entry points (``prepare_pt2e``, ``convert_pt2e``, ``X86InductorQuantizer``,
  ``XNNPACKQuantizer``) are no longer in torch at all: ``torch/ao/quantization`` has no
  ``quantize_pt2e`` or ``quantizer`` module; they live in ``torchao.quantization.pt2e``.
* torchao's eager ``quantize_`` is no alternative: its static config
  (``Int8StaticActivationInt8WeightConfig``) takes a precomputed activation scale, has no
  calibration, and its ``Int8Tensor`` implements ``linear`` only, not the convs that hold most
  of a student's weights.

So static PTQ with calibration, not deprecated, needs torchao. It is imported lazily, so the
rest of ``sweep`` works without it. ``X86InductorQuantizer`` (not XNNPACK) because this runs on
x86: per-channel symmetric int8 weights, per-tensor affine uint8 activations (HistogramObserver),
and it annotates the residual ``add`` of the inverted-residual blocks.

The converted graph stores int8 weights and quantizes every activation, but runs its convs
in float between dequantize and quantize nodes (the "reference" q/dq form): it carries the
int8 model's quantization error, not its speed. ``torch.compile`` (Inductor, with a C++
compiler) is what fuses the q/dq patterns into oneDNN int8 kernels; this module does not
compile, as its product is the exported program and its size.
"""

from __future__ import annotations

import copy
import io
import itertools
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram

from sweep.models.torch_internals import register_quantized_ops

# Exported with a symbolic batch so one program serves any batch size; the example batch is 2
# because torch.export specializes a dimension of size 0 or 1 to a constant.
_EXAMPLE_BATCH = 2


@dataclass(frozen=True)
class QuantizedResult:
    """An int8 student and the serialized sizes of it and of its float original.

    The two weight sizes compare like with like: ``torch.save`` of every tensor the model
    needs. The ``.pt2`` archive adds the serialized graph, which for these small students is
    larger than the int8 weights (~115 kB for dsconv, ~240 kB for inverted_residual, growing
    with the number of layers, not parameters), so ``program_bytes`` is not ~4x below float.

    Attributes:
        model: the int8 model; takes float images ``[N, 3, H, W]`` (any N) and returns float
            logits.
        program: the exported int8 program, what :func:`save_quantized` writes.
        float_bytes: ``torch.save`` size of the float model's ``state_dict()``.
        int8_bytes: ``torch.save`` size of the int8 program's tensors (int8 weights, their
            per-channel scales and zero points, float biases).
        program_bytes: size of the ``.pt2`` file :func:`save_quantized` writes.
    """

    model: nn.Module
    program: ExportedProgram
    float_bytes: int
    int8_bytes: int
    program_bytes: int


def _export(model: nn.Module, image_size: int) -> ExportedProgram:
    example = torch.zeros(_EXAMPLE_BATCH, 3, image_size, image_size)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: Dim("batch")},))
    # The program keeps its example input and torch.export.save writes it into the archive:
    # 25 kB of zeros at 32 px, 1.2 MB at 224 px, more than the int8 weights.
    program.example_inputs = None
    return program


def _saved_size(obj: object) -> int:
    buffer = io.BytesIO()
    if isinstance(obj, ExportedProgram):
        torch.export.save(obj, buffer)
    else:
        torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def _drop_unused_state(graph_module: torch.fx.GraphModule) -> None:
    """Delete parameters and buffers no graph node reads.

    ``convert_pt2e`` adds the folded int8 weights as new attributes but leaves the float
    weights (and BatchNorm's statistics) attached although no node uses them any more; kept,
    they would be exported and the "int8" file would be larger than the float one.
    """
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    named = [*graph_module.named_parameters(), *graph_module.named_buffers()]
    for name, _ in named:
        if name not in used:
            owner_name, _, attr = name.rpartition(".")
            delattr(graph_module.get_submodule(owner_name), attr)
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()


def _images_of(item: Tensor | tuple | list) -> Tensor:
    # A DataLoader yields (images, labels); only the images calibrate.
    images = item[0] if isinstance(item, (tuple, list)) else item
    return images.detach().float().cpu()


def quantize_int8(
    model: nn.Module,
    calibration: Iterable[Tensor | tuple | list],
    image_size: int,
    *,
    reduce_range: bool = False,
) -> QuantizedResult:
    """Quantize a float model to static int8 (weights and activations), calibrated on images.

    The model is not changed: a CPU copy in eval mode is exported and quantized.

    Args:
        model: the trained float student.
        calibration: batches of images ``[N, 3, image_size, image_size]``, normalised as in
            training (a few hundred images are enough); ``(images, labels)`` pairs are
            accepted and the labels ignored. Iterated once.
        image_size: side length of the images, for the export's example input.
        reduce_range: quantize activations to 7 bits, for running the program through
            Inductor's int8 kernels on x86 CPUs without VNNI, whose 16-bit intermediate sums
            can saturate; it costs a bit of activation precision.

    Returns:
        The int8 model and program, and the float and int8 serialized sizes.

    Raises:
        ImportError: torchao is not installed.
        ValueError: ``calibration`` yields no batch.
    """
    # torchao 0.18 registers an Enum with torch's pytree on import, which torch 2.14 answers
    # with a logged "deprecated" warning on every first import; nothing a caller can act on.
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    except ImportError as err:
        raise ImportError(
            "int8 quantization needs torchao (PT2E moved out of torch): pip install torchao"
        ) from err
    finally:
        pytree_log.setLevel(level)

    batches = iter(calibration)
    first = next(batches, None)  # checked before the export, which takes a second or two
    if first is None:
        raise ValueError("calibration yielded no batch; int8 ranges need at least one")

    float_model = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        float_program = _export(float_model, image_size)
        quantizer = X86InductorQuantizer().set_global(
            get_default_x86_inductor_quantization_config(reduce_range=reduce_range)
        )
        prepared = prepare_pt2e(float_program.module(), quantizer)
        for item in itertools.chain([first], batches):
            prepared(_images_of(item))
        converted = convert_pt2e(prepared)
        _drop_unused_state(converted)
        program = _export(converted, image_size)
    return QuantizedResult(
        model=program.module(),
        program=program,
        float_bytes=_saved_size(float_model.state_dict()),
        # The folded int8 weights are constants of the program, not parameters.
        int8_bytes=_saved_size({**program.state_dict, **program.constants}),
        program_bytes=_saved_size(program),
    )


class FrozenProgram(nn.Module):
    """An exported program as a module that ignores ``train()``/``eval()``.

    An exported graph has no train/eval mode (its BatchNorms are folded, its dropout gone),
    and torch refuses ``.eval()`` on it; wrapped, it evaluates like any classifier.
    """

    def __init__(self, program_module: nn.Module) -> None:
        super().__init__()
        self.program = program_module

    def forward(self, images: Tensor) -> Tensor:
        """The program's logits, computed on the CPU in float32 input."""
        return self.program(images.float().cpu())

    def train(self, mode: bool = True) -> FrozenProgram:
        """No mode to set: the graph was frozen at export."""
        return self


def quantize_and_measure(
    model: nn.Module,
    data: Any,
    image_size: int,
    calibration_batches: int,
    accuracy: Callable[[nn.Module, Iterable[Any]], float],
) -> tuple[QuantizedResult, dict[str, float]]:
    """Quantize a trained student, calibrated on its first training batches, and measure it.

    Args:
        model: the trained float student (not changed).
        data: has ``train`` (calibration: the images of its first batches) and ``val``.
        image_size: the images' side length.
        calibration_batches: how many training batches calibrate the activation ranges.
        accuracy: a model's accuracy on a loader, on the CPU (:func:`sweep.train.cpu_accuracy`;
            passed in because training is a layer above compression).

    Returns:
        The int8 result, and ``int8_val_acc``, ``int8_bytes``, ``float_bytes`` and
        ``int8_program_bytes`` for logging next to the float model's numbers.
    """
    images = (batch[0] for batch in data.train)
    result = quantize_int8(model, itertools.islice(images, calibration_batches), image_size)
    return result, {
        "int8_val_acc": accuracy(FrozenProgram(result.model), data.val),
        "int8_bytes": result.int8_bytes,
        "float_bytes": result.float_bytes,
        "int8_program_bytes": result.program_bytes,
    }


def save_quantized(result: QuantizedResult, path: str | os.PathLike[str] | IO[bytes]) -> None:
    """Write the int8 program with ``torch.export.save`` (a ``.pt2`` archive)."""
    torch.export.save(result.program, path)


def load_quantized(path: str | os.PathLike[str]) -> nn.Module:
    """Load a program written by :func:`save_quantized` as a callable module.

    The quantize/dequantize operators the program calls are defined by torch itself, so
    loading needs no torchao, but torch registers them only when their module is imported.
    """
    register_quantized_ops()

    return torch.export.load(path).module()
