"""Each split decoded once into a memory-mapped uint8 cache that every trial reads.

Decoding ~10k JPEGs of ~512 px every epoch would cost more than a 60k-parameter student's
own compute on a GPU, so it is done once per split and image size: every image becomes an
``S x S`` uint8 square (short side resized to ``S`` as ``torchvision.transforms.Resize(S)``
does, long side center-cropped) in one ``.npy`` file. The squares share one shape, which is
what makes a single memory map possible; trials open it read-only, so every process on the
host shares one copy through the page cache.

The cache is keyed by a fingerprint of the split's files (path, size, mtime) and ``S``: any
added, removed or modified file, or another ``S``, builds a new cache beside the old one.
A build happens under a file lock, into temporary files that are moved into place with
``os.replace``, the JSON last: its presence means the cache is complete, so a crashed or
concurrent build is never read half-written.

Measured on this project's 2-core CPU: ~560 images/s for 512x384 JPEGs (~80 KB) at ``S = 256``
(food-11's training split in ~20 s); loading a finished cache takes ~15 ms.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sweep import interrupts
from sweep.data.folders import Sample, scan_split
from sweep.errors import DataError

# Part of every fingerprint: bump it when the decoded pixels would change for the same files.
_FORMAT_VERSION = 1
# Images handed to the pool per round: bounds the decoded-but-unwritten arrays to ~50 MB at
# 256 px while keeping every thread busy.
_CHUNK = 256
# Rows copied per step when compacting around skipped files (~100 MB at 256 px).
_COPY_ROWS = 512


@dataclass(frozen=True)
class DecodedSplit:
    """One split's images decoded to ``size x size`` uint8 squares, in scan order."""

    images: np.ndarray  # uint8 [N, S, S, 3], read-only np.memmap shared via the page cache
    labels: np.ndarray  # int64 [N]; -1 for unlabeled (evaluation) images
    ids: list[str]  # file stems, same order
    skipped: list[str]  # files (relative to the data root) that could not be decoded
    fingerprint: str
    path: Path  # the .npy file


def split_fingerprint(samples: Sequence[Sample], size: int) -> str:
    """Return a short hash of a split's files and the decoded size.

    Args:
        samples: the split as :func:`~sweep.data.folders.scan_split` lists it.
        size: the side of the decoded squares.

    Returns:
        16 hex characters of a sha256 over every file's path (relative to the split's common
        folder, so a moved data set keeps its key), label, size in bytes and mtime_ns, plus
        ``size`` and the cache format version.

    Raises:
        DataError: a file vanished or cannot be read since the scan.
    """
    digest = hashlib.sha256(f"sweep-decoded-v{_FORMAT_VERSION}\0{size}\n".encode())
    base = Path(os.path.commonpath([s.path.parent for s in samples])) if samples else Path()
    for sample in samples:
        try:
            stat = sample.path.stat()
        except OSError as exc:
            raise DataError(f"{sample.path}: cannot read file ({exc})") from exc
        # The label is hashed too: a new class folder renumbers labels of unchanged files.
        label = -1 if sample.label is None else sample.label
        relative = sample.path.relative_to(base).as_posix()
        digest.update(f"{relative}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _decode(path: Path, size: int) -> np.ndarray:
    """One file as a uint8 ``[size, size, 3]`` array: Resize(size) then CenterCrop(size)."""
    with Image.open(path) as image:
        width, height = image.size
        shrink = 2 * size / min(width, height)
        if image.format == "JPEG" and shrink < 1:
            # The JPEG decoder can skip detail (1/2, 1/4, 1/8 scale) for a large speed-up; it
            # stops at twice the target so the final resize still averages real detail.
            image.draft("RGB", (math.ceil(width * shrink), math.ceil(height * shrink)))
        rgb = image.convert("RGB")
    # The resized size and the crop come from the original size, as torchvision computes
    # them: short side -> size, long side truncated, crop offsets rounded.
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    left, top = round((new_w - size) / 2), round((new_h - size) / 2)
    # Resizing only the source region of the crop gives the same pixels as resizing the
    # whole image and cropping (same filter centres and support), for less work.
    sx, sy = rgb.width / new_w, rgb.height / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    square = rgb.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(square, dtype=np.uint8)


def _decode_or_reason(path: Path, size: int) -> np.ndarray | str:
    try:
        return _decode(path, size)
    # Any decoder failure (truncated, not an image, decompression bomb) skips one file only.
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _progress_bar(enabled: bool) -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        # Off a terminal a bar draws nothing but a blank line when it stops.
        disable=not (enabled and console.is_terminal),
    )


def _workers() -> int:
    # PIL releases the GIL while decoding and resizing, so threads use every core.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(32, cores or 1))


def _load(npy: Path, meta: Path, fingerprint: str, size: int) -> DecodedSplit | None:
    """The cache if it is complete and consistent, else None (it is then rebuilt)."""
    try:
        info = json.loads(meta.read_text())
        images = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):
        return None
    labels = np.asarray(info.get("labels", []), dtype=np.int64)
    consistent = (
        info.get("format") == _FORMAT_VERSION
        and info.get("size") == size
        and images.dtype == np.uint8
        and images.shape == (len(labels), size, size, 3)
        and len(info.get("ids", [])) == len(labels)
    )
    if not consistent:
        return None
    skipped = list(info.get("skipped", []))
    return DecodedSplit(images, labels, list(info["ids"]), skipped, fingerprint, npy)


def _compact(tmp: Path, images: np.memmap, count: int) -> Path:
    """Copy the first ``count`` rows into a file of that length (only when files were skipped)."""
    target = tmp.with_name(tmp.name + ".compact")
    out = np.lib.format.open_memmap(
        target, mode="w+", dtype=np.uint8, shape=(count, *images.shape[1:])
    )
    for start in range(0, count, _COPY_ROWS):
        out[start : start + _COPY_ROWS] = images[start : min(count, start + _COPY_ROWS)]
    out.flush()
    del out
    return target


def _build(
    samples: list[Sample], root: Path, split: str, size: int, npy: Path, meta: Path, progress: bool
) -> None:
    """Decode every sample into ``npy`` and write ``meta``; the caller holds the lock."""
    stem = npy.stem
    # Leftovers of a build that crashed: nobody else writes them while we hold the lock.
    for stale in npy.parent.glob(f".{stem}.*.tmp*"):
        stale.unlink(missing_ok=True)
    tmp = npy.with_name(f".{stem}.{os.getpid()}.npy.tmp")
    written: list[Path] = [tmp]
    kept: list[Sample] = []
    skipped: dict[str, str] = {}
    try:
        images = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(samples), size, size, 3)
        )
        with ThreadPoolExecutor(_workers()) as pool, _progress_bar(progress) as bar:
            task = bar.add_task(f"decoding {split}", total=len(samples))
            for start in range(0, len(samples), _CHUNK):
                interrupts.check()
                chunk = samples[start : start + _CHUNK]
                results = pool.map(_decode_or_reason, [s.path for s in chunk], [size] * len(chunk))
                for sample, result in zip(chunk, results, strict=True):
                    if isinstance(result, str):
                        skipped[sample.path.relative_to(root).as_posix()] = result
                    else:
                        images[len(kept)] = result
                        kept.append(sample)
                bar.advance(task, len(chunk))
        if not kept:
            first, reason = next(iter(skipped.items()))
            raise DataError(
                f"{root / split}: none of the {len(samples)} images could be decoded "
                f"(e.g. {first}: {reason})"
            )
        images.flush()
        if len(kept) < len(samples):
            tmp = _compact(tmp, images, len(kept))
            written.append(tmp)
        del images
        os.replace(tmp, npy)
        info = {
            "format": _FORMAT_VERSION,
            "split": split,
            "size": size,
            "root": str(root),
            "labels": [-1 if s.label is None else s.label for s in kept],
            "ids": [s.path.stem for s in kept],
            "skipped": list(skipped),
            "skip_reasons": skipped,
        }
        meta_tmp = meta.with_name(f".{meta.stem}.{os.getpid()}.json.tmp")
        written.append(meta_tmp)
        meta_tmp.write_text(json.dumps(info))
        os.replace(meta_tmp, meta)  # last: its presence means the cache is complete
    finally:
        for path in written:
            path.unlink(missing_ok=True)


def decoded_split(
    root: Path, split: str, size: int, cache_dir: Path, *, progress: bool = True
) -> DecodedSplit:
    """Return a split decoded to ``size x size`` squares, decoding it first if needed.

    Each image is converted to RGB, resized so its short side is ``size`` (bilinear,
    antialiased, as ``Resize(size)``) and center-cropped to a square. The eval transform
    ``Resize(size) + CenterCrop(c)`` is unchanged by the square; training crops are taken from
    the central square instead of the whole resized image (the outer strips of a 4:3 image
    are lost to them).

    Args:
        root: the data set folder (either layout :func:`~sweep.data.folders.scan_split` reads).
        split: ``training``, ``validation`` or ``evaluation``.
        size: the side of the squares; pass ``dataset.resize``.
        cache_dir: where ``<split>-<fingerprint>.npy`` and ``.json`` live (created if missing).
        progress: show a progress bar while decoding.

    Returns:
        The split in scan order, its images a read-only memory map. Unreadable images are left
        out and listed in ``skipped``.

    Raises:
        DataError: the folder is malformed (as for ``scan_split``), ``size`` is below 1, or
            no image of the split can be decoded.
    """
    if size < 1:
        raise DataError(f"dataset.resize: must be at least 1, got {size}")
    root, cache_dir = Path(root), Path(cache_dir)
    samples = scan_split(root, split)
    fingerprint = split_fingerprint(samples, size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    npy = cache_dir / f"{split}-{fingerprint}.npy"
    meta = npy.with_suffix(".json")
    cached = _load(npy, meta, fingerprint, size)
    if cached is not None:
        _report_skipped(cached, split, meta)
        return cached
    # A second process arriving mid-build waits here, then finds the finished cache.
    with FileLock(str(cache_dir / f".{split}-{fingerprint}.lock")):
        cached = _load(npy, meta, fingerprint, size)
        if cached is None:
            try:
                _build(samples, root, split, size, npy, meta, progress)
            except OSError as exc:  # a full disk or a read-only cache folder
                raise DataError(f"{cache_dir}: cannot write the decoded cache ({exc})") from exc
            cached = _load(npy, meta, fingerprint, size)
    if cached is None:  # pragma: no cover - a build that returns has written both files
        raise DataError(f"{npy}: decoded cache unreadable right after it was written")
    _report_skipped(cached, split, meta)
    return cached


_reported: set[Path] = set()  # each cache's skipped images are told once per process


def _report_skipped(decoded: DecodedSplit, split: str, meta: Path, shown: int = 3) -> None:
    """Say on the terminal (stderr) which images were left out, once per cache and process."""
    if not decoded.skipped or meta in _reported:
        return
    _reported.add(meta)
    names = ", ".join(decoded.skipped[:shown])
    more = f" and {len(decoded.skipped) - shown} more" if len(decoded.skipped) > shown else ""
    print(
        f"sweep: {split}: {len(decoded.skipped)} images could not be decoded and are left "
        f"out ({names}{more}); {meta} lists them all, with the reasons",
        file=sys.stderr,
    )
