"""Graph IR -> ONNX emitters for GELU, Softplus, Mish, the unary math ops, the comparison masks
and ``where``, ``expand``, ReduceMax / ReduceMin / ReduceL2, InstanceNormalization and
GlobalLpPool. See :mod:`cnnperf.onnx.export_ops` for the emitter interface.

Forms the target opset lacks are spelled with older ops: Gelu before opset 20 with Erf or
Tanh, Mish before opset 18 as ``x * Tanh(Softplus(x))``. The IR's booleans are float32 masks
(``graph.OPS``): a comparison is written as the ONNX comparison then ``Cast`` to float, and
``where`` casts its condition to bool first (``x != 0``, as the IR reads it).

Example:
    >>> sorted(MATH_EXPORTERS)[:4]
    ['abs', 'ceil', 'equal', 'exp']
"""

from __future__ import annotations

import numpy as np

from ..compile.graph import Node
from .export_ops import Emitter, ExportContext, attr_op, emit_activation, unsupported
from .export_ops_tensor import _reduce_over

__all__ = ["MATH_EXPORTERS"]


def _gelu(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    approximate = n.attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise unsupported(n, f"approximate={approximate!r} (not 'none' or 'tanh')")
    kind = "gelu_tanh" if approximate == "tanh" else "gelu"
    emit_activation(ctx, kind, ins[0], outs[0], n.name)


def _mish(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    if ctx.opset >= 18:
        ctx.node("Mish", ins, outs, n.name)
        return
    soft, gate = ctx.temp(f"{n.name}.softplus"), ctx.temp(f"{n.name}.tanh")
    ctx.node("Softplus", ins, [soft], n.name)
    ctx.node("Tanh", [soft], [gate], n.name)
    ctx.node("Mul", [ins[0], gate], outs, n.name)


def _mask(onnx_op: str) -> Emitter:
    def emit(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
        b = ctx.temp(f"{n.name}.bool")
        ctx.node(onnx_op, ins, [b], n.name)
        ctx.node("Cast", [b], outs, n.name, to=ctx.onnx.TensorProto.FLOAT)

    return emit


def _where(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    cond = ctx.temp(f"{n.name}.cond")
    ctx.node("Cast", ins[:1], [cond], n.name, to=ctx.onnx.TensorProto.BOOL)
    ctx.node("Where", [cond, *ins[1:]], outs, n.name)


def _expand(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    shape = ctx.const([int(d) for d in n.attrs["shape"]], f"{n.name}.shape", np.int64)
    ctx.node("Expand", [ins[0], shape], outs, n.name)


def _reduce(onnx_op: str) -> Emitter:
    def emit(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
        keepdims = bool(n.attrs.get("keepdims", True))
        axes = tuple(n.attrs.get("axes", ()))
        _reduce_over(ctx, onnx_op, ins[0], outs[0], axes, keepdims, n.name)

    return emit


#: The math, mask, reduction and normalisation IR ops' emitters (merged into export.EXPORTERS).
MATH_EXPORTERS: dict[str, Emitter] = {
    "gelu": _gelu,
    "softplus": attr_op("Softplus"),
    "mish": _mish,
    "abs": attr_op("Abs"),
    "exp": attr_op("Exp"),
    "log": attr_op("Log"),
    "neg": attr_op("Neg"),
    "reciprocal": attr_op("Reciprocal"),
    "floor": attr_op("Floor"),
    "ceil": attr_op("Ceil"),
    "reduce_max": _reduce("ReduceMax"),
    "reduce_min": _reduce("ReduceMin"),
    "reduce_l2": _reduce("ReduceL2"),
    "instance_norm": attr_op("InstanceNormalization", epsilon=lambda a: float(a.get("eps", 1e-5))),
    "expand": _expand,
    "equal": _mask("Equal"),
    "less": _mask("Less"),
    "greater": _mask("Greater"),
    "where": _where,
    "global_lp_pool": attr_op("GlobalLpPool", p=lambda a: int(a.get("p", 2))),
}
