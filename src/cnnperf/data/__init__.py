"""Data sets, readers and a batching ``DataLoader`` for training on NumPy arrays.

- :func:`load_digits` / :func:`digits_split`: the UCI handwritten digits (1,797 8x8 images),
  bundled with the package (no download; attribution in ``DIGITS_LICENSE.txt``).
- :func:`read_idx`, :func:`load_mnist`, :func:`load_fashion_mnist`: MNIST-format IDX files.
- :func:`load_cifar10`: CIFAR-10's binary version (never unpickled).
- :func:`load_image_folder`: ``root/<class>/<image>`` folders (needs Pillow, the ``images``
  extra).
- :class:`DataLoader`: batches with seeded, resumable shuffling and the batch transforms of
  :mod:`cnnperf.data.transforms` (``Normalize``, ``RandomCrop``, ``RandomHorizontalFlip``,
  ``Compose``).

Images are float32 (n, c, h, w) in [0, 1]; labels are int64 class indices.

>>> import cnnperf.data as data
>>> train, test = data.digits_split(test_fraction=0.2, seed=0)
>>> loader = data.DataLoader(train, batch_size=64, shuffle=True, seed=0)
>>> x, y = next(iter(loader))
>>> x.shape, x.dtype, y.dtype
((64, 1, 8, 8), dtype('float32'), dtype('int64'))
"""

from __future__ import annotations

from .datasets import Dataset, digits_split, load_digits, train_test_split
from .folder import IMAGE_EXTENSIONS, load_image_folder
from .loader import DataLoader
from .readers import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)
from .transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip

__all__ = [
    "Dataset",
    "load_digits",
    "digits_split",
    "train_test_split",
    "read_idx",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "load_image_folder",
    "DataLoader",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Compose",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "IMAGE_EXTENSIONS",
]
