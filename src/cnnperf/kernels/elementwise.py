"""Element-wise kernels NumPy lacks: the exact (erf-based) GELU and its derivative.

GELU is from Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)", 2016. NumPy has no
``erf``; these loops call ``math.erf`` (libm's ``erff`` / ``erf``) fused with the rest of the
formula, so each direction is one pass over memory, computed in the input's own precision.

Kernels take flat contiguous arrays and a small ``consts`` array of the same dtype (so that
float32 inputs are computed in float32 without float64 literals promoting the arithmetic).
``FASTMATH`` keeps NaN and Inf semantics: NaN propagates and ``gelu(-inf)`` is ``-inf * 0 =
NaN``, as in PyTorch.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import FASTMATH

__all__ = ["gelu_erf", "gelu_erf_grad", "gelu_consts"]


def gelu_consts(dtype) -> np.ndarray:
    """(0.5, 1/sqrt(2), 1/sqrt(2 pi), 1) in ``dtype``: the ``consts`` argument of the kernels."""
    return np.array([0.5, 1.0 / math.sqrt(2.0), 1.0 / math.sqrt(2.0 * math.pi), 1.0], dtype)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def gelu_erf(x, consts, out):  # pragma: no cover - compiled
    """out = 0.5 * x * (1 + erf(x / sqrt(2))) = x * Phi(x).

    Args:
        x: (n,) contiguous input.
        consts: :func:`gelu_consts` of x's dtype.
        out: (n,) same dtype, written completely.
    """
    half = consts[0]
    inv_sqrt2 = consts[1]
    one = consts[3]
    for i in prange(x.size):
        v = x[i]
        out[i] = half * v * (one + math.erf(v * inv_sqrt2))


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def gelu_erf_grad(g, x, consts, out):  # pragma: no cover - compiled
    """out = g * (Phi(x) + x * phi(x)), phi the standard normal density.

    Args:
        g: (n,) upstream gradient.
        x: (n,) forward input.
        consts: :func:`gelu_consts` of x's dtype.
        out: (n,) same dtype, written completely.
    """
    half = consts[0]
    inv_sqrt2 = consts[1]
    inv_sqrt_2pi = consts[2]
    one = consts[3]
    for i in prange(x.size):
        v = x[i]
        cdf = half * (one + math.erf(v * inv_sqrt2))
        out[i] = g[i] * (cdf + v * inv_sqrt_2pi * math.exp(-half * v * v))
