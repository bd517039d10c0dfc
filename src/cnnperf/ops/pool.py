"""Pooling operators (max, average, adaptive) with PyTorch's semantics, and their backward passes.

Arguments are checked and normalised into a ``PoolParams`` here, at the boundary; the windows are
then turned into per-axis tables (first tap, stop, divisor) that the Numba kernels in
``kernels.pool`` consume. Kernels are imported inside the functions so that ``import cnnperf``
does not import Numba.

Inputs are (n, c, h, w) or unbatched (c, h, w) float32/float64 arrays; outputs have the input's
dtype and batching. Inputs are never modified.
"""

from __future__ import annotations

import numpy as np

from ..shapes import PoolParams, adaptive_bounds
from ._validate import (
    as_batched_4d,
    as_float_array,
    check_same_dtype,
    nonnegative_pair,
    positive_pair,
)

__all__ = [
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
]


# --------------------------------------------------------------------------------------------
# argument checking


def _input(x, op: str, *, allow_empty_channels: bool = False) -> tuple[np.ndarray, bool]:
    """The input as a contiguous 4-D float array and whether it came unbatched."""
    x = as_float_array(x, "input", op)
    x4, unbatched = as_batched_4d(x, "input", op)
    _, c, h, w = x4.shape
    if h == 0 or w == 0 or (c == 0 and not allow_empty_channels):
        what = "spatial" if allow_empty_channels else "channel and spatial"
        raise ValueError(
            f"{op}: expected input with non-zero {what} sizes (only the batch may be empty), "
            f"got shape {tuple(x.shape)}"
        )
    return np.ascontiguousarray(x4), unbatched


def _pool_params(
    op: str, x4: np.ndarray, unbatched: bool, kernel_size, stride, padding, dilation, ceil_mode
) -> PoolParams:
    kh, kw = positive_pair(kernel_size, "kernel_size", op)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        sh, sw = kh, kw
    else:
        sh, sw = positive_pair(stride, "stride", op)
    ph, pw = nonnegative_pair(padding, "padding", op)
    dh, dw = positive_pair(dilation, "dilation", op)
    # PyTorch's limit ignores dilation (its "effective kernel size" check is weaker, so the
    # plain one decides): pad <= kernel_size // 2 on each axis.
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            f"{op}: pad should be at most half of kernel size, but got padding={(ph, pw)} "
            f"for kernel_size={(kh, kw)}"
        )
    n, c, h, w = x4.shape
    p = PoolParams(n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, bool(ceil_mode))
    if p.oh < 1 or p.ow < 1:
        raise ValueError(
            f"{op}: Given input size {(c, h, w)}, calculated output size {(c, p.oh, p.ow)} is "
            f"too small (kernel_size={(kh, kw)}, stride={(sh, sw)}, padding={(ph, pw)}, "
            f"dilation={(dh, dw)}, ceil_mode={bool(ceil_mode)}, input shape "
            f"{tuple(x4.shape[1:]) if unbatched else tuple(x4.shape)})"
        )
    return p


def _adaptive_size(output_size, x4: np.ndarray, op: str) -> tuple[int, int]:
    """``int | (int | None, int | None)`` -> (oh, ow); None keeps the input's size."""
    h, w = x4.shape[2], x4.shape[3]
    if isinstance(output_size, (tuple, list)):
        items = tuple(output_size)
        if len(items) == 1:
            items = items * 2
    else:
        items = (output_size, output_size)
    if len(items) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    sizes = []
    for v, full in zip(items, (h, w), strict=True):
        if v is None:
            sizes.append(full)
            continue
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise ValueError(
                f"{op}: output_size must be an int or a pair of ints or None, got {output_size!r}"
            )
        sizes.append(int(v))
    if sizes[0] <= 0 or sizes[1] <= 0:
        raise ValueError(
            f"{op}: output_size must be positive, got {output_size!r} "
            f"for input of shape {tuple(x4.shape)}"
        )
    return sizes[0], sizes[1]


def _grad_out(grad_out, x4: np.ndarray, expected4: tuple, unbatched: bool, op: str):
    """grad_out as contiguous (p, oh, ow) planes, after checking dtype and shape."""
    g = as_float_array(grad_out, "grad_out", op)
    check_same_dtype(op, grad_out=g, input=x4)
    expected = expected4[1:] if unbatched else expected4
    if tuple(g.shape) != tuple(expected):
        x_shape = x4.shape[1:] if unbatched else x4.shape
        raise ValueError(
            f"{op}: grad_out of shape {tuple(g.shape)} does not match the output shape "
            f"{tuple(expected)} for input of shape {tuple(x_shape)}"
        )
    n, c, oh, ow = expected4
    return np.ascontiguousarray(g).reshape(n * c, oh, ow)  # (n*c, oh, ow)


def _indices(indices, expected4: tuple, unbatched: bool, op: str) -> np.ndarray:
    ix = np.asarray(indices)
    if not np.issubdtype(ix.dtype, np.integer):
        raise ValueError(f"{op}: indices must be an integer array, got dtype {ix.dtype}")
    expected = expected4[1:] if unbatched else expected4
    if tuple(ix.shape) != tuple(expected):
        raise ValueError(
            f"{op}: indices of shape {tuple(ix.shape)} do not match the output shape "
            f"{tuple(expected)}"
        )
    n, c, oh, ow = expected4
    return np.ascontiguousarray(ix, dtype=np.int64).reshape(n * c, oh, ow)  # (n*c, oh, ow)


# --------------------------------------------------------------------------------------------
# window tables


def _max_axis(size: int, out: int, k: int, s: int, pad: int, d: int):
    """PyTorch's max-pool taps along one axis: first in-bounds tap and exclusive stop."""
    start = np.arange(out, dtype=np.int64) * s - pad
    stop = np.minimum(start + (k - 1) * d + 1, size)
    neg = start < 0
    # ``while start < 0: start += d``
    start[neg] += ((-start[neg] + d - 1) // d) * d
    return start, stop


def _max_tables(p: PoolParams):
    hs, he = _max_axis(p.h, p.oh, p.kh, p.sh, p.ph, p.dh)
    ws, we = _max_axis(p.w, p.ow, p.kw, p.sw, p.pw, p.dw)
    return hs, he, ws, we


def _avg_tables(p: PoolParams, count_include_pad: bool, divisor_override):
    def axis(size, out, k, s, pad):
        start = np.arange(out, dtype=np.int64) * s - pad
        stop = np.minimum(start + k, size + pad)
        padded = stop - start  # window size counted before clipping to the input
        start = np.maximum(start, 0)
        stop = np.minimum(stop, size)
        return start, stop, padded

    hs, he, hp = axis(p.h, p.oh, p.kh, p.sh, p.ph)
    ws, we, wp = axis(p.w, p.ow, p.kw, p.sw, p.pw)
    if divisor_override is not None:
        div = np.full((p.oh, p.ow), float(divisor_override))
    elif count_include_pad:
        div = np.outer(hp, wp).astype(np.float64)  # (oh, ow)
    else:
        div = np.outer(np.maximum(he - hs, 0), np.maximum(we - ws, 0)).astype(np.float64)
        div[div == 0] = 1.0  # an empty window sums to 0 (PyTorch skips it)
    return hs, he, ws, we, div


def _adaptive_tables(h: int, w: int, oh: int, ow: int):
    def axis(size, out):
        return adaptive_bounds(size, out, np.arange(out, dtype=np.int64))  # (out,), (out,)

    hs, he = axis(h, oh)
    ws, we = axis(w, ow)
    div = np.outer(he - hs, we - ws).astype(np.float64)  # (oh, ow)
    return hs, he, ws, we, div


# --------------------------------------------------------------------------------------------
# shared drivers


def _interior(p: PoolParams) -> tuple[int, int, int, int, int]:
    """(kw, sw, pw, j_lo, j_hi): output columns j whose taps ``j*sw + b*dw - pw`` are all in x."""
    j_lo = -(-p.pw // p.sw)  # j*sw - pw >= 0
    j_hi = min(p.ow, (p.w - 1 + p.pw - (p.kw - 1) * p.dw) // p.sw + 1)  # last tap <= w - 1
    return p.kw, p.sw, p.pw, j_lo, max(j_lo, j_hi)


_NO_INTERIOR = (0, 1, 0, 0, 0)  # adaptive windows have no common stride


def _run_max(
    x4: np.ndarray, tables, dh: int, dw: int, interior, want_idx: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Window maxima (and argmax) of every plane; ``tables`` is (hs, he, ws, we)."""
    n, c, h, w = x4.shape
    oh, ow = len(tables[0]), len(tables[2])
    out = np.empty((n, c, oh, ow), dtype=x4.dtype)
    idx = np.empty((n, c, oh, ow) if want_idx else (0, 0, 0, 0), dtype=np.int64)
    if n * c > 0:
        from ..kernels import sync_threads
        from ..kernels.pool import max_pool2d_windows

        sync_threads()
        x3 = x4.reshape(n * c, h, w)  # (n*c, h, w)
        out3 = out.reshape(n * c, oh, ow)  # (n*c, oh, ow)
        idx3 = idx.reshape(n * c, oh, ow) if want_idx else idx.reshape(0, 0, 0)
        max_pool2d_windows(x3, *tables, dh, dw, *interior, bool(want_idx), out3, idx3)
    return out, (idx if want_idx else None)


def _separable_3x3s2(p: PoolParams) -> bool:
    """Whether ``kernels.pool.max_pool2d_3x3s2`` covers ``p``: 3x3, stride 2, padding 1, no
    dilation, floor mode, even width, at least 2x2."""
    return (
        (p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw) == (3, 3, 2, 2, 1, 1, 1, 1)
        and not p.ceil_mode
        and p.w % 2 == 0
        and min(p.h, p.w) >= 2
    )


def _run_max_3x3s2(x4: np.ndarray, p: PoolParams) -> np.ndarray:
    """Window maxima of every plane by the separable 3x3/2 kernel (no indices)."""
    n, c, h, w = x4.shape
    out = np.empty((n, c, p.oh, p.ow), dtype=x4.dtype)
    if n * c > 0:
        from .. import config
        from ..kernels import sync_threads
        from ..kernels.pool import max_pool2d_3x3s2

        sync_threads()
        x3 = np.ascontiguousarray(x4).reshape(n * c, h, w)
        max_pool2d_3x3s2(x3, 8 * config.get_num_threads(), out.reshape(n * c, p.oh, p.ow))
    return out


def _scatter_max(g3: np.ndarray, idx3: np.ndarray, x4: np.ndarray) -> np.ndarray:
    n, c, h, w = x4.shape
    grad_x = np.empty_like(x4)  # the kernel zeroes it
    if n * c > 0:
        from ..kernels import sync_threads
        from ..kernels.pool import max_pool2d_scatter

        sync_threads()
        max_pool2d_scatter(g3, idx3, grad_x.reshape(n * c, h, w))  # (n*c, h, w)
    return grad_x


def _run_avg(x4: np.ndarray, tables) -> np.ndarray:
    """Window averages of every plane; ``tables`` is (hs, he, ws, we, div)."""
    n, c, h, w = x4.shape
    oh, ow = tables[4].shape
    out = np.empty((n, c, oh, ow), dtype=x4.dtype)
    if n * c > 0:
        from ..kernels import sync_threads
        from ..kernels.pool import avg_pool2d_windows

        sync_threads()
        x3 = x4.reshape(n * c, h, w)  # (n*c, h, w)
        avg_pool2d_windows(x3, *tables, out.reshape(n * c, oh, ow))  # (n*c, oh, ow)
    return out


def _scatter_avg(g3: np.ndarray, tables, x4: np.ndarray) -> np.ndarray:
    n, c, h, w = x4.shape
    hs, he, ws, we, div = tables
    if div.shape == (1, 1) and (hs[0], he[0], ws[0], we[0]) == (0, h, 0, w):
        # Global pooling (a ResNet's head): every element of a plane gets the same share,
        # rounded once as the kernel rounds it. A broadcast needs no kernel, and so no
        # compilation on a cold start (1.2 s of the first step of `cnnperf train`).
        share = (g3.astype(np.float64) / div[0, 0]).astype(x4.dtype)  # (n*c, 1, 1)
        return np.broadcast_to(share.reshape(n, c, 1, 1), x4.shape).copy()
    grad_x = np.empty_like(x4)  # the kernel zeroes it
    if n * c > 0:
        from ..kernels import sync_threads
        from ..kernels.pool import avg_pool2d_scatter

        sync_threads()
        avg_pool2d_scatter(g3, *tables, grad_x.reshape(n * c, h, w))  # (n*c, h, w)
    return grad_x


def _unbatch(a: np.ndarray, unbatched: bool) -> np.ndarray:
    return a[0] if unbatched else a


# --------------------------------------------------------------------------------------------
# max pooling


def max_pool2d(
    x: np.ndarray,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    Args:
        x: (n, c, h, w) or (c, h, w), float32 or float64.
        kernel_size: int or (kh, kw).
        stride: int or (sh, sw); None (or ``()``) means ``kernel_size``.
        padding: int or (ph, pw), implicit -inf padding; at most half the kernel size.
        dilation: int or (dh, dw), spacing between taps.
        ceil_mode: round the output size up (the last window must still start inside the input
            or its left/top padding).
        return_indices: also return the argmax of each window as int64 flat indices
            ``ih*w + iw`` into the input plane.

    A NaN in a window propagates (its index is returned; the last NaN wins) and an all -inf
    window gives -inf with the index of its first tap, as in PyTorch.

    Shape:
        ``oh = floor_or_ceil((h + 2*ph - dh*(kh-1) - 1) / sh) + 1``, ``ow`` likewise.
        Output (n, c, oh, ow) (or (c, oh, ow)); indices the same shape.

    Example:
        >>> import numpy as np
        >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        >>> max_pool2d(x, 2)[0, 0]
        array([[ 5.,  7.],
               [13., 15.]], dtype=float32)
    """
    op = "max_pool2d"
    x4, unbatched = _input(x, op)
    p = _pool_params(op, x4, unbatched, kernel_size, stride, padding, dilation, ceil_mode)
    if not return_indices and _separable_3x3s2(p):
        return _unbatch(_run_max_3x3s2(x4, p), unbatched)
    out, idx = _run_max(x4, _max_tables(p), p.dh, p.dw, _interior(p), return_indices)
    if return_indices:
        return _unbatch(out, unbatched), _unbatch(idx, unbatched)
    return _unbatch(out, unbatched)


def max_pool2d_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    *,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """Gradient of ``max_pool2d`` with respect to its input.

    Each output's gradient goes to its window's argmax (summed where windows overlap). The
    argmax is recomputed from ``x`` unless ``indices`` (as returned by ``max_pool2d(...,
    return_indices=True)`` with the same arguments) is given. A window that holds only padding
    (possible with dilation) outputs the constant -inf and passes no gradient.

    Args:
        grad_out: gradient of the output, the output's shape and the input's dtype.
        x: the forward input.
        kernel_size, stride, padding, dilation, ceil_mode: as for ``max_pool2d``.
        indices: optional int64 argmax from the forward pass (skips recomputing it).

    Shape:
        grad_out (n, c, oh, ow) -> grad_input (n, c, h, w); unbatched likewise.

    Example:
        >>> import numpy as np
        >>> x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
        >>> max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32), x, 2)[0, 0]
        array([[0., 0.],
               [0., 1.]], dtype=float32)
    """
    op = "max_pool2d_backward"
    x4, unbatched = _input(x, op)
    p = _pool_params(op, x4, unbatched, kernel_size, stride, padding, dilation, ceil_mode)
    g3 = _grad_out(grad_out, x4, p.output_shape, unbatched, op)
    tables = _max_tables(p)
    hs, he, ws, we = tables
    # With dilation and padding a window can hold padding only: its output is the constant
    # -inf, so it passes no gradient. (PyTorch reports an index outside such a window and
    # its backward credits, or writes past, that element.)
    padding_only = (he <= hs)[:, None] | (we <= ws)[None, :]  # (oh, ow)
    if padding_only.any():
        g3 = np.where(padding_only, 0, g3).astype(g3.dtype)
    if indices is None:
        _, idx = _run_max(x4, tables, p.dh, p.dw, _interior(p), True)
        idx3 = idx.reshape(g3.shape)  # (n*c, oh, ow)
    else:
        idx3 = _indices(indices, p.output_shape, unbatched, op)
    return _unbatch(_scatter_max(g3, idx3, x4), unbatched)


# --------------------------------------------------------------------------------------------
# average pooling


def _avg_setup(op, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x4, unbatched = _input(x, op)
    p = _pool_params(op, x4, unbatched, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not hasattr(divisor_override, "__index__"):
            raise ValueError(
                f"{op}: divisor_override must be an int or None, got {divisor_override!r}"
            )
        if int(divisor_override) == 0:
            raise ValueError(f"{op}: divisor_override must be non-zero, got {divisor_override!r}")
        divisor_override = int(divisor_override)
    tables = _avg_tables(p, bool(count_include_pad), divisor_override)
    return x4, unbatched, p, tables


def avg_pool2d(
    x: np.ndarray,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> np.ndarray:
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    Each window ``[oh*sh - ph, min(oh*sh - ph + kh, h + ph))`` (columns likewise) is summed over
    its part inside the input and divided by ``divisor_override`` if given, else by the window's
    size including padding (``count_include_pad=True``) or by the number of input elements in it.

    Args:
        x: (n, c, h, w) or (c, h, w), float32 or float64.
        kernel_size: int or (kh, kw).
        stride: int or (sh, sw); None (or ``()``) means ``kernel_size``.
        padding: int or (ph, pw), implicit zero padding; at most half the kernel size.
        ceil_mode: round the output size up (the last window must start inside the input or
            its left/top padding).
        count_include_pad: count padding in the divisor.
        divisor_override: a fixed non-zero divisor.

    Shape:
        ``oh = floor_or_ceil((h + 2*ph - kh) / sh) + 1``, ``ow`` likewise; output (n, c, oh, ow).

    Example:
        >>> import numpy as np
        >>> avg_pool2d(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4), 2)[0, 0]
        array([[ 2.5,  4.5],
               [10.5, 12.5]], dtype=float32)
    """
    op = "avg_pool2d"
    x4, unbatched, _, tables = _avg_setup(
        op, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    return _unbatch(_run_avg(x4, tables), unbatched)


def avg_pool2d_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> np.ndarray:
    """Gradient of ``avg_pool2d`` with respect to its input (each window gets grad / divisor).

    Args:
        grad_out: gradient of the output, the output's shape and the input's dtype.
        x: the forward input (only its shape and dtype are used).
        kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override: as for
            ``avg_pool2d``.

    Shape:
        grad_out (n, c, oh, ow) -> grad_input (n, c, h, w); unbatched likewise.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((1, 1, 2, 2), np.float32)
        >>> avg_pool2d_backward(np.ones((1, 1, 1, 1), np.float32), x, 2)[0, 0]
        array([[0.25, 0.25],
               [0.25, 0.25]], dtype=float32)
    """
    op = "avg_pool2d_backward"
    x4, unbatched, p, tables = _avg_setup(
        op, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    g3 = _grad_out(grad_out, x4, p.output_shape, unbatched, op)
    return _unbatch(_scatter_avg(g3, tables, x4), unbatched)


# --------------------------------------------------------------------------------------------
# adaptive pooling


def _adaptive_setup(op, x, output_size):
    x4, unbatched = _input(x, op, allow_empty_channels=True)
    oh, ow = _adaptive_size(output_size, x4, op)
    return x4, unbatched, (oh, ow), _adaptive_tables(x4.shape[2], x4.shape[3], oh, ow)


def adaptive_avg_pool2d(x: np.ndarray, output_size) -> np.ndarray:
    """2-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Output row ``i`` averages input rows ``[floor(i*h/oh), ceil((i+1)*h/oh))`` (columns
    likewise); windows overlap when the output is not a divisor of the input.

    Args:
        x: (n, c, h, w) or (c, h, w), float32 or float64.
        output_size: int or (oh, ow); an entry of None keeps that input size.

    Shape:
        (n, c, h, w) -> (n, c, oh, ow).

    Example:
        >>> import numpy as np
        >>> adaptive_avg_pool2d(np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2), 1)
        array([[[[1.5]]]], dtype=float32)
    """
    op = "adaptive_avg_pool2d"
    x4, unbatched, _, tables = _adaptive_setup(op, x, output_size)
    return _unbatch(_run_avg(x4, tables), unbatched)


def adaptive_avg_pool2d_backward(grad_out: np.ndarray, x: np.ndarray, output_size) -> np.ndarray:
    """Gradient of ``adaptive_avg_pool2d`` with respect to its input.

    Args:
        grad_out: gradient of the output, the output's shape and the input's dtype.
        x: the forward input (only its shape and dtype are used).
        output_size: as for ``adaptive_avg_pool2d``.

    Shape:
        grad_out (n, c, oh, ow) -> grad_input (n, c, h, w).

    Example:
        >>> import numpy as np
        >>> x = np.zeros((1, 1, 2, 2), np.float32)
        >>> adaptive_avg_pool2d_backward(np.ones((1, 1, 1, 1), np.float32), x, 1)[0, 0]
        array([[0.25, 0.25],
               [0.25, 0.25]], dtype=float32)
    """
    op = "adaptive_avg_pool2d_backward"
    x4, unbatched, (oh, ow), tables = _adaptive_setup(op, x, output_size)
    n, c = x4.shape[:2]
    g3 = _grad_out(grad_out, x4, (n, c, oh, ow), unbatched, op)
    return _unbatch(_scatter_avg(g3, tables, x4), unbatched)


def adaptive_max_pool2d(
    x: np.ndarray, output_size, return_indices: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """2-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool2d``.

    Windows as in ``adaptive_avg_pool2d``; the maximum follows ``max_pool2d``'s rule (NaN
    propagates, an all -inf window gives -inf and the index of its first element).

    Args:
        x: (n, c, h, w) or (c, h, w), float32 or float64.
        output_size: int or (oh, ow); an entry of None keeps that input size.
        return_indices: also return int64 flat indices ``ih*w + iw`` of each maximum.

    Shape:
        (n, c, h, w) -> (n, c, oh, ow); indices the same shape.

    Example:
        >>> import numpy as np
        >>> adaptive_max_pool2d(np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2), 1)
        array([[[[3.]]]], dtype=float32)
    """
    op = "adaptive_max_pool2d"
    x4, unbatched, (oh, ow), tables = _adaptive_setup(op, x, output_size)
    out, idx = _run_max(x4, tables[:4], 1, 1, _NO_INTERIOR, return_indices)
    if return_indices:
        return _unbatch(out, unbatched), _unbatch(idx, unbatched)
    return _unbatch(out, unbatched)


def adaptive_max_pool2d_backward(
    grad_out: np.ndarray, x: np.ndarray, output_size, *, indices: np.ndarray | None = None
) -> np.ndarray:
    """Gradient of ``adaptive_max_pool2d`` with respect to its input.

    Each output's gradient goes to its window's argmax, recomputed from ``x`` unless
    ``indices`` from the forward pass is given.

    Args:
        grad_out: gradient of the output, the output's shape and the input's dtype.
        x: the forward input.
        output_size: as for ``adaptive_max_pool2d``.
        indices: optional int64 argmax from the forward pass (skips recomputing it).

    Shape:
        grad_out (n, c, oh, ow) -> grad_input (n, c, h, w).

    Example:
        >>> import numpy as np
        >>> x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
        >>> adaptive_max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32), x, 1)[0, 0]
        array([[0., 0.],
               [0., 1.]], dtype=float32)
    """
    op = "adaptive_max_pool2d_backward"
    x4, unbatched, (oh, ow), tables = _adaptive_setup(op, x, output_size)
    n, c = x4.shape[:2]
    g3 = _grad_out(grad_out, x4, (n, c, oh, ow), unbatched, op)
    if indices is None:
        _, idx = _run_max(x4, tables[:4], 1, 1, _NO_INTERIOR, True)
        idx3 = idx.reshape(g3.shape)  # (n*c, oh, ow)
    else:
        idx3 = _indices(indices, (n, c, oh, ow), unbatched, op)
    return _unbatch(_scatter_max(g3, idx3, x4), unbatched)
