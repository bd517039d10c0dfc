"""Differentiable shape operations: reshape, flatten, permute/transpose, cat and indexing.

Each moves or copies values without arithmetic, so its backward moves the gradient back:
reshape reshapes it, permute inverts the permutation, cat splits it, indexing scatters it
(adding up where an integer array repeats an index).

>>> from cnnperf.autograd import tensor
>>> x = tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
>>> cat([x.T, x[:1]], dim=0).sum().backward()
>>> x.grad.tolist()
[[2.0, 2.0], [1.0, 1.0]]
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from .arith import as_operand
from .tensor import Tensor, record

__all__ = ["reshape", "flatten", "permute", "transpose", "cat", "concatenate", "getitem"]


def reshape(x: Tensor, *shape: Any) -> Tensor:
    """Differentiable reshape (``shape`` as ints or one tuple; one entry may be -1).

    Example:
        >>> from cnnperf.autograd import tensor
        >>> reshape(tensor([1.0, 2.0, 3.0, 4.0]), 2, -1).shape
        (2, 2)
    """
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        y = x.data.reshape(shape)
    except (ValueError, TypeError):
        raise ValueError(
            f"reshape: cannot reshape a tensor of shape {x.shape} ({x.data.size} elements) "
            f"into shape {tuple(shape)}"
        ) from None
    return record(y, (x,), lambda g: (g.reshape(x.shape),), "reshape")


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions ``start_dim`` to ``end_dim`` (inclusive) into one, as ``torch.flatten``.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> flatten(tensor(np.zeros((2, 3, 4), np.float32)), 1).shape
        (2, 12)
    """
    nd = max(x.ndim, 1)
    s, e = start_dim, end_dim
    if not (-nd <= s < nd and -nd <= e < nd):
        raise ValueError(
            f"flatten: start_dim={start_dim} and end_dim={end_dim} must lie in [-{nd}, {nd - 1}] "
            f"for a tensor of shape {x.shape}"
        )
    s, e = s % nd, e % nd
    if s > e:
        raise ValueError(f"flatten: start_dim={start_dim} comes after end_dim={end_dim}")
    if x.ndim == 0:
        return reshape(x, 1)
    shape = x.shape[:s] + (math.prod(x.shape[s : e + 1]),) + x.shape[e + 1 :]
    return reshape(x, shape)


def permute(x: Tensor, *dims: Any) -> Tensor:
    """Reorder the dimensions (``dims`` as ints or one tuple; none reverses them, as ``.T``).

    Example:
        >>> from cnnperf.autograd import tensor
        >>> permute(tensor(np.zeros((2, 3, 4), np.float32)), 2, 0, 1).shape
        (4, 2, 3)
    """
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if not dims:
        dims = tuple(range(x.ndim))[::-1]
    try:
        perm = tuple(operator.index(d) % max(x.ndim, 1) for d in dims)
        if sorted(perm) != list(range(x.ndim)) or any(
            not -x.ndim <= operator.index(d) < x.ndim for d in dims
        ):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"permute: dims {tuple(dims)} are not a permutation of the {x.ndim} dimensions of "
            f"a tensor of shape {x.shape}"
        ) from None
    inverse = tuple(np.argsort(perm))
    y = np.transpose(x.data, perm)
    return record(y, (x,), lambda g: (np.transpose(g, inverse),), "permute")


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions, as ``torch.transpose``.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> transpose(tensor(np.zeros((2, 3, 4), np.float32)), 0, -1).shape
        (4, 3, 2)
    """
    perm = list(range(x.ndim))
    for d in (dim0, dim1):
        if not -x.ndim <= d < x.ndim:
            raise ValueError(
                f"transpose: dimension {d} is out of range for a tensor of shape {x.shape}"
            )
    perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
    return permute(x, perm)


def cat(tensors: Sequence[Any], dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Concatenate along ``dim`` (``axis`` is NumPy's name for it), as ``torch.cat``.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> cat([tensor([[1.0]]), tensor([[2.0, 3.0]])], dim=1).data.tolist()
        [[1.0, 2.0, 3.0]]
    """
    op = "cat"
    if axis is not None:
        dim = axis
    if isinstance(tensors, Tensor) or len(tensors) == 0:
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    like = next((t for t in tensors if isinstance(t, Tensor)), None)
    if like is None:
        like = Tensor(np.asarray(tensors[0]))
    ts = [as_operand(t, like, op) for t in tensors]
    shapes = [t.shape for t in ts]
    dtypes = {t.dtype for t in ts}
    if len(dtypes) > 1:
        raise ValueError(f"{op}: tensors have different dtypes {sorted(map(str, dtypes))}")
    nd = ts[0].ndim
    if nd == 0 or any(t.ndim != nd for t in ts):
        raise ValueError(f"{op}: tensors must have the same number (>= 1) of dims, got {shapes}")
    if not -nd <= dim < nd:
        raise ValueError(f"{op}: dim {dim} is out of range for tensors of shapes {shapes}")
    d = dim % nd
    for s in shapes[1:]:
        if s[:d] + s[d + 1 :] != shapes[0][:d] + shapes[0][d + 1 :]:
            raise ValueError(
                f"{op}: tensors of shapes {shapes} differ outside dimension {d}, along which "
                f"they are concatenated"
            )
    y = np.concatenate([t.data for t in ts], axis=d)
    bounds = np.cumsum([s[d] for s in shapes])[:-1]

    def backward(g):
        parts = np.split(g, bounds, axis=d)
        return tuple(p if t.requires_grad else None for p, t in zip(parts, ts, strict=True))

    return record(y, tuple(ts), backward, op)


def concatenate(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """NumPy's name for :func:`cat`.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> concatenate([tensor([1.0]), tensor([2.0])]).data.tolist()
        [1.0, 2.0]
    """
    return cat(tensors, dim=axis)


def _is_basic(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(
        isinstance(p, (slice, type(None), type(Ellipsis)))
        or (isinstance(p, numbers.Integral) and not isinstance(p, bool))
        for p in parts
    )


def getitem(x: Tensor, index: Any) -> Tensor:
    """``x[index]`` for basic indices (ints, slices, None, ...) and NumPy integer/bool arrays.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> x = tensor([1.0, 2.0, 3.0], requires_grad=True)
        >>> x[1:].sum().backward(); x.grad.tolist()
        [0.0, 1.0, 1.0]
    """
    if isinstance(index, Tensor) or (
        isinstance(index, tuple) and any(isinstance(i, Tensor) for i in index)
    ):
        raise TypeError("getitem: index with ints, slices or NumPy arrays, not with a Tensor")
    if isinstance(index, list):
        index = np.asarray(index)
    basic = _is_basic(index)
    try:
        y = x.data[index]
    except IndexError as e:  # IndexError, not ValueError: iteration relies on it
        raise IndexError(f"getitem: index {index!r} is invalid for shape {x.shape}: {e}") from None
    if basic:
        y = np.array(y, copy=True)  # no view into x.data: later in-place updates stay separate

    def backward(g):
        gx = np.zeros(x.shape, x.dtype)
        if basic:
            gx[index] = g
        else:
            np.add.at(gx, index, g)  # repeated indices add up
        return (gx,)

    return record(y, (x,), backward, "getitem")
