"""``torch.nn.functional`` for cnnperf: the differentiable functions under PyTorch's names.

Layers and activations come from :mod:`cnnperf.autograd.functional`; this module adds
PyTorch's signatures where they differ (``inplace`` flags, ``softmax(dim=None)``, the
deprecated ``size_average``/``reduce`` slots of the losses). Inputs may be Tensors or float
ndarrays. ``inplace=True`` is accepted for compatibility but never writes into the input: the
result is a new Tensor with the same values, so ``x = F.relu(x, inplace=True)`` works as in
PyTorch. A loss target may be an integer ndarray of class indices, a float ndarray or Tensor of
class probabilities, or a float Tensor of integral class indices (cnnperf Tensors hold floats
only; those are converted to int64).

>>> import numpy as np
>>> from cnnperf import tensor
>>> from cnnperf.nn import functional as F
>>> x = tensor(np.ones((2, 1, 4, 4), np.float32), requires_grad=True)
>>> w = tensor(np.full((3, 1, 3, 3), 0.1, np.float32), requires_grad=True)
>>> h = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
>>> loss = F.cross_entropy(h.flatten(1)[:, :3], np.array([0, 2]))
>>> loss.backward(); w.grad.shape
(3, 1, 3, 3)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..autograd import activations as _act
from ..autograd import losses as _losses
from ..autograd.layers import (
    adaptive_avg_pool2d,
    avg_pool2d,
    batch_norm,
    conv2d,
    conv_transpose2d,
    linear,
    max_pool2d,
    pad,
)
from ..autograd.layers import dropout as _dropout
from ..autograd.shaping import flatten
from ..autograd.tensor import Tensor, as_tensor

__all__ = [
    "conv2d",
    "conv_transpose2d",
    "linear",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "batch_norm",
    "dropout",
    "pad",
    "flatten",
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "hardtanh",
    "sigmoid",
    "hardsigmoid",
    "tanh",
    "gelu",
    "silu",
    "hardswish",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "mse_loss",
]


def relu(input: Any, inplace: bool = False) -> Tensor:
    """``max(x, 0)``, as ``F.relu`` (``inplace`` is accepted, see the module docstring).

    Example:
        >>> relu(np.array([-1.0, 2.0])).data.tolist()
        [0.0, 2.0]
    """
    return _act.relu(input)


def relu6(input: Any, inplace: bool = False) -> Tensor:
    """``min(max(x, 0), 6)``, as ``F.relu6``.

    Example:
        >>> relu6(np.array([-1.0, 7.0])).data.tolist()
        [0.0, 6.0]
    """
    return _act.relu6(input)


def leaky_relu(input: Any, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``x`` if ``x > 0`` else ``negative_slope * x``, as ``F.leaky_relu``.

    Example:
        >>> leaky_relu(np.array([-2.0, 3.0]), 0.5).data.tolist()
        [-1.0, 3.0]
    """
    return _act.leaky_relu(input, negative_slope)


def elu(input: Any, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``, as ``F.elu``.

    Example:
        >>> elu(np.array([0.0, 1.0])).data.tolist()
        [0.0, 1.0]
    """
    return _act.elu(input, alpha)


def selu(input: Any, inplace: bool = False) -> Tensor:
    """Scaled ELU with the self-normalising constants, as ``F.selu``.

    Example:
        >>> selu(np.array([0.0])).data.tolist()
        [0.0]
    """
    return _act.selu(input)


def hardtanh(
    input: Any, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:
    """``clip(x, min_val, max_val)``, as ``F.hardtanh``.

    Example:
        >>> hardtanh(np.array([-3.0, 0.5, 3.0])).data.tolist()
        [-1.0, 0.5, 1.0]
    """
    return _act.hardtanh(input, min_val, max_val)


def sigmoid(input: Any) -> Tensor:
    """``1 / (1 + exp(-x))``, as ``F.sigmoid``.

    Example:
        >>> sigmoid(np.array([0.0])).data.tolist()
        [0.5]
    """
    return _act.sigmoid(input)


def hardsigmoid(input: Any, inplace: bool = False) -> Tensor:
    """``clip(x / 6 + 1/2, 0, 1)``, as ``F.hardsigmoid``.

    Example:
        >>> hardsigmoid(np.array([0.0, 3.0])).data.tolist()
        [0.5, 1.0]
    """
    return _act.hardsigmoid(input)


def tanh(input: Any) -> Tensor:
    """Hyperbolic tangent, as ``F.tanh``.

    Example:
        >>> tanh(np.array([0.0])).data.tolist()
        [0.0]
    """
    return _act.tanh(input)


def gelu(input: Any, approximate: str = "none") -> Tensor:
    """``x * Phi(x)`` (``approximate="tanh"`` for the tanh formula), as ``F.gelu``.

    Example:
        >>> gelu(np.array([0.0])).data.tolist()
        [0.0]
    """
    return _act.gelu(input, approximate)


def silu(input: Any, inplace: bool = False) -> Tensor:
    """``x * sigmoid(x)``, as ``F.silu``.

    Example:
        >>> silu(np.array([0.0])).data.tolist()
        [0.0]
    """
    return _act.silu(input)


def hardswish(input: Any, inplace: bool = False) -> Tensor:
    """``x * relu6(x + 3) / 6``, as ``F.hardswish``.

    Example:
        >>> hardswish(np.array([3.0])).data.tolist()
        [3.0]
    """
    return _act.hardswish(input)


def _softmax_dim(name: str, ndim: int, stacklevel: int) -> int:
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include "
        f"dim=X as an argument.",
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_input(input: Any, dtype: Any, op: str) -> Tensor:
    x = as_tensor(input, "input", op)
    return x if dtype is None or np.dtype(dtype) == x.dtype else x.astype(dtype)


def softmax(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """Softmax along ``dim``, as ``F.softmax``; ``dtype`` casts the input first.

    ``dim=None`` picks PyTorch's legacy choice (0 for 0-, 1- and 3-d inputs, else 1) with a
    deprecation warning.

    Example:
        >>> softmax(np.zeros((1, 4)), dim=1).data.tolist()
        [[0.25, 0.25, 0.25, 0.25]]
    """
    x = _softmax_input(input, dtype, "softmax")
    if dim is None:
        dim = _softmax_dim("softmax", x.ndim, _stacklevel)
    return _act.softmax(x, dim)


def log_softmax(
    input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None
) -> Tensor:
    """Log-softmax along ``dim``, as ``F.log_softmax`` (``dim=None`` as :func:`softmax`).

    Example:
        >>> np.exp(log_softmax(np.zeros(2), dim=0).data).tolist()
        [0.5, 0.5]
    """
    x = _softmax_input(input, dtype, "log_softmax")
    if dim is None:
        dim = _softmax_dim("log_softmax", x.ndim, _stacklevel)
    return _act.log_softmax(x, dim)


def dropout(
    input: Any,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    rng: np.random.Generator | int | None = None,
) -> Tensor:
    """Zero elements with probability ``p`` and scale the rest by ``1/(1-p)``, as ``F.dropout``.

    ``rng`` (a cnnperf extension) is a Generator or a seed; None uses the global generator of
    :func:`cnnperf.autograd.manual_seed`.

    Example:
        >>> dropout(np.ones(4, np.float32), 0.5, training=False).data.tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    return _dropout(input, p, training, rng=rng)


def _no_legacy(op: str, size_average: Any, reduce: Any) -> None:
    if size_average is not None or reduce is not None:
        raise ValueError(
            f"{op}: size_average and reduce are deprecated in PyTorch and not supported here; "
            f"pass reduction='mean', 'sum' or 'none' (got size_average={size_average!r}, "
            f"reduce={reduce!r})"
        )


def _class_target(input: Any, target: Any) -> Any:
    """A float Tensor of integral class indices (shaped like input without C) as int64."""
    if not isinstance(target, Tensor) or target.requires_grad:
        return target
    shape = np.shape(input.data if isinstance(input, Tensor) else input)
    index_shape = shape[:1] + shape[2:] if len(shape) >= 2 else ()
    t = target.data
    if t.shape == tuple(shape) or t.shape != tuple(index_shape):
        return t  # class probabilities (or a shape the loss itself reports)
    if not np.all(np.isfinite(t)) or not np.all(t == np.round(t)):
        raise ValueError(
            f"cross_entropy: a target Tensor shaped like the input without its class "
            f"dimension {t.shape} holds class indices, which must be whole numbers; got "
            f"non-integral values (input shape {tuple(shape)})"
        )
    return t.astype(np.int64)


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of ``softmax(input)`` against class indices or probabilities, as
    ``F.cross_entropy``.

    Args:
        input: logits (N, C), (N, C, d1, ...) or (C,).
        target: an integer ndarray of class indices (input's shape without C), or class
            probabilities shaped like the input (ndarray or Tensor without grad), or a float
            Tensor of whole-number class indices.
        weight, ignore_index, reduction, label_smoothing: as PyTorch.
        size_average, reduce: PyTorch's deprecated arguments; must stay None.

    Example:
        >>> round(cross_entropy(np.zeros((2, 4), np.float32), np.array([1, 3])).item(), 4)
        1.3863
    """
    _no_legacy("cross_entropy", size_average, reduce)
    return _losses.cross_entropy(
        input, _class_target(input, target), weight, ignore_index, reduction, label_smoothing
    )


def mse_loss(
    input: Any, target: Any, size_average: Any = None, reduce: Any = None, reduction: str = "mean"
) -> Tensor:
    """Mean squared error, as ``F.mse_loss``; ``target`` is a Tensor or a float ndarray.

    Example:
        >>> mse_loss(np.array([1.0, 3.0]), np.zeros(2)).item()
        5.0
    """
    _no_legacy("mse_loss", size_average, reduce)
    return _losses.mse_loss(input, target, reduction)
