"""The one in-memory form every reader produces, and its validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import sha256_arrays


@dataclass(frozen=True)
class Dataset:
    """Train and held-out images as uint8 NCHW arrays (or rows of a table as float32 (N, D)
    arrays, `is_table`) with int64 labels.

    `source` says where it was read from and `layout` which reader read it; neither enters
    the fingerprint, which depends on the pixels, labels and class names alone.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    source: str = ""
    layout: str = ""
    _checked: bool = field(default=False, repr=False)
    # CIFAR-100's 20 superclasses, beside its 100 fine labels (None for other datasets)
    coarse_train_y: np.ndarray | None = field(default=None, repr=False)
    coarse_test_y: np.ndarray | None = field(default=None, repr=False)
    coarse_classes: tuple[str, ...] = ()
    # the finer labels inside each class (the 100 fine classes of CIFAR-100 read as its 20
    # superclasses): what a sub-class scenario forgets
    subclass_train_y: np.ndarray | None = field(default=None, repr=False)
    subclass_test_y: np.ndarray | None = field(default=None, repr=False)
    subclasses: tuple[str, ...] = ()

    def __post_init__(self):
        validate_split_arrays(self.train_x, self.train_y, len(self.classes), "train")
        validate_split_arrays(self.test_x, self.test_y, len(self.classes), "test")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise UnlearnkitError(
                f"train images have shape {self.train_x.shape[1:]} but test images "
                f"{self.test_x.shape[1:]}; both splits must share one image shape"
            )

    @cached_property
    def fingerprint(self) -> str:
        names = np.frombuffer("\n".join(self.classes).encode(), dtype=np.uint8)
        return sha256_arrays(self.train_x, self.train_y, self.test_x, self.test_y, names)

    @cached_property
    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and standard deviation of the training images, in [0, 1] units:
        the normalization a model built for this dataset carries."""
        pixels = self.train_x.transpose(1, 0, 2, 3).reshape(self.train_x.shape[1], -1)
        mean = tuple(round(float(c.mean(dtype=np.float64)) / 255, 4) for c in pixels)
        std = tuple(round(max(float(c.std(dtype=np.float64)) / 255, 1e-3), 4) for c in pixels)
        return mean, std

    def superclasses(self) -> "Dataset":
        """The same images labelled with their coarse classes (CIFAR-100's 20 superclasses), the
        fine labels kept as sub-classes: the setting of sub-class forgetting (forget "rocket",
        keep knowing "vehicles 2")."""
        if self.coarse_train_y is None:
            raise UnlearnkitError(f"{self.source or 'this dataset'} has no coarse labels; only CIFAR-100 can be read as superclasses (#coarse)")
        return Dataset(
            self.train_x, self.coarse_train_y, self.test_x, self.coarse_test_y, self.coarse_classes,
            source=self.source + "#coarse", layout=self.layout,
            subclass_train_y=self.train_y, subclass_test_y=self.test_y, subclasses=self.classes,
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    @property
    def is_table(self) -> bool:
        """Rows of floats (N, D) rather than images: no pixels, channels or augmentation."""
        return self.train_x.ndim == 2


def validate_split_arrays(x: np.ndarray, y: np.ndarray, num_classes: int, split: str) -> None:
    if isinstance(x, np.ndarray) and x.ndim == 2:
        validate_rows(x, split)
    elif not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1] not in (1, 3):
        shape = getattr(x, "shape", type(x).__name__)
        raise UnlearnkitError(
            f"{split} images have shape {shape}; expected (N, C, H, W) with C = 1 or 3, or table rows (N, D) of float32"
        )
    elif x.dtype != np.uint8:
        raise UnlearnkitError(f"{split} images have dtype {x.dtype}; expected uint8 (0-255)")
    if not isinstance(y, np.ndarray) or y.ndim != 1:
        raise UnlearnkitError(
            f"{split} labels have shape {getattr(y, 'shape', '?')}; expected a 1-D array"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise UnlearnkitError(f"{split} labels have dtype {y.dtype}; expected integers")
    if len(x) == 0:
        raise UnlearnkitError(f"the {split} split is empty; it needs at least one image")
    if len(x) != len(y):
        raise UnlearnkitError(
            f"{split} has {len(x)} images but {len(y)} labels; they must match one to one"
        )
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise UnlearnkitError(
            f"{split} label {bad} is out of range: labels must lie in 0..{num_classes - 1} "
            f"for {num_classes} classes"
        )


def validate_rows(x: np.ndarray, split: str) -> None:
    if x.dtype != np.float32:
        raise UnlearnkitError(f"{split} rows have dtype {x.dtype}; expected float32 (standardize the features and cast them)")
    if not np.isfinite(x).all():
        raise UnlearnkitError(f"{split} rows contain NaN or inf; impute or drop them first")


def to_uint8_images(x: np.ndarray, split: str, channels_last: bool) -> np.ndarray:
    """Convert user images (uint8, or float in [0, 1]) to uint8 NCHW, rejecting NaN/inf."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise UnlearnkitError(
            f"{split} images have shape {x.shape}; expected 4 dimensions (N, H, W, C) or (N, C, H, W)"
        )
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise UnlearnkitError(f"{split} images contain NaN or inf pixels; replace them before loading")
        if x.min() < 0 or x.max() > 1:
            raise UnlearnkitError(
                f"{split} float images span {x.min():.3g}..{x.max():.3g}; float pixels must lie in [0, 1]"
            )
        x = np.round(x * 255).astype(np.uint8)
    elif x.dtype != np.uint8:
        raise UnlearnkitError(f"{split} images have dtype {x.dtype}; expected uint8 or float in [0, 1]")
    if channels_last:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)
