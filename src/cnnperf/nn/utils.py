"""Gradient clipping, as ``torch.nn.utils``: ``clip_grad_norm_`` and ``clip_grad_value_``.

>>> import numpy as np
>>> from cnnperf.nn import Parameter
>>> p = Parameter(np.zeros(2, np.float32)); p.grad = np.array([3.0, 4.0], np.float32)
>>> float(clip_grad_norm_([p], max_norm=1.0)), p.grad.astype(float).round(4).tolist()
(5.0, [0.6, 0.8])
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..autograd.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters: Tensor | Iterable[Tensor], op: str) -> list[np.ndarray]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: expected Tensors (parameters), got {type(p).__name__}")
    return [p.grad for p in params if p.grad is not None]


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> np.floating:
    """Scale the gradients in place so that their joint norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the total norm is the ``norm_type``-norm of the
    per-parameter gradient norms (``inf`` for the max-norm); every gradient is multiplied by
    ``min(max_norm / (total_norm + 1e-6), 1)``, in the gradients' dtype.

    Args:
        parameters: a Tensor or an iterable of Tensors (those without ``.grad`` are skipped).
        max_norm: the largest allowed norm.
        norm_type: p of the p-norm (a float, or ``float("inf")``).
        error_if_nonfinite: raise RuntimeError when the total norm is NaN or infinite.

    Returns:
        The total norm before clipping, a NumPy scalar of the gradients' dtype (as PyTorch's
        0-d tensor: ``float(norm)`` or ``norm.item()`` give the number).

    Example:
        >>> from cnnperf.nn import Parameter
        >>> p = Parameter(np.zeros(3, np.float32)); p.grad = np.full(3, 2.0, np.float32)
        >>> float(clip_grad_norm_(p, 10.0, norm_type=float("inf"))), p.grad.tolist()
        (2.0, [2.0, 2.0, 2.0])
    """
    grads = _grads(parameters, "clip_grad_norm_")
    p = float(norm_type)
    if not (p > 0 or math.isinf(p)):
        raise ValueError(f"clip_grad_norm_: norm_type must be positive or inf, got {norm_type!r}")
    if not grads:
        return np.float32(0.0)
    dtype = np.result_type(*grads)

    def vector_norm(a: np.ndarray) -> np.floating:
        a = np.abs(a.astype(np.float64, copy=False)).ravel()
        if a.size == 0:
            return dtype.type(0.0)
        if math.isinf(p):
            return dtype.type(a.max())
        return dtype.type(np.sum(a**p) ** (1.0 / p))

    norms = np.array([vector_norm(g) for g in grads], dtype)
    total = vector_norm(norms)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
            f"non-finite ({total}), so it cannot be clipped; pass error_if_nonfinite=False to "
            f"scale by it anyway"
        )
    coef = min(dtype.type(max_norm) / (total + dtype.type(1e-6)), dtype.type(1.0))
    for g in grads:
        g *= g.dtype.type(coef)
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clip every gradient element to ``[-clip_value, clip_value]`` in place, as
    ``torch.nn.utils.clip_grad_value_``.

    Example:
        >>> from cnnperf.nn import Parameter
        >>> p = Parameter(np.zeros(2, np.float32)); p.grad = np.array([-5.0, 0.5], np.float32)
        >>> clip_grad_value_(p, 1.0); p.grad.tolist()
        [-1.0, 0.5]
    """
    c = float(clip_value)
    for g in _grads(parameters, "clip_grad_value_"):
        np.clip(g, -c, c, out=g)
