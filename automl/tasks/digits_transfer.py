"""Transfer-learning tasks cut from sklearn's digits (shipped with scikit-learn: nothing is downloaded).

NASOA (PAPERS.md §2(b)) needs a *source* task to pre-train a model zoo on and a stream of different
*target* tasks to fine-tune it on:

- ``digits-source``: the digits 0-4 (labels 0..4), stratified train/validation/test split; optionally
  harder: resized, every image randomly rotated, shifted and noised (seeded), and the training split
  augmented with several distorted copies of each image (what ``nasoa.yaml`` pre-trains the zoo on).
- ``digits-transfer``: a subset of the digits 5-9 (relabelled 0..k-1), made unlike the source by a
  rotation, Gaussian pixel noise, subsampling of the training set and an optional resize, all seeded.
  Every option is a named choice so a stream of distinct tasks is a list of option dicts.

Both hold out a stratified test split (``test_fraction`` of the task's images, default 0.2; 0 for
none) that no search sees. The validation split is drawn first, exactly as before the test split
existed, and the test split is then taken out of what would have been the training split; the
noise is drawn for the training, validation and test images in that order, from a generator that the
subsample does not use: validation does not depend on ``test_fraction``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.supervised import ClassificationData, ClassificationInfo, ClassificationTask

SOURCE_DIGITS: tuple[int, ...] = (0, 1, 2, 3, 4)
TARGET_DIGITS: tuple[int, ...] = (5, 6, 7, 8, 9)


@lru_cache(maxsize=1)
def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits as float32 ``[N, 1, 8, 8]`` images in 0..1 and int64 labels (cached)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images.astype(np.float32) / 16.0)[:, None, :, :], digits.target.astype(np.int64)


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float, seed: int
           ) -> tuple[np.ndarray, ...]:
    """``(train_x, val_x, test_x, train_y, val_y, test_y)``, stratified: validation first (its own
    seeded draw, so it does not depend on ``test_fraction``), then the test split out of the rest (empty
    when ``test_fraction`` is 0); fractions are of all of ``x``."""
    from sklearn.model_selection import train_test_split

    tx, vx, ty, vy = train_test_split(x, y, test_size=val_fraction, random_state=seed, stratify=y)
    if test_fraction == 0:
        return tx, vx, tx[:0], ty, vy, ty[:0]
    tx, sx, ty, sy = train_test_split(tx, ty, test_size=test_fraction / (1.0 - val_fraction), random_state=seed,
                                      stratify=ty)
    return tx, vx, sx, ty, vy, sy


def _fractions(task: str, val_fraction: float, test_fraction: float) -> tuple[float, float]:
    """Checked ``val_fraction`` and ``test_fraction``: a ConfigError naming the field otherwise."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"{task}: val_fraction must be in (0, 1), got {val_fraction!r}", field="val_fraction")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 0.9:
        raise ConfigError(f"{task}: test_fraction must be in [0, 1) and leave at least 10% of the images for "
                          f"training (val_fraction is {val_fraction}), got {test_fraction!r}", field="test_fraction")
    return float(val_fraction), float(test_fraction)


def _data(tx: torch.Tensor, ty: np.ndarray, vx: torch.Tensor, vy: np.ndarray, sx: torch.Tensor | None,
          sy: np.ndarray) -> ClassificationData:
    """The splits as tensors; an empty test split (``test_fraction`` 0) is none."""
    test = (sx, torch.from_numpy(sy)) if sx is not None and len(sy) else (None, None)
    return ClassificationData(tx, torch.from_numpy(ty), vx, torch.from_numpy(vy), *test)


def _select(classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``classes``, labelled by their position in ``classes``."""
    x, y = digits_images()
    mask = np.isin(y, classes)
    relabel = {c: i for i, c in enumerate(classes)}
    return x[mask], np.array([relabel[int(v)] for v in y[mask]], dtype=np.int64)


@tasks.register("digits-source")
class DigitsSourceTask(ClassificationTask):
    """Digits 0-4 (the NASOA zoo's pre-training task). Options: ``val_fraction`` (0.2), ``test_fraction``
    (0.2: a test split that no search sees; 0 for none), ``split_seed`` (0), and the distortions that make
    it harder (all off by default): ``size`` (images resampled to size x size, 8), per-image random
    ``rotation`` (up to this many degrees either way, 0), ``shift`` (up to this fraction of the side, 0)
    and Gaussian ``noise`` (std, 0) on every split, ``copies`` (independently distorted copies of each
    training image: augmentation, 1) and ``seed`` (the distortions' seed, 0)."""

    def __init__(self, val_fraction: float = 0.2, test_fraction: float = 0.2, split_seed: int = 0, size: int = 8,
                 rotation: float = 0.0, shift: float = 0.0, noise: float = 0.0, copies: int = 1,
                 seed: int = 0) -> None:
        super().__init__()
        self.val_fraction, self.test_fraction = _fractions("digits-source", val_fraction, test_fraction)
        self.split_seed = int(split_seed)
        self.size = _checked("size", size, 4, 64, integer=True)
        self.rotation = _checked("rotation", rotation, 0.0, 180.0)
        self.shift = _checked("shift", shift, 0.0, 0.5)
        self.noise = _checked("noise", noise, 0.0, 10.0)
        self.copies = _checked("copies", copies, 1, 50, integer=True)
        self.seed = int(seed)

    @property
    def info(self) -> ClassificationInfo:
        return ClassificationInfo(input_shape=(1, self.size, self.size), num_classes=len(SOURCE_DIGITS))

    def load(self) -> ClassificationData:
        return _load_source(self.val_fraction, self.test_fraction, self.split_seed,
                            Distortion(self.size, self.rotation, self.shift, self.noise), self.copies, self.seed)


def _checked(name: str, value: Any, low: float, high: float, integer: bool = False) -> Any:
    """``value`` as an int (``integer``) or float in [low, high]; a ConfigError naming the option otherwise."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and low <= value <= high and (not integer or float(value).is_integer())
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"digits-source: {name} must be {kind} in [{low:g}, {high:g}], got {value!r}", field=name)
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class Distortion:
    """Per-image random distortions: resample to ``size``, rotate by up to +-``rotation`` degrees, shift by
    up to +-``shift`` of the side on each axis (bilinear, zero fill), add Gaussian pixel noise of std ``noise``."""

    size: int = 8
    rotation: float = 0.0
    shift: float = 0.0
    noise: float = 0.0

    def apply(self, images: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """``images`` ``[N, C, H, W]`` distorted; the angles, shifts and noise drawn from ``rng`` in that order."""
        x = torch.from_numpy(images)
        n = len(x)
        if self.rotation or self.shift or self.size != x.shape[-1]:
            degrees = rng.uniform(-self.rotation, self.rotation, n)
            offset = rng.uniform(-2 * self.shift, 2 * self.shift, (n, 2))  # grid coordinates span 2 per side
            x = affine_resample(x, degrees, offset, self.size)
        if self.noise:
            x = x + self.noise * torch.from_numpy(rng.standard_normal(tuple(x.shape)).astype(np.float32))
        return x.contiguous()


@lru_cache(maxsize=4)
def _load_source(val_fraction: float, test_fraction: float, split_seed: int, distortion: Distortion = Distortion(),
                 copies: int = 1, seed: int = 0) -> ClassificationData:
    x, y = _select(SOURCE_DIGITS)
    tx, vx, sx, ty, vy, sy = _split(x, y, val_fraction, test_fraction, split_seed)
    if distortion == Distortion() and copies == 1:
        return _data(torch.from_numpy(tx), ty, torch.from_numpy(vx), vy, torch.from_numpy(sx), sy)
    # one generator per split, so the validation and test images do not depend on ``copies``
    train = torch.cat([distortion.apply(tx, np.random.default_rng([seed, 0, c])) for c in range(copies)])
    val = distortion.apply(vx, np.random.default_rng([seed, 1]))
    test = distortion.apply(sx, np.random.default_rng([seed, 2])) if len(sx) else None
    return _data(train, np.tile(ty, copies), val, vy, test, sy)


@tasks.register("digits-transfer")
class DigitsTransferTask(ClassificationTask):
    """A target task from the digits 5-9, transformed.

    Options: ``classes`` (digits to keep, a subset of 5-9, default all five), ``rotation`` (degrees
    applied to every image, default 0), ``noise`` (std of Gaussian pixel noise on [0, 1] images,
    default 0), ``subsample`` (fraction of the training split kept, default 1), ``size`` (images
    resized to size x size, default 8), ``seed`` (noise, subsample and split seed, default 0),
    ``val_fraction`` (default 0.3), ``test_fraction`` (default 0.2: a test split that no search sees,
    transformed like the others and never subsampled; 0 for none).
    """

    def __init__(self, classes: Sequence[int] = TARGET_DIGITS, rotation: float = 0.0, noise: float = 0.0,
                 subsample: float = 1.0, size: int = 8, seed: int = 0, val_fraction: float = 0.3,
                 test_fraction: float = 0.2) -> None:
        super().__init__()
        chosen = tuple(int(c) for c in classes)
        if len(chosen) < 2 or len(set(chosen)) != len(chosen) or not set(chosen) <= set(TARGET_DIGITS):
            raise ConfigError(f"digits-transfer: classes must be >= 2 distinct digits of {list(TARGET_DIGITS)}, "
                              f"got {list(chosen)}")
        if not 0.0 < subsample <= 1.0:
            raise ConfigError(f"digits-transfer: subsample must be in (0, 1], got {subsample}")
        if noise < 0 or not math.isfinite(noise):
            raise ConfigError(f"digits-transfer: noise must be >= 0, got {noise}")
        if not 4 <= int(size) <= 64:
            raise ConfigError(f"digits-transfer: size must be in [4, 64], got {size}")
        self.val_fraction, self.test_fraction = _fractions("digits-transfer", val_fraction, test_fraction)
        self.classes = chosen
        self.rotation = float(rotation)
        self.noise = float(noise)
        self.subsample = float(subsample)
        self.size = int(size)
        self.seed = int(seed)

    @property
    def info(self) -> ClassificationInfo:
        return ClassificationInfo(input_shape=(1, self.size, self.size), num_classes=len(self.classes))

    def load(self) -> ClassificationData:
        return _load_transfer(self.classes, self.rotation, self.noise, self.subsample, self.size, self.seed,
                              self.val_fraction, self.test_fraction)


def rotate_resize(x: torch.Tensor, degrees: float, size: int) -> torch.Tensor:
    """Rotate every image by ``degrees`` (bilinear, zero fill) and resample it to size x size."""
    return affine_resample(x, np.full(len(x), float(degrees)), np.zeros((len(x), 2)), size)


def affine_resample(x: torch.Tensor, degrees: np.ndarray, offsets: np.ndarray, size: int) -> torch.Tensor:
    """Rotate image i by ``degrees[i]``, shift it by ``offsets[i]`` (grid units: 2 per side) and resample it
    to size x size (bilinear, zero fill)."""
    theta = np.radians(degrees)
    cos, sin = np.cos(theta), np.sin(theta)
    matrix = np.stack([np.stack([cos, -sin, offsets[:, 0]], 1), np.stack([sin, cos, offsets[:, 1]], 1)], 1)
    grid = F.affine_grid(torch.from_numpy(matrix).to(x.dtype), [len(x), x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@lru_cache(maxsize=64)
def _load_transfer(classes: tuple[int, ...], rotation: float, noise: float, subsample: float, size: int, seed: int,
                   val_fraction: float, test_fraction: float) -> ClassificationData:
    x, y = _select(classes)
    tx, vx, sx, ty, vy, sy = _split(x, y, val_fraction, test_fraction, seed)
    rng = np.random.default_rng(seed)  # the noise, drawn train, validation, test
    if subsample < 1.0:  # its own generator: what it draws (it depends on the training split) moves no noise
        keep = max(len(classes) * 2, int(round(len(tx) * subsample)))
        index = np.sort(np.random.default_rng([seed, 1]).choice(len(tx), size=keep, replace=False))
        tx, ty = tx[index], ty[index]

    def transform(part: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(part)
        if rotation or size != 8:
            images = rotate_resize(images, rotation, size)
        if noise > 0:
            generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
            images = images + noise * torch.randn(images.shape, generator=generator)
        return images.contiguous()

    train, val = transform(tx), transform(vx)
    test = transform(sx) if len(sx) else None
    return _data(train, ty, val, vy, test, sy)
