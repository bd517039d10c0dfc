"""Reference max and average pooling, forward and backward (float64 loops, PyTorch semantics).

Max pooling follows PyTorch's CPU kernel exactly: taps are visited in row-major order inside the
window, padded taps are skipped, and the running maximum is replaced when ``val > max`` or
``val`` is NaN. The initial maximum is -inf and the initial index is the window's first in-bounds
tap, so ties keep the first index, NaN propagates keeping the LAST NaN's index, and an all -inf
window returns -inf with a valid index. Indices are flat ``ih * w + iw`` into the (h, w) plane.

Corner case: with dilation a window can have no in-bounds tap at all (e.g. w=1, kw=2, pw=1,
dw=2: taps at -1 and 1). Like PyTorch it yields -inf and the index ih0 * w + iw0 where ih0 / iw0
are the window start advanced by the dilation until non-negative. That index is not a tap of
the window: it may be past the plane (h*w or more) or alias another element (iw0 >= w wraps into
the next row). Its output is the constant -inf, so the backward passes it no gradient (PyTorch's
backward credits the aliased element, or writes past the plane).
"""

from __future__ import annotations

import math

import numpy as np

from ._args import as_f64, batched4d, count_pool_positions, pair

__all__ = [
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
]


def _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode):
    """Parse pooling arguments; return (x4, unbatched, k, s, p, d, oh, ow)."""
    x4, unbatched = batched4d(x)
    k = pair(kernel_size, "kernel_size")
    s = k if stride is None else pair(stride, "stride")
    p = pair(padding, "padding")
    d = pair(dilation, "dilation")
    if min(k) < 1 or min(s) < 1 or min(d) < 1:
        raise ValueError(f"kernel_size {k}, stride {s}, dilation {d} must all be >= 1")
    if min(p) < 0 or p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding {p} must be >= 0 and at most half of kernel_size {k}")
    _, _, h, w = x4.shape
    oh = count_pool_positions(h, p[0], k[0], s[0], d[0], ceil_mode)
    ow = count_pool_positions(w, p[1], k[1], s[1], d[1], ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(f"pooling output size ({oh}, {ow}) is too small for input {x.shape}")
    return x4, unbatched, k, s, p, d, oh, ow


def window_max(plane, rows, cols, init_idx: int) -> tuple[float, int]:
    """(max, flat index) over the taps rows x cols of a (h, w) plane, PyTorch's NaN/tie rule.

    ``init_idx`` is returned when no tap beats -inf (an all -inf window).
    """
    w = plane.shape[1]
    best = -math.inf
    best_idx = init_idx
    for ih in rows:
        for iw in cols:
            val = plane[ih, iw]
            if val > best or math.isnan(val):
                best = val
                best_idx = ih * w + iw
    return best, best_idx


def _taps(o, s, p, k, d, size):
    """In-bounds input indices of the window for output index o (padded taps skipped)."""
    start = o * s - p
    return [start + t * d for t in range(k) if 0 <= start + t * d < size]


def _first_in_bounds(o, s, p, d):
    """PyTorch's initial argmax coordinate: window start advanced by d until non-negative."""
    i = o * s - p
    while i < 0:
        i += d
    return i


def _max_pool(x4, k, s, p, d, oh, ow):
    n, c, h, w = x4.shape
    out = np.empty((n, c, oh, ow), dtype=np.float64)
    idx = np.empty((n, c, oh, ow), dtype=np.int64)
    for b in range(n):
        for ch in range(c):
            plane = x4[b, ch]
            for y in range(oh):
                rows = _taps(y, s[0], p[0], k[0], d[0], h)
                for z in range(ow):
                    cols = _taps(z, s[1], p[1], k[1], d[1], w)
                    # PyTorch starts from the first in-bounds tap: an all -inf window keeps it.
                    init = _first_in_bounds(y, s[0], p[0], d[0]) * w + _first_in_bounds(
                        z, s[1], p[1], d[1]
                    )
                    best, best_idx = window_max(plane, rows, cols, init)
                    out[b, ch, y, z] = best
                    idx[b, ch, y, z] = best_idx
    return out, idx


def max_pool2d(
    x,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    return_indices=False,
):
    """Max pooling; oh = floor_or_ceil((h + 2p - d*(k-1) - 1) / s) + 1 (ceil: start < h + p)."""
    x = as_f64(x)
    x4, unbatched, k, s, p, d, oh, ow = _pool_setup(
        x, kernel_size, stride, padding, dilation, ceil_mode
    )
    out, idx = _max_pool(x4, k, s, p, d, oh, ow)
    if unbatched:
        out, idx = out[0], idx[0]
    return (out, idx) if return_indices else out


def max_pool2d_backward(
    grad_out, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
) -> np.ndarray:
    """Gradient of max_pool2d w.r.t. x: each output's gradient is added at its argmax."""
    x = as_f64(x)
    grad_out = as_f64(grad_out)
    x4, unbatched, k, s, p, d, oh, ow = _pool_setup(
        x, kernel_size, stride, padding, dilation, ceil_mode
    )
    n, c, h, w = x4.shape
    g4 = grad_out[None] if unbatched else grad_out
    if g4.shape != (n, c, oh, ow):
        raise ValueError(f"grad_out must have shape {(n, c, oh, ow)}, got {g4.shape}")
    _, idx = _max_pool(x4, k, s, p, d, oh, ow)
    grad_x = np.zeros_like(x4)
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                rows = _taps(y, s[0], p[0], k[0], d[0], h)
                for z in range(ow):
                    cols = _taps(z, s[1], p[1], k[1], d[1], w)
                    if len(rows) == 0 or len(cols) == 0:
                        continue  # a padding-only window outputs the constant -inf
                    flat = idx[b, ch, y, z]
                    grad_x[b, ch, flat // w, flat % w] += g4[b, ch, y, z]
    return grad_x[0] if unbatched else grad_x


def _avg_window(o, s, p, k, size):
    """(start, end, padded_len) of an avg-pool window along one axis, PyTorch's rule.

    start = o*s - p; end = min(start + k, size + p); the padded length end - start is taken
    before clipping to [0, size).
    """
    start = o * s - p
    end = min(start + k, size + p)
    padded_len = end - start
    return max(start, 0), min(end, size), padded_len


def _avg_divisors(x4, k, s, p, oh, ow, count_include_pad, divisor_override):
    """Per-output (rows, cols, divisor) for avg pooling."""
    _, _, h, w = x4.shape
    windows = {}
    for y in range(oh):
        h0, h1, hlen = _avg_window(y, s[0], p[0], k[0], h)
        for z in range(ow):
            w0, w1, wlen = _avg_window(z, s[1], p[1], k[1], w)
            if divisor_override is not None:
                div = divisor_override
            elif count_include_pad:
                div = hlen * wlen
            else:
                div = (h1 - h0) * (w1 - w0)
            windows[y, z] = (range(h0, h1), range(w0, w1), div)
    return windows


def _avg_setup(x, kernel_size, stride, padding, ceil_mode, divisor_override):
    x4, unbatched, k, s, p, _, oh, ow = _pool_setup(x, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and (
        isinstance(divisor_override, bool) or int(divisor_override) != divisor_override
    ):
        raise ValueError(f"divisor_override must be an int, got {divisor_override!r}")
    if divisor_override is not None and divisor_override == 0:
        raise ValueError("divisor_override must be non-zero")
    return x4, unbatched, k, s, p, oh, ow


def avg_pool2d(
    x,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
) -> np.ndarray:
    """Average pooling; oh = floor_or_ceil((h + 2p - k) / s) + 1; divisor as in PyTorch."""
    x = as_f64(x)
    x4, unbatched, k, s, p, oh, ow = _avg_setup(
        x, kernel_size, stride, padding, ceil_mode, divisor_override
    )
    n, c, h, w = x4.shape
    windows = _avg_divisors(x4, k, s, p, oh, ow, count_include_pad, divisor_override)
    out = np.empty((n, c, oh, ow), dtype=np.float64)
    for b in range(n):
        for ch in range(c):
            for (y, z), (rows, cols, div) in windows.items():
                acc = 0.0
                for ih in rows:
                    for iw in cols:
                        acc += x4[b, ch, ih, iw]
                out[b, ch, y, z] = acc / div
    return out[0] if unbatched else out


def avg_pool2d_backward(
    grad_out,
    x,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
) -> np.ndarray:
    """Gradient of avg_pool2d w.r.t. x: grad / divisor spread over each clipped window."""
    x = as_f64(x)
    grad_out = as_f64(grad_out)
    x4, unbatched, k, s, p, oh, ow = _avg_setup(
        x, kernel_size, stride, padding, ceil_mode, divisor_override
    )
    n, c, h, w = x4.shape
    g4 = grad_out[None] if unbatched else grad_out
    if g4.shape != (n, c, oh, ow):
        raise ValueError(f"grad_out must have shape {(n, c, oh, ow)}, got {g4.shape}")
    windows = _avg_divisors(x4, k, s, p, oh, ow, count_include_pad, divisor_override)
    grad_x = np.zeros_like(x4)
    for b in range(n):
        for ch in range(c):
            for (y, z), (rows, cols, div) in windows.items():
                share = g4[b, ch, y, z] / div
                for ih in rows:
                    for iw in cols:
                        grad_x[b, ch, ih, iw] += share
    return grad_x[0] if unbatched else grad_x
