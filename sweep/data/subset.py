"""A seeded share of the training images: the ``dataset.train_fraction`` of a cheap trial.

The share is stratified: every class keeps ``round(fraction * its count)`` images (at least
one), so a half-size proxy trial sees the classes in the proportions the full set has. The
choice depends on the labels and the seed alone, so every trial of a study with the same
seed trains on the same images, on either data path (decoded cache or PIL), and the
teacher's soft labels, computed once for the whole split, are indexed as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_SALT = 0x5B5E7  # keeps the subset's stream apart from the shuffle's and the views'


def train_subset(labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices (ascending) of the training images a trial keeps.

    Args:
        labels: the training split's labels, in file order.
        fraction: share kept, in (0, 1]; 1 keeps every image.
        seed: the trial's seed.

    Returns:
        int64 indices into ``labels``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if fraction >= 1.0:
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng([seed, _SALT])
    kept = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(fraction * len(members)))
        kept.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(kept)).astype(np.int64)
