"""Tests of sweep.data.augment: batched, per-sample, deterministic augmentation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import functional as TF

import sweep.data.augment as augment_module
from sweep.config import DatasetConfig
from sweep.data import IMAGENET_MEAN, IMAGENET_STD
from sweep.data.augment import AugmentParams, augment_batch, center_batch, sample_params
from sweep.errors import DataError

MEAN = torch.tensor(IMAGENET_MEAN)[:, None, None]
STD = torch.tensor(IMAGENET_STD)[:, None, None]


def _images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(
        np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    )


def _normalised(pixels: torch.Tensor) -> torch.Tensor:
    """float NCHW 0..255 -> ImageNet-normalised."""
    return (pixels / 255.0 - MEAN) / STD


def _params(
    boxes: list[list[float]], flip: list[bool] | None = None, jitter=None
) -> AugmentParams:
    n = len(boxes)
    return AugmentParams(
        boxes=torch.tensor(boxes, dtype=torch.float32),
        flip=torch.tensor(flip if flip is not None else [False] * n),
        jitter=torch.tensor(jitter if jitter is not None else [[1.0, 1.0, 1.0]] * n),
    )


CFG = DatasetConfig(image_size=24, resize=32, color_jitter=0.3)


def test_same_index_and_seed_give_the_same_params_and_pixels() -> None:
    images = _images(6, 32)
    indices = np.arange(6)
    a, b = sample_params(indices, 7, CFG, 32), sample_params(indices, 7, CFG, 32)
    for field in ("boxes", "flip", "jitter"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert torch.equal(augment_batch(images, a, 24), augment_batch(images, b, 24))


def test_params_do_not_depend_on_the_batch() -> None:
    full = sample_params(np.arange(20), 3, CFG, 32)
    subset = [17, 2, 9]
    alone = sample_params(subset, 3, CFG, 32)
    for field in ("boxes", "flip", "jitter"):
        assert torch.equal(getattr(alone, field), getattr(full, field)[subset])
    # ... nor do the pixels: image 9 in two different batches, at different positions.
    images = _images(20, 32)
    out_full = augment_batch(images, full, 24)
    out_alone = augment_batch(images[subset], alone, 24)
    torch.testing.assert_close(out_alone, out_full[subset], atol=1e-5, rtol=0)


def test_copy_and_resample_paths_agree() -> None:
    """A full-size integer box is copied when the whole batch has such boxes, else resampled."""
    images = _images(2, 32)
    mixed = _params([[3, 5, 27, 29], [1, 1, 30, 20]])  # second box forces resampling
    alone = _params([[3, 5, 27, 29]])
    torch.testing.assert_close(
        augment_batch(images[:1], alone, 24),
        augment_batch(images, mixed, 24)[:1],
        atol=1e-4,
        rtol=0,
    )


def test_copies_of_one_image_get_different_crops() -> None:
    images = _images(1, 32).expand(2, -1, -1, -1).contiguous()
    params = sample_params([0, 1], 0, CFG, 32)
    assert not torch.equal(params.boxes[0], params.boxes[1])
    out = augment_batch(images, params, 24)
    assert (out[0] - out[1]).abs().mean() > 0.1


def test_view_seeds_differ() -> None:
    indices = np.arange(16)
    a, b = sample_params(indices, 0, CFG, 32), sample_params(indices, 1, CFG, 32)
    assert not torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.jitter, b.jitter)


def test_output_format_and_normalisation() -> None:
    gray = torch.tensor([124, 116, 104], dtype=torch.uint8).expand(4, 32, 32, 3).contiguous()
    cfg = dataclasses.replace(CFG, color_jitter=0.0)
    out = augment_batch(gray, sample_params(np.arange(4), 0, cfg, 32), 24)
    assert out.shape == (4, 3, 24, 24) and out.dtype == torch.float32 and out.is_contiguous()
    assert out.abs().max() < 0.01  # the ImageNet mean colour maps to ~0
    centred = center_batch(gray, 24)
    assert centred.shape == (4, 3, 24, 24) and centred.dtype == torch.float32
    assert centred.abs().max() < 0.01


def test_center_crop_equals_center_batch() -> None:
    cfg = dataclasses.replace(CFG, train_crop="center", hflip=False, color_jitter=0.0)
    for source in (24, 32, 33):
        images = _images(3, source, seed=source)
        out = augment_batch(images, sample_params(np.arange(3), 5, cfg, source), 24)
        assert torch.equal(out, center_batch(images, 24))
    square = _images(2, 24)
    # The same pixels, normalised (equal up to float rounding of the normalisation).
    torch.testing.assert_close(
        center_batch(square, 24), _normalised(square.permute(0, 3, 1, 2).float())
    )


def test_center_batch_matches_torchvision_center_crop() -> None:
    images = _images(2, 31)
    expected = TF.center_crop(images.permute(0, 3, 1, 2), [24, 24]).float()
    torch.testing.assert_close(center_batch(images, 24), _normalised(expected))


@pytest.mark.parametrize("source", [40, 18])  # shrink and enlarge
def test_full_box_is_a_plain_resize(source: int) -> None:
    images = _images(2, source)
    full = _params([[0, 0, source, source]] * 2)
    resized = F.interpolate(
        images.permute(0, 3, 1, 2).float(), size=(24, 24), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(
        augment_batch(images, full, 24), _normalised(resized), atol=1e-2, rtol=0
    )


@pytest.mark.parametrize("box", [[2, 3, 26, 27], [1, 4, 29, 22]])  # copied, resampled
def test_flip_mirrors(box: list[float]) -> None:
    images = _images(1, 32)
    plain = augment_batch(images, _params([box], [False]), 24)
    mirrored = augment_batch(images, _params([box], [True]), 24)
    torch.testing.assert_close(mirrored, torch.flip(plain, dims=[3]), atol=1e-4, rtol=0)


def test_no_jitter_is_identity() -> None:
    cfg = dataclasses.replace(CFG, color_jitter=0.0)
    params = sample_params(np.arange(8), 0, cfg, 32)
    assert torch.equal(params.jitter, torch.ones(8, 3))
    images = _images(8, 32)
    no_jitter = dataclasses.replace(params, jitter=torch.ones(8, 3))
    assert torch.equal(augment_batch(images, params, 24), augment_batch(images, no_jitter, 24))


def test_jitter_matches_torchvision_when_nothing_saturates() -> None:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(90, 160, (2, 24, 24, 3), dtype=np.uint8))
    factors = [[1.1, 0.8, 1.3], [0.9, 1.2, 0.7]]
    out = augment_batch(images, _params([[0, 0, 24, 24]] * 2, jitter=factors), 24)
    for k, (b, c, s) in enumerate(factors):
        x = images[k].permute(2, 0, 1).float() / 255.0
        x = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x, b), c), s)
        torch.testing.assert_close(out[k], (x - MEAN) / STD, atol=1e-4, rtol=0)


def test_jitter_clamps_before_normalising() -> None:
    white = torch.full((1, 24, 24, 3), 250, dtype=torch.uint8)
    out = augment_batch(white, _params([[0, 0, 24, 24]], jitter=[[1.5, 1.0, 1.0]]), 24)
    torch.testing.assert_close(out, ((torch.ones(3, 1, 1) - MEAN) / STD).expand(1, 3, 24, 24))


def test_random_resized_boxes_respect_the_limits() -> None:
    source, cfg = 64, dataclasses.replace(CFG, resize=64, crop_scale_min=0.35, color_jitter=0.4)
    params = sample_params(np.arange(4000), 11, cfg, source)
    x0, y0, x1, y1 = params.boxes.T
    w, h = x1 - x0, y1 - y0
    assert torch.equal(params.boxes, params.boxes.round())
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= source).all() and (y1 <= source).all()
    assert (w > 0).all() and (h > 0).all()
    # Width and height are rounded to whole pixels, hence the small tolerances.
    area = w * h / source**2
    assert area.min() >= 0.35 * 0.95 and area.max() <= 1.0
    assert (w / h).min() >= 0.75 * 0.95 and (w / h).max() <= 4 / 3 * 1.05
    assert area.max() > 0.95 and area.min() < 0.4  # the whole range is used
    assert (x0 == 0).any() and (x1 == source).any() and len(set(x0.tolist())) > 10
    assert 0.45 < params.flip.float().mean() < 0.55
    assert params.jitter.min() >= 0.6 and params.jitter.max() <= 1.4
    assert params.jitter.min() < 0.62 and params.jitter.max() > 1.38


def test_random_resized_falls_back_to_the_whole_image() -> None:
    # Full area at a random aspect ratio rarely fits: torchvision then takes the whole image.
    cfg = dataclasses.replace(CFG, crop_scale_min=1.0)
    boxes = sample_params(np.arange(500), 0, cfg, 32).boxes
    whole = (boxes == torch.tensor([0.0, 0.0, 32.0, 32.0])).all(dim=1)
    assert whole.float().mean() > 0.5
    assert (boxes[:, 2:] <= 32).all() and (boxes[:, :2] >= 0).all()


def test_random_crop_boxes() -> None:
    cfg = dataclasses.replace(CFG, train_crop="random", hflip=False, color_jitter=0.0)
    params = sample_params(np.arange(2000), 1, cfg, 32)
    x0, y0, x1, y1 = params.boxes.T
    assert ((x1 - x0) == 24).all() and ((y1 - y0) == 24).all()
    assert set(x0.tolist()) == set(range(9)) and set(y0.tolist()) == set(range(9))
    assert not params.flip.any()
    images = _images(4, 32)
    out = augment_batch(images, sample_params(np.arange(4), 1, cfg, 32), 24)
    for k, (left, top) in enumerate(params.boxes[:4, :2].long().tolist()):
        crop = images[k, top : top + 24, left : left + 24].permute(2, 0, 1).float()
        torch.testing.assert_close(out[k], _normalised(crop))


def test_chunked_cpu_path_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    images = _images(10, 32)
    for crop in ("random_resized", "random"):
        params = sample_params(np.arange(10), 4, dataclasses.replace(CFG, train_crop=crop), 32)
        whole = augment_batch(images, params, 24)
        monkeypatch.setattr(augment_module, "_CPU_CHUNK_FLOATS", 3 * 32 * 32 * 3)  # 3 images
        # Same arithmetic per image, but a chunk's float reductions may be split across threads
        # differently than the whole batch's: on a loaded 2-core machine 760 of 17,280 values
        # differed by 3.6e-7. A wrong crop or flip would differ by whole pixel steps (> 1e-2).
        chunked = augment_batch(images, params, 24)
        torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
        torch.testing.assert_close(center_batch(images, 24), center_batch(images[:10], 24))
        monkeypatch.undo()


def test_errors() -> None:
    with pytest.raises(DataError, match="dataset.image_size"):
        sample_params([0], 0, dataclasses.replace(CFG, train_crop="random"), 16)
    with pytest.raises(DataError, match="dataset.train_crop"):
        sample_params([0], 0, dataclasses.replace(CFG, train_crop="diagonal"), 32)
    with pytest.raises(DataError, match="dataset.crop_scale_min"):
        sample_params([0], 0, dataclasses.replace(CFG, crop_scale_min=0.0), 32)
    with pytest.raises(DataError, match="dataset.image_size"):
        center_batch(_images(1, 16), 24)
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(_images(1, 32).float(), sample_params([0], 0, CFG, 32), 24)
    with pytest.raises(ValueError, match="parameters for 2"):
        augment_batch(_images(1, 32), sample_params([0, 1], 0, CFG, 32), 24)
