"""``Tensor``: a float32/float64 ndarray that records the operations applied to it.

The tape is define-by-run: every differentiable operation (:mod:`.arith`, :mod:`.shaping`,
:mod:`.functional`) computes its result with the array-level ``ops`` and, when grad mode is on
and an input requires grad, attaches a :class:`Node` holding its inputs and a backward closure.
``Tensor.backward`` orders the graph topologically once (iteratively: no recursion limit for
deep networks), then runs each node's closure once, summing the gradients of a tensor used more
than once. Leaf tensors that require grad accumulate into ``.grad`` across backward calls;
intermediate results keep no ``.grad``. Unless ``retain_graph=True``, a backward pass frees the
arrays the nodes saved, and a second pass through the same graph raises.

>>> from cnnperf.autograd import tensor
>>> x = tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad.tolist()
[2.0, 4.0, 6.0]
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .grad_mode import is_grad_enabled, no_grad

__all__ = ["Tensor", "Node", "tensor", "record", "as_tensor"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

BackwardFn = Callable[[np.ndarray], Sequence[np.ndarray | None]]


def _check_float_array(data: np.ndarray, where: str) -> np.ndarray:
    if data.dtype not in FLOAT_DTYPES:
        kind = np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_
        hint = (
            "; cast it with .astype(np.float32) (integer arrays are accepted only as loss "
            "targets, passed as plain arrays)"
            if kind
            else ""
        )
        raise ValueError(
            f"{where}: data must have dtype float32 or float64, got {data.dtype} with shape "
            f"{tuple(data.shape)}{hint}"
        )
    return data


class Node:
    """One recorded operation: its input tensors and the closure from grad_out to their grads.

    ``backward(grad_out)`` returns one gradient (or None) per entry of ``parents``, each shaped
    like that parent. The engine calls it at most once per backward pass.

    Example:
        >>> from cnnperf.autograd import tensor
        >>> (tensor([1.0], requires_grad=True) * 2).grad_fn
        <mul>
    """

    __slots__ = ("name", "parents", "_backward")

    def __init__(self, name: str, parents: tuple[Tensor | None, ...], backward: BackwardFn):
        self.name = name
        self.parents = parents
        self._backward: BackwardFn | None = backward

    def apply(self, grad_out: np.ndarray) -> Sequence[np.ndarray | None]:
        """Gradients of the parents given the gradient of this node's output."""
        if self._backward is None:
            raise RuntimeError(
                f"backward: trying to backward through the graph a second time (node "
                f"<{self.name}>): its saved arrays were freed by the first backward; pass "
                f"retain_graph=True to the first call to backward through it twice"
            )
        return self._backward(grad_out)

    def release(self) -> None:
        """Drop the backward closure and the arrays it saved."""
        self._backward = None

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Tensor:
    """A float32 or float64 ndarray with an optional gradient, recorded for ``backward``.

    ``Tensor(array)`` wraps the array without copying it; :func:`tensor` copies and also accepts
    Python data. Operators ``+ - * / @ ** -x`` and indexing are differentiable and broadcast like
    NumPy; the other operations live in :mod:`cnnperf.autograd.functional`. An ndarray or a
    Python number combines with a Tensor on either side (``ndarray + Tensor`` is a Tensor).

    Attributes:
        data: the values (an ndarray, shared, never copied by the Tensor itself).
        grad: accumulated gradient of a leaf (an ndarray like ``data``), or None.
        requires_grad: whether operations on this tensor are recorded for backward.

    Example:
        >>> import numpy as np
        >>> w = Tensor(np.ones(3, np.float32), requires_grad=True)
        >>> loss = (w * np.arange(3, dtype=np.float32)).sum()
        >>> loss.backward(); w.grad.tolist()
        [0.0, 1.0, 2.0]
    """

    __slots__ = ("data", "grad", "requires_grad", "_node", "__weakref__")
    # NumPy defers to Tensor's reflected operators: ndarray + Tensor calls Tensor.__radd__.
    __array_ufunc__ = None

    def __init__(self, data: np.ndarray, requires_grad: bool = False) -> None:
        if isinstance(data, np.generic):
            data = np.asarray(data)
        if not isinstance(data, np.ndarray):
            raise TypeError(
                f"Tensor: data must be a NumPy array, got {type(data).__name__}; use "
                f"cnnperf.tensor(...) to build one from Python data"
            )
        self.data: np.ndarray = _check_float_array(data, "Tensor")
        self.grad: np.ndarray | None = None
        self.requires_grad: bool = bool(requires_grad)
        self._node: Node | None = None

    # ------------------------------------------------------------------------------------------
    # array attributes

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of ``data``."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """The dtype of ``data`` (float32 or float64)."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """The number of dimensions of ``data``."""
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user (not the result of a recorded operation)."""
        return self._node is None

    @property
    def grad_fn(self) -> Node | None:
        """The node that produced this tensor, or None for a leaf."""
        return self._node

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self):
        """The sub-tensors along dimension 0 (each one recorded, like ``self[i]``)."""
        return (self[i] for i in range(len(self)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return np.asarray(self.data, dtype=dtype)

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        extra = f", dtype={self.dtype}"
        if self._node is not None:
            extra += f", grad_fn={self._node!r}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    # ------------------------------------------------------------------------------------------
    # conversions

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied), also when the tensor requires grad."""
        return self.data

    def item(self) -> float:
        """The value of a one-element tensor as a Python float."""
        if self.data.size != 1:
            raise ValueError(
                f"item: only a one-element tensor converts to a Python number, got shape "
                f"{self.shape}"
            )
        return self.data.item()

    def detach(self) -> Tensor:
        """A new leaf sharing ``data``, cut from the graph (``requires_grad=False``)."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` on a leaf in place and return it."""
        if self._node is not None and not requires_grad:
            raise RuntimeError(
                "requires_grad_: a non-leaf tensor always requires grad; use .detach() to "
                "cut it from the graph"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (``grad = None``)."""
        self.grad = None

    # ------------------------------------------------------------------------------------------
    # backward

    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into the ``.grad`` of every leaf it depends on.

        Args:
            grad: the gradient with respect to this tensor, shaped like it; may be omitted for
                a one-element tensor (a loss), where it is 1.
            retain_graph: keep the saved arrays so that the graph can be walked again.

        Example:
            >>> from cnnperf.autograd import tensor
            >>> x = tensor([3.0], requires_grad=True)
            >>> (x * x).backward(); x.grad.tolist()
            [6.0]
        """
        if not self.requires_grad:
            raise RuntimeError(
                f"backward: this tensor (shape {self.shape}) does not require grad and has no "
                f"grad_fn: none of its inputs required grad, or it was computed under no_grad"
            )
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward: grad can be implicitly created only for scalar outputs, but "
                    f"this tensor has shape {self.shape}; pass grad, an array of that shape"
                )
            g = np.ones(self.shape, self.dtype)
        else:
            g = grad.data if isinstance(grad, Tensor) else np.asarray(grad)
            if not (np.issubdtype(g.dtype, np.floating) or np.issubdtype(g.dtype, np.integer)):
                raise ValueError(f"backward: grad must be a float array, got dtype {g.dtype}")
            if g.shape != self.shape:
                raise ValueError(
                    f"backward: grad of shape {tuple(g.shape)} does not match the tensor's "
                    f"shape {self.shape}"
                )
            g = np.asarray(g, dtype=self.dtype)
        with no_grad():
            _run_backward(self, g, retain_graph)

    # ------------------------------------------------------------------------------------------
    # operators (defined in .arith)

    def __add__(self, other: Any) -> Tensor:
        return _arith.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _arith.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _arith.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _arith.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _arith.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _arith.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _arith.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _arith.div(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _arith.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _arith.matmul(other, self)

    def __pow__(self, exponent: float) -> Tensor:
        return _arith.pow(self, exponent)

    def __neg__(self) -> Tensor:
        return _arith.neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __getitem__(self, index: Any) -> Tensor:
        return _shaping.getitem(self, index)

    def sum(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        """Sum over ``axis`` (int, tuple or None for all); ``dim``/``keepdim`` are aliases."""
        return _arith.sum(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def mean(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        """Mean over ``axis`` (int, tuple or None for all); ``dim``/``keepdim`` are aliases."""
        return _arith.mean(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def reshape(self, *shape: Any) -> Tensor:
        """Differentiable reshape; ``shape`` as ints or one tuple, one entry may be -1."""
        return _shaping.reshape(self, *shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dimensions ``start_dim..end_dim`` into one (``torch.flatten``)."""
        return _shaping.flatten(self, start_dim, end_dim)

    def permute(self, *dims: Any) -> Tensor:
        """Reorder the dimensions (``torch.permute``)."""
        return _shaping.permute(self, *dims)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Swap two dimensions (``torch.transpose``)."""
        return _shaping.transpose(self, dim0, dim1)

    @property
    def T(self) -> Tensor:
        """The dimensions reversed (NumPy's ``.T``)."""
        return _shaping.permute(self)

    def astype(self, dtype: Any) -> Tensor:
        """Differentiable cast to float32 or float64."""
        return _arith.astype(self, dtype)


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors requiring grad reachable from ``root``, each after all of its parents."""
    order: list[Tensor] = []
    visited = {id(root)}
    stack: list[tuple[Tensor, Any]] = [(root, iter(root._node.parents if root._node else ()))]
    while stack:
        t, parents = stack[-1]
        for p in parents:
            if p is not None and p.requires_grad and id(p) not in visited:
                visited.add(id(p))
                stack.append((p, iter(p._node.parents if p._node else ())))
                break
        else:
            stack.pop()
            order.append(t)
    return order


def _run_backward(root: Tensor, grad: np.ndarray, retain_graph: bool) -> None:
    order = _topological_order(root)
    # Pending gradients by tensor id; every tensor in `order` stays alive for the whole pass.
    pending: dict[int, np.ndarray] = {id(root): grad}
    for t in reversed(order):
        g = pending.pop(id(t), None)
        if g is None:
            continue
        node = t._node
        if node is None:
            # A leaf owns its gradient: never an alias of another tensor's gradient array.
            if t.grad is None:
                t.grad = np.array(g, dtype=t.dtype, copy=True, order="C")
            else:
                t.grad = t.grad + g
            continue
        parent_grads = node.apply(g)
        if not retain_graph:
            node.release()
        if len(parent_grads) != len(node.parents):
            raise RuntimeError(
                f"backward: node <{node.name}> returned {len(parent_grads)} gradients for "
                f"{len(node.parents)} inputs"
            )
        for p, pg in zip(node.parents, parent_grads, strict=True):
            if p is None or pg is None or not p.requires_grad:
                continue
            pg = np.asarray(pg)
            if pg.shape != p.shape:
                raise RuntimeError(
                    f"backward: node <{node.name}> returned a gradient of shape "
                    f"{tuple(pg.shape)} for an input of shape {p.shape}"
                )
            if pg.dtype != p.dtype:
                pg = pg.astype(p.dtype)
            prev = pending.get(id(p))
            pending[id(p)] = pg if prev is None else prev + pg


def record(
    data: np.ndarray, parents: Sequence[Tensor | None], backward: BackwardFn, name: str
) -> Tensor:
    """Wrap an operation's result; attach a :class:`Node` when grad mode is on and an input
    requires grad (the building block of every differentiable function).

    Args:
        data: the forward result.
        parents: the operation's tensor inputs (None for an absent optional input).
        backward: maps the result's gradient to one gradient (or None) per parent.
        name: the operation's name, shown as ``grad_fn``.

    Example:
        >>> x = tensor([2.0], requires_grad=True)
        >>> y = record(x.data * 3, (x,), lambda g: (g * 3,), "triple")
        >>> y.backward(); x.grad.tolist()
        [3.0]
    """
    out = Tensor(np.asarray(data))
    if is_grad_enabled() and any(p is not None and p.requires_grad for p in parents):
        out.requires_grad = True
        out._node = Node(name, tuple(parents), backward)
    return out


def as_tensor(value: Any, name: str, op: str) -> Tensor:
    """``value`` if it is a Tensor, else a constant Tensor wrapping the float array ``value``.

    Example:
        >>> as_tensor(np.zeros(2, np.float32), "weight", "linear").requires_grad
        False
    """
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (np.ndarray, np.generic, list, tuple, numbers.Real)):
        arr = np.asarray(value)
        if arr.dtype not in FLOAT_DTYPES:
            raise ValueError(
                f"{op}: {name} must be a Tensor or a float32/float64 array, got dtype "
                f"{arr.dtype} with shape {tuple(arr.shape)}"
            )
        return Tensor(arr)
    raise TypeError(f"{op}: {name} must be a Tensor or an ndarray, got {type(value).__name__}")


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A new leaf Tensor holding a copy of ``data`` (as ``torch.tensor``).

    Args:
        data: an ndarray (its dtype is kept), a Tensor, or Python numbers/lists (float32
            unless ``dtype`` says otherwise).
        requires_grad: record operations on it and accumulate its gradient in ``.grad``.
        dtype: float32 or float64 to cast to; integer data needs it.

    Example:
        >>> t = tensor([[1.0, 2.0]], requires_grad=True)
        >>> t.shape, t.dtype
        ((1, 2), dtype('float32'))
    """
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"tensor: dtype must be float32 or float64, got {dtype}")
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, (np.ndarray, np.generic)):
        arr = np.array(data, dtype=dtype, copy=True)
    else:
        arr = np.array(data, dtype=dtype)
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(np.float32)  # Python floats: the native float32, as torch
    return Tensor(_check_float_array(arr, "tensor"), requires_grad=requires_grad)


# isort: split
# The operator modules need Tensor: imported last, on purpose.
from . import arith as _arith  # noqa: E402
from . import shaping as _shaping  # noqa: E402
