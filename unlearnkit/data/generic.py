"""Readers for data that is not in CIFAR's own layouts: image folders and .npz arrays."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from unlearnkit.data.dataset import Dataset, to_uint8_images
from unlearnkit.errors import UnlearnkitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_folder_split(root: Path, split: str, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / split / name).glob("*")):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as image:
                    images.append(np.asarray(image.convert("RGB")))
            except (UnidentifiedImageError, OSError) as error:
                raise UnlearnkitError(f"cannot read image {file} ({error}); remove or replace it") from None
            labels.append(label)
    if not images:
        raise UnlearnkitError(f"the {split} split in {root / split} is empty; put images in {split}/<class>/*.png|jpg")
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise UnlearnkitError(f"images in {root / split} have several sizes {sorted(shapes)[:3]}; resize them to one size")
    return to_uint8_images(np.stack(images), split, channels_last=True), np.asarray(labels, dtype=np.int64)


def read_folders(root: Path) -> Dataset:
    """`root/{train,test}/<class>/*.png|jpg`; class names are the sorted train folder names."""
    classes = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir()))
    if not classes:
        raise UnlearnkitError(f"{root / 'train'} has no class folders; expected train/<class>/*.png|jpg")
    test_classes = {p.name for p in (root / "test").iterdir() if p.is_dir()}
    if unknown := sorted(test_classes - set(classes)):
        raise UnlearnkitError(f"test class folder '{unknown[0]}' in {root / 'test'} has no train counterpart")
    train_x, train_y = _read_folder_split(root, "train", classes)
    test_x, test_y = _read_folder_split(root, "test", classes)
    return Dataset(train_x, train_y, test_x, test_y, classes, source=str(root), layout="image-folders")


def read_npz(path: Path) -> Dataset:
    """Arrays x_train, y_train, x_test, y_test (images NHWC or NCHW, uint8 or float in [0, 1]);
    an optional `classes` array names the classes."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise UnlearnkitError(f"{path} is not a readable .npz archive ({error})") from None
    if missing := [key for key in NPZ_KEYS if key not in arrays]:
        raise UnlearnkitError(f"{path} lacks array '{missing[0]}'; an .npz dataset needs {', '.join(NPZ_KEYS)}")
    splits = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise UnlearnkitError(f"y_{split} has shape {y.shape} and dtype {y.dtype}; labels must be a 1-D integer array")
        channels_last = x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3)
        splits[split] = (to_uint8_images(x, split, channels_last), y.astype(np.int64))
    if "classes" in arrays:
        classes = tuple(str(c) for c in arrays["classes"])
    else:
        top = max((int(y.max()) for _, y in splits.values() if y.size), default=0)
        classes = tuple(str(i) for i in range(top + 1))
    return Dataset(*splits["train"], *splits["test"], classes, source=str(path), layout="npz")
