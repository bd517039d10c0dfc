"""``DataLoader``: batches of (images, labels) with seeded, resumable shuffling and augmentation.

Reproducibility contract. A loader with ``seed=s`` derives everything random from ``s`` and the
epoch number ``e``, each stream from its own ``numpy.random.default_rng(entropy)``:

- the sample order of epoch ``e`` from entropy ``[0, e, 0, s]`` (a permutation of all samples);
- the transform draws of batch ``b`` of epoch ``e`` from ``[1, e, b, s]``.

(The seed comes last: ``SeedSequence`` ignores trailing zero words, and a seed's last word is
its most significant one, so distinct seeds never share a stream.)

So batch ``b`` of epoch ``e`` depends only on (seed, epoch, batch index, batch size, data):
two loaders with the same seed give the same batches, and a loader restored with
:meth:`DataLoader.load_state_dict` (or :meth:`DataLoader.set_epoch`) continues exactly where
the saved one stood, even in the middle of an epoch. Each ``iter(loader)`` (each ``for`` loop)
runs the next epoch: ``loader.epoch`` counts the epochs started. With ``seed=None`` a seed is
drawn from OS entropy once, at construction; ``state_dict()`` records it, so even such a run can
be resumed. Same seed, data and NumPy version give the same batches.

>>> from cnnperf.data import Dataset
>>> ds = Dataset(np.arange(5, dtype=np.float32).reshape(5, 1), np.arange(5))
>>> loader = DataLoader(ds, batch_size=2)
>>> [y.tolist() for _, y in loader]
[[0, 1], [2, 3], [4]]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator

import numpy as np

from .datasets import Dataset
from .transforms import Transform

__all__ = ["DataLoader"]


def _check_count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"DataLoader: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class DataLoader:
    """Iterate over a dataset in batches of NumPy arrays ``(x, y)``.

    Args:
        dataset: a :class:`Dataset`, or a pair ``(images, labels)`` of arrays.
        batch_size: samples per batch (>= 1). Default 1.
        shuffle: visit the samples in a new seeded order each epoch (else in dataset order).
        seed: non-negative int seeding the order and the transforms; None draws one.
        drop_last: skip the last batch when it is smaller than ``batch_size``.
        transform: applied to each batch of images, called as ``transform(x, rng)`` with ``x``
            of shape (b, c, h, w) and a seeded ``numpy.random.Generator`` (see
            :mod:`cnnperf.data.transforms`); it must keep the batch size.

    Yields:
        ``x`` float32 of shape (b, ...) (C-contiguous, a copy: safe to modify) and ``y`` int64
        of shape (b,), with b = batch_size except maybe for the last batch.

    Checkpoints: save ``loader.state_dict()`` (plain ints) and, when resuming, call
    ``loader.load_state_dict(state)`` before iterating; see the module docstring for what
    determines each batch.

    Example:
        >>> ds = Dataset(np.zeros((10, 1, 2, 2), np.float32), np.arange(10) % 3)
        >>> loader = DataLoader(ds, batch_size=4, shuffle=True, seed=0, drop_last=True)
        >>> len(loader), [x.shape for x, _ in loader]
        (2, [(4, 1, 2, 2), (4, 1, 2, 2)])
        >>> loader.epoch
        1
    """

    def __init__(
        self,
        dataset: Dataset | tuple[np.ndarray, np.ndarray],
        batch_size: int = 1,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
        transform: Transform | None = None,
    ) -> None:
        if isinstance(dataset, tuple) and len(dataset) == 2:
            dataset = Dataset(*dataset)
        if not isinstance(dataset, Dataset):
            raise ValueError(
                f"DataLoader: dataset must be a Dataset or an (images, labels) pair, got "
                f"{type(dataset).__name__}"
            )
        if transform is not None and not callable(transform):
            raise ValueError(f"DataLoader: transform must be callable, got {transform!r}")
        self.dataset = dataset
        self.batch_size = _check_count(batch_size, "batch_size", 1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        if seed is None:
            seed = int(np.random.default_rng().integers(2**63))
        self.seed = _check_count(seed, "seed", 0)
        self._epoch = 0  # the epoch the next iter() runs
        self._skip = 0  # batches of that epoch already consumed (set by load_state_dict)
        self._progress: list[int] | None = None  # [epoch, batches yielded] of the last iter()

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter()`` runs (the number of epochs started so far)."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` run epoch ``epoch`` from its first batch.

        Example:
            >>> ds = Dataset(np.zeros((6, 1), np.float32), np.arange(6))
            >>> a = DataLoader(ds, batch_size=6, shuffle=True, seed=1)
            >>> _ = next(iter(a)); second = next(iter(a))[1]
            >>> b = DataLoader(ds, batch_size=6, shuffle=True, seed=1)
            >>> b.set_epoch(1)
            >>> bool((next(iter(b))[1] == second).all())
            True
        """
        self._epoch = _check_count(epoch, "epoch", 0)
        self._skip = 0
        self._progress = None

    def state_dict(self) -> dict[str, int]:
        """Where the loader stands: the batch to produce next, as plain ints.

        ``{"seed", "epoch", "batch", "batch_size", "num_samples"}``: the next batch is batch
        ``batch`` of epoch ``epoch``. Taken while a ``for`` loop over the loader is running, it
        counts the batches yielded so far as consumed (checkpoint after the step that used the
        batch); taken between loops it points at the first batch of the next epoch.

        Example:
            >>> ds = Dataset(np.zeros((6, 1), np.float32), np.arange(6))
            >>> loader = DataLoader(ds, batch_size=2, seed=7)
            >>> batches = iter(loader); _ = next(batches)
            >>> loader.state_dict()
            {'seed': 7, 'epoch': 0, 'batch': 1, 'batch_size': 2, 'num_samples': 6}
        """
        if self._progress is not None and self._progress[1] < len(self):
            epoch, batch = self._progress
        else:
            epoch, batch = self._epoch, self._skip
        return {
            "seed": self.seed,
            "epoch": epoch,
            "batch": batch,
            "batch_size": self.batch_size,
            "num_samples": len(self.dataset),
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore a :meth:`state_dict`: the next ``iter()`` continues from that batch.

        The saved seed replaces this loader's. Resuming in the middle of an epoch needs the same
        batch size and number of samples (checked); at an epoch boundary they may differ.

        Example:
            >>> ds = Dataset(np.zeros((6, 1), np.float32), np.arange(6))
            >>> a = DataLoader(ds, batch_size=2, shuffle=True, seed=3)
            >>> batches = iter(a); _ = next(batches); state = a.state_dict()
            >>> rest = [y.tolist() for _, y in batches]
            >>> b = DataLoader(ds, batch_size=2, shuffle=True)
            >>> b.load_state_dict(state)
            >>> [y.tolist() for _, y in b] == rest
            True
        """
        missing = [k for k in ("seed", "epoch", "batch") if k not in state]
        if missing:
            raise ValueError(f"DataLoader.load_state_dict: state lacks {missing}, got {state!r}")
        seed = _check_count(state["seed"], "seed", 0)
        epoch = _check_count(state["epoch"], "epoch", 0)
        batch = _check_count(state["batch"], "batch", 0)
        if batch:
            saved = (state.get("batch_size"), state.get("num_samples"))
            here = (self.batch_size, len(self.dataset))
            if saved != here:
                raise ValueError(
                    f"DataLoader.load_state_dict: the state stops in the middle of epoch {epoch} "
                    f"(batch {batch}) with batch_size={saved[0]} and {saved[1]} samples, but "
                    f"this loader has batch_size={here[0]} and {here[1]} samples"
                )
            if batch > len(self):
                raise ValueError(
                    f"DataLoader.load_state_dict: batch {batch} out of range for an epoch of "
                    f"{len(self)} batches"
                )
            if batch == len(self):
                epoch, batch = epoch + 1, 0
        self.seed = seed
        self._epoch = epoch
        self._skip = batch
        self._progress = None

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([0, epoch, 0, self.seed]).permutation(n)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch, start = self._epoch, self._skip
        self._epoch, self._skip = epoch + 1, 0
        progress = [epoch, start]
        self._progress = progress
        return self._batches(epoch, start, progress)

    def _batches(
        self, epoch: int, start: int, progress: list[int]
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self._order(epoch)
        images, labels = self.dataset.images, self.dataset.labels
        for b in range(start, len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = images[index]  # (b, ...) a copy: fancy indexing
            y = labels[index]
            if self.transform is not None:
                rng = np.random.default_rng([1, epoch, b, self.seed])
                x = np.asarray(self.transform(x, rng))
                if x.ndim == 0 or x.shape[0] != y.shape[0]:
                    raise ValueError(
                        f"DataLoader: transform {self.transform!r} returned shape {x.shape} for "
                        f"a batch of {y.shape[0]} images; it must keep the batch size"
                    )
                x = np.ascontiguousarray(x, dtype=np.float32)
            progress[1] = b + 1
            yield x, y

    def __repr__(self) -> str:
        return (
            f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"seed={self.seed}, drop_last={self.drop_last}, transform={self.transform!r})"
        )
