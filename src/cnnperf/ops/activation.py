"""Activation functions, with PyTorch's semantics, each with its backward.

Every function takes a float32 or float64 array of any shape, returns a new array of the same
shape and dtype, and never modifies its input. NaN in gives NaN out, forward and backward: a
backward returns NaN wherever x is NaN (PyTorch is not consistent there: its vectorised and
scalar loops disagree for relu6, hardtanh, elu, ...). Gradients at the kinks (relu at 0, relu6
at 0 and 6, hardtanh at its bounds, hardswish at +-3, leaky_relu and elu at 0) are the ones
PyTorch's autograd returns, and a derivative that is a hard 0 is selected, not multiplied, so
it stays 0 whatever grad_out holds. Formulas are chosen so that large or infinite inputs raise
no NumPy warnings; where PyTorch itself returns NaN (``gelu(-inf)``, ``silu(-inf)``) so do we.
"""

from __future__ import annotations

import math

import numpy as np

from ._validate import as_array as _array
from ._validate import as_float_array, check_same_dtype
from ._validate import grad_and_input as _grad_and_input
from ._validate import input_array as _input

__all__ = [
    "clip",
    "clip_backward",
    "elu",
    "elu_backward",
    "gelu",
    "gelu_backward",
    "hardsigmoid",
    "hardsigmoid_backward",
    "hardswish",
    "hardswish_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "prelu",
    "prelu_backward",
    "relu",
    "relu6",
    "relu6_backward",
    "relu_backward",
    "selu",
    "selu_backward",
    "sigmoid",
    "sigmoid_backward",
    "silu",
    "silu_backward",
    "tanh",
    "tanh_backward",
]

# The constants of Klambauer et al., "Self-Normalizing Neural Networks", 2017 (as in PyTorch).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715


def _nan_where_nan(x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Set grad to NaN where x is NaN (for derivatives chosen by comparisons, which NaN fails)."""
    grad = np.asarray(grad)
    nan = np.isnan(x)
    if nan.any():
        grad[nan] = np.nan
    return grad


# ----------------------------------------------------------------------------------------------
# ReLU family
# ----------------------------------------------------------------------------------------------


def relu(x: np.ndarray) -> np.ndarray:
    """Rectified linear unit, ``max(x, 0)``.

    Args:
        x: float32 or float64 array.

    Shape:
        Any; the output has the shape and dtype of ``x``.

    Example:
        >>> relu(np.array([-1.0, 0.0, 2.0])).tolist()
        [0.0, 0.0, 2.0]
    """
    x = _input(x, "relu")
    from ..kernels.elementwise import relu_fwd

    x = np.asarray(x, order="C")  # (not ascontiguousarray: it makes 0-d arrays 1-d)
    out = np.empty(x.shape, dtype=x.dtype)
    relu_fwd(x.reshape(-1), out.reshape(-1))
    return out


def relu_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`relu`: ``grad_out`` where ``x > 0``, else 0 (NaN where x is NaN).

    Example:
        >>> relu_backward(np.ones(3), np.array([-1.0, 0.0, 2.0])).tolist()
        [0.0, 0.0, 1.0]
    """
    g, x = _grad_and_input(grad_out, x, "relu_backward")
    from ..kernels.elementwise import relu_grad

    g = np.asarray(g, order="C")  # (not ascontiguousarray: it makes 0-d arrays 1-d)
    x = np.asarray(x, order="C")
    out = np.empty(x.shape, dtype=x.dtype)
    relu_grad(g.reshape(-1), x.reshape(-1), out.reshape(-1))
    return out


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """Leaky ReLU: ``x`` for ``x > 0``, else ``negative_slope * x``.

    Args:
        x: float32 or float64 array.
        negative_slope: slope for non-positive inputs.

    Shape:
        Any; the output has the shape and dtype of ``x``.

    Example:
        >>> leaky_relu(np.array([-2.0, 3.0]), 0.1).tolist()
        [-0.2, 3.0]
    """
    x = _input(x, "leaky_relu")
    return _array(np.where(x > 0, x, x * float(negative_slope)))


def leaky_relu_backward(
    grad_out: np.ndarray, x: np.ndarray, negative_slope: float = 0.01
) -> np.ndarray:
    """Gradient of :func:`leaky_relu`; at 0 the slope is ``negative_slope``.

    Example:
        >>> leaky_relu_backward(np.ones(2), np.array([0.0, 3.0]), 0.1).tolist()
        [0.1, 1.0]
    """
    g, x = _grad_and_input(grad_out, x, "leaky_relu_backward")
    return _nan_where_nan(x, np.where(x > 0, g, g * float(negative_slope)))


def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Exponential linear unit: ``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``.

    Args:
        x: float32 or float64 array.
        alpha: saturation value for large negative inputs is ``-alpha``.

    Shape:
        Any; the output has the shape and dtype of ``x``.

    Example:
        >>> elu(np.array([0.0, 1.0])).tolist()
        [0.0, 1.0]
    """
    x = _input(x, "elu")
    # expm1 of min(x, 0): never overflows for large positive x, accurate near 0.
    return _array(np.where(x > 0, x, float(alpha) * np.expm1(np.minimum(x, 0))))


def elu_backward(grad_out: np.ndarray, x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Gradient of :func:`elu`: 1 for ``x > 0``, else ``alpha * exp(x)`` (so ``alpha`` at 0).

    Example:
        >>> elu_backward(np.ones(2), np.array([0.0, 1.0]), alpha=2.0).tolist()
        [2.0, 1.0]
    """
    g, x = _grad_and_input(grad_out, x, "elu_backward")
    return _array(np.where(x > 0, g, g * (float(alpha) * np.exp(np.minimum(x, 0)))))


def selu(x: np.ndarray) -> np.ndarray:
    """Scaled ELU, ``scale * elu(x, alpha)`` with the self-normalising constants.

    Args:
        x: float32 or float64 array.

    Shape:
        Any; the output has the shape and dtype of ``x``.

    Example:
        >>> round(float(selu(np.array([1.0]))[0]), 4)
        1.0507
    """
    x = _input(x, "selu")
    neg = SELU_SCALE * SELU_ALPHA * np.expm1(np.minimum(x, 0))
    return _array(np.where(x > 0, SELU_SCALE * x, neg))


def selu_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`selu`: ``scale`` for ``x > 0``, else ``scale * alpha * exp(x)``.

    Example:
        >>> round(float(selu_backward(np.ones(1), np.zeros(1))[0]), 4)
        1.7581
    """
    g, x = _grad_and_input(grad_out, x, "selu_backward")
    neg = g * (SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(x, 0)))
    return _array(np.where(x > 0, g * SELU_SCALE, neg))


def _prelu_weight(x: np.ndarray, weight, op: str) -> tuple[np.ndarray, np.ndarray]:
    """Check the PReLU weight against x; return (weight, weight broadcastable against x)."""
    w = as_float_array(weight, "weight", op)
    check_same_dtype(op, x=x, weight=w)
    if x.ndim == 0:
        raise ValueError(f"{op}: x must have at least one dimension, got a 0-d array")
    channels = x.shape[1] if x.ndim >= 2 else 1
    if w.ndim != 1 or w.shape[0] not in (1, channels):
        raise ValueError(
            f"{op}: weight of shape {tuple(w.shape)} does not match input channels {channels} "
            f"(input shape {tuple(x.shape)}); expected shape (1,) or ({channels},)"
        )
    if w.shape[0] == 1:
        return w, w  # (1,) broadcasts against any shape
    return w, w.reshape((channels,) + (1,) * (x.ndim - 2))  # (c, 1, ..., 1)


def prelu(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Parametric ReLU: ``x`` for ``x > 0``, else ``weight[c] * x`` with c the channel (dim 1).

    Args:
        x: float32 or float64 array with at least one dimension; channels on dim 1.
        weight: learned slopes, shape (1,) (shared) or (C,) (one per channel).

    Shape:
        x (N, C, *) or (N,); the output has the shape and dtype of ``x``.

    Example:
        >>> prelu(np.array([[-2.0, 2.0]]), np.array([0.5])).tolist()
        [[-1.0, 2.0]]
    """
    x = _input(x, "prelu")
    _, wb = _prelu_weight(x, weight, "prelu")
    return _array(np.where(x > 0, x, wb * x))


def prelu_backward(
    grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`prelu`: ``(grad_x, grad_weight)``; ``grad_weight`` has weight's shape.

    Example:
        >>> gx, gw = prelu_backward(np.ones((1, 2)), np.array([[-2.0, 2.0]]), np.array([0.5]))
        >>> gx.tolist(), gw.tolist()
        ([[0.5, 1.0]], [-2.0])
    """
    op = "prelu_backward"
    g, x = _grad_and_input(grad_out, x, op)
    w, wb = _prelu_weight(x, weight, op)
    grad_x = _nan_where_nan(x, np.where(x > 0, g, wb * g))
    contrib = np.where(x > 0, 0, x * g)  # NaN in x poisons its channel's weight gradient
    if w.shape[0] == 1:
        grad_w = np.sum(contrib, dtype=x.dtype).reshape(1)
    else:
        axes = (0,) + tuple(range(2, x.ndim))
        grad_w = np.sum(contrib, axis=axes, dtype=x.dtype)
    return _array(grad_x), np.asarray(grad_w, dtype=x.dtype)


def relu6(x: np.ndarray) -> np.ndarray:
    """ReLU capped at 6, ``min(max(x, 0), 6)``.

    Args:
        x: float32 or float64 array.

    Shape:
        Any; the output has the shape and dtype of ``x``.

    Example:
        >>> relu6(np.array([-1.0, 3.0, 9.0])).tolist()
        [0.0, 3.0, 6.0]
    """
    x = _input(x, "relu6")
    return _array(np.clip(x, 0, 6))


def relu6_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`relu6`: ``grad_out`` strictly inside (0, 6), else 0.

    Example:
        >>> relu6_backward(np.ones(3), np.array([0.0, 3.0, 6.0])).tolist()
        [0.0, 1.0, 0.0]
    """
    g, x = _grad_and_input(grad_out, x, "relu6_backward")
    return _nan_where_nan(x, np.where((x > 0) & (x < 6), g, 0))


def clip(x: np.ndarray, min_val: float = -1.0, max_val: float = 1.0) -> np.ndarray:
    """Hard tanh: ``x`` clipped to ``[min_val, max_val]``; NaN stays NaN.

    Args:
        x: float32 or float64 array.
        min_val: lower bound.
        max_val: upper bound, ``>= min_val``.

    Shape:
        Any; the output has the shape and dtype of ``x``.

    Example:
        >>> clip(np.array([-3.0, 0.5, 3.0])).tolist()
        [-1.0, 0.5, 1.0]
    """
    x = _input(x, "clip")
    lo, hi = _clip_bounds(min_val, max_val, "clip")
    return _array(np.clip(x, lo, hi))


def clip_backward(
    grad_out: np.ndarray, x: np.ndarray, min_val: float = -1.0, max_val: float = 1.0
) -> np.ndarray:
    """Gradient of :func:`clip`: ``grad_out`` strictly inside the bounds, else 0.

    Example:
        >>> clip_backward(np.ones(3), np.array([-1.0, 0.5, 1.0])).tolist()
        [0.0, 1.0, 0.0]
    """
    g, x = _grad_and_input(grad_out, x, "clip_backward")
    lo, hi = _clip_bounds(min_val, max_val, "clip_backward")
    return _nan_where_nan(x, np.where((x > lo) & (x < hi), g, 0))


def _clip_bounds(min_val, max_val, op: str) -> tuple[float, float]:
    lo, hi = float(min_val), float(max_val)
    if lo > hi:
        raise ValueError(f"{op}: min_val ({lo}) cannot be greater than max_val ({hi})")
    return lo, hi


def hardsigmoid(x: np.ndarray) -> np.ndarray:
    """Piecewise-linear sigmoid, ``min(max(x + 3, 0), 6) / 6``.

    Args:
        x: float32 or float64 array.

    Shape:
        Any; the output has the shape and dtype of ``x``.

    Example:
        >>> hardsigmoid(np.array([-4.0, 0.0, 4.0])).tolist()
        [0.0, 0.5, 1.0]
    """
    x = _input(x, "hardsigmoid")
    return _array(np.clip(x + 3, 0, 6) / 6)


def hardsigmoid_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`hardsigmoid`: ``grad_out / 6`` strictly inside (-3, 3), else 0.

    Example:
        >>> hardsigmoid_backward(np.full(2, 6.0), np.array([-3.0, 0.0])).tolist()
        [0.0, 1.0]
    """
    g, x = _grad_and_input(grad_out, x, "hardsigmoid_backward")
    return _nan_where_nan(x, np.where((x > -3) & (x < 3), g / 6, 0))


def hardswish(x: np.ndarray) -> np.ndarray:
    """Hard swish (MobileNetV3), ``x * min(max(x + 3, 0), 6) / 6``.

    Args:
        x: float32 or float64 array.

    Shape:
        Any; the output has the shape and dtype of ``x``. ``hardswish(-inf)`` is NaN, as in torch.

    Example:
        >>> hardswish(np.array([-4.0, 0.0, 4.0])).tolist()
        [-0.0, 0.0, 4.0]
    """
    x = _input(x, "hardswish")
    with np.errstate(invalid="ignore"):  # -inf * 0
        return _array(x * np.clip(x + 3, 0, 6) / 6)


def hardswish_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`hardswish`: 0 for ``x <= -3``, 1 for ``x >= 3``, else ``x/3 + 1/2``.

    Example:
        >>> hardswish_backward(np.ones(3), np.array([-3.0, 0.0, 3.0])).tolist()
        [0.0, 0.5, 1.0]
    """
    g, x = _grad_and_input(grad_out, x, "hardswish_backward")
    mid = g * (x / 3 + 0.5)
    return _array(np.where(x <= -3, 0, np.where(x >= 3, g, mid)))


# ----------------------------------------------------------------------------------------------
# Smooth activations
# ----------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp(-|x|) is in (0, 1]: no overflow for any input; both branches keep full relative
    # precision in their tails.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic sigmoid, ``1 / (1 + exp(-x))``, without overflow for large ``|x|``.

    Args:
        x: float32 or float64 array.

    Shape:
        Any; the output has the shape and dtype of ``x``.

    Example:
        >>> sigmoid(np.array([0.0, -1000.0])).tolist()
        [0.5, 0.0]
    """
    x = _input(x, "sigmoid")
    return _array(_sigmoid(x))


def sigmoid_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`sigmoid`: ``grad_out * s * (1 - s)``.

    Example:
        >>> sigmoid_backward(np.ones(1), np.zeros(1)).tolist()
        [0.25]
    """
    g, x = _grad_and_input(grad_out, x, "sigmoid_backward")
    s = _sigmoid(x)
    return _array(g * (s * (1 - s)))


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent.

    Args:
        x: float32 or float64 array.

    Shape:
        Any; the output has the shape and dtype of ``x``.

    Example:
        >>> tanh(np.array([0.0, 1000.0])).tolist()
        [0.0, 1.0]
    """
    x = _input(x, "tanh")
    return _array(np.tanh(x))


def tanh_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`tanh`: ``grad_out * (1 - tanh(x)**2)``.

    Example:
        >>> tanh_backward(np.ones(1), np.zeros(1)).tolist()
        [1.0]
    """
    g, x = _grad_and_input(grad_out, x, "tanh_backward")
    t = np.tanh(x)
    return _array(g * (1 - t * t))


def _check_approximate(approximate: str, op: str) -> None:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """Gaussian error linear unit, ``x * Phi(x)``; exact (erf) or the tanh approximation.

    Args:
        x: float32 or float64 array.
        approximate: ``"none"`` for ``0.5 x (1 + erf(x / sqrt 2))``, ``"tanh"`` for
            ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))``.

    Shape:
        Any; the output has the shape and dtype of ``x``. ``gelu(-inf)`` is NaN, as in torch.

    Example:
        >>> round(float(gelu(np.array([1.0]))[0]), 4)
        0.8413
    """
    x = _input(x, "gelu")
    _check_approximate(approximate, "gelu")
    if approximate == "none":
        from ..kernels import sync_threads
        from ..kernels.elementwise import gelu_consts, gelu_erf

        out = np.empty(x.shape, x.dtype)
        sync_threads()
        gelu_erf(np.ascontiguousarray(x).reshape(-1), gelu_consts(x.dtype), out.reshape(-1))
        return out
    with np.errstate(over="ignore", invalid="ignore"):  # x**3 overflow; -inf * 0
        inner = _SQRT_2_OVER_PI * (x + _GELU_TANH_C * (x * x * x))
        return _array(0.5 * x * (1 + np.tanh(inner)))


def gelu_backward(grad_out: np.ndarray, x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """Gradient of :func:`gelu` for either ``approximate`` mode.

    Example:
        >>> gelu_backward(np.ones(1), np.zeros(1)).tolist()
        [0.5]
    """
    op = "gelu_backward"
    g, x = _grad_and_input(grad_out, x, op)
    _check_approximate(approximate, op)
    if approximate == "none":
        from ..kernels import sync_threads
        from ..kernels.elementwise import gelu_consts, gelu_erf_grad

        out = np.empty(x.shape, x.dtype)
        sync_threads()
        flat = [np.ascontiguousarray(a).reshape(-1) for a in (g, x)]
        gelu_erf_grad(*flat, gelu_consts(x.dtype), out.reshape(-1))
        return out
    with np.errstate(over="ignore", invalid="ignore"):
        x2 = x * x
        t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_C * (x2 * x)))
        # Once |x| is large, 1 - t*t is exactly 0; clipping x inside the polynomial keeps
        # 0 * (1 + 3c x^2) from becoming 0 * inf = NaN for large finite x (torch's NaN at
        # x = +-inf itself is kept, because 0.5 * x * 0 is still inf * 0 there).
        xc = np.clip(x, -1e6, 1e6)
        d_inner = _SQRT_2_OVER_PI * (1 + 3 * _GELU_TANH_C * (xc * xc))
        d = 0.5 * (1 + t) + (0.5 * x * (1 - t * t)) * d_inner
        return _array(g * d)


def silu(x: np.ndarray) -> np.ndarray:
    """Sigmoid linear unit (swish), ``x * sigmoid(x)``.

    Args:
        x: float32 or float64 array.

    Shape:
        Any; the output has the shape and dtype of ``x``. ``silu(-inf)`` is NaN, as in torch.

    Example:
        >>> silu(np.array([0.0])).tolist()
        [0.0]
    """
    x = _input(x, "silu")
    with np.errstate(invalid="ignore"):  # -inf * 0
        return _array(x * _sigmoid(x))


def silu_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`silu`: ``grad_out * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``.

    Example:
        >>> silu_backward(np.ones(1), np.zeros(1)).tolist()
        [0.5]
    """
    g, x = _grad_and_input(grad_out, x, "silu_backward")
    s = _sigmoid(x)
    with np.errstate(invalid="ignore"):
        return _array(g * (s * (1 + x * (1 - s))))
