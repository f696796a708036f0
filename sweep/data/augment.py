"""Batched, per-sample, deterministic augmentation of uint8 images on the training device.

Images stay uint8 ``[B, S, S, 3]`` (see :mod:`sweep.data.decoded`) until the batch is on its
device, as in cifar10-airbench; crop, flip, jitter and normalisation are then a few batched
ops. Each sample's numbers come from a counter-based hash of (view seed, image index, draw),
never from its batch, so the teacher labels a view once and every trial replays it exactly.

Semantics follow :func:`sweep.data.loaders.train_transform`, except: crops come from the
central ``S x S`` square; the resize is plain bilinear (no antialiasing, which only matters
when a crop shrinks over ~2x); brightness, contrast, saturation apply in that order as one
affine colour map per image, clamped once (torchvision shuffles them and clamps each).

Crop + resize is one ``F.grid_sample`` with per-sample grids, not ``roi_align``: ~3.5x faster
on this 2-core CPU (40 vs 149 ms for 128 crops: grid_sample is vectorised and parallel over
the batch, roi_align's CPU kernel loops per box), and the flip folds into the grid. Same-size
integer crops (``center``, ``random``) are copied instead. On the CPU the batch goes in
chunks whose temporaries stay under glibc's 32 MiB mmap threshold: fresh large buffers are
page-faulted in on every batch, which cost more than the arithmetic (30 of 50 ms for 77 MB).

Measured here, 128 images, 256 -> 224, median ms per batch: ``random_resized`` + flip 98
(jitter 0.4: 120), ``random`` 55, ``center_batch`` 38, of which ~27 is page-faulting in the
fresh 77 MB output; a 60k-parameter student's forward + backward on it takes ~2 s.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sweep.config import DatasetConfig
from sweep.data.loaders import IMAGENET_MEAN, IMAGENET_STD
from sweep.errors import DataError

# Columns of the per-sample uniform draws. Each quantity owns its columns whatever the
# settings, so e.g. turning jitter on leaves every crop of a view unchanged.
_TRIES = 10  # RandomResizedCrop's attempts before its center-crop fallback
_SCALE, _RATIO = slice(0, _TRIES), slice(_TRIES, 2 * _TRIES)
_POS_Y, _POS_X, _FLIP = 2 * _TRIES, 2 * _TRIES + 1, 2 * _TRIES + 2
_JITTER = slice(2 * _TRIES + 3, 2 * _TRIES + 6)
_DRAWS = 2 * _TRIES + 6
_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights (ITU-R 601 luma)
# splitmix64 (Steele et al. 2014): a Weyl sequence through a 64-bit finaliser; it passes
# BigCrush and, unlike one numpy Generator per sample (~18 us each), is a few array ops.
# Bump when the parameters drawn for an (index, view seed) or the pixels made from them
# change: the soft-label cache keys on it, so stored teacher logits never outlive the
# augmentation they were computed on.
AUGMENT_VERSION = 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
# Floats per CPU temporary (16 MiB): below glibc's largest mmap threshold, so buffers are
# recycled from the heap instead of being page-faulted in anew for every batch.
_CPU_CHUNK_FLOATS = 1 << 22


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample augmentation of one batch (CPU tensors from :func:`sample_params`)."""

    boxes: torch.Tensor  # float32 [B, 4] crop boxes (x0, y0, x1, y1) in source pixels
    flip: torch.Tensor  # bool [B]
    jitter: torch.Tensor  # float32 [B, 3] brightness, contrast, saturation (1.0 = none)


def _mix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def _uniforms(indices: np.ndarray, view_seed: int) -> np.ndarray:
    """float64 ``[B, _DRAWS]`` in [0, 1): a pure function of (view seed, index, column)."""
    seed = np.array([view_seed & 0xFFFF_FFFF_FFFF_FFFF], dtype=np.uint64)
    stream = _mix(_mix(seed) + indices.astype(np.uint64) * _GOLDEN)  # one stream per image
    counters = np.arange(1, _DRAWS + 1, dtype=np.uint64) * _GOLDEN
    bits = _mix(stream[:, None] + counters[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53  # top 53 bits -> [0, 1)


def _randint(u: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Integers in ``[0, high]`` from uniforms (the clip guards float rounding at u -> 1)."""
    return np.minimum(np.floor(u * (high + 1)), high)


def _resized_crops(u: np.ndarray, size: int, scale_min: float) -> tuple[np.ndarray, ...]:
    """RandomResizedCrop's rule on a square source, all tries of all samples at once."""
    area = float(size * size)
    target = area * (scale_min + u[:, _SCALE] * (1.0 - scale_min))
    ratio = np.exp(_LOG_RATIO[0] + u[:, _RATIO] * (_LOG_RATIO[1] - _LOG_RATIO[0]))
    # rint rounds half to even, as Python's round() in torchvision.
    w, h = np.rint(np.sqrt(target * ratio)), np.rint(np.sqrt(target / ratio))
    fits = (w > 0) & (w <= size) & (h > 0) & (h <= size)
    first = np.argmax(fits, axis=1)  # the first try that fits
    rows = np.arange(len(u))
    # No try fits -> torchvision's fallback; a square source is within the ratio bounds, so
    # that is the whole image.
    found = fits[rows, first]
    w, h = (np.where(found, v[rows, first], size) for v in (w, h))
    return _randint(u[:, _POS_X], size - w), _randint(u[:, _POS_Y], size - h), w, h


def sample_params(
    indices: Sequence[int] | np.ndarray, view_seed: int, cfg: DatasetConfig, source_size: int
) -> AugmentParams:
    """Draw each sample's crop, flip and jitter from (image index, view seed) alone.

    Args:
        indices: the images' indices in their split.
        view_seed: the augmentation view's seed.
        cfg: ``image_size``, ``train_crop``, ``crop_scale_min``, ``hflip``, ``color_jitter``.
        source_size: the side of the decoded squares (``dataset.resize``).

    Returns:
        CPU parameters for :func:`augment_batch`. Boxes: ``center`` fixed, ``random`` placed
        uniformly, ``random_resized`` by torchvision's RandomResizedCrop rule (area scale in
        ``[crop_scale_min, 1]``, log-uniform aspect in ``[3/4, 4/3]``, 10 tries, then the whole
        image). Flip with p = 0.5 if ``hflip``; jitter factors uniform in
        ``[max(0, 1 - j), 1 + j]``, ``j = color_jitter``.

    Raises:
        DataError: unknown ``train_crop``, ``crop_scale_min`` outside ``(0, 1]``, or a fixed-size
            crop larger than the source.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    u = _uniforms(idx, view_seed)
    size, crop = cfg.image_size, cfg.train_crop
    if crop in ("center", "random") and not 0 < size <= source_size:
        raise DataError(
            f"dataset.image_size: {size} does not fit in the decoded {source_size} px images"
        )
    w = h = np.full(len(idx), float(size))
    if crop == "center":
        x0 = y0 = np.full(len(idx), float(round((source_size - size) / 2)))
    elif crop == "random":
        y0, x0 = (_randint(u[:, k], source_size - h) for k in (_POS_Y, _POS_X))
    elif crop == "random_resized":
        if not 0.0 < cfg.crop_scale_min <= 1.0:
            raise DataError(f"dataset.crop_scale_min: must be in (0, 1], got {cfg.crop_scale_min}")
        x0, y0, w, h = _resized_crops(u, source_size, cfg.crop_scale_min)
    else:
        raise DataError(f"dataset.train_crop: unknown crop {crop!r}")
    boxes = np.stack([x0, y0, x0 + w, y0 + h], axis=1)
    flip = u[:, _FLIP] < 0.5 if cfg.hflip else np.zeros(len(idx), dtype=bool)
    j, low = cfg.color_jitter, max(0.0, 1.0 - cfg.color_jitter)
    jitter = low + u[:, _JITTER] * (1.0 + j - low) if j > 0 else np.ones((len(idx), 3))
    return AugmentParams(
        boxes=torch.from_numpy(boxes.astype(np.float32)),
        flip=torch.from_numpy(flip),
        jitter=torch.from_numpy(jitter.astype(np.float32)),
    )


def _check_images(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {images.shape}")


def _chunk(images: torch.Tensor, image_size: int) -> int:
    """Images per step: the whole batch on a GPU, small enough to stay on the heap on a CPU."""
    if images.device.type != "cpu":
        return max(1, images.shape[0])
    side = max(images.shape[1], images.shape[2], image_size)
    return max(1, _CPU_CHUNK_FLOATS // (3 * side * side))


def _on(device: torch.device, tensor: torch.Tensor) -> torch.Tensor:
    # Never a blocking copy: a host-to-GPU copy with non_blocking=False waits for every
    # kernel queued before it (the previous training step), stalling the input pipeline.
    return tensor.to(device, non_blocking=True)


@functools.lru_cache(maxsize=8)
def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ImageNet mean and std ``[3, 1, 1]`` and the gray weights ``[3]``, kept on ``device``."""
    values = torch.tensor([IMAGENET_MEAN, IMAGENET_STD, _GRAY], dtype=torch.float32)
    mean, std, gray = _on(device, values)
    return mean[:, None, None], std[:, None, None], gray


def _to_float_nchw(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float32 contiguous NCHW, values still 0..255."""
    out = torch.empty(images.shape[0], 3, *images.shape[1:3], device=images.device)
    return out.copy_(images.permute(0, 3, 1, 2))


def _copy_crops(
    images: torch.Tensor, boxes: torch.Tensor, flipped: torch.Tensor, size: int
) -> torch.Tensor:
    """Integer ``size x size`` crops, copied, ``flipped`` ones mirrored; float32 NCHW."""
    n, height, width, channels = images.shape
    flat = images.contiguous().view(-1)
    # Every flat offset as the corner of a size x size window (rows width*channels apart):
    # the windows overlap, which is fine for reading, so one index_select gathers all crops.
    row = width * channels
    count = flat.numel() - ((size - 1) * row + size * channels) + 1
    windows = flat.as_strided((count, size, size * channels), (1, row, 1))
    corner = boxes[:, :2].long()
    starts = torch.arange(n, device=images.device) * (height * row)
    starts = starts + corner[:, 1] * row + corner[:, 0] * channels
    crops = windows.index_select(0, starts).view(n, size, size, channels)
    if len(flipped):
        # In place on the fresh copy, only the mirrored samples: ~3x cheaper than torch.where.
        flipped = _on(images.device, flipped)
        crops.index_copy_(0, flipped, crops.index_select(0, flipped).flip(2))
    return _to_float_nchw(crops)


def _resample(
    images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int
) -> torch.Tensor:
    """Each box resized to ``size x size`` (bilinear), mirrored where ``flip``; float32 NCHW."""
    height, width = images.shape[1:3]
    # Output pixel k's centre sits at u_k in [-1, 1] (align_corners=False); sampling source
    # x = x0 + (u + 1) / 2 * (x1 - x0) is, in grid_sample's normalised units, u * sx + tx.
    u = (torch.arange(size, device=images.device, dtype=torch.float32) * 2 + 1) / size - 1
    x0, y0, x1, y1 = boxes.unbind(1)
    sx = (x1 - x0) / width
    sx = torch.where(flip, -sx, sx)  # a mirrored crop reads its box right to left
    gx = sx[:, None] * u + ((x0 + x1) / width - 1)[:, None]
    gy = ((y1 - y0) / height)[:, None] * u + ((y0 + y1) / height - 1)[:, None]
    n = len(boxes)
    grid = torch.stack(
        (gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)), -1
    )
    return F.grid_sample(
        _to_float_nchw(images), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


def _normalise(crops: torch.Tensor, jitter: torch.Tensor | None, out: torch.Tensor) -> None:
    """Write ``crops`` (float NCHW, 0..255), jittered, clamped and normalised, into ``out``."""
    mean, std, gray = _constants(crops.device)
    if jitter is None:
        # Bilinear weights sum to one, so the values stay in 0..255: no clamp needed.
        torch.addcmul(-mean / std, crops, 1.0 / (255.0 * std), out=out)
        return
    b, c, s = (v[:, None, None] for v in jitter.unbind(1))
    # Brightness, contrast (toward the mean gray) and saturation (toward each pixel's gray)
    # are all linear in the pixel, so together they are y = A x + t per image.
    gray_mean = (crops.mean(dim=(2, 3)) @ gray)[:, None, None] / 255.0
    saturate = s * torch.eye(3, device=crops.device) + (1 - s) * gray.expand(3, 3)
    matrix = (b * c / 255.0) * saturate
    # The contrast step's constant goes through the saturation mix too (its rows sum to
    # ~1; torchvision's weights add up to 0.9999).
    shift = (1 - c) * b * gray_mean * saturate.sum(dim=2, keepdim=True)
    y = torch.baddbmm(shift, matrix, crops.flatten(2)).clamp_(0.0, 1.0)
    torch.addcmul(-mean / std, y.view_as(crops), 1.0 / std, out=out)


def augment_batch(images: torch.Tensor, params: AugmentParams, image_size: int) -> torch.Tensor:
    """Crop, resize, flip, jitter and normalise a batch, each sample by its own parameters.

    Args:
        images: uint8 ``[B, S, S, 3]`` as decoded, on any device.
        params: from :func:`sample_params` for the same samples, in the same order.
        image_size: the output side.

    Returns:
        float32 ``[B, 3, image_size, image_size]`` (contiguous NCHW) on ``images.device``,
        normalised with the ImageNet mean and std.

    Raises:
        ValueError: ``images`` is not uint8 NHWC RGB or its batch size differs from ``params``.
    """
    _check_images(images)
    if images.shape[0] != len(params.boxes):
        raise ValueError(f"{images.shape[0]} images but parameters for {len(params.boxes)}")
    device, (height, width) = images.device, images.shape[1:3]
    # Path choices are read from host copies (params are made on the host), so a GPU batch
    # never waits for the device.
    host, host_flip = params.boxes.detach().cpu(), params.flip.detach().cpu().bool()
    x0, y0, x1, y1 = host.unbind(1)
    inside = bool((x0 >= 0).all() and (y0 >= 0).all() and (x1 <= width).all())
    copy = inside and bool((y1 <= height).all() and torch.equal(host, host.round()))
    copy = copy and bool(((x1 - x0) == image_size).all() and ((y1 - y0) == image_size).all())
    jitter = _on(device, params.jitter).float() if bool((params.jitter != 1).any()) else None
    boxes, flip = _on(device, params.boxes).float(), _on(device, host_flip)
    out = torch.empty(images.shape[0], 3, image_size, image_size, device=device)
    step = _chunk(images, image_size)
    for start in range(0, images.shape[0], step):
        part = slice(start, start + step)
        if copy:
            flipped = torch.nonzero(host_flip[part]).flatten()
            crops = _copy_crops(images[part], boxes[part], flipped, image_size)
        else:
            crops = _resample(images[part], boxes[part], flip[part], image_size)
        _normalise(crops, None if jitter is None else jitter[part], out[part])
    return out


def center_batch(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """The evaluation view: the central ``image_size`` square (no resize), normalised.

    Args:
        images: uint8 ``[B, S, S, 3]`` as decoded (``S = dataset.resize``), on any device.
        image_size: the output side.

    Returns:
        float32 ``[B, 3, image_size, image_size]`` as :func:`augment_batch`; with the decoded
        squares this equals ``Resize(S) + CenterCrop(image_size)`` of the original file.

    Raises:
        DataError: ``image_size`` is larger than the images.
        ValueError: ``images`` is not uint8 NHWC RGB.
    """
    _check_images(images)
    height, width = images.shape[1:3]
    if not 0 < image_size <= min(height, width):
        raise DataError(
            f"dataset.image_size: {image_size} does not fit in the decoded {height} px images"
        )
    top, left = round((height - image_size) / 2), round((width - image_size) / 2)
    box = torch.tensor([left, top, left + image_size, top + image_size], dtype=torch.float32)
    n = images.shape[0]
    # The copy path of augment_batch: exactly the "center" training crop, unflipped.
    plain = AugmentParams(box.expand(n, 4), torch.zeros(n, dtype=torch.bool), torch.ones(n, 3))
    return augment_batch(images, plain, image_size)
