"""Argument checks shared by every op: dtypes, ranks, batching.

dtype policy (documented in the README): float32 is the native type; float64 inputs are
computed in float64 and return float64 (as in PyTorch), which is what the finite-difference
gradient checks use. Every other dtype (integers, bool, float16, complex) raises ValueError.
Inputs are never modified in place.
"""

from __future__ import annotations

import numpy as np

from ..shapes import pair

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x, name: str, op: str) -> np.ndarray:
    """Return ``x`` as an ndarray of float32 or float64 (no copy when it already is one)."""
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple, float, int, np.generic)):
            x = np.asarray(x)
        else:
            arr = getattr(x, "__array__", None)
            if arr is None:
                raise ValueError(f"{op}: {name} must be a NumPy array, got {type(x).__name__}")
            x = np.asarray(x)
    if x.dtype not in SUPPORTED_DTYPES:
        if x.dtype == np.float16:
            hint = "; cast it to float32"
        elif np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
            hint = "; cast it with .astype(np.float32)"
        else:
            hint = ""
        raise ValueError(
            f"{op}: {name} must have dtype float32 or float64, got {x.dtype} "
            f"with shape {tuple(x.shape)}{hint}"
        )
    return x


def check_same_dtype(op: str, **arrays: np.ndarray | None) -> np.dtype:
    """All given arrays share one dtype; return it."""
    present = {k: v for k, v in arrays.items() if v is not None}
    dtypes = {v.dtype for v in present.values()}
    if len(dtypes) > 1:
        desc = ", ".join(f"{k} is {v.dtype}" for k, v in present.items())
        raise ValueError(f"{op}: all arrays must have the same dtype, but {desc}")
    return next(iter(dtypes))


def as_batched_4d(x: np.ndarray, name: str, op: str) -> tuple[np.ndarray, bool]:
    """Accept (n, c, h, w) or unbatched (c, h, w) like PyTorch; return (4-D view, was_unbatched)."""
    if x.ndim == 4:
        return x, False
    if x.ndim == 3:
        return x[None], True
    raise ValueError(
        f"{op}: expected {name} to be 3-D (c, h, w) or 4-D (n, c, h, w), "
        f"got {x.ndim}-D with shape {tuple(x.shape)}"
    )


def positive_pair(value, name: str, op: str) -> tuple[int, int]:
    try:
        p = pair(value, name)
    except ValueError as e:
        raise ValueError(f"{op}: {e}") from None
    if p[0] <= 0 or p[1] <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {value!r}")
    return p


def nonnegative_pair(value, name: str, op: str) -> tuple[int, int]:
    try:
        p = pair(value, name)
    except ValueError as e:
        raise ValueError(f"{op}: {e}") from None
    if p[0] < 0 or p[1] < 0:
        raise ValueError(f"{op}: {name} must be non-negative, got {value!r}")
    return p


def check_reduction(reduction: str, op: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def input_array(x, op: str) -> np.ndarray:
    """``x`` checked by :func:`as_float_array` (named "x" in messages)."""
    return as_float_array(x, "x", op)


def grad_and_input(grad_out, x, op: str) -> tuple[np.ndarray, np.ndarray]:
    """Check grad_out and x: float arrays of one dtype and the same shape."""
    g = as_float_array(grad_out, "grad_out", op)
    x = as_float_array(x, "x", op)
    check_same_dtype(op, grad_out=g, x=x)
    if g.shape != x.shape:
        raise ValueError(
            f"{op}: grad_out of shape {tuple(g.shape)} does not match x of shape {tuple(x.shape)}"
        )
    return g, x


def as_array(y) -> np.ndarray:
    # ufuncs on 0-d arrays return NumPy scalars; the API promises arrays.
    return np.asarray(y)
