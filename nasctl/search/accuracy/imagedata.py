"""Labelled images for the training estimators (``train:digits``, ``train:folder``).

An :class:`ImageSet` holds a train and a held-out split as small uint8 tensors at one stored
resolution; a network sees each mini-batch resized to its own input size on the fly, so nothing
is cached per resolution and memory is bounded by the stored images alone
(``images x channels x size^2`` bytes: 20,000 RGB images at 32 px are 61 MB).

Sources, none downloaded:

* :func:`digits`: scikit-learn's bundled 1,797 8x8 grey digits (10 classes).
* :func:`load_folder`: a folder the user already has, either

  - the torchvision ``ImageFolder`` layout, ``DIR/<class>/<image>`` (any image Pillow reads;
    mixed sizes are resized to ``size`` px, grey/RGBA converted to RGB); with ``DIR/train`` and
    ``DIR/val`` (or ``DIR/test``) in that layout, those are the splits, else every class is split
    deterministically (``val_fraction`` of its images held out, at least one when it has two);
    unreadable files are skipped with a warning;
  - CIFAR-10's python batches (``data_batch_1..5`` and ``test_batch``, in DIR or
    ``DIR/cifar-10-batches-py``), read with an unpickler that admits numpy arrays only.
"""

from __future__ import annotations

import functools
import io
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasctl.errors import SearchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
)  # fmt: skip


@dataclass(frozen=True)
class ImageSet:
    """Train and held-out images, uint8 ``(N, C, H, W)`` numpy arrays, labels ``int64 (N,)``."""

    name: str
    classes: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.x_train, self.y_train, self.x_val, self.y_val))


@functools.lru_cache(maxsize=1)
def digits(val_fraction: float = 0.3) -> ImageSet:
    """scikit-learn's 8x8 digits (values 0..16 scaled to 0..255), split with a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    n_val = int(round(len(y) * val_fraction))
    val, train = perm[:n_val], perm[n_val:]
    classes = tuple(str(c) for c in range(10))
    return ImageSet("digits", classes, x[train], y[train], x[val], y[val])


def load_folder(
    root: str | Path, *, size: int = 32, val_fraction: float = 0.2, max_images: int = 20_000
) -> ImageSet:
    """Images of ``root`` (see the module docstring) at ``size`` x ``size`` px, RGB.

    At most ``max_images`` per split are kept (a deterministic subset), which bounds memory.

    Raises:
        SearchError: ``root`` is missing, holds no readable image, or has fewer than 2 classes.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SearchError(
            f"data folder {root} not found; set data_dir=DIR with class subfolders of images "
            "(ImageFolder layout) or CIFAR-10 python batches"
        )
    for d in (root, root / "cifar-10-batches-py"):
        if (d / "data_batch_1").is_file():
            return _cifar10(d, size, max_images)
    train_dir = root / "train"
    val_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if train_dir.is_dir() and val_dir is not None:
        classes = _class_dirs(train_dir)
        train = _read_split(train_dir, classes, size)
        val = _read_split(val_dir, classes, size)
    else:
        classes = _class_dirs(root)
        train, val = _split(_read_split(root, classes, size), val_fraction)
    if len(train[1]) == 0 or len(val[1]) == 0:
        raise SearchError(
            f"{root}: {len(train[1])} training and {len(val[1])} held-out images readable; "
            "need at least one of each (add images, at least two in some class)"
        )
    train, val = _cap(train, max_images), _cap(val, max_images)
    return ImageSet(f"folder:{root}", tuple(classes), train[0], train[1], val[0], val[1])


def _class_dirs(root: Path) -> list[str]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise SearchError(
            f"{root} has {len(classes)} class subfolder(s); expected the ImageFolder layout "
            "DIR/<class>/<image> with at least 2 classes (or CIFAR-10 python batches)"
        )
    return classes


def _read_split(root: Path, classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N,3,size,size), labels) of ``root/<class>/*``; unreadable files skipped."""
    from PIL import Image, UnidentifiedImageError

    xs: list[np.ndarray] = []
    ys: list[int] = []
    skipped: list[str] = []
    for label, cls in enumerate(classes):
        folder = root / cls
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for p in files if folder.is_dir() else []:
            try:
                with Image.open(p) as im:
                    rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                    xs.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))
                ys.append(label)
            except (OSError, UnidentifiedImageError, ValueError) as e:
                skipped.append(f"{p.relative_to(root)} ({type(e).__name__})")
    if skipped:
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(
            f"{root}: skipped {len(skipped)} unreadable image file(s): "
            f"{', '.join(skipped[:3])}{more}",
            stacklevel=3,
        )
    if not xs:
        raise SearchError(
            f"{root} holds no readable image in its class subfolders "
            f"({', '.join(classes[:5])}); expected files ending in {', '.join(IMAGE_SUFFIXES[:4])}"
        )
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _split(
    data: tuple[np.ndarray, np.ndarray], val_fraction: float
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Per class, hold out ``val_fraction`` (>= 1 image when the class has 2 or more)."""
    x, y = data
    rng = np.random.default_rng(0)
    val_idx: list[np.ndarray] = []
    train_idx: list[np.ndarray] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = 0 if len(idx) < 2 else max(1, int(round(len(idx) * val_fraction)))
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    tr, va = np.concatenate(train_idx), np.concatenate(val_idx)
    return (x[tr], y[tr]), (x[va], y[va])


def _cap(data: tuple[np.ndarray, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = data
    if len(y) <= n:
        return x, y
    keep = np.sort(np.random.default_rng(1).permutation(len(y))[:n])
    return x[keep], y[keep]


class _NumpyOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, nothing else (no code from the file runs)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            d = _NumpyOnly(io.BufferedReader(f), encoding="bytes").load()
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as e:
        raise SearchError(
            f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e}); "
            "expected the files of cifar-10-python.tar.gz"
        ) from None
    return x, y


def _cifar10(d: Path, size: int, max_images: int) -> ImageSet:
    parts = [_cifar_batch(p) for p in sorted(d.glob("data_batch_[1-5]"))]
    train = _cap(
        (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])), max_images
    )
    if (d / "test_batch").is_file():
        val = _cap(_cifar_batch(d / "test_batch"), max_images)
    else:
        train, val = _split(train, 0.2)
    if size != 32:
        train, val = (_resize(train[0], size), train[1]), (_resize(val[0], size), val[1])
    classes = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    return ImageSet(f"cifar10:{d}", classes, train[0], train[1], val[0], val[1])


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = F.interpolate(torch.from_numpy(x).float(), size=(size, size), mode="bilinear")
    return t.round().clamp(0, 255).to(torch.uint8).numpy()
