"""Differentiable activations and softmax: each forward is a :mod:`cnnperf.ops` function and
each backward its ``*_backward`` (gradients at the kinks are PyTorch's).

>>> import numpy as np
>>> from cnnperf.autograd import tensor
>>> x = tensor([-1.0, 2.0], requires_grad=True)
>>> relu(x).sum().backward(); x.grad.tolist()
[0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import ops
from .tensor import Tensor, as_tensor, record

__all__ = [
    "relu",
    "leaky_relu",
    "relu6",
    "elu",
    "selu",
    "prelu",
    "hardtanh",
    "sigmoid",
    "hardsigmoid",
    "tanh",
    "gelu",
    "silu",
    "hardswish",
    "softmax",
    "log_softmax",
]


def _pointwise(
    op: str,
    forward: Callable[..., np.ndarray],
    backward: Callable[..., np.ndarray],
    input: Any,
    **kwargs: Any,
) -> Tensor:
    x = as_tensor(input, "input", op)
    xd = x.data
    return record(forward(xd, **kwargs), (x,), lambda g: (backward(g, xd, **kwargs),), op)


def relu(input: Any) -> Tensor:
    """``max(x, 0)``; gradient 0 at 0.

    Example:
        >>> relu(Tensor(np.array([-1.0, 2.0]))).data.tolist()
        [0.0, 2.0]
    """
    return _pointwise("relu", ops.relu, ops.relu_backward, input)


def leaky_relu(input: Any, negative_slope: float = 0.01) -> Tensor:
    """``x`` for ``x > 0``, else ``negative_slope * x``.

    Example:
        >>> leaky_relu(Tensor(np.array([-2.0, 2.0])), 0.5).data.tolist()
        [-1.0, 2.0]
    """
    return _pointwise(
        "leaky_relu",
        ops.leaky_relu,
        ops.leaky_relu_backward,
        input,
        negative_slope=negative_slope,
    )


def relu6(input: Any) -> Tensor:
    """``min(max(x, 0), 6)``.

    Example:
        >>> relu6(Tensor(np.array([-1.0, 7.0]))).data.tolist()
        [0.0, 6.0]
    """
    return _pointwise("relu6", ops.relu6, ops.relu6_backward, input)


def elu(input: Any, alpha: float = 1.0) -> Tensor:
    """``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``.

    Example:
        >>> elu(Tensor(np.array([0.0, 1.0]))).data.tolist()
        [0.0, 1.0]
    """
    return _pointwise("elu", ops.elu, ops.elu_backward, input, alpha=alpha)


def selu(input: Any) -> Tensor:
    """Scaled ELU with the self-normalising constants.

    Example:
        >>> round(selu(Tensor(np.array([1.0]))).item(), 4)
        1.0507
    """
    return _pointwise("selu", ops.selu, ops.selu_backward, input)


def prelu(input: Any, weight: Any) -> Tensor:
    """``x`` for ``x > 0``, else ``weight[c] * x`` (c the channel, dim 1); weight learns.

    Example:
        >>> prelu(Tensor(np.array([[-2.0, 2.0]])), np.array([0.5])).data.tolist()
        [[-1.0, 2.0]]
    """
    op = "prelu"
    x, w = as_tensor(input, "input", op), as_tensor(weight, "weight", op)
    xd, wd = x.data, w.data
    y = ops.prelu(xd, wd)
    return record(y, (x, w), lambda g: ops.prelu_backward(g, xd, wd), op)


def hardtanh(input: Any, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """``x`` clipped to ``[min_val, max_val]``.

    Example:
        >>> hardtanh(Tensor(np.array([-3.0, 0.5]))).data.tolist()
        [-1.0, 0.5]
    """
    return _pointwise(
        "hardtanh", ops.clip, ops.clip_backward, input, min_val=min_val, max_val=max_val
    )


def sigmoid(input: Any) -> Tensor:
    """``1 / (1 + exp(-x))``.

    Example:
        >>> sigmoid(Tensor(np.array([0.0]))).data.tolist()
        [0.5]
    """
    return _pointwise("sigmoid", ops.sigmoid, ops.sigmoid_backward, input)


def hardsigmoid(input: Any) -> Tensor:
    """``min(max(x + 3, 0), 6) / 6``.

    Example:
        >>> hardsigmoid(Tensor(np.array([0.0]))).data.tolist()
        [0.5]
    """
    return _pointwise("hardsigmoid", ops.hardsigmoid, ops.hardsigmoid_backward, input)


def tanh(input: Any) -> Tensor:
    """Hyperbolic tangent.

    Example:
        >>> tanh(Tensor(np.array([0.0]))).data.tolist()
        [0.0]
    """
    return _pointwise("tanh", ops.tanh, ops.tanh_backward, input)


def gelu(input: Any, approximate: str = "none") -> Tensor:
    """``x * Phi(x)``, exact (``"none"``) or with the tanh approximation (``"tanh"``).

    Example:
        >>> round(gelu(Tensor(np.array([1.0]))).item(), 4)
        0.8413
    """
    return _pointwise("gelu", ops.gelu, ops.gelu_backward, input, approximate=approximate)


def silu(input: Any) -> Tensor:
    """``x * sigmoid(x)`` (swish).

    Example:
        >>> silu(Tensor(np.array([0.0]))).data.tolist()
        [0.0]
    """
    return _pointwise("silu", ops.silu, ops.silu_backward, input)


def hardswish(input: Any) -> Tensor:
    """``x * min(max(x + 3, 0), 6) / 6`` (MobileNetV3).

    Example:
        >>> hardswish(Tensor(np.array([4.0]))).data.tolist()
        [4.0]
    """
    return _pointwise("hardswish", ops.hardswish, ops.hardswish_backward, input)


def softmax(input: Any, dim: int) -> Tensor:
    """Softmax along ``dim``, as ``torch.softmax`` (``dim`` is required).

    Example:
        >>> softmax(Tensor(np.zeros((1, 2))), dim=1).data.tolist()
        [[0.5, 0.5]]
    """
    op = "softmax"
    x = as_tensor(input, "input", op)
    xd = x.data
    y = ops.softmax(xd, axis=dim)
    return record(y, (x,), lambda g: (ops.softmax_backward(g, xd, axis=dim),), op)


def log_softmax(input: Any, dim: int) -> Tensor:
    """Log-softmax along ``dim``, as ``torch.log_softmax`` (``dim`` is required).

    Example:
        >>> np.exp(log_softmax(Tensor(np.zeros(2)), dim=0).data).tolist()
        [0.5, 0.5]
    """
    op = "log_softmax"
    x = as_tensor(input, "input", op)
    xd = x.data
    y = ops.log_softmax(xd, axis=dim)
    return record(y, (x,), lambda g: (ops.log_softmax_backward(g, xd, axis=dim),), op)
