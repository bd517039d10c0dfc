"""Batch transforms: ``Normalize``, ``RandomCrop``, ``RandomHorizontalFlip``, ``Compose``.

Every transform is a callable ``transform(x, rng=None) -> array`` on a batch ``x`` of shape
(n, c, h, w) (or one image (c, h, w)); it returns a new float32 array and never writes to
``x``. Random transforms draw one decision per image from ``rng``, a NumPy ``Generator``:
:class:`~cnnperf.data.DataLoader` passes its own seeded one, so a seed gives the same batches;
called without one, they draw from fresh OS entropy.

>>> x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
>>> t = Compose([RandomHorizontalFlip(p=1.0), Normalize(mean=[1.0], std=[2.0])])
>>> t(x, np.random.default_rng(0))[0, 0].tolist()
[[0.0, -0.5], [1.0, 0.5]]
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["Normalize", "RandomCrop", "RandomHorizontalFlip", "Compose", "Transform"]

Transform = Callable[..., np.ndarray]


def _as_batch(x: np.ndarray, where: str) -> tuple[np.ndarray, bool]:
    """``x`` as a float32 (n, c, h, w) batch, and whether it was a single (c, h, w) image."""
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{where}: expected a batch (n, c, h, w) or an image (c, h, w), got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{where}: expected floating-point images, got dtype {x.dtype}")
    single = x.ndim == 3
    x = x[None] if single else x  # (n, c, h, w)
    return x.astype(np.float32, copy=False), single


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng() if rng is None else rng


def _pair(value, name: str, where: str, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    if (
        isinstance(pair, tuple | list)
        and len(pair) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pair)
        and min(pair) >= minimum
    ):
        return int(pair[0]), int(pair[1])
    raise ValueError(
        f"{where}: {name} must be an int >= {minimum} or a pair of them, got {value!r}"
    )


class Normalize:
    """Per-channel ``(x - mean[c]) / std[c]``.

    Args:
        mean: one value per channel (or one for all).
        std: one positive value per channel (or one for all).

    Example:
        >>> x = np.full((2, 2, 1, 1), 3.0, np.float32)
        >>> Normalize(mean=[1.0, 3.0], std=[2.0, 1.0])(x)[0].ravel().tolist()
        [1.0, 0.0]
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        mean_a = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        std_a = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if mean_a.ndim != 1 or std_a.ndim != 1:
            raise ValueError(f"Normalize: mean and std must be 1-D, got {mean!r} and {std!r}")
        if len(mean_a) != len(std_a) and 1 not in (len(mean_a), len(std_a)):
            raise ValueError(
                f"Normalize: mean has {len(mean_a)} values but std has {len(std_a)}; give one "
                f"per channel (or one for all)"
            )
        if not (np.all(np.isfinite(std_a)) and np.all(std_a > 0) and np.all(np.isfinite(mean_a))):
            raise ValueError(
                f"Normalize: std must be positive and finite and mean finite, got mean={mean!r}, "
                f"std={std!r}"
            )
        self.mean = mean_a
        self.std = std_a

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x, single = _as_batch(x, "Normalize")
        c = x.shape[1]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, c):
                raise ValueError(
                    f"Normalize: {name} has {len(values)} values but the input of shape "
                    f"{x.shape} has {c} channels"
                )
        mean = np.broadcast_to(self.mean, (c,)).astype(np.float32)[:, None, None]  # (c, 1, 1)
        scale = np.broadcast_to(1.0 / self.std, (c,)).astype(np.float32)[:, None, None]
        out = (x - mean) * scale
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomCrop:
    """Pad with zeros, then crop a ``size`` window at a random position per image.

    The standard CIFAR augmentation is ``RandomCrop(32, padding=4)``: an image shifted by up to
    4 pixels in each direction, the uncovered border zero.

    Args:
        size: the output (h, w), or an int for a square.
        padding: zeros added on each side, an int or (pad_h, pad_w). Default 0.

    Shape:
        (n, c, h, w) -> (n, c, size_h, size_w); needs size_h <= h + 2 * pad_h (same for w).

    Example:
        >>> x = np.ones((1, 1, 2, 2), np.float32)
        >>> y = RandomCrop(2, padding=1)(x, np.random.default_rng(0))
        >>> y.shape, float(y.sum()) <= 4.0
        ((1, 1, 2, 2), True)
    """

    def __init__(self, size: int | tuple[int, int], padding: int | tuple[int, int] = 0) -> None:
        self.size = _pair(size, "size", "RandomCrop", 1)
        self.padding = _pair(padding, "padding", "RandomCrop", 0)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x, single = _as_batch(x, "RandomCrop")
        n, c, h, w = x.shape
        (oh, ow), (ph, pw) = self.size, self.padding
        if oh > h + 2 * ph or ow > w + 2 * pw:
            raise ValueError(
                f"RandomCrop: crop size {(oh, ow)} is larger than the input {(h, w)} padded by "
                f"{(ph, pw)} to {(h + 2 * ph, w + 2 * pw)}"
            )
        rng = _rng(rng)
        top = rng.integers(0, h + 2 * ph - oh + 1, size=n)  # (n,)
        left = rng.integers(0, w + 2 * pw - ow + 1, size=n)  # (n,)
        padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        rows = (top[:, None] + np.arange(oh))[:, None, :, None]  # (n, 1, oh, 1)
        cols = (left[:, None] + np.arange(ow))[:, None, None, :]  # (n, 1, 1, ow)
        out = padded[np.arange(n)[:, None, None, None], np.arange(c)[:, None, None], rows, cols]
        return out[0] if single else out  # (n, c, oh, ow)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``.

    Example:
        >>> x = np.array([[[[1.0, 2.0, 3.0]]]], np.float32)
        >>> RandomHorizontalFlip(p=1.0)(x).ravel().tolist()
        [3.0, 2.0, 1.0]
    """

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x, single = _as_batch(x, "RandomHorizontalFlip")
        flip = _rng(rng).random(x.shape[0]) < self.p  # (n,)
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply transforms in order, passing each the same ``rng``.

    Example:
        >>> t = Compose([Normalize(0.5, 0.5), RandomHorizontalFlip(0.0)])
        >>> t(np.ones((1, 1, 1, 2), np.float32)).ravel().tolist()
        [1.0, 1.0]
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        transforms = list(transforms)
        for t in transforms:
            if not callable(t):
                raise ValueError(f"Compose: every transform must be callable, got {t!r}")
        self.transforms = transforms

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = _rng(rng)
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"
