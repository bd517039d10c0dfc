"""Fused epilogues: bias and activation applied to a convolution's output while it is in cache.

Activations are identified by small integer codes (``ACT_*``) so that one compiled kernel serves
them all; ``act_scalar`` is inlined into every kernel that writes conv outputs.
"""

from __future__ import annotations

import math

from numba import njit, prange

from . import FASTMATH

__all__ = [
    "ACT_NONE",
    "ACT_RELU",
    "ACT_RELU6",
    "ACT_LEAKY_RELU",
    "ACT_SIGMOID",
    "ACT_TANH",
    "ACT_SILU",
    "ACT_HARDSWISH",
    "ACT_HARDSIGMOID",
    "ACT_GELU",
    "ACT_GELU_TANH",
    "ACT_ELU",
    "act_scalar",
    "bias_act_inplace",
]

ACT_NONE = 0
ACT_RELU = 1
ACT_RELU6 = 2
ACT_LEAKY_RELU = 3
ACT_SIGMOID = 4
ACT_TANH = 5
ACT_SILU = 6
ACT_HARDSWISH = 7
ACT_HARDSIGMOID = 8
ACT_GELU = 9
ACT_GELU_TANH = 10
ACT_ELU = 11


@njit(inline="always", error_model="numpy")
def act_scalar(v, code, alpha):  # pragma: no cover - compiled
    """The activation ``code`` of ``v``, in float64 (``alpha``: leaky_relu slope or elu alpha).

    Computed in float64 and rounded once on store. Comparisons are written so that NaN takes
    the pass-through branch: NaN propagates, as in the unfused ops.
    """
    if code == ACT_NONE:
        return v
    if code == ACT_RELU:
        return 0.0 if v < 0 else v
    if code == ACT_RELU6:
        if v < 0:
            return 0.0
        return 6.0 if v > 6 else v
    if code == ACT_LEAKY_RELU:
        return v * alpha if v < 0 else v
    if code == ACT_SIGMOID:
        if v >= 0:
            return 1.0 / (1.0 + math.exp(-v))
        e = math.exp(v)
        return e / (1.0 + e)
    if code == ACT_TANH:
        return math.tanh(v)
    if code == ACT_SILU:
        if v >= 0:
            return v / (1.0 + math.exp(-v))
        e = math.exp(v)
        return v * e / (1.0 + e)
    if code == ACT_HARDSWISH:
        if v <= -3:
            return 0.0
        if v >= 3:
            return v
        return v * (v + 3.0) / 6.0
    if code == ACT_HARDSIGMOID:
        if v <= -3:
            return 0.0
        if v >= 3:
            return 1.0
        return v / 6.0 + 0.5
    if code == ACT_GELU:
        return 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))
    if code == ACT_GELU_TANH:
        return 0.5 * v * (1.0 + math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
    if code == ACT_ELU:
        return alpha * (math.exp(v) - 1.0) if v < 0 else v
    return v


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def bias_act_inplace(out, bias, code, alpha):  # pragma: no cover - compiled
    """``out[b, c, :] = act(out[b, c, :] + bias[c])`` in place; out (n, c, hw), bias (c,)."""
    n, c, hw = out.shape
    for t in prange(n * c):
        b = t // c
        ch = t - b * c
        row = out[b, ch]
        bv = bias[ch]
        if code == ACT_NONE:
            for i in range(hw):
                row[i] += bv
        else:
            for i in range(hw):
                row[i] = act_scalar(float(row[i] + bv), code, alpha)
