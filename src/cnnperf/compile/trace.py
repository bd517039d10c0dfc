"""Tracing a ``cnnperf.nn`` model into the graph IR by running one forward pass.

How it works (no change to ``nn`` or ``autograd``): for the duration of the trace, every
module's ``forward`` is shadowed by an instance attribute.

- A module of a known type (:data:`LEAF_MODULES`: Conv2d, BatchNorm, Linear, pools,
  activations, Flatten, Dropout, Identity) runs as usual, then emits its graph node(s) from its
  attributes; its weights are copied into initializers. BatchNorm uses its running statistics
  and Dropout is the identity (the model is traced in eval mode and restored afterwards).
- Any other module (Sequential, a residual block with ``out + identity`` in its forward) runs
  its own forward; the Tensor operations between known modules are read back from the autograd
  tape (each result's ``grad_fn`` names the operation and holds its inputs), so ``+ - * /``,
  ``relu``/``sigmoid``/``tanh``/``hardswish``/``relu6``/``hardsigmoid``/``silu``, ``reshape``
  and ``flatten`` that keep the batch dimension, and ``cat`` become graph nodes.
- A Tensor that does not depend on the input (a parameter or constant used in a forward)
  becomes a constant initializer.

Anything else raises ``NotImplementedError`` naming the operation and the module whose forward
used it. The compiled graph computes in float32.

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

from .. import nn, shapes
from ..autograd.grad_mode import enable_grad
from ..autograd.tensor import Tensor
from .graph import Graph, Node

__all__ = ["trace", "LEAF_MODULES", "TAPE_OPS"]

# op names read from the autograd tape -> how they are traced (see _Tracer._from_tape)
TAPE_OPS = ("add", "sub", "mul", "div", "neg", "relu", "sigmoid", "tanh", "hardswish", "relu6")
TAPE_OPS += ("hardsigmoid", "silu", "reshape", "cat")


class _Tracer:
    def __init__(self) -> None:
        self.graph = Graph()
        self.names: dict[int, str] = {}
        self.alive: list[Any] = []  # keeps traced tensors alive so that their ids stay unique
        self.used: set[str] = set()
        self.stack: list[tuple[str, Module]] = []

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

    def const(self, value: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        self.graph.initializers[name] = np.array(value, dtype=np.float32, copy=True)
        return name

    def emit(self, op: str, inputs: list[str], base: str, **attrs: Any) -> str:
        out = self.fresh(base)
        self.graph.nodes.append(Node(op, inputs, [out], attrs, name=out))
        return out

    # -- values ----------------------------------------------------------------------------
    def name_of(self, t: Tensor) -> str:
        """The value name of ``t``, emitting the tape operations that produced it first."""
        name = self.names.get(id(t))
        if name is None:
            node = t._node
            name = self.const(t.data, "const") if node is None else self._from_tape(t, node)
            self.bind(t, name)
        return name

    def _where(self) -> str:
        if not self.stack:
            return "the model's forward"
        qual, m = self.stack[-1]
        return f"the forward of {qual or 'the model'} ({type(m).__name__})"

    def unsupported(self, what: str) -> NotImplementedError:
        return NotImplementedError(
            f"trace: {what} in {self._where()} has no graph IR form. Traceable: the modules "
            f"{sorted(c.__name__ for c in LEAF_MODULES)}, containers, and in custom forwards "
            f"the Tensor operations {list(TAPE_OPS)}"
        )

    def _from_tape(self, t: Tensor, node) -> str:
        op, parents = node.name, [p for p in node.parents if p is not None]
        base = f"{self.stack[-1][0]}.{op}" if self.stack and self.stack[-1][0] else op
        if op in ("add", "sub", "mul", "div"):
            return self.emit(op, [self.name_of(p) for p in parents], base)
        x = self.name_of(parents[0])
        if op == "neg":
            return self.emit("mul", [x, self.const(np.float32(-1), "minus_one")], base)
        if op in ("relu", "sigmoid", "tanh", "hardswish"):
            return self.emit(op, [x], base)
        if op == "relu6":
            return self.emit("clip", [x], base, min=0.0, max=6.0)
        if op == "hardsigmoid":
            return self.emit("hardsigmoid", [x], base, alpha=1 / 6, beta=0.5)
        if op == "silu":
            return self.emit("mul", [x, self.emit("sigmoid", [x], base + ".sigmoid")], base)
        if op == "reshape":
            return self.emit("reshape", [x], base, shape=_batch_reshape(self, parents[0], t))
        if op == "cat":
            return self.emit("concat", [x] + [self.name_of(p) for p in parents[1:]], base,
                             axis=_concat_axis(self, parents, t))  # fmt: skip
        raise self.unsupported(f"the operation {op!r} (output shape {t.shape})")


def _batch_reshape(tr: _Tracer, x: Tensor, y: Tensor) -> tuple:
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise tr.unsupported(f"a reshape from {x.shape} to {y.shape} (not keeping the batch dim)")
    return (0, *y.shape[1:])


def _concat_axis(tr: _Tracer, parts: Sequence[Tensor], y: Tensor) -> int:
    axes = [
        ax
        for ax in range(y.ndim)
        if sum(p.shape[ax] for p in parts) == y.shape[ax]
        and all(p.shape[:ax] + p.shape[ax + 1 :] == y.shape[:ax] + y.shape[ax + 1 :] for p in parts)
    ]
    if len(axes) != 1 or axes[0] == 0:
        raise tr.unsupported(f"a cat of {[p.shape for p in parts]} (its axis is ambiguous)")
    return axes[0]


# -- known modules -------------------------------------------------------------------------------
Emitter = Callable[[_Tracer, Any, str, str, Tensor, Tensor], str]


def _conv(tr: _Tracer, m: nn.Conv2d, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    if m.padding_mode != "zeros":
        raise tr.unsupported(f"Conv2d {q!r} with padding_mode={m.padding_mode!r}")
    pads = shapes.normalize_padding(m.padding, m.kernel_size, m.dilation, m.stride)
    ins = [x, tr.const(m.weight.data, q + ".weight")]
    if m.bias is not None:
        ins.append(tr.const(m.bias.data, q + ".bias"))
    return tr.emit("conv2d", ins, q, stride=tuple(m.stride), pads=tuple(pads),
                   dilation=tuple(m.dilation), groups=m.groups)  # fmt: skip


def _batch_norm(tr: _Tracer, m, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    if m.running_mean is None or m.running_var is None:
        raise tr.unsupported(f"{type(m).__name__} {q!r} without running statistics")
    c = m.num_features
    scale = m.weight.data if m.weight is not None else np.ones(c, np.float32)
    bias = m.bias.data if m.bias is not None else np.zeros(c, np.float32)
    ins = [x] + [tr.const(v, f"{q}.{k}") for k, v in (("weight", scale), ("bias", bias),
               ("running_mean", m.running_mean), ("running_var", m.running_var))]  # fmt: skip
    return tr.emit("batch_norm", ins, q, eps=float(m.eps))


def _linear(tr: _Tracer, m: nn.Linear, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    if xt.ndim != 2:
        raise tr.unsupported(f"Linear {q!r} on a {xt.ndim}-D input {xt.shape} (only 2-D)")
    ins = [x, tr.const(m.weight.data, q + ".weight")]
    if m.bias is not None:
        ins.append(tr.const(m.bias.data, q + ".bias"))
    return tr.emit("gemm", ins, q, trans_b=1)


def _pair(v: Any) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _max_pool(tr: _Tracer, m: nn.MaxPool2d, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    if m.return_indices:
        raise tr.unsupported(f"MaxPool2d {q!r} with return_indices=True")
    k = _pair(m.kernel_size)
    s, (ph, pw) = _pair(k if m.stride is None else m.stride), _pair(m.padding)
    return tr.emit("max_pool2d", [x], q, kernel=k, stride=s, pads=(ph, ph, pw, pw),
                   dilation=_pair(m.dilation), ceil_mode=m.ceil_mode)  # fmt: skip


def _avg_pool(tr: _Tracer, m: nn.AvgPool2d, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    if m.divisor_override is not None:
        raise tr.unsupported(f"AvgPool2d {q!r} with divisor_override")
    k = _pair(m.kernel_size)
    s, (ph, pw) = _pair(k if m.stride is None else m.stride), _pair(m.padding)
    return tr.emit("avg_pool2d", [x], q, kernel=k, stride=s, pads=(ph, ph, pw, pw),
                   ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad)  # fmt: skip


def _adaptive_avg(tr: _Tracer, m, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    (h, w), (oh, ow) = xt.shape[-2:], y.shape[-2:]
    if xt.ndim != 4 or h % oh or w % ow:
        raise tr.unsupported(f"AdaptiveAvgPool2d {q!r} from {xt.shape} to {y.shape}")
    if (oh, ow) == (1, 1):
        return tr.emit("global_avg_pool2d", [x], q)
    k = (h // oh, w // ow)
    return tr.emit("avg_pool2d", [x], q, kernel=k, stride=k)


def _flatten(tr: _Tracer, m: nn.Flatten, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    if m.start_dim == 1 and m.end_dim in (-1, xt.ndim - 1):
        return tr.emit("flatten", [x], q, axis=1)
    return tr.emit("reshape", [x], q, shape=_batch_reshape(tr, xt, y))


def _softmax(tr: _Tracer, m: nn.Softmax, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    if m.dim is None:
        raise tr.unsupported(f"Softmax {q!r} with dim=None")
    return tr.emit("softmax", [x], q, axis=int(m.dim))


def _op(op: str, **attrs_of: Callable[[Any], Any]) -> Emitter:
    def emitter(tr: _Tracer, m, q: str, x: str, xt: Tensor, y: Tensor) -> str:
        return tr.emit(op, [x], q, **{k: f(m) for k, f in attrs_of.items()})

    return emitter


def _silu(tr: _Tracer, m, q: str, x: str, xt: Tensor, y: Tensor) -> str:
    return tr.emit("mul", [x, tr.emit("sigmoid", [x], q + ".sigmoid")], q)


Module = nn.Module

#: module type -> emitter of its graph nodes
LEAF_MODULES: dict[type, Emitter] = {
    nn.Conv2d: _conv,
    nn.BatchNorm2d: _batch_norm,
    nn.BatchNorm1d: _batch_norm,
    nn.Linear: _linear,
    nn.MaxPool2d: _max_pool,
    nn.AvgPool2d: _avg_pool,
    nn.AdaptiveAvgPool2d: _adaptive_avg,
    nn.Flatten: _flatten,
    nn.Softmax: _softmax,
    nn.ReLU: _op("relu"),
    nn.ReLU6: _op("clip", min=lambda m: 0.0, max=lambda m: 6.0),
    nn.LeakyReLU: _op("leaky_relu", alpha=lambda m: float(m.negative_slope)),
    nn.Hardtanh: _op("clip", min=lambda m: float(m.min_val), max=lambda m: float(m.max_val)),
    nn.Sigmoid: _op("sigmoid"),
    nn.Tanh: _op("tanh"),
    nn.Hardswish: _op("hardswish"),
    nn.Hardsigmoid: _op("hardsigmoid", alpha=lambda m: 1 / 6, beta=lambda m: 0.5),
    nn.SiLU: _silu,
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
        >>> g = trace(nn.Sequential(nn.Linear(4, 2), nn.Dropout()), (None, 4))
        >>> [n.op for n in g.nodes]
        ['gemm']
    """
    shape = tuple(input_shape)
    if not shape or any(d is not None and (not isinstance(d, (int, np.integer)) or d < 1)
                        for d in shape) or None in shape[1:]:  # fmt: skip
        raise ValueError(
            f"trace: input_shape must be positive ints (the first may be None), got {shape}"
        )
    params = [p for p in model.parameters()]
    dtype = params[0].data.dtype if params else np.dtype(np.float32)
    x = np.random.default_rng(0).standard_normal((shape[0] or 2, *shape[1:])).astype(dtype)
    tr = _Tracer()
    tr.graph.inputs = {"input": shape}
    tr.used.add("input")
    xt = Tensor(x, requires_grad=True)
    tr.bind(xt, "input")

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
