"""Small argument helpers private to ``cnnperf.reference``.

Deliberately independent of ``cnnperf.shapes`` / ``cnnperf.ops``: the reference parses its own
arguments and counts its own output positions so that it is a separate check on them.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "as_f64",
    "pair",
    "conv_padding",
    "count_conv_positions",
    "count_pool_positions",
    "batched4d",
    "check_reduction",
]


def as_f64(a) -> np.ndarray:
    """Return ``a`` as a float64 array (a copy only when a conversion is needed)."""
    return np.asarray(a, dtype=np.float64)


def _int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {v!r}")
    return int(v)


def pair(v, name: str) -> tuple[int, int]:
    """``v`` as an (h, w) pair of ints: an int is used for both, a 2-sequence as given."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return _int(v[0], name), _int(v[1], name)
    i = _int(v, name)
    return i, i


def conv_padding(padding, kernel, stride, dilation) -> tuple[tuple[int, int], tuple[int, int]]:
    """Padding as ((top, bottom), (left, right)) from int, pair, pair of pairs, "valid", "same".

    "same" (stride 1 only) puts total = d*(k-1) with total//2 before and the rest after, like
    PyTorch.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
            out = []
            for k, d in zip(kernel, dilation, strict=True):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return out[0], out[1]
        raise ValueError(f"padding must be 'valid', 'same', an int or pairs, got {padding!r}")
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) for p in padding)
    ):
        (t, b), (l, r) = pair(padding[0], "padding"), pair(padding[1], "padding")
        pads = ((t, b), (l, r))
    else:
        ph, pw = pair(padding, "padding")
        pads = ((ph, ph), (pw, pw))
    if min(pads[0] + pads[1]) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return pads


def count_conv_positions(size: int, before: int, after: int, k: int, s: int, d: int) -> int:
    """Number of window starts -before, -before+s, ... whose last tap lies inside the padded input.

    Equals floor((size + before + after - d*(k-1) - 1) / s) + 1 when that is positive.
    """
    last_allowed = size - 1 + after  # highest padded index
    count = 0
    start = -before
    while start + d * (k - 1) <= last_allowed:
        count += 1
        start += s
    return count


def count_pool_positions(size: int, p: int, k: int, s: int, d: int, ceil_mode: bool) -> int:
    """Number of pooling windows along one axis (PyTorch rules).

    floor mode: windows whose last tap lies inside the padded input, i.e.
    floor((size + 2p - d*(k-1) - 1) / s) + 1.
    ceil mode: also a last partial window that starts less than a stride past the last full
    one, i.e. ceil(...) + 1, but only windows that start inside the input or the left padding
    (start index o*s - p < size).
    """
    span = size + 2 * p - d * (k - 1) - 1  # offset (from -p) of the last full window's start
    count = 0
    o = 0
    while True:
        full = o * s <= span
        partial = ceil_mode and o * s < span + s and o * s - p < size
        if not (full or partial):
            break
        count += 1
        o += 1
    return count


def batched4d(x: np.ndarray, name: str = "input") -> tuple[np.ndarray, bool]:
    """Return ``(x4, unbatched)``: a 3-D (c, h, w) input gets a leading batch axis of 1."""
    if x.ndim == 4:
        return x, False
    if x.ndim == 3:
        return x[None], True
    raise ValueError(f"expected {name} of rank 3 (c, h, w) or 4 (n, c, h, w), got shape {x.shape}")


def check_reduction(reduction: str) -> str:
    """Validate a loss reduction name."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction
