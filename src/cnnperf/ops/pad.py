"""N-d padding with PyTorch's ``F.pad`` argument order: constant, reflect and replicate modes."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from ._validate import as_float_array, check_same_dtype

__all__ = ["pad", "pad_backward"]

_MODES = ("constant", "reflect", "replicate")


def _widths(op: str, x: np.ndarray, pad, mode: str) -> list[tuple[int, int]]:
    """Per-axis (before, after) widths from torch's last-dim-first pad tuple, checked."""
    if mode not in _MODES:
        raise ValueError(f"{op}: mode must be one of {_MODES}, got {mode!r}")
    if not isinstance(pad, Sequence) or not all(
        isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in pad
    ):
        raise ValueError(f"{op}: pad must be a tuple of ints, got {pad!r}")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 != 0:
        raise ValueError(f"{op}: pad length must be even, got {len(pad)} in {pad}")
    if len(pad) // 2 > x.ndim:
        raise ValueError(
            f"{op}: pad {pad} pads {len(pad) // 2} dimensions but x of shape "
            f"{tuple(x.shape)} has only {x.ndim}"
        )
    if any(p < 0 for p in pad):
        raise ValueError(f"{op}: negative padding is not supported, got pad {pad}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        dim = x.ndim - 1 - i
        before, after = pad[2 * i], pad[2 * i + 1]
        size = x.shape[dim]
        if mode == "reflect" and (before >= size or after >= size):
            raise ValueError(
                f"{op}: reflect padding must be less than the dimension it pads, got padding "
                f"({before}, {after}) for dimension {dim} of size {size} (x of shape "
                f"{tuple(x.shape)})"
            )
        if mode == "replicate" and size == 0 and (before or after):
            raise ValueError(
                f"{op}: cannot replicate-pad dimension {dim} of size 0 (x of shape "
                f"{tuple(x.shape)}, padding ({before}, {after}))"
            )
        widths[dim] = (before, after)
    return widths


def pad(
    x: np.ndarray, pad: Sequence[int], mode: str = "constant", value: float = 0.0
) -> np.ndarray:
    """Pad the trailing dimensions of x, as ``torch.nn.functional.pad``.

    Args:
        x: float32 or float64 array.
        pad: ``(left, right, top, bottom, front, back, ...)``: pairs of non-negative widths
            from the last dimension backwards; even length, at most ``2 * x.ndim``.
        mode: ``"constant"`` (fill with ``value``), ``"reflect"`` (mirror without repeating
            the edge; each width must be less than its dimension) or ``"replicate"`` (repeat
            the edge).
        value: fill value for constant mode.

    Shape:
        Dimension ``d = ndim - 1 - i`` grows from ``s`` to ``s + pad[2i] + pad[2i + 1]``.

    Example:
        >>> pad(np.array([[1.0, 2.0, 3.0]]), (2, 1), mode="reflect").tolist()
        [[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]]
    """
    op = "pad"
    x = as_float_array(x, "x", op)
    widths = _widths(op, x, pad, mode)
    if mode == "constant":
        shape = tuple(s + b + a for s, (b, a) in zip(x.shape, widths, strict=True))
        out = np.full(shape, value, dtype=x.dtype) if value != 0 else np.zeros(shape, x.dtype)
        out[tuple(slice(b, b + s) for s, (b, _) in zip(x.shape, widths, strict=True))] = x
        return out
    # NumPy's "reflect" (even) is torch's reflect and its "edge" is torch's replicate.
    return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")


def _along(ndim: int, axis: int, s) -> tuple:
    idx = [slice(None)] * ndim
    idx[axis] = s
    return tuple(idx)


def pad_backward(
    grad_out: np.ndarray, x: np.ndarray, pad: Sequence[int], mode: str = "constant"
) -> np.ndarray:
    """Gradient of :func:`pad` with respect to x: the adjoint of the padding.

    Constant mode crops; replicate adds each border's gradient onto the edge element; reflect
    adds each mirrored element's gradient onto its source.

    Args:
        grad_out: gradient with respect to the padded output.
        x: the forward input (only its shape and dtype are used).
        pad, mode: as in the forward.

    Shape:
        grad_out the padded shape; grad_x like x.

    Example:
        >>> pad_backward(np.ones((1, 5)), np.zeros((1, 3)), (1, 1), mode="replicate").tolist()
        [[2.0, 1.0, 2.0]]
    """
    op = "pad_backward"
    x = as_float_array(x, "x", op)
    g = as_float_array(grad_out, "grad_out", op)
    check_same_dtype(op, grad_out=g, x=x)
    widths = _widths(op, x, pad, mode)
    shape = tuple(s + b + a for s, (b, a) in zip(x.shape, widths, strict=True))
    if g.shape != shape:
        raise ValueError(
            f"{op}: grad_out of shape {tuple(g.shape)} does not match the padded shape "
            f"{shape} of x {tuple(x.shape)} with pad {tuple(pad)}"
        )
    # Padding is separable (out[i, j] = x[r0(i), r1(j)]), so its adjoint is one axis at a time.
    for axis, (before, after) in enumerate(widths):
        if before == 0 and after == 0:
            continue
        n, nd = x.shape[axis], g.ndim
        inner = g[_along(nd, axis, slice(before, before + n))].copy()
        if mode == "replicate":
            inner[_along(nd, axis, slice(0, 1))] += np.sum(
                g[_along(nd, axis, slice(0, before))], axis=axis, keepdims=True
            )
            inner[_along(nd, axis, slice(n - 1, n))] += np.sum(
                g[_along(nd, axis, slice(before + n, None))], axis=axis, keepdims=True
            )
        elif mode == "reflect":
            # Left border position i mirrors x[before - i]; right position before + n + j
            # mirrors x[n - 2 - j].
            left = np.flip(g[_along(nd, axis, slice(0, before))], axis=axis)
            inner[_along(nd, axis, slice(1, before + 1))] += left
            right = np.flip(g[_along(nd, axis, slice(before + n, None))], axis=axis)
            inner[_along(nd, axis, slice(n - 1 - after, n - 1))] += right
        g = inner
    return g if g is not grad_out else g.copy()
