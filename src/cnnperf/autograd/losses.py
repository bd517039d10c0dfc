"""Differentiable losses: cross-entropy and mean squared error, on :mod:`cnnperf.ops`.

A loss with reduction ``"mean"`` or ``"sum"`` is a 0-d Tensor, so ``loss.backward()`` needs no
argument. Targets carry no gradient in cross-entropy (integer class indices as a plain ndarray,
or class probabilities as an array or a Tensor without grad); mse_loss differentiates both.

>>> import numpy as np
>>> from cnnperf.autograd import tensor
>>> logits = tensor(np.zeros((2, 3)), requires_grad=True)
>>> loss = cross_entropy(logits, np.array([0, 2]))
>>> loss.backward(); np.round(logits.grad, 3).tolist()[0]
[-0.333, 0.167, 0.167]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from .tensor import Tensor, as_tensor, record

__all__ = ["cross_entropy", "mse_loss"]


def _constant(value: Any, name: str, op: str) -> np.ndarray | None:
    """A target or class weight as an array; a Tensor that requires grad is refused."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        if value.requires_grad:
            raise ValueError(
                f"{op}: the gradient with respect to {name} is not supported; pass "
                f"{name}.detach() (shape {value.shape})"
            )
        return value.data
    return np.asarray(value)


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of ``softmax(input)`` against a target, as ``F.cross_entropy``.

    Args:
        input: logits (N, C), (N, C, d1, ...) or (C,).
        target: integer class indices (an ndarray of any integer dtype) shaped like input
            without C, or float class probabilities shaped like input.
        weight: optional (C,) class weights (no gradient).
        ignore_index, reduction, label_smoothing: as :func:`cnnperf.ops.cross_entropy`.

    Example:
        >>> round(cross_entropy(Tensor(np.zeros((1, 4))), np.array([1])).item(), 4)
        1.3863
    """
    op = "cross_entropy"
    x = as_tensor(input, "input", op)
    t = _constant(target, "target", op)
    w = _constant(weight, "weight", op)
    args = dict(
        weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )
    xd = x.data
    y = ops.cross_entropy(xd, t, **args)
    return record(y, (x,), lambda g: (ops.cross_entropy_backward(g, xd, t, **args),), op)


def mse_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(input - target)**2`` reduced by ``reduction``, as ``F.mse_loss``.

    Args:
        input: any shape.
        target: the same shape and dtype (a Tensor, which may require grad, or an ndarray).
        reduction: 'mean', 'sum' or 'none'.

    Example:
        >>> mse_loss(Tensor(np.array([1.0, 3.0])), np.zeros(2)).item()
        5.0
    """
    op = "mse_loss"
    x, t = as_tensor(input, "input", op), as_tensor(target, "target", op)
    xd, td = x.data, t.data
    y = ops.mse_loss(xd, td, reduction)

    def backward(g):
        gx = ops.mse_loss_backward(g, xd, td, reduction)
        # d/dt (x - t)**2 = -d/dx (x - t)**2
        return (gx if x.requires_grad else None, -gx if t.requires_grad else None)

    return record(y, (x, t), backward, op)
