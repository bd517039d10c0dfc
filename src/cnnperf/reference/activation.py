"""Reference elementwise activations and their analytic backward (float64 loops over ``x.flat``).

Each ``<name>_backward(grad_out, x, ...)`` returns grad_x from the analytic derivative. At kinks
the derivative is the one PyTorch's autograd returns (checked in tests/reference):

- relu: x > 0 -> 1, else 0 (0 at x == 0); leaky_relu / prelu: x > 0 -> 1, else the slope;
- elu / selu: x > 0 -> scale, else scale * alpha * exp(x) (the negative branch at x == 0);
- relu6 / clip (hardtanh): 1 strictly inside (min, max), 0 at and outside the bounds;
- hardsigmoid: 1/6 strictly inside (-3, 3), else 0; hardswish: x/3 + 1/2 strictly inside
  (-3, 3), 0 for x <= -3, 1 for x >= 3.

Forward passes propagate NaN. Backward passes return NaN where x is NaN (PyTorch itself is not
consistent there: its vectorised and scalar loops disagree), and exactly 0 where the derivative
is a hard 0, whatever grad_out holds (PyTorch selects rather than multiplies).
"""

from __future__ import annotations

import math

import numpy as np

from ._args import as_f64

__all__ = [
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "elu",
    "elu_backward",
    "selu",
    "selu_backward",
    "prelu",
    "prelu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "gelu",
    "gelu_backward",
    "silu",
    "silu_backward",
    "hardswish",
    "hardswish_backward",
    "hardsigmoid",
    "hardsigmoid_backward",
    "relu6",
    "relu6_backward",
    "clip",
    "clip_backward",
]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_GELU_TANH_C = math.sqrt(2.0 / math.pi)
_GELU_KAPPA = 0.044715


def _unary(x, f) -> np.ndarray:
    """Apply scalar ``f`` to every element of x (float64), NaN in -> NaN out."""
    x = as_f64(x)
    out = np.empty(x.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for i, v in enumerate(x.reshape(-1).tolist()):  # Python floats: no NumPy warnings
        flat[i] = math.nan if math.isnan(v) else f(v)
    return out


def _unary_grad(grad_out, x, df) -> np.ndarray:
    """grad_x[i] = df(grad_out[i], x[i]) elementwise; NaN where x is NaN."""
    x = as_f64(x)
    grad_out = as_f64(grad_out)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out shape {grad_out.shape} != x shape {x.shape}")
    out = np.empty(x.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for i, (g, v) in enumerate(
        zip(grad_out.reshape(-1).tolist(), x.reshape(-1).tolist(), strict=True)
    ):
        flat[i] = math.nan if math.isnan(v) else df(g, v)
    return out


def _sigmoid(v: float) -> float:
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def relu(x) -> np.ndarray:
    """max(x, 0)."""
    return _unary(x, lambda v: v if v > 0 else 0.0)


def relu_backward(grad_out, x) -> np.ndarray:
    """grad where x > 0, else 0."""
    return _unary_grad(grad_out, x, lambda g, v: g if v > 0 else 0.0)


def leaky_relu(x, negative_slope=0.01) -> np.ndarray:
    """x if x > 0 else negative_slope * x."""
    a = float(negative_slope)
    return _unary(x, lambda v: v if v > 0 else a * v)


def leaky_relu_backward(grad_out, x, negative_slope=0.01) -> np.ndarray:
    """grad if x > 0 else negative_slope * grad (the slope at x == 0)."""
    a = float(negative_slope)
    return _unary_grad(grad_out, x, lambda g, v: g if v > 0 else a * g)


def elu(x, alpha=1.0) -> np.ndarray:
    """x if x > 0 else alpha * (exp(x) - 1)."""
    a = float(alpha)
    return _unary(x, lambda v: v if v > 0 else a * math.expm1(v))


def elu_backward(grad_out, x, alpha=1.0) -> np.ndarray:
    """grad if x > 0 else grad * alpha * exp(x) (alpha at x == 0)."""
    a = float(alpha)
    return _unary_grad(grad_out, x, lambda g, v: g if v > 0 else g * a * math.exp(v))


def selu(x) -> np.ndarray:
    """scale * elu(x, alpha) with PyTorch's SELU constants."""
    return _unary(x, lambda v: SELU_SCALE * v if v > 0 else SELU_SCALE * SELU_ALPHA * math.expm1(v))


def selu_backward(grad_out, x) -> np.ndarray:
    """grad * scale if x > 0 else grad * scale * alpha * exp(x)."""
    return _unary_grad(
        grad_out,
        x,
        lambda g, v: g * SELU_SCALE if v > 0 else g * SELU_SCALE * SELU_ALPHA * math.exp(v),
    )


def _prelu_slopes(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The slope for each element of x: weight (1,) for all, or weight (C,) along dim 1."""
    if weight.ndim != 1 or weight.size < 1:
        raise ValueError(f"prelu weight must have shape (1,) or (C,), got {weight.shape}")
    if weight.size == 1:
        return np.full(x.shape, weight[0])
    if x.ndim < 2 or x.shape[1] != weight.size:
        raise ValueError(
            f"prelu weight of shape {weight.shape} needs x with {weight.size} channels"
        )
    shape = [1] * x.ndim
    shape[1] = weight.size
    return np.broadcast_to(weight.reshape(shape), x.shape)


def prelu(x, weight) -> np.ndarray:
    """x if x > 0 else weight[c] * x, weight broadcast along dim 1."""
    x = as_f64(x)
    slopes = _prelu_slopes(x, as_f64(weight))
    out = np.empty(x.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for i, (v, a) in enumerate(zip(x.flat, slopes.flat, strict=True)):
        flat[i] = v if v > 0 or math.isnan(v) else a * v
    return out


def prelu_backward(grad_out, x, weight) -> tuple[np.ndarray, np.ndarray]:
    """(grad_x, grad_weight): grad if x > 0 else w * grad; grad_weight = sum(x * grad, x <= 0)."""
    x = as_f64(x)
    weight = as_f64(weight)
    grad_out = as_f64(grad_out)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out shape {grad_out.shape} != x shape {x.shape}")
    slopes = _prelu_slopes(x, weight)
    if weight.size == 1:
        channel = np.zeros(x.shape, dtype=np.int64)
    else:
        channel = np.broadcast_to(
            np.arange(weight.size).reshape([1, -1] + [1] * (x.ndim - 2)), x.shape
        )
    grad_x = np.empty(x.shape, dtype=np.float64)
    grad_w = np.zeros(weight.shape, dtype=np.float64)
    flat = grad_x.reshape(-1)
    for i, (g, v, a, c) in enumerate(
        zip(grad_out.flat, x.flat, slopes.flat, channel.flat, strict=True)
    ):
        if math.isnan(v):
            flat[i] = math.nan
            grad_w[c] = math.nan
        elif v > 0:
            flat[i] = g
        else:
            flat[i] = a * g
            grad_w[c] += v * g
    return grad_x, grad_w


def sigmoid(x) -> np.ndarray:
    """1 / (1 + exp(-x)), evaluated without overflow."""
    return _unary(x, _sigmoid)


def sigmoid_backward(grad_out, x) -> np.ndarray:
    """grad * s * (1 - s), s = sigmoid(x)."""
    return _unary_grad(grad_out, x, lambda g, v: g * _sigmoid(v) * (1.0 - _sigmoid(v)))


def tanh(x) -> np.ndarray:
    """tanh(x)."""
    return _unary(x, math.tanh)


def tanh_backward(grad_out, x) -> np.ndarray:
    """grad * (1 - tanh(x)^2)."""
    return _unary_grad(grad_out, x, lambda g, v: g * (1.0 - math.tanh(v) ** 2))


def _check_approximate(approximate: str) -> str:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return approximate


def _gelu(v: float, approximate: str) -> float:
    if approximate == "tanh":
        return 0.5 * v * (1.0 + math.tanh(_GELU_TANH_C * (v + _GELU_KAPPA * v * v * v)))
    return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))


def _gelu_grad(v: float, approximate: str) -> float:
    if approximate == "tanh":
        t = math.tanh(_GELU_TANH_C * (v + _GELU_KAPPA * v * v * v))
        dinner = _GELU_TANH_C * (1.0 + 3.0 * _GELU_KAPPA * v * v)
        return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * dinner
    cdf = 0.5 * (1.0 + math.erf(v / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)
    return cdf + v * pdf


def gelu(x, approximate="none") -> np.ndarray:
    """x * Phi(x) ("none", exact erf) or its tanh approximation ("tanh")."""
    approximate = _check_approximate(approximate)
    return _unary(x, lambda v: _gelu(v, approximate))


def gelu_backward(grad_out, x, approximate="none") -> np.ndarray:
    """grad * d/dx gelu(x): Phi(x) + x * phi(x), or the tanh form's derivative."""
    approximate = _check_approximate(approximate)
    return _unary_grad(grad_out, x, lambda g, v: g * _gelu_grad(v, approximate))


def silu(x) -> np.ndarray:
    """x * sigmoid(x)."""
    return _unary(x, lambda v: v * _sigmoid(v))


def silu_backward(grad_out, x) -> np.ndarray:
    """grad * s * (1 + x * (1 - s)), s = sigmoid(x)."""
    return _unary_grad(grad_out, x, lambda g, v: g * _sigmoid(v) * (1.0 + v * (1.0 - _sigmoid(v))))


def hardswish(x) -> np.ndarray:
    """x * min(max(x + 3, 0), 6) / 6 (-0.0 for x <= -3, like PyTorch)."""
    return _unary(x, lambda v: v * min(max(v + 3.0, 0.0), 6.0) / 6.0)


def hardswish_backward(grad_out, x) -> np.ndarray:
    """grad * (x/3 + 1/2) for -3 < x < 3; 0 for x <= -3; grad for x >= 3."""

    def df(g, v):
        if v <= -3.0:
            return 0.0
        if v < 3.0:
            return g * (v / 3.0 + 0.5)
        return g

    return _unary_grad(grad_out, x, df)


def hardsigmoid(x) -> np.ndarray:
    """min(max(x + 3, 0), 6) / 6."""
    return _unary(x, lambda v: min(max(v + 3.0, 0.0), 6.0) / 6.0)


def hardsigmoid_backward(grad_out, x) -> np.ndarray:
    """grad / 6 for -3 < x < 3, else 0 (PyTorch uses float32(1/6) here, even for float64)."""
    return _unary_grad(grad_out, x, lambda g, v: g / 6.0 if -3.0 < v < 3.0 else 0.0)


def relu6(x) -> np.ndarray:
    """min(max(x, 0), 6)."""
    return _unary(x, lambda v: min(max(v, 0.0), 6.0))


def relu6_backward(grad_out, x) -> np.ndarray:
    """grad for 0 < x < 6, else 0 (0 at both bounds)."""
    return _unary_grad(grad_out, x, lambda g, v: g if 0.0 < v < 6.0 else 0.0)


def clip(x, min_val=-1.0, max_val=1.0) -> np.ndarray:
    """min(max(x, min_val), max_val), like torch.nn.functional.hardtanh."""
    lo, hi = float(min_val), float(max_val)
    if lo > hi:
        raise ValueError(f"min_val {lo} must be <= max_val {hi}")
    return _unary(x, lambda v: min(max(v, lo), hi))


def clip_backward(grad_out, x, min_val=-1.0, max_val=1.0) -> np.ndarray:
    """grad for min_val < x < max_val, else 0 (0 at both bounds, like hardtanh)."""
    lo, hi = float(min_val), float(max_val)
    if lo > hi:
        raise ValueError(f"min_val {lo} must be <= max_val {hi}")
    return _unary_grad(grad_out, x, lambda g, v: g if lo < v < hi else 0.0)
