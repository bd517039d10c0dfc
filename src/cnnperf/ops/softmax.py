"""Softmax and log-softmax along an axis, with PyTorch's semantics, each with its backward.

Both subtract the maximum along the axis first (the log-sum-exp shift), so large logits never
overflow; a row holding +inf or only -inf gives NaN, as in PyTorch.
"""

from __future__ import annotations

import operator

import numpy as np

from ._validate import grad_and_input as _grad_and_input
from ._validate import input_array as _input

__all__ = ["softmax", "softmax_backward", "log_softmax", "log_softmax_backward"]


def _norm_axis(axis, x: np.ndarray, op: str) -> int:
    try:
        axis = operator.index(axis)
    except TypeError:
        raise ValueError(f"{op}: axis must be an integer, got {axis!r}") from None
    ndim = max(x.ndim, 1)  # like torch, a 0-d array has one valid axis (0 or -1)
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{op}: axis {axis} is out of range for x of shape {tuple(x.shape)} "
            f"(expected -{ndim} <= axis < {ndim})"
        )
    return axis % ndim


def _shifted(x: np.ndarray, axis: int) -> np.ndarray:
    """x minus its max along ``axis`` (the log-sum-exp shift); x has at least one dimension."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as in torch
        return x - np.max(x, axis=axis, keepdims=True)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(_shifted(x, axis))
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    z = _shifted(x, axis)
    lse = np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
    z -= lse
    return z


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, ``exp(x) / sum(exp(x))``, computed as ``exp(x - max)``.

    Args:
        x: float32 or float64 array.
        axis: the axis that sums to 1.

    Shape:
        Any; the output has the shape and dtype of ``x``.

    Example:
        >>> softmax(np.array([0.0, 0.0])).tolist()
        [0.5, 0.5]
    """
    op = "softmax"
    x = _input(x, op)
    axis = _norm_axis(axis, x, op)
    if x.size == 0:
        return x.copy()
    if x.ndim == 0:
        return _softmax(x.reshape(1), 0).reshape(())
    return _softmax(x, axis)


def softmax_backward(grad_out: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient of :func:`softmax`: ``y * (grad_out - sum(grad_out * y, axis))``.

    Example:
        >>> softmax_backward(np.ones(2), np.zeros(2)).tolist()
        [0.0, 0.0]
    """
    op = "softmax_backward"
    g, x = _grad_and_input(grad_out, x, op)
    axis = _norm_axis(axis, x, op)
    if x.size == 0:
        return np.zeros_like(x)
    shape = x.shape
    if x.ndim == 0:
        g, x = g.reshape(1), x.reshape(1)
    y = _softmax(x, axis)
    gx = g - np.sum(g * y, axis=axis, keepdims=True)
    gx *= y
    return gx.reshape(shape)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Log of :func:`softmax` along ``axis``, ``x - max - log(sum(exp(x - max)))``.

    Args:
        x: float32 or float64 array.
        axis: the axis normalised over.

    Shape:
        Any; the output has the shape and dtype of ``x``.

    Example:
        >>> np.exp(log_softmax(np.array([1.0, 1.0]))).tolist()
        [0.5, 0.5]
    """
    op = "log_softmax"
    x = _input(x, op)
    axis = _norm_axis(axis, x, op)
    if x.size == 0:
        return x.copy()
    if x.ndim == 0:
        return _log_softmax(x.reshape(1), 0).reshape(())
    return _log_softmax(x, axis)


def log_softmax_backward(grad_out: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient of :func:`log_softmax`: ``grad_out - softmax(x) * sum(grad_out, axis)``.

    Example:
        >>> log_softmax_backward(np.array([1.0, 0.0]), np.zeros(2)).tolist()
        [0.5, -0.5]
    """
    op = "log_softmax_backward"
    g, x = _grad_and_input(grad_out, x, op)
    axis = _norm_axis(axis, x, op)
    if x.size == 0:
        return np.zeros_like(x)
    shape = x.shape
    if x.ndim == 0:
        g, x = g.reshape(1), x.reshape(1)
    y = _softmax(x, axis)
    y *= -np.sum(g, axis=axis, keepdims=True)
    y += g
    return y.reshape(shape)
