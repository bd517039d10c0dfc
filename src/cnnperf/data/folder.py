"""A folder of images with one subfolder per class, read with Pillow (the ``images`` extra).

Pillow is imported only when :func:`load_image_folder` runs, so ``import cnnperf.data`` works
without it; install it with ``pip install "cnnperf[images]"``.

>>> sorted(IMAGE_EXTENSIONS)[:3]
['.bmp', '.gif', '.jpeg']
"""

from __future__ import annotations

import numbers
import os
import pathlib

import numpy as np

from .datasets import Dataset

__all__ = ["load_image_folder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp"}
)


def _import_pillow():
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError(
            'load_image_folder needs Pillow, an optional extra: pip install "cnnperf[images]"'
        ) from e
    return Image


def _normalise_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, numbers.Integral) else size
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in pair)
        or min(pair) < 1
    ):
        raise ValueError(
            f"load_image_folder: size must be None, a positive int or (h, w), got {size!r}"
        )
    return int(pair[0]), int(pair[1])


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """Image files under ``folder`` (recursively, following links), in sorted path order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(pathlib.Path(dirpath) / name)
    return found


def load_image_folder(
    root: str | os.PathLike,
    size: int | tuple[int, int] | None = None,
    grayscale: bool = False,
) -> Dataset:
    """Images in ``root/<class>/...`` as a Dataset, classes in sorted folder-name order.

    As torchvision's ``ImageFolder``: each subfolder of ``root`` is a class, the sorted folder
    names give the class indices, and every file below it (recursively) with an image extension
    (:data:`IMAGE_EXTENSIONS`, any case) is a sample; other files and hidden entries are
    skipped. Images are converted to RGB (or to 8-bit grayscale with ``grayscale=True``) and,
    when ``size`` is given, resized bilinearly; otherwise they must all have the same size.

    Args:
        root: the folder holding one subfolder per class.
        size: None (keep the size), an int (square) or (h, w).
        grayscale: one channel instead of three.

    Shape:
        images (n, c, h, w) float32 in [0, 1] (pixel / 255), c = 1 if grayscale else 3;
        labels (n,) int64.

    Raises:
        ImportError: Pillow is not installed.
        FileNotFoundError: ``root`` is not a directory.
        ValueError: no class folders, a class folder without images, an image Pillow cannot
            read, or (without ``size``) images of different sizes; the message names the path.

    Example:
        >>> load_image_folder("/no/such/dir")
        Traceback (most recent call last):
        ...
        FileNotFoundError: load_image_folder: root /no/such/dir is not a directory
    """
    root = pathlib.Path(root)
    target = _normalise_size(size)
    if not root.is_dir():
        raise FileNotFoundError(f"load_image_folder: root {root} is not a directory")
    Image = _import_pillow()
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(
            f"load_image_folder: no class folders in {root}; expected one subfolder per class "
            f"(root/<class>/<image>)"
        )
    files: list[pathlib.Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = _image_files(root / name)
        if not found:
            extensions = " ".join(sorted(IMAGE_EXTENSIONS))
            raise ValueError(
                f"load_image_folder: class folder {root / name} holds no images (extensions: "
                f"{extensions})"
            )
        files += found
        labels += [index] * len(found)

    mode = "L" if grayscale else "RGB"
    arrays = []
    first_size: tuple[int, int] | None = None
    for path in files:
        try:
            with Image.open(path) as image:
                image = image.convert(mode)
                if target is not None and image.size != (target[1], target[0]):
                    image = image.resize((target[1], target[0]), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise ValueError(f"load_image_folder: cannot read image {path}: {e}") from None
        hw = pixels.shape[:2]
        if first_size is None:
            first_size = hw
        elif hw != first_size:
            raise ValueError(
                f"load_image_folder: {path} is {hw[0]}x{hw[1]} (h x w) but {files[0]} is "
                f"{first_size[0]}x{first_size[1]}; pass size=(h, w) to resize them all"
            )
        arrays.append(pixels)
    x = np.stack(arrays)  # (n, h, w) or (n, h, w, 3)
    x = x[:, None] if grayscale else x.transpose(0, 3, 1, 2)  # (n, c, h, w)
    x = x.astype(np.float32)
    x *= np.float32(1.0 / 255.0)
    return Dataset(x, np.array(labels, dtype=np.int64), classes)
