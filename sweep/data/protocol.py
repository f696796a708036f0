"""What training reads, as protocols: loaders of batches, and a train/validation pair.

Both data paths satisfy them: the PIL pipeline (:class:`~sweep.data.loaders.DataBundle`)
and the decoded cache (:class:`~sweep.data.batches.CachedData`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
from torch import Tensor


class Loader(Protocol):
    """Batches of ``(images, labels)``, or ``(images, labels, teacher_logits)``, and a length.

    A train loader may also have ``set_epoch(epoch)`` (called before each epoch) and
    ``yields_teacher_logits = True`` (its batches carry the teacher's cached logits).
    """

    def __iter__(self) -> Iterator[Sequence[Tensor]]: ...

    def __len__(self) -> int: ...


class TrainData(Protocol):
    """A train loader and a validation loader."""

    @property
    def train(self) -> Loader: ...

    @property
    def val(self) -> Loader: ...

    @property
    def class_names(self) -> list[str]:
        """The class names, indexed by label."""
        ...


class TeacherLogits(Protocol):
    """Stored teacher logits (:class:`~sweep.teacher.soft_labels.SoftLabels`)."""

    def batch(self, view: int, indices: np.ndarray) -> Tensor:
        """The logits of ``indices`` in augmented view ``view``."""
        ...
