"""Tracing a ``cnnperf.nn`` model into the graph IR by running one forward pass.

How it works (no change to ``nn`` or ``autograd``): for the duration of the trace, every
module's ``forward`` is shadowed by an instance attribute and every parameter stops requiring
grad, so the autograd tape records exactly the operations that depend on the input.

- A module of a type in :data:`LEAF_MODULES` (Conv2d, BatchNorm, Linear, pools, most
  activations, Flatten, Dropout, Identity) runs as usual, then emits its graph node(s) from its
  attributes. BatchNorm uses its running statistics and Dropout is the identity (the model is
  traced in eval mode and restored afterwards).
- Any other module (Sequential, ConvTranspose2d, ELU, GELU, LogSoftmax, a residual block with
  ``out + identity`` in its forward), and a leaf module in a form its attributes do not cover
  (reflect padding, ``divisor_override``, batch statistics, ...), is read back from the tape:
  each result's ``grad_fn`` names the operation and holds its inputs and arguments. Every
  operation of :mod:`cnnperf.autograd.functional` and of the Tensor methods that inference can
  use has a mapping (:data:`TAPE_OPS`): arithmetic, ``matmul``, ``pow``, ``sum``/``mean``,
  reshape/flatten, permute/transpose, ``cat``, indexing, the layers (conv, transposed conv,
  linear, pools, batch norm, pad) and the activations. GELU becomes one ``gelu`` node (its
  ``approximate`` form kept).
- A Tensor that does not depend on the input (a parameter, a constant, or a value computed
  from them in a forward) becomes a constant initializer, named after the parameter if it is
  one.

Anything else (the losses, training-mode dropout, a reshape that mixes the dynamic batch
into other dimensions, ...) raises ``NotImplementedError`` naming the operation and the module
whose forward used it. The compiled graph computes in float32.

Example:
    >>> from cnnperf import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
    >>> g = trace(model, (None, 3, 5, 5))
    >>> [n.op for n in g.nodes], g.inputs, g.outputs
    (['conv2d', 'relu', 'flatten'], {'input': (None, 3, 5, 5)}, ['output'])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import nn
from ..autograd.grad_mode import enable_grad
from ..autograd.tensor import Tensor
from .graph import Graph, Node
from .trace_tape import _TAPE, TAPE_OPS, _adaptive_avg, _conv, _linear, _pool, _silu_of

__all__ = ["trace", "LEAF_MODULES", "TAPE_OPS"]


class _Tracer:
    def __init__(self, dynamic_batch: bool) -> None:
        self.graph = Graph()
        self.dynamic = dynamic_batch
        self.names: dict[int, str] = {}
        self.alive: list[Any] = []  # keeps traced tensors alive so that their ids stay unique
        self.used: set[str] = set()
        self.stack: list[tuple[str, Module]] = []
        self.param_names: dict[int, str] = {}
        self.depend: dict[int, bool] = {}  # id -> computed from the graph input?

    # -- naming ----------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        base = base or "value"
        if re.fullmatch(r"output(_\d+)?", base):  # reserved for the graph outputs
            base = "_" + base
        name, i = base, 0
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def bind(self, t: Tensor, name: str) -> None:
        self.names[id(t)] = name
        self.alive.append(t)

    def const(self, value: Any, base: str) -> str:
        name = self.fresh(base)
        self.graph.initializers[name] = np.array(value, dtype=np.float32, copy=True)
        return name

    def emit(self, op: str, inputs: list[str], base: str, **attrs: Any) -> str:
        out = self.fresh(base)
        self.graph.nodes.append(Node(op, inputs, [out], attrs, name=out))
        return out

    # -- values ----------------------------------------------------------------------------
    def name_of(self, t: Tensor) -> str:
        """The value name of ``t``, emitting the tape operations that produced it first
        (ancestors first, without recursion: a long chain of operations is fine)."""
        todo: list[tuple[Tensor, bool]] = [(t, False)]
        while todo:
            u, ready = todo.pop()
            if id(u) in self.names:
                continue
            if u._node is None or not self.depends(u):
                self.bind(u, self.const(u.data, self.param_names.get(id(u), "const")))
            elif ready:
                self.bind(u, self._from_tape(u, u._node))
            else:
                todo.append((u, True))
                todo += [(p, False) for p in u._node.parents if p is not None]
        return self.names[id(t)]

    def depends(self, t: Tensor) -> bool:
        """Whether ``t`` is computed from the graph input (else it is a constant, even if the
        tape holds how parameters made it)."""
        todo = [t]
        while todo:
            u = todo[-1]
            if id(u) in self.depend:
                todo.pop()
                continue
            parents = [] if u._node is None else [p for p in u._node.parents if p is not None]
            pending = [p for p in parents if id(p) not in self.depend]
            if pending:
                todo += pending
                continue
            self.depend[id(u)] = any(self.depend[id(p)] for p in parents)
            self.alive.append(u)
            todo.pop()
        return self.depend[id(t)]

    def _where(self) -> str:
        if not self.stack:
            return "the model's forward"
        qual, m = self.stack[-1]
        return f"the forward of {qual or 'the model'} ({type(m).__name__})"

    def unsupported(self, what: str) -> NotImplementedError:
        return NotImplementedError(
            f"trace: {what} in {self._where()} has no graph IR form. Traceable: every "
            f"cnnperf.nn layer but the losses, containers, and in custom forwards the Tensor "
            f"operations {list(TAPE_OPS)}"
        )

    def saved(self, node, name: str) -> Any:
        """Argument ``name`` of a tape operation, read from its backward closure (the variable
        names are those of ``cnnperf.autograd``: the trace tests cover every mapped op)."""
        code = getattr(node._backward, "__code__", None)
        cells = getattr(node._backward, "__closure__", None) or ()
        cells = dict(zip(code.co_freevars, cells, strict=True)) if code else {}
        try:
            return cells[name].cell_contents
        except (KeyError, ValueError):
            raise self.unsupported(
                f"the operation {node.name!r} (its argument {name!r} is not on the tape)"
            ) from None

    def weight(self, t: Tensor | None, what: str) -> str | None:
        """The initializer name of a constant operand (None stays None)."""
        if t is None:
            return None
        if self.depends(t):
            raise self.unsupported(f"{what} computed from the input (it must be constant)")
        return self.name_of(t)

    def _from_tape(self, t: Tensor, node) -> str:
        base = f"{self.stack[-1][0]}.{node.name}" if self.stack and self.stack[-1][0] else node.name
        mapper = _TAPE.get(node.name)
        if mapper is None:
            raise self.unsupported(f"the operation {node.name!r} (output shape {t.shape})")
        return mapper(self, t, node, base)


# -- known modules -------------------------------------------------------------------------------
Emitter = Callable[[_Tracer, Any, str, str, Tensor, Tensor], str]


def _via_tape(tr: _Tracer, m, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    """A module form its attributes do not cover: read its operations off the tape."""
    tr.stack.append((q, m))
    try:
        return tr.name_of(y)
    finally:
        tr.stack.pop()


def _m_conv(tr: _Tracer, m: nn.Conv2d, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    if m.padding_mode != "zeros":  # F.pad then an unpadded conv2d
        return _via_tape(tr, m, q, x, xt, y)
    return _conv(tr, q, x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


def _m_batch_norm(tr: _Tracer, m, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    if m.running_mean is None or m.running_var is None:  # batch statistics, also in eval
        return _via_tape(tr, m, q, x, xt, y)
    c = m.num_features
    scale = tr.name_of(m.weight) if m.weight is not None else tr.const(np.ones(c), q + ".weight")
    bias = tr.name_of(m.bias) if m.bias is not None else tr.const(np.zeros(c), q + ".bias")
    stats = [tr.const(v, f"{q}.{k}") for k, v in (("running_mean", m.running_mean),
                                                  ("running_var", m.running_var))]  # fmt: skip
    return tr.emit("batch_norm", [x, scale, bias, *stats], q, eps=float(m.eps))


def _m_linear(tr: _Tracer, m: nn.Linear, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    return _linear(tr, q, x, xt, m.weight, m.bias)


def _m_max_pool(tr: _Tracer, m: nn.MaxPool2d, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    return _pool(tr, q, "max", x, xt, y, m.kernel_size, m.stride, m.padding, m.dilation,
                 m.ceil_mode)  # fmt: skip


def _m_avg_pool(tr: _Tracer, m: nn.AvgPool2d, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    return _pool(tr, q, "avg", x, xt, y, m.kernel_size, m.stride, m.padding, 1, m.ceil_mode,
                 m.count_include_pad, m.divisor_override)  # fmt: skip


def _m_adaptive_avg(tr: _Tracer, m, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    return _adaptive_avg(tr, q, x, xt, y)


def _m_flatten(tr: _Tracer, m: nn.Flatten, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    if m.start_dim == 1 and m.end_dim in (-1, xt.ndim - 1):
        return tr.emit("flatten", [x], q, axis=1)
    return _via_tape(tr, m, q, x, xt, y)


def _m_softmax(tr: _Tracer, m: nn.Softmax, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    if m.dim is None:  # PyTorch's legacy choice, made (and warned about) by F.softmax
        return _via_tape(tr, m, q, x, xt, y)
    return tr.emit("softmax", [x], q, axis=int(m.dim) % max(xt.ndim, 1))


def _op(op: str, **attrs_of: Callable[[Any], Any]) -> Emitter:
    def emitter(tr: _Tracer, m, q: str, x: str, xt: Tensor, y: Tensor) -> str:
        return tr.emit(op, [x], q, **{k: f(m) for k, f in attrs_of.items()})

    return emitter


Module = nn.Module

#: module type -> emitter of its graph nodes; the other layers (ConvTranspose2d, ELU, GELU,
#: LogSoftmax, ...) are read off the autograd tape like a custom forward
LEAF_MODULES: dict[type, Emitter] = {
    nn.Conv2d: _m_conv,
    nn.BatchNorm2d: _m_batch_norm,
    nn.BatchNorm1d: _m_batch_norm,
    nn.Linear: _m_linear,
    nn.MaxPool2d: _m_max_pool,
    nn.AvgPool2d: _m_avg_pool,
    nn.AdaptiveAvgPool2d: _m_adaptive_avg,
    nn.Flatten: _m_flatten,
    nn.Softmax: _m_softmax,
    nn.ReLU: _op("relu"),
    nn.ReLU6: _op("clip", min=lambda m: 0.0, max=lambda m: 6.0),
    nn.LeakyReLU: _op("leaky_relu", alpha=lambda m: float(m.negative_slope)),
    nn.Hardtanh: _op("clip", min=lambda m: float(m.min_val), max=lambda m: float(m.max_val)),
    nn.Sigmoid: _op("sigmoid"),
    nn.Tanh: _op("tanh"),
    nn.Hardswish: _op("hardswish"),
    nn.Hardsigmoid: _op("hardsigmoid", alpha=lambda m: 1 / 6, beta=lambda m: 0.5),
    nn.SiLU: lambda tr, m, q, x, xt, y: _silu_of(tr, x, q),
    nn.Dropout: _op("identity"),
    nn.Identity: _op("identity"),
}


def _leaf_forward(tr: _Tracer, m: Module, qual: str, emitter: Emitter, orig: Callable):
    def forward(*args: Any, **kwargs: Any) -> Any:
        out = orig(*args, **kwargs)
        if kwargs or len(args) != 1 or not isinstance(out, Tensor):
            raise tr.unsupported(
                f"{type(m).__name__} {qual!r} called with {len(args)} arguments and keywords "
                f"{sorted(kwargs)}, returning {type(out).__name__} (traced: one Tensor in, one out)"
            )
        (xt,) = args
        if out is xt:  # Identity, Dropout in eval: the same tensor, the same value
            return out
        tr.bind(out, emitter(tr, m, qual or type(m).__name__.lower(), tr.name_of(xt), xt, out))
        return out

    return forward


def _custom_forward(tr: _Tracer, m: Module, qual: str, orig: Callable):
    def forward(*args: Any, **kwargs: Any) -> Any:
        tr.stack.append((qual, m))
        try:
            out = orig(*args, **kwargs)
            # Resolve the results here, so an unsupported op is blamed on this module.
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, Tensor):
                    tr.name_of(t)
            return out
        finally:
            tr.stack.pop()

    return forward


def trace(model: Module, input_shape: Sequence[int | None]) -> Graph:
    """Build the graph IR of ``model`` by running one forward pass (in eval mode).

    Args:
        model: a ``cnnperf.nn.Module`` taking one input Tensor and returning a Tensor or a
            tuple of Tensors.
        input_shape: ``(n, c, h, w)``-like; the first (batch) dimension may be None (the graph
            accepts any batch; the trace runs with batch 2). A shape without the batch
            dimension is not accepted: pass ``(None, *shape)``.

    Returns:
        A validated Graph with input ``"input"`` and outputs ``"output"`` (or ``"output_0"``,
        ``"output_1"``, ... for a tuple); weights are float32 copies.

    Raises:
        NotImplementedError: a module or operation with no graph IR form (the message names it
            and the module whose forward used it).

    Example:
        >>> from cnnperf import nn
        >>> g = trace(nn.Sequential(nn.Linear(4, 2), nn.Dropout(), nn.GELU()), (None, 4))
        >>> [n.op for n in g.nodes]
        ['gemm', 'gelu']
    """
    shape = tuple(input_shape)
    if not shape or any(d is not None and (not isinstance(d, (int, np.integer)) or d < 1)
                        for d in shape) or None in shape[1:]:  # fmt: skip
        raise ValueError(
            f"trace: input_shape must be positive ints (the first may be None), got {shape}"
        )
    params = list(model.named_parameters())
    dtype = params[0][1].data.dtype if params else np.dtype(np.float32)
    x = np.random.default_rng(0).standard_normal((shape[0] or 2, *shape[1:])).astype(dtype)
    tr = _Tracer(shape[0] is None)
    tr.param_names = {id(p): name for name, p in params}
    tr.graph.inputs = {"input": shape}
    tr.used.add("input")
    xt = Tensor(x, requires_grad=True)
    tr.bind(xt, "input")
    tr.depend[id(xt)] = True

    patched = []
    for qual, m in model.named_modules():
        emitter = LEAF_MODULES.get(type(m))
        orig = m.forward
        new = _leaf_forward(tr, m, qual, emitter, orig) if emitter else None
        m.__dict__["forward"] = new or _custom_forward(tr, m, qual, orig)
        patched.append(m)
    was_training = model.training
    model.eval()
    try:
        with enable_grad():
            out = model(xt)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if not outs or not all(isinstance(t, Tensor) for t in outs):
            raise NotImplementedError(
                f"trace: the model must return a Tensor or a tuple of Tensors, got "
                f"{type(out).__name__}"
            )
        names = [tr.name_of(t) for t in outs]
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)
        model.train(was_training)
    g = tr.graph
    final = ["output"] if len(names) == 1 else [f"output_{i}" for i in range(len(names))]
    producers = g.producers()
    renamed: dict[str, str] = {}
    for old, new in zip(names, final, strict=True):
        node = producers.get(old)
        if node is None or old in renamed:  # the input, a constant or a repeated output
            g.nodes.append(Node("identity", [renamed.get(old, old)], [new], name=new))
        else:
            node.outputs = [new if v == old else v for v in node.outputs]
            for n in g.nodes:
                n.inputs = [new if v == old else v for v in n.inputs]
            renamed[old] = new
        g.outputs.append(new)
    return g.remove_unused().validate()
