"""Differentiable arithmetic and reductions on Tensors (shape operations: :mod:`.shaping`).

Binary operations broadcast like NumPy; each operand's gradient is summed back to its own
shape. An operand may be a Tensor, an ndarray or a Python/NumPy number; numbers, 0-d arrays and
integer arrays take the Tensor's dtype (as PyTorch treats scalars), while two float operands of
different dtypes and more than zero dimensions are an error rather than a silent promotion.

>>> from cnnperf.autograd import tensor
>>> a = tensor([[1.0, 2.0]], requires_grad=True)
>>> b = tensor([[1.0], [3.0]], requires_grad=True)
>>> (a * b).sum().backward()
>>> a.grad.tolist(), b.grad.tolist()
([[4.0, 4.0]], [[3.0], [3.0]])
"""

from __future__ import annotations

import builtins
import math
import numbers
import operator
from typing import Any

import numpy as np

from .tensor import FLOAT_DTYPES, Tensor, record

__all__ = [
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "pow",
    "matmul",
    "sum",
    "mean",
    "astype",
]


# ----------------------------------------------------------------------------------------------
# operands and broadcasting


def as_operand(value: Any, like: Tensor, op: str) -> Tensor:
    """``value`` as a Tensor; numbers, 0-d and integer arrays take ``like``'s dtype."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (numbers.Number, np.generic, list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_ or arr.ndim == 0:
            if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                raise TypeError(f"{op}: unsupported operand of dtype {arr.dtype}")
            if np.issubdtype(arr.dtype, np.complexfloating):
                raise TypeError(f"{op}: complex operands are not supported, got {arr.dtype}")
            arr = arr.astype(like.dtype)
        elif arr.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{op}: cannot combine a {like.dtype} Tensor with an array of dtype {arr.dtype} "
                f"and shape {tuple(arr.shape)}"
            )
        return Tensor(arr)
    raise TypeError(f"{op}: unsupported operand type {type(value).__name__} for a Tensor")


def _pair(op: str, a: Any, b: Any) -> tuple[Tensor, Tensor, np.ndarray, np.ndarray]:
    """Both operands as Tensors, and their arrays in one dtype (shapes checked to broadcast)."""
    like = a if isinstance(a, Tensor) else b
    a, b = as_operand(a, like, op), as_operand(b, like, op)
    ad, bd = a.data, b.data
    if ad.dtype != bd.dtype:
        if bd.ndim == 0:
            bd = bd.astype(ad.dtype)
        elif ad.ndim == 0:
            ad = ad.astype(bd.dtype)
        else:
            raise ValueError(
                f"{op}: operands have different dtypes, {ad.dtype} with shape {a.shape} and "
                f"{bd.dtype} with shape {b.shape}; cast one with .astype(...)"
            )
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{op}: operands of shapes {a.shape} and {b.shape} cannot be broadcast together"
        ) from None
    return a, b, ad, bd


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the dimensions that broadcasting added or stretched, back to ``shape``."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g.reshape(shape)


def _grads(a: Tensor, b: Tensor, ga, gb) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each operand's gradient (computed lazily, only if it requires grad) at its own shape."""
    return (
        _unbroadcast(ga(), a.shape) if a.requires_grad else None,
        _unbroadcast(gb(), b.shape) if b.requires_grad else None,
    )


# ----------------------------------------------------------------------------------------------
# binary and unary arithmetic


def add(a: Any, b: Any) -> Tensor:
    """``a + b`` with broadcasting.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> add(tensor([1.0]), 2.0).data.tolist()
        [3.0]
    """
    a, b, ad, bd = _pair("add", a, b)
    return record(ad + bd, (a, b), lambda g: _grads(a, b, lambda: g, lambda: g), "add")


def sub(a: Any, b: Any) -> Tensor:
    """``a - b`` with broadcasting.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> sub(np.ones(2, np.float32), tensor([0.5, 1.5])).data.tolist()
        [0.5, -0.5]
    """
    a, b, ad, bd = _pair("sub", a, b)
    return record(ad - bd, (a, b), lambda g: _grads(a, b, lambda: g, lambda: -g), "sub")


def mul(a: Any, b: Any) -> Tensor:
    """``a * b`` (elementwise) with broadcasting.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> mul(tensor([2.0, 3.0]), 2).data.tolist()
        [4.0, 6.0]
    """
    a, b, ad, bd = _pair("mul", a, b)
    return record(ad * bd, (a, b), lambda g: _grads(a, b, lambda: g * bd, lambda: g * ad), "mul")


def div(a: Any, b: Any) -> Tensor:
    """``a / b`` (elementwise) with broadcasting.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> div(1.0, tensor([2.0, 4.0])).data.tolist()
        [0.5, 0.25]
    """
    a, b, ad, bd = _pair("div", a, b)

    def backward(g):
        # torch's form for the divisor: -g * a / (b * b)
        return _grads(a, b, lambda: g / bd, lambda: -g * ad / (bd * bd))

    return record(ad / bd, (a, b), backward, "div")


def neg(x: Tensor) -> Tensor:
    """``-x``.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> neg(tensor([1.0, -2.0])).data.tolist()
        [-1.0, 2.0]
    """
    return record(-x.data, (x,), lambda g: (-g,), "neg")


def pow(x: Tensor, exponent: float) -> Tensor:
    """``x ** exponent`` for a scalar exponent.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> x = tensor([3.0], requires_grad=True)
        >>> (x ** 2).backward(); x.grad.tolist()
        [6.0]
    """
    if isinstance(exponent, Tensor) or not isinstance(exponent, (numbers.Real, np.generic)):
        raise TypeError(
            f"pow: the exponent must be a Python or NumPy number, got {type(exponent).__name__}"
        )
    p = float(exponent)
    xd = x.data
    y = np.power(xd, x.dtype.type(p))

    def backward(g):
        if p == 0.0:
            return (np.zeros_like(xd),)
        return (g * (x.dtype.type(p) * np.power(xd, x.dtype.type(p - 1.0))),)

    return record(y, (x,), backward, "pow")


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with NumPy's ``matmul`` rules (1-D operands, broadcast batch dims).

    Example:
        >>> from cnnperf.autograd import tensor
        >>> matmul(tensor([[1.0, 2.0]]), np.ones((2, 3), np.float32)).shape
        (1, 3)
    """
    op = "matmul"
    like = a if isinstance(a, Tensor) else b
    a, b = as_operand(a, like, op), as_operand(b, like, op)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"{op}: both operands need at least one dimension, got shapes {a.shape} and {b.shape}"
        )
    if a.dtype != b.dtype:
        raise ValueError(f"{op}: operands have different dtypes, {a.dtype} and {b.dtype}")
    ad, bd = a.data, b.data
    a2 = ad if ad.ndim > 1 else ad[None, :]  # (.., m, k)
    b2 = bd if bd.ndim > 1 else bd[:, None]  # (.., k, n)
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(
            f"{op}: shapes {a.shape} and {b.shape} do not match: {a2.shape[-1]} columns "
            f"against {b2.shape[-2]} rows"
        )
    try:
        y2 = np.matmul(a2, b2)  # (.., m, n)
    except ValueError:
        raise ValueError(
            f"{op}: the batch dimensions of shapes {a.shape} and {b.shape} do not broadcast"
        ) from None
    y = y2
    if bd.ndim == 1:
        y = y[..., 0]
    if ad.ndim == 1:
        y = y[..., 0, :] if bd.ndim > 1 else y[..., 0]

    def backward(g):
        g2 = g.reshape(y2.shape)  # (.., m, n)
        ga = gb = None
        if a.requires_grad:
            ga = _unbroadcast(np.matmul(g2, np.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if b.requires_grad:
            gb = _unbroadcast(np.matmul(np.swapaxes(a2, -1, -2), g2), b2.shape).reshape(b.shape)
        return ga, gb

    return record(y, (a, b), backward, op)


def astype(x: Tensor, dtype: Any) -> Tensor:
    """Cast to float32 or float64; the gradient is cast back to x's dtype.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> astype(tensor([1.0]), np.float64).dtype
        dtype('float64')
    """
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"astype: dtype must be float32 or float64, got {dtype}")
    return record(x.data.astype(dtype), (x,), lambda g: (g.astype(x.dtype),), "astype")


# ----------------------------------------------------------------------------------------------
# reductions


def _axes(axis, dim, x: Tensor, op: str) -> tuple[int, ...]:
    if dim is not None:
        if axis is not None:
            raise TypeError(f"{op}: pass axis or its alias dim, not both")
        axis = dim
    if axis is None:
        return tuple(range(x.ndim))
    raw = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in raw:
        try:
            a = operator.index(a)
        except TypeError:
            raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}") from None
        if not -x.ndim <= a < builtins.max(x.ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor of shape {x.shape}")
        out.append(a % builtins.max(x.ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: axis {axis!r} repeats a dimension")
    return tuple(out) if x.ndim else ()


def _keep(keepdims: bool, keepdim, op: str) -> bool:
    if keepdim is not None:
        if keepdims:
            raise TypeError(f"{op}: pass keepdims or its alias keepdim, not both")
        return bool(keepdim)
    return bool(keepdims)


def _expand(g: np.ndarray, axes: tuple[int, ...], keep: bool, shape) -> np.ndarray:
    if not keep:
        g = np.expand_dims(g, axes)
    return np.array(np.broadcast_to(g, shape), order="C")  # ascontiguousarray makes 0-d 1-d


def sum(x: Tensor, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
    """Sum over ``axis`` (an int, a tuple, or None for every axis).

    ``dim`` and ``keepdim`` are PyTorch's names for ``axis`` and ``keepdims``.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> sum(tensor([[1.0, 2.0], [3.0, 4.0]]), axis=0).data.tolist()
        [4.0, 6.0]
    """
    axes = _axes(axis, dim, x, "sum")
    keep = _keep(keepdims, keepdim, "sum")
    y = np.sum(x.data, axis=axes, keepdims=keep)
    return record(y, (x,), lambda g: (_expand(g, axes, keep, x.shape),), "sum")


def mean(x: Tensor, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
    """Mean over ``axis`` (an int, a tuple, or None for every axis).

    Example:
        >>> from cnnperf.autograd import tensor
        >>> mean(tensor([[1.0, 2.0], [3.0, 4.0]]), axis=1, keepdims=True).shape
        (2, 1)
    """
    axes = _axes(axis, dim, x, "mean")
    keep = _keep(keepdims, keepdim, "mean")
    count = math.prod(x.shape[a] for a in axes)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty: NaN, as torch
        y = np.mean(x.data, axis=axes, keepdims=keep)

    def backward(g):
        with np.errstate(invalid="ignore", divide="ignore"):
            return (_expand(g / x.dtype.type(count), axes, keep, x.shape),)

    return record(y, (x,), backward, "mean")
