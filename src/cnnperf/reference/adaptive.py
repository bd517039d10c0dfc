"""Reference adaptive average / max pooling, forward and backward (float64 loops).

Output index i along an axis of input size ``size`` and output size ``out`` pools the window
[floor(i*size/out), ceil((i+1)*size/out)); windows overlap when out does not divide size.
Max pooling uses the same NaN / tie / index rule as ``max_pool2d`` (see ``pool.py``).
"""

from __future__ import annotations

import numpy as np

from ._args import as_f64, batched4d
from .pool import window_max

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
]


def _output_size(output_size, h: int, w: int) -> tuple[int, int]:
    """(oh, ow) from an int or a pair whose entries may be None (= the input size)."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"output_size must be an int or a pair, got {output_size!r}")
        oh, ow = output_size
    else:
        oh = ow = output_size
    oh = h if oh is None else int(oh)
    ow = w if ow is None else int(ow)
    if oh < 0 or ow < 0:
        raise ValueError(f"output_size must be >= 0, got {output_size!r}")
    return oh, ow


def _bounds(i: int, size: int, out: int) -> tuple[int, int]:
    """[start, end) of adaptive window i: start = floor(i*size/out), end = ceil((i+1)*size/out)."""
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    return start, end


def _setup(x, output_size):
    x4, unbatched = batched4d(x)
    n, c, h, w = x4.shape
    if h < 1 or w < 1:
        raise ValueError(f"adaptive pooling needs a non-empty (h, w), got input {x.shape}")
    oh, ow = _output_size(output_size, h, w)
    return x4, unbatched, (n, c, h, w, oh, ow)


def _check_grad(grad_out, unbatched, shape):
    g4 = grad_out[None] if unbatched else grad_out
    if g4.shape != shape:
        raise ValueError(f"grad_out must have shape {shape}, got {g4.shape}")
    return g4


def adaptive_avg_pool2d(x, output_size) -> np.ndarray:
    """Adaptive average pooling to (oh, ow); each output is the mean of its window."""
    x = as_f64(x)
    x4, unbatched, (n, c, h, w, oh, ow) = _setup(x, output_size)
    out = np.empty((n, c, oh, ow), dtype=np.float64)
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                h0, h1 = _bounds(y, h, oh)
                for z in range(ow):
                    w0, w1 = _bounds(z, w, ow)
                    acc = 0.0
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            acc += x4[b, ch, ih, iw]
                    out[b, ch, y, z] = acc / ((h1 - h0) * (w1 - w0))
    return out[0] if unbatched else out


def adaptive_avg_pool2d_backward(grad_out, x, output_size) -> np.ndarray:
    """Gradient of adaptive_avg_pool2d w.r.t. x: grad / window area spread over each window."""
    x = as_f64(x)
    grad_out = as_f64(grad_out)
    x4, unbatched, (n, c, h, w, oh, ow) = _setup(x, output_size)
    g4 = _check_grad(grad_out, unbatched, (n, c, oh, ow))
    grad_x = np.zeros_like(x4)
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                h0, h1 = _bounds(y, h, oh)
                for z in range(ow):
                    w0, w1 = _bounds(z, w, ow)
                    share = g4[b, ch, y, z] / ((h1 - h0) * (w1 - w0))
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            grad_x[b, ch, ih, iw] += share
    return grad_x[0] if unbatched else grad_x


def _adaptive_max(x4, oh, ow):
    n, c, h, w = x4.shape
    out = np.empty((n, c, oh, ow), dtype=np.float64)
    idx = np.empty((n, c, oh, ow), dtype=np.int64)
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                h0, h1 = _bounds(y, h, oh)
                for z in range(ow):
                    w0, w1 = _bounds(z, w, ow)
                    best, best_idx = window_max(
                        x4[b, ch], range(h0, h1), range(w0, w1), h0 * w + w0
                    )
                    out[b, ch, y, z] = best
                    idx[b, ch, y, z] = best_idx
    return out, idx


def adaptive_max_pool2d(x, output_size, return_indices=False):
    """Adaptive max pooling to (oh, ow); indices are flat ih * w + iw (int64)."""
    x = as_f64(x)
    x4, unbatched, (n, c, h, w, oh, ow) = _setup(x, output_size)
    out, idx = _adaptive_max(x4, oh, ow)
    if unbatched:
        out, idx = out[0], idx[0]
    return (out, idx) if return_indices else out


def adaptive_max_pool2d_backward(grad_out, x, output_size) -> np.ndarray:
    """Gradient of adaptive_max_pool2d w.r.t. x: each output's gradient added at its argmax."""
    x = as_f64(x)
    grad_out = as_f64(grad_out)
    x4, unbatched, (n, c, h, w, oh, ow) = _setup(x, output_size)
    g4 = _check_grad(grad_out, unbatched, (n, c, oh, ow))
    _, idx = _adaptive_max(x4, oh, ow)
    grad_x = np.zeros_like(x4)
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                for z in range(ow):
                    flat = idx[b, ch, y, z]
                    grad_x[b, ch, flat // w, flat % w] += g4[b, ch, y, z]
    return grad_x[0] if unbatched else grad_x
