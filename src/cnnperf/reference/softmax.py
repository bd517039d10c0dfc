"""Reference softmax / log_softmax along one axis, forward and backward (float64 loops).

Each lane along ``axis`` is shifted by its maximum before exponentiating (log-sum-exp), so large
inputs do not overflow. A lane containing NaN gives NaN throughout.
"""

from __future__ import annotations

import math

import numpy as np

from ._args import as_f64

__all__ = ["softmax", "softmax_backward", "log_softmax", "log_softmax_backward"]


def _lanes(x: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    """x with ``axis`` moved last and the rest flattened: (lanes, length), plus the axis index."""
    if x.ndim == 0:
        raise ValueError("softmax needs at least a 1-D input")
    axis = int(axis)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for shape {x.shape}")
    axis %= x.ndim
    n_lanes = math.prod(s for i, s in enumerate(x.shape) if i != axis)
    return np.moveaxis(x, axis, -1).reshape(n_lanes, x.shape[axis]), axis  # (lanes, length)


def _unlanes(lanes: np.ndarray, shape: tuple, axis: int) -> np.ndarray:
    moved = [s for i, s in enumerate(shape) if i != axis] + [shape[axis]]
    return np.moveaxis(lanes.reshape(moved), -1, axis)


def _max_and_sum(lane: list[float]) -> tuple[float, float]:
    """(max, sum(exp(v - max))) of one non-empty lane; NaN in the lane gives (NaN, NaN)."""
    m = -math.inf
    for v in lane:
        if math.isnan(v):
            return math.nan, math.nan
        if v > m:
            m = v
    total = 0.0
    for v in lane:
        total += math.exp(v - m)  # -inf - -inf is NaN: an all -inf lane is NaN, like torch
    return m, total


def softmax(x, axis=-1) -> np.ndarray:
    """exp(x - max) / sum(exp(x - max)) along ``axis``."""
    x = as_f64(x)
    lanes, ax = _lanes(x, axis)
    out = np.empty_like(lanes)
    for r in range(lanes.shape[0] if lanes.shape[1] else 0):
        lane = lanes[r].tolist()
        m, total = _max_and_sum(lane)
        for i, v in enumerate(lane):
            out[r, i] = math.exp(v - m) / total
    return np.ascontiguousarray(_unlanes(out, x.shape, ax))


def softmax_backward(grad_out, x, axis=-1) -> np.ndarray:
    """grad_x = y * (grad - sum(grad * y)) along ``axis``, y = softmax(x)."""
    x = as_f64(x)
    grad_out = as_f64(grad_out)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out shape {grad_out.shape} != x shape {x.shape}")
    y, ax = _lanes(softmax(x, axis), axis)
    g, _ = _lanes(grad_out, axis)
    out = np.empty_like(y)
    for r in range(y.shape[0]):
        dot = 0.0
        for i in range(y.shape[1]):
            dot += g[r, i] * y[r, i]
        for i in range(y.shape[1]):
            out[r, i] = y[r, i] * (g[r, i] - dot)
    return np.ascontiguousarray(_unlanes(out, x.shape, ax))


def log_softmax(x, axis=-1) -> np.ndarray:
    """x - max - log(sum(exp(x - max))) along ``axis``."""
    x = as_f64(x)
    lanes, ax = _lanes(x, axis)
    out = np.empty_like(lanes)
    for r in range(lanes.shape[0] if lanes.shape[1] else 0):
        lane = lanes[r].tolist()
        m, total = _max_and_sum(lane)
        log_total = math.log(total) if total == total else math.nan
        for i, v in enumerate(lane):
            out[r, i] = v - m - log_total
    return np.ascontiguousarray(_unlanes(out, x.shape, ax))


def log_softmax_backward(grad_out, x, axis=-1) -> np.ndarray:
    """grad_x = grad - exp(y) * sum(grad) along ``axis``, y = log_softmax(x)."""
    x = as_f64(x)
    grad_out = as_f64(grad_out)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out shape {grad_out.shape} != x shape {x.shape}")
    y, ax = _lanes(log_softmax(x, axis), axis)
    g, _ = _lanes(grad_out, axis)
    out = np.empty_like(y)
    for r in range(y.shape[0]):
        total = 0.0
        for i in range(y.shape[1]):
            total += g[r, i]
        for i in range(y.shape[1]):
            out[r, i] = g[r, i] - math.exp(y[r, i]) * total
    return np.ascontiguousarray(_unlanes(out, x.shape, ax))
