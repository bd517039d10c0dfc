"""Finite-difference gradient checks in float64.

``check_grad(f, inputs, grads, wrt)``: for a scalar objective ``L = sum(f(*inputs) * g)`` with a
fixed random ``g`` (the upstream gradient), compare the analytic gradient a backward function
returns against central differences of ``L``, one input element at a time.
"""

from __future__ import annotations

import numpy as np


def numeric_grad(f, inputs: list[np.ndarray], index: int, upstream: np.ndarray, eps: float = 1e-6):
    """Central-difference gradient of ``sum(f(*inputs) * upstream)`` w.r.t. inputs[index]."""
    inputs = [
        np.array(a, dtype=np.float64, copy=True) if isinstance(a, np.ndarray) else a for a in inputs
    ]
    target = inputs[index]
    grad = np.zeros_like(target)
    flat = target.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = float(np.sum(f(*inputs) * upstream))
        flat[i] = old - eps
        minus = float(np.sum(f(*inputs) * upstream))
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def assert_grad_close(analytic, numeric, tol: float = 1e-6, what: str = "") -> None:
    """max |analytic - numeric| <= tol * max(1, max |numeric|)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} != {numeric.shape}"
    if numeric.size == 0:
        return
    err = float(np.max(np.abs(analytic - numeric)))
    scale = max(1.0, float(np.max(np.abs(numeric))))
    assert err <= tol * scale, f"{what}: gradient error {err:.3e} > {tol:.1e} * {scale:.3g}"
