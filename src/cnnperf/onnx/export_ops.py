"""Graph IR -> ONNX node emitters for the network ops (conv, pools, norms, activations, ...).

An emitter ``(ctx, node, ins, outs) -> None`` receives the IR node, the ONNX names of its
inputs and the ONNX names its outputs must get, and appends standard ``ai.onnx`` nodes through
the :class:`ExportContext` (which also holds the target opset and every IR value's static
shape). Forms the target opset lacks are spelled with older ops (HardSwish before opset 14 as
``x * HardSigmoid(x)``, GELU before opset 20 with Erf or Tanh); forms no opset can express
raise NotImplementedError naming the node.

Example:
    >>> sorted(NETWORK_EXPORTERS)[:3]
    ['avg_pool2d', 'batch_norm', 'clip']
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

from ..compile.graph import Node

__all__ = [
    "ExportContext",
    "NETWORK_EXPORTERS",
    "Emitter",
    "attr_op",
    "emit_activation",
    "sanitize",
    "unsupported",
]


def sanitize(name: str) -> str:
    """A name made of ``[A-Za-z0-9_.]`` only, not starting with a digit or a dot.

    Example:
        >>> sanitize("layer1.0/conv 1:0"), sanitize("0"), sanitize("")
        ('layer1.0_conv_1_0', '_0', 'value')
    """
    s = re.sub(r"[^A-Za-z0-9_.]", "_", str(name))
    if not s:
        return "value"
    return "_" + s if s[0].isdigit() or s[0] == "." else s


class ExportContext:
    """Names, initializers and nodes of the ONNX graph being built from one IR graph.

    Args:
        onnx: the imported ``onnx`` package.
        opset: the target ai.onnx opset.
        initializers: the IR graph's constants (emitted, as float32, when first used).
        shapes: every IR value's static shape (None: the dynamic batch).
        reserved: ONNX names given in advance (graph inputs and outputs), IR name -> ONNX name.
    """

    def __init__(self, onnx, opset: int, initializers: dict, shapes: dict, reserved: dict) -> None:
        self.onnx, self.opset, self.shapes = onnx, opset, shapes
        self.ir_initializers = initializers
        self.nodes: list = []
        self.initializers: list = []
        self.names: dict[str, str] = dict(reserved)
        self.used: set[str] = set(reserved.values())

    def fresh(self, base: str) -> str:
        """A new, unused ONNX name built from ``base``."""
        base = sanitize(base)
        name, i = base, 0
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def name(self, ir_value: str) -> str:
        """The ONNX name of an IR value (an IR initializer is emitted on first use)."""
        if ir_value not in self.names:
            self.names[ir_value] = onnx_name = self.fresh(ir_value)
            if ir_value in self.ir_initializers:
                self.initializers.append(_float32_tensor(self.onnx, self.ir_initializers[ir_value],
                                                         onnx_name, ir_value))  # fmt: skip
        return self.names[ir_value]

    def const(self, value, base: str, dtype=np.float32) -> str:
        """A new initializer holding ``value`` (int64 for shapes and axes); returns its name."""
        name = self.fresh(base)
        array = np.asarray(value, dtype=dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str], base: str, **attrs):
        """Append an ONNX node named after ``base`` (unique)."""
        name = self.fresh("node_" + (base or op_type))
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outputs, name=name, **attrs))

    def temp(self, base: str) -> str:
        """A name for an intermediate value of a multi-node form."""
        return self.fresh(base)


def _float32_tensor(onnx, value, name: str, ir_name: str):
    a = np.asarray(value)
    if a.dtype.kind != "f":
        raise ValueError(
            f"cnnperf.onnx.save: initializer {ir_name!r} has dtype {a.dtype}; the graph IR "
            "computes in floating point and exports float32 weights only"
        )
    return onnx.numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), name)


def unsupported(node: Node, why: str) -> NotImplementedError:
    """The error for an IR node form ONNX (at the target opset) cannot express."""
    return NotImplementedError(f"cnnperf.onnx.save: {node.op} node {node.name!r}: {why}")


#: ``(ctx, ir_node, onnx_input_names, onnx_output_names) -> None``
Emitter = Callable[[ExportContext, Node, list, list], None]


# -- activations (IR ops, and the ones a conv carries after fuse_conv_activation) --------------
def _clip(ctx: ExportContext, x: str, out: str, lo: float, hi: float, base: str) -> None:
    ins = [x, "" if lo == -math.inf else ctx.const(lo, base + ".min"),
           "" if hi == math.inf else ctx.const(hi, base + ".max")]  # fmt: skip
    while ins[-1] == "":
        ins.pop()  # trailing absent optional inputs are left out
    ctx.node("Clip", ins, [out], base)


def _gelu_formula(ctx: ExportContext, x: str, out: str, tanh: bool, base: str) -> None:
    """``0.5 x (1 + erf(x / sqrt 2))`` or ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    t = [ctx.temp(f"{base}.gelu{i}") for i in range(6)]
    if tanh:
        ctx.node("Mul", [x, x], [t[0]], base)
        ctx.node("Mul", [t[0], x], [t[1]], base)  # x^3
        ctx.node("Mul", [t[1], ctx.const(0.044715, base + ".c")], [t[2]], base)
        ctx.node("Add", [x, t[2]], [t[3]], base)
        ctx.node("Mul", [t[3], ctx.const(math.sqrt(2 / math.pi), base + ".k")], [t[4]], base)
        ctx.node("Tanh", [t[4]], [t[5]], base)
    else:
        ctx.node("Div", [x, ctx.const(math.sqrt(2.0), base + ".sqrt2")], [t[4]], base)
        ctx.node("Erf", [t[4]], [t[5]], base)
    one_plus, half_x = ctx.temp(base + ".one_plus"), ctx.temp(base + ".half_x")
    ctx.node("Add", [t[5], ctx.const(1.0, base + ".one")], [one_plus], base)
    ctx.node("Mul", [x, ctx.const(0.5, base + ".half")], [half_x], base)
    ctx.node("Mul", [half_x, one_plus], [out], base)


def emit_activation(ctx: ExportContext, activation, x: str, out: str, base: str) -> None:
    """ONNX nodes computing ``out = activation(x)`` for an ``ops.conv2d`` activation
    (a name from ``ops.epilogue.FUSABLE_ACTIVATIONS`` or ``(name, alpha)``)."""
    kind, alpha = activation if isinstance(activation, tuple) else (activation, None)
    if kind in ("relu", "sigmoid", "tanh"):
        ctx.node(kind.capitalize(), [x], [out], base)
    elif kind == "relu6":
        _clip(ctx, x, out, 0.0, 6.0, base)
    elif kind == "leaky_relu":
        ctx.node("LeakyRelu", [x], [out], base, alpha=float(0.01 if alpha is None else alpha))
    elif kind == "elu":
        ctx.node("Elu", [x], [out], base, alpha=float(1.0 if alpha is None else alpha))
    elif kind == "hardsigmoid":
        ctx.node("HardSigmoid", [x], [out], base, alpha=1 / 6, beta=0.5)
    elif kind == "hardswish" and ctx.opset >= 14:
        ctx.node("HardSwish", [x], [out], base)
    elif kind in ("hardswish", "silu"):  # x * gate(x)
        gate = ctx.temp(f"{base}.gate")
        if kind == "silu":
            ctx.node("Sigmoid", [x], [gate], base)
        else:
            ctx.node("HardSigmoid", [x], [gate], base, alpha=1 / 6, beta=0.5)
        ctx.node("Mul", [x, gate], [out], base)
    elif kind in ("gelu", "gelu_tanh") and ctx.opset >= 20:
        ctx.node("Gelu", [x], [out], base, approximate="tanh" if kind == "gelu_tanh" else "none")
    elif kind in ("gelu", "gelu_tanh"):
        _gelu_formula(ctx, x, out, kind == "gelu_tanh", base)
    else:
        raise NotImplementedError(f"cnnperf.onnx.save: no ONNX form for activation {activation!r}")


def _unary(onnx_op: str, **defaults: float) -> Emitter:
    def emit(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
        attrs = {k: float(n.attrs.get(k, v)) for k, v in defaults.items()}
        ctx.node(onnx_op, ins, outs, n.name, **attrs)

    return emit


def attr_op(onnx_op: str, **attrs_of: Callable) -> Emitter:
    """An emitter of one ``onnx_op`` node whose attributes are ``f(ir_attrs)``."""

    def emit(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
        ctx.node(onnx_op, ins, outs, n.name, **{k: f(n.attrs) for k, f in attrs_of.items()})

    return emit


def _ir_clip(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    lo, hi = float(n.attrs.get("min", -math.inf)), float(n.attrs.get("max", math.inf))
    _clip(ctx, ins[0], outs[0], lo, hi, n.name)


def _ir_hardswish(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    emit_activation(ctx, "hardswish", ins[0], outs[0], n.name)


# -- network ops -----------------------------------------------------------------------------
def _conv(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    a = n.attrs
    pt, pb, pl, pr = (int(p) for p in a.get("pads", (0, 0, 0, 0)))
    attrs = dict(
        kernel_shape=[int(k) for k in ctx.shapes[n.inputs[1]][2:]],
        strides=[int(s) for s in a.get("stride", (1, 1))],
        pads=[pt, pl, pb, pr],  # ONNX order: (h_begin, w_begin, h_end, w_end)
        dilations=[int(d) for d in a.get("dilation", (1, 1))],
        group=int(a.get("groups", 1)),
    )
    # a compiled graph's conv may carry an activation and a residual (its last input): written
    # out as Conv, Add, activation
    activation, residual = a.get("activation"), bool(a.get("residual", False))
    conv_ins = ins[:-1] if residual else ins
    if activation is None and not residual:
        ctx.node("Conv", conv_ins, outs, n.name, **attrs)
        return
    y = ctx.temp(f"{n.name}.conv")
    ctx.node("Conv", conv_ins, [y], n.name, **attrs)
    if residual:
        s = outs[0] if activation is None else ctx.temp(f"{n.name}.residual")
        ctx.node("Add", [y, ins[-1]], [s], n.name)
        y = s
    if activation is not None:
        emit_activation(ctx, activation, y, outs[0], n.name)


def _conv_transpose(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    """ConvTranspose; output_padding first shrinks the end crop (the same rows of the full
    result). Rows the result lacks (negative pads, output_padding past ONNX Runtime's limit
    of max(stride, dilation) - 1) hold only the bias: a Pad of zeros, then the bias added."""
    a = n.attrs
    s = [int(v) for v in a.get("stride", (1, 1))]
    d = [int(v) for v in a.get("dilation", (1, 1))]
    pt, pb, pl, pr = (int(p) for p in a.get("pads", (0, 0, 0, 0)))
    op = [int(v) for v in a.get("output_padding", (0, 0))]
    end = [max(e - o, 0) for e, o in zip((pb, pr), op, strict=True)]
    extra = [max(o - e, 0) for e, o in zip((pb, pr), op, strict=True)]
    lead = [max(-pt, 0), max(-pl, 0)]
    attrs = dict(kernel_shape=[int(k) for k in ctx.shapes[n.inputs[1]][2:]], strides=s,
                 dilations=d, group=int(a.get("groups", 1)),
                 pads=[max(pt, 0), max(pl, 0), *end])  # fmt: skip
    if not any(lead) and all(extra[i] < max(s[i], d[i]) for i in range(2)):
        if any(extra):
            attrs["output_padding"] = extra
        ctx.node("ConvTranspose", ins, outs, n.name, **attrs)
        return
    y = ctx.temp(f"{n.name}.convt")
    ctx.node("ConvTranspose", ins[:2], [y], n.name, **attrs)
    pads = ctx.const([0, 0, *lead, 0, 0, *extra], f"{n.name}.bias_rows", np.int64)
    if len(ins) < 3:
        ctx.node("Pad", [y, pads], outs, n.name)
        return
    padded, bias = ctx.temp(f"{n.name}.padded"), ctx.temp(f"{n.name}.bias_c11")
    ctx.node("Pad", [y, pads], [padded], n.name)
    ctx.node("Unsqueeze", [ins[2], ctx.const([1, 2], f"{n.name}.axes", np.int64)], [bias], n.name)
    ctx.node("Add", [padded, bias], outs, n.name)


def _pool(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    """MaxPool / AveragePool with the IR's window count and divisors on every runtime.

    ONNX's shape inference keeps a ceil_mode window that would start in the end padding, where
    ONNX Runtime, PyTorch and the IR drop it: then the end pads are set so that ceil_mode=0
    gives the IR's windows (pads are never read by max, never counted by an average without
    count_include_pad). An average with count_include_pad, and pads ONNX Runtime rejects (not
    smaller than the kernel), are written with an explicit Pad node (see _pool_padded).
    """
    a, is_max = n.attrs, n.op == "max_pool2d"
    k = [int(v) for v in a["kernel"]]
    s = [int(v) for v in a.get("stride", k)]
    d = [int(v) for v in a.get("dilation", (1, 1))]
    pt, pb, pl, pr = (int(p) for p in a.get("pads", (0, 0, 0, 0)))
    begin, end, cip = [pt, pl], [pb, pr], bool(a.get("count_include_pad", False))
    if not is_max and d != [1, 1] and ctx.opset < 19:
        raise unsupported(n, f"AveragePool has dilations only from opset 19 (target {ctx.opset})")
    size, o = list(ctx.shapes[n.inputs[0]][2:]), list(ctx.shapes[n.outputs[0]][2:])
    dk = [d[i] * (k[i] - 1) + 1 for i in range(2)]
    span = [size[i] + begin[i] + end[i] - dk[i] for i in range(2)]
    floor_o = [span[i] // s[i] + 1 for i in range(2)]
    ceil_o = [-(-span[i] // s[i]) + 1 for i in range(2)]  # ONNX's ceil_mode count
    ceil, pool_end = int(o != floor_o and o == ceil_o), end
    if o not in (floor_o, ceil_o):
        if not is_max and cip:
            return _pool_padded(ctx, n, ins[0], outs, k, s, d, begin, end, size, o, dk)
        pool_end = [max(0, (o[i] - 1) * s[i] + dk[i] - size[i] - begin[i]) for i in range(2)]
    if any(p >= k[i % 2] for i, p in enumerate(begin + pool_end)):
        return _pool_padded(ctx, n, ins[0], outs, k, s, d, begin, end, size, o, dk)
    attrs: dict = dict(kernel_shape=k, strides=s, ceil_mode=ceil, pads=[*begin, *pool_end])
    if is_max or d != [1, 1]:
        attrs["dilations"] = d
    if not is_max:
        attrs["count_include_pad"] = int(cip)
    ctx.node("MaxPool" if is_max else "AveragePool", ins, outs, n.name, **attrs)


def _pool_padded(ctx, n: Node, x: str, outs: list, k, s, d, begin, end, size, o, dk) -> None:
    """Pad (max: -inf up to the last window's end; average: zeros, the IR's pads, which
    count_include_pad counts) then a pool with ceil_mode=0 and, if it makes more windows than
    the IR's ceil_mode, a Slice keeping the first ones."""
    is_max = n.op == "max_pool2d"
    if not is_max and not n.attrs.get("count_include_pad", False):
        raise unsupported(n, f"average pooling without count_include_pad with pads "
                             f"{[*begin, *end]} (top, left, bottom, right) not smaller than "
                             f"the kernel {k}")  # fmt: skip
    reach = [(o[i] - 1) * s[i] + dk[i] - size[i] - begin[i] for i in range(2)]  # past the input
    pad_end = [max(0, r) for r in reach] if is_max else end
    pool_end = [0, 0] if is_max else [max(0, reach[i] - end[i]) for i in range(2)]
    if any(p >= k[i] for i, p in enumerate(pool_end)):
        raise unsupported(n, f"a ceil_mode window overhang {pool_end} not smaller than {k}")
    pads = ctx.const([0, 0, *begin, 0, 0, *pad_end], f"{n.name}.pads", np.int64)
    fill = ctx.const(-math.inf if is_max else 0.0, f"{n.name}.fill")
    padded, pooled = ctx.temp(f"{n.name}.padded"), ctx.temp(f"{n.name}.pooled")
    ctx.node("Pad", [x, pads, fill], [padded], n.name)
    count = [(size[i] + begin[i] + pad_end[i] + pool_end[i] - dk[i]) // s[i] + 1 for i in range(2)]
    attrs: dict = dict(kernel_shape=k, strides=s, pads=[0, 0, *pool_end])
    if is_max or d != [1, 1]:
        attrs["dilations"] = d
    if not is_max:
        attrs["count_include_pad"] = 0
    op = "MaxPool" if is_max else "AveragePool"
    if count == o:
        ctx.node(op, [padded], outs, n.name, **attrs)
        return
    ctx.node(op, [padded], [pooled], n.name, **attrs)
    keep = [ctx.const(v, f"{n.name}.{w}", np.int64) for v, w in (([0, 0], "starts"), (o, "ends"),
                                                                  ([2, 3], "axes"))]  # fmt: skip
    ctx.node("Slice", [pooled, *keep], outs, n.name)


def _batch_norm(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    eps = float(n.attrs.get("eps", 1e-5))
    ctx.node("BatchNormalization", ins, outs, n.name, epsilon=eps)


def _softmax(onnx_op: str) -> Emitter:
    def emit(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
        shape = ctx.shapes[n.inputs[0]]
        rank, axis = len(shape), int(n.attrs.get("axis", -1))
        ax = axis % rank if rank else 0
        if not n.attrs.get("coerce_2d", False) or ax >= rank - 1:
            ctx.node(onnx_op, ins, outs, n.name, axis=axis)
            return
        # Opset < 13 semantics: over everything from `axis` on, as one row.
        if sum(d is None for d in shape) > 1:
            raise unsupported(n, f"coerce_2d on an input {shape} with several dynamic dims")
        flat, soft = ctx.temp(f"{n.name}.2d"), ctx.temp(f"{n.name}.{onnx_op}")
        ctx.node("Flatten", ins, [flat], n.name, axis=ax)
        ctx.node(onnx_op, [flat], [soft], n.name, axis=1)
        back = ctx.const([-1 if d is None else d for d in shape], f"{n.name}.shape", np.int64)
        ctx.node("Reshape", [soft, back], outs, n.name)

    return emit


def _gemm(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    a = n.attrs
    ctx.node("Gemm", ins, outs, n.name, alpha=float(a.get("alpha", 1.0)),
             beta=float(a.get("beta", 1.0)), transA=int(a.get("trans_a", 0)),
             transB=int(a.get("trans_b", 0)))  # fmt: skip


#: The network IR ops' emitters (tensor glue, reductions and norms: export_ops_tensor).
NETWORK_EXPORTERS: dict[str, Emitter] = {
    "conv2d": _conv,
    "conv_transpose2d": _conv_transpose,
    "max_pool2d": _pool,
    "avg_pool2d": _pool,
    "global_avg_pool2d": attr_op("GlobalAveragePool"),
    "global_max_pool2d": attr_op("GlobalMaxPool"),
    "batch_norm": _batch_norm,
    "relu": _unary("Relu"),
    "leaky_relu": _unary("LeakyRelu", alpha=0.01),
    "elu": _unary("Elu", alpha=1.0),
    # ONNX's defaults (float32 roundings of SELU's constants)
    "selu": _unary("Selu", alpha=1.67326319217681884765625, gamma=1.05070102214813232421875),
    "prelu": attr_op("PRelu"),
    "clip": _ir_clip,
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "hardsigmoid": _unary("HardSigmoid", alpha=0.2, beta=0.5),
    "hardswish": _ir_hardswish,
    "erf": attr_op("Erf"),
    "sqrt": attr_op("Sqrt"),
    "softmax": _softmax("Softmax"),
    "log_softmax": _softmax("LogSoftmax"),
    "gemm": _gemm,
    "matmul": attr_op("MatMul"),
}
