"""``Dataset`` (images + labels + class names), the bundled digits set and a seeded split.

The UCI handwritten digits (1,797 8x8 images, 10 classes) ship inside the package as
``digits.csv.gz`` (attribution and licence in ``DIGITS_LICENSE.txt`` beside it), so
:func:`load_digits` and :func:`digits_split` need no download.

>>> from cnnperf.data import digits_split
>>> train, test = digits_split(test_fraction=0.2, seed=0)
>>> len(train), len(test), train.images.shape[1:]
(1438, 359, (1, 8, 8))
"""

from __future__ import annotations

import functools
import gzip
import io
import numbers
from collections.abc import Iterator, Sequence
from importlib import resources

import numpy as np

__all__ = ["Dataset", "load_digits", "train_test_split", "digits_split"]


class Dataset:
    """Images and integer labels held in memory, with the class names.

    Args:
        images: array of shape (n, ...) (usually (n, c, h, w)) of floating-point values; stored
            as C-contiguous float32 (no copy when it already is).
        labels: integer array of shape (n,), each in ``[0, len(classes))``; stored as int64.
        classes: the class names, index i naming label i. Default: ``["0", ..., str(max)]``.

    ``ds[i]`` (an int) is the pair ``(image, label)``; ``ds[slice]`` or ``ds[index_array]`` is a
    new ``Dataset`` holding those samples and the same classes.

    Example:
        >>> ds = Dataset(np.zeros((4, 1, 2, 2)), np.array([0, 1, 1, 0]))
        >>> len(ds), ds.classes, ds.images.dtype, ds.labels.dtype
        (4, ['0', '1'], dtype('float32'), dtype('int64'))
        >>> image, label = ds[1]
        >>> image.shape, label
        ((1, 2, 2), 1)
        >>> len(ds[1:])
        3
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        classes: Sequence[str] | None = None,
    ) -> None:
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim < 2:
            raise ValueError(
                f"Dataset: images must have shape (n, ...) with at least 2 dims, got shape "
                f"{images.shape}"
            )
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(
                f"Dataset: images must be floating point, got dtype {images.dtype} with shape "
                f"{images.shape}; scale 8-bit images to [0, 1] first (images / 255)"
            )
        if labels.ndim != 1:
            raise ValueError(
                f"Dataset: labels must have shape (n,) (class indices, not one-hot), got shape "
                f"{labels.shape}"
            )
        is_int = labels.dtype != np.bool_ and np.issubdtype(labels.dtype, np.integer)
        if labels.size and not is_int:
            raise ValueError(f"Dataset: labels must be integers, got dtype {labels.dtype}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"Dataset: got {images.shape[0]} images (shape {images.shape}) but "
                f"{labels.shape[0]} labels"
            )
        labels = labels.astype(np.int64, copy=False)
        if classes is None:
            classes = [str(i) for i in range(int(labels.max()) + 1 if labels.size else 0)]
        elif isinstance(classes, str):
            raise ValueError(f"Dataset: classes must be a sequence of names, got {classes!r}")
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f"Dataset: class names must be unique, got {classes}")
        if labels.size:
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= len(classes):
                raise ValueError(
                    f"Dataset: labels must lie in [0, {len(classes)}) for {len(classes)} "
                    f"classes, got labels in [{low}, {high}]"
                )
        self.images: np.ndarray = np.ascontiguousarray(images, dtype=np.float32)
        self.labels: np.ndarray = np.ascontiguousarray(labels)
        self.classes: list[str] = classes

    @property
    def num_classes(self) -> int:
        """The number of classes, ``len(classes)``."""
        return len(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        if isinstance(index, numbers.Integral) and not isinstance(index, bool):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"Dataset: index {index} out of range for {n} samples")
            return self.images[index], int(self.labels[index])
        return self.subset(index)

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        for i in range(len(self)):
            yield self.images[i], int(self.labels[i])

    def subset(self, indices) -> Dataset:
        """A new ``Dataset`` with the samples ``indices`` (slice, int array or bool mask).

        Example:
            >>> Dataset(np.zeros((3, 1)), np.array([2, 0, 1])).subset([2, 0]).labels.tolist()
            [1, 2]
        """
        if not isinstance(indices, slice):
            indices = np.asarray(indices)
            if indices.dtype != np.bool_ and not np.issubdtype(indices.dtype, np.integer):
                if indices.size:  # an empty list becomes float64: accept it as no indices
                    raise ValueError(
                        f"Dataset.subset: indices must be a slice, integers or a bool mask, "
                        f"got dtype {indices.dtype}"
                    )
                indices = indices.astype(np.int64)
        return Dataset(self.images[indices], self.labels[indices], self.classes)

    def class_counts(self) -> np.ndarray:
        """The number of samples of each class, shape (num_classes,).

        Example:
            >>> Dataset(np.zeros((3, 1)), np.array([1, 0, 1])).class_counts().tolist()
            [1, 2]
        """
        return np.bincount(self.labels, minlength=self.num_classes)

    def __repr__(self) -> str:
        return (
            f"Dataset(images={self.images.shape} {self.images.dtype}, "
            f"labels={self.labels.shape} {self.labels.dtype}, classes={self.num_classes})"
        )


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    raw = resources.files(__package__).joinpath("digits.csv.gz").read_bytes()
    table = np.loadtxt(io.StringIO(gzip.decompress(raw).decode("ascii")), delimiter=",")
    if table.shape != (1797, 65):
        raise ValueError(f"digits.csv.gz: expected a (1797, 65) table, got {table.shape}")
    pixels = table[:, :64].reshape(-1, 1, 8, 8)  # (n, 1, 8, 8)
    labels = table[:, 64].astype(np.int64)
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


def load_digits() -> Dataset:
    """The UCI handwritten digits bundled with the package (no download).

    1,797 grayscale 8x8 images of the digits 0-9 (about 180 per class), pixel counts 0..16
    scaled to [0, 1] by dividing by 16. Data: Alpaydin & Kaynak (1998), UCI Machine Learning
    Repository, CC BY 4.0 (the copy scikit-learn ships; see ``DIGITS_LICENSE.txt``).

    Shape:
        images (1797, 1, 8, 8) float32 in [0, 1]; labels (1797,) int64 in 0..9;
        classes ``["0", ..., "9"]``.

    Example:
        >>> ds = load_digits()
        >>> ds.images.shape, ds.num_classes, float(ds.images.max())
        ((1797, 1, 8, 8), 10, 1.0)
    """
    pixels, labels = _digits_arrays()
    return Dataset(pixels / 16.0, labels.copy(), [str(i) for i in range(10)])


def _check_fraction(test_fraction: float) -> float:
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, numbers.Real)
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(
            f"train_test_split: test_fraction must be a number in (0, 1), got {test_fraction!r}"
        )
    return float(test_fraction)


def _check_seed(seed: int, where: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{where}: seed must be a non-negative int, got {seed!r}")
    return int(seed)


def train_test_split(
    dataset: Dataset,
    test_fraction: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
) -> tuple[Dataset, Dataset]:
    """Split ``dataset`` into (train, test) deterministically from ``seed``.

    Stratified (default): for each class with ``k`` samples, ``round(k * test_fraction)`` of
    them, chosen by a permutation drawn from ``np.random.default_rng(seed)`` (classes in
    ascending order, one permutation each), go to the test set; so each class keeps its
    proportion and the test set holds about ``test_fraction`` of the samples. Not stratified:
    ``round(n * test_fraction)`` samples chosen by one permutation. Both parts keep the samples
    in their original order. The same seed, data and NumPy version give the same split.

    Args:
        dataset: the samples to split.
        test_fraction: the share of samples in the test set, in (0, 1).
        seed: non-negative int seeding the permutation(s).
        stratify: split each class separately (True) or the whole set at once.

    Example:
        >>> ds = Dataset(np.zeros((10, 1)), np.array([0] * 5 + [1] * 5))
        >>> train, test = train_test_split(ds, test_fraction=0.4, seed=0)
        >>> len(train), test.class_counts().tolist()
        (6, [2, 2])
    """
    if not isinstance(dataset, Dataset):
        raise ValueError(f"train_test_split: expected a Dataset, got {type(dataset).__name__}")
    test_fraction = _check_fraction(test_fraction)
    rng = np.random.default_rng(_check_seed(seed, "train_test_split"))
    is_test = np.zeros(len(dataset), dtype=bool)
    groups = (
        [np.flatnonzero(dataset.labels == c) for c in range(dataset.num_classes)]
        if stratify
        else [np.arange(len(dataset))]
    )
    for members in groups:
        k = int(round(members.size * test_fraction))
        is_test[rng.permutation(members)[:k]] = True
    n_test = int(is_test.sum())
    if n_test == 0 or n_test == len(dataset):
        raise ValueError(
            f"train_test_split: test_fraction={test_fraction} of {len(dataset)} samples leaves "
            f"{n_test} test and {len(dataset) - n_test} train samples; both must be non-empty"
        )
    return dataset.subset(~is_test), dataset.subset(is_test)


def digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """The bundled digits split into (train, test): ``train_test_split(load_digits(), ...)``.

    Stratified by class (see :func:`train_test_split`); ``test_fraction=0.2, seed=0`` gives
    1,438 training and 359 test images (35 to 37 of each digit in the test set).

    Example:
        >>> train, test = digits_split(test_fraction=0.2, seed=0)
        >>> test.class_counts().tolist()
        [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    """
    return train_test_split(load_digits(), test_fraction=test_fraction, seed=seed)
