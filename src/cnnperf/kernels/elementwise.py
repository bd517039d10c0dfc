"""Element-wise kernels NumPy lacks: the exact (erf-based) GELU and its derivative, one-pass
ReLU forward and gradient, and the SGD update.

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

__all__ = ["gelu_erf", "gelu_erf_grad", "gelu_consts", "relu_fwd", "relu_grad", "sgd_step"]


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


@njit(cache=True, error_model="numpy")
def relu_fwd(x, out):  # pragma: no cover - compiled
    """out = max(x, 0), NaN where x is NaN: one vectorised select (NumPy's ``maximum`` took
    0.16 ms on LeNet's 64x6x24x24 map, this loop 0.04 ms).

    Args:
        x: (n,) contiguous input.
        out: (n,) same dtype, written completely.
    """
    zero = np.zeros(1, dtype=out.dtype)[0]
    for i in range(x.size):
        v = x[i]
        out[i] = v if (v > zero) | (v != v) else zero


@njit(cache=True, error_model="numpy")
def relu_grad(g, x, out):  # pragma: no cover - compiled
    """out = g where x > 0, x itself (NaN) where x is NaN, else 0.

    The zero is selected, not ``g * 0``, so an infinite or NaN ``g`` does not leak through
    where ``x <= 0`` (PyTorch's ``threshold_backward``). One pass over memory: NumPy's
    ``where`` plus a NaN mask took 1.0 ms on LeNet's 64x6x24x24 map, this loop 0.05 ms.
    Serial, like the other loops here: memory-bound, and ``parallel=True`` costs more to
    compile than a second thread saves on maps this size.

    Args:
        g: (n,) contiguous upstream gradient.
        x: (n,) contiguous forward input, same dtype.
        out: (n,) same dtype, written completely.
    """
    zero = np.zeros(1, dtype=out.dtype)[0]
    for i in range(x.size):
        v = x[i]
        r = g[i] if v > zero else zero
        out[i] = v if v != v else r


@njit(cache=True, error_model="numpy")
def sgd_step(p, g, buf, consts, flags):  # pragma: no cover - compiled
    """One ``torch.optim.SGD`` update of a parameter, in place.

    Each ``a * b + c`` of PyTorch's fused multiply-adds is computed in float64 and rounded
    once to the parameter's dtype (by the store), exactly as
    ``optim.optimizer.fused_multiply_add`` does (no ``fastmath``: LLVM contracts nothing).
    One loop per stage, each simple enough to vectorise.

    Args:
        p: (n,) contiguous parameter, updated in place.
        g: (n,) contiguous gradient, same dtype.
        buf: (n,) momentum buffer, same dtype (written when ``flags[1]``; any array else).
        consts: ``(weight_decay, momentum, 1 - dampening, -lr)``, each rounded to p's dtype,
            in p's dtype.
        flags: int64 ``(maximize, momentum on, first step, nesterov, weight decay on)``.
    """
    n = p.size
    wd = np.float64(consts[0])
    mom = consts[1]
    mom64 = np.float64(mom)
    keep = np.float64(consts[2])
    neg_lr = np.float64(consts[3])
    maximize, use_mom, first, nesterov, use_wd = flags[0], flags[1], flags[2], flags[3], flags[4]
    d = g
    if maximize or use_wd:
        d = np.empty(n, dtype=p.dtype)
        for i in range(n):
            d[i] = -g[i] if maximize else g[i]
        if use_wd:
            for i in range(n):
                d[i] = wd * np.float64(p[i]) + np.float64(d[i])  # grad.add(p, alpha=wd)
    if use_mom:
        if first:
            for i in range(n):
                buf[i] = d[i]
        else:
            for i in range(n):
                b = buf[i] * mom  # in p's dtype, as ``buf *= momentum``
                buf[i] = keep * np.float64(d[i]) + np.float64(b)
        if nesterov:
            e = np.empty(n, dtype=p.dtype)
            for i in range(n):
                e[i] = mom64 * np.float64(buf[i]) + np.float64(d[i])
            d = e
        else:
            d = buf
    for i in range(n):
        p[i] = neg_lr * np.float64(d[i]) + np.float64(p[i])
