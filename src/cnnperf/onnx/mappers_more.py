"""ONNX mappers for the remaining common ops: Softplus, Mish, the unary math ops (Abs, Exp, Log,
Neg, Reciprocal, Floor, Ceil), ReduceMax / ReduceMin / ReduceL2, InstanceNormalization, Expand,
the comparisons (Equal, Less, Greater) with Where, and GlobalLpPool.

Booleans at run time are float32 masks (see ``graph.OPS``): Equal, Less and Greater on run-time
values write 1.0 / 0.0, Where reads its condition as ``cond != 0``; on constants (shape glue)
all of them fold in NumPy with ONNX's dtypes. Shape values that hold the dynamic batch
(``importer.BATCH``) fold only where the answer does not depend on the batch size.
"""

from __future__ import annotations

import numpy as np

from .importer import BATCH, ImportContext
from .mappers_extra import float_input, reduce_mapper

__all__ = ["MORE_MAPPERS"]


def _unsupported(node, why: str) -> NotImplementedError:
    return NotImplementedError(f"{node.op_type} node {node.name!r}: {why}")


def _batch_free(node, *arrays) -> None:
    """NotImplementedError if an integer constant holds the dynamic batch's stand-in."""
    for a in arrays:
        if a.dtype.kind in "iu" and np.any(np.abs(a) >= BATCH):
            raise _unsupported(
                node,
                "this computation on the dynamic batch dimension is not supported; load with "
                "input_shapes={name: shape} giving a fixed batch size",
            )


def _unary(ir_op: str, fold=None, batch_ok: bool = False):
    """One IR node; a constant input is folded with ``fold`` (in its own dtype)."""

    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        x = node.input[0]
        if fold is not None and ctx.is_const(x):
            v = ctx.const(x)
            if not batch_ok:
                _batch_free(node, v)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                ctx.set_const(node.output[0], np.asarray(fold(v)).astype(v.dtype))
            return
        ctx.emit(ir_op, [float_input(ctx, x)], node.output[:1], node)

    return mapper


def _reduce(ir_op: str, fold):
    """ReduceMax / ReduceMin / ReduceL2 (axes an input from opset 18)."""
    inner = reduce_mapper(ir_op, axes_input_from=18, fold=fold)

    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        if ctx.is_const(node.input[0]):
            _batch_free(node, ctx.const(node.input[0]))
        axes = ctx.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        noop = ctx.opset >= 18 and int(attrs.get("noop_with_empty_axes", 0))
        if ir_op == "reduce_l2" and noop and (axes is None or axes.size == 0):
            # No reduction, but the element-wise part still applies: sqrt(x**2) = |x|.
            _unary("abs", np.abs, batch_ok=True)(ctx, node, attrs)
            return
        inner(ctx, node, attrs)

    return mapper


def _l2(v: np.ndarray, axis, keepdims: bool) -> np.ndarray:
    return np.sqrt(np.sum(np.square(v.astype(np.float64)), axis=axis, keepdims=keepdims))


def _compare(ir_op: str, fn):
    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        a, b = node.input[0], node.input[1]
        if ctx.is_const(a) and ctx.is_const(b):
            x, y = ctx.const(a), ctx.const(b)
            bx, by = np.broadcast_arrays(x, y)
            if bx.dtype.kind in "iu" and by.dtype.kind in "iu":
                # A batch compared with a size >= 1 could go either way.
                one_batch = (bx == BATCH) != (by == BATCH)
                other = np.where(bx == BATCH, by, bx)
                if np.any(one_batch & (other >= 1)):
                    _batch_free(node, x, y)
            ctx.set_const(node.output[0], np.asarray(fn(x, y)))
            return
        ins = [float_input(ctx, a), float_input(ctx, b)]
        ctx.emit(ir_op, ins, node.output[:1], node)

    return mapper


def _where(ctx: ImportContext, node, attrs: dict) -> None:
    cond, x, y = node.input[:3]
    if all(ctx.is_const(v) for v in (cond, x, y)):
        c, a, b = ctx.const(cond), ctx.const(x), ctx.const(y)
        ctx.set_const(node.output[0], np.where(c.astype(bool), a, b).astype(np.result_type(a, b)))
        return
    ins = [float_input(ctx, v) for v in (cond, x, y)]
    ctx.emit("where", ins, node.output[:1], node)


def _expand(ctx: ImportContext, node, attrs: dict) -> None:
    x = node.input[0]
    shape = [int(v) for v in ctx.require_const(node.input[1], node, "shape").ravel()]
    if any(d < 0 for d in shape):
        raise ValueError(f"Expand node {node.name!r}: negative dimensions in shape {shape}")
    if ctx.is_const(x):
        v = ctx.const(x)
        if BATCH in shape:
            raise _unsupported(node, "expanding a constant to the dynamic batch dimension")
        try:
            out = np.broadcast_to(v, np.broadcast_shapes(v.shape, tuple(shape)))
        except ValueError:
            raise ValueError(
                f"Expand node {node.name!r}: input {v.shape} does not broadcast to {shape}"
            ) from None
        ctx.set_const(node.output[0], out.copy())
        return
    x_shape = tuple(ctx.shape(x))
    rank = max(len(x_shape), len(shape))
    aligned = (1,) * (rank - len(x_shape)) + x_shape
    lead = rank - len(shape)
    for i, d in enumerate(shape):
        if d == BATCH:
            if aligned[lead + i] is not None:
                raise _unsupported(node, "expanding a dimension to the dynamic batch size")
            shape[i] = 1  # Expand keeps the input's dimension where the shape has a 1
    ctx.emit("expand", [x], node.output[:1], node, shape=tuple(shape))


def _instance_norm(ctx: ImportContext, node, attrs: dict) -> None:
    x_shape = ctx.shape(node.input[0])
    if len(x_shape) < 3:
        raise ValueError(
            f"InstanceNormalization node {node.name!r}: input {x_shape} must be (n, c, d1, ...)"
        )
    scale, bias = (float_input(ctx, v) for v in node.input[1:3])
    bad = [(v, ctx.shape(v)) for v in (scale, bias) if tuple(ctx.shape(v)) != (x_shape[1],)]
    if bad:
        raise ValueError(
            f"InstanceNormalization node {node.name!r}: scale and bias must have shape "
            f"({x_shape[1]},) for input {x_shape}, got {bad}"
        )
    ctx.emit("instance_norm", [node.input[0], scale, bias], node.output[:1], node,
             eps=float(attrs.get("epsilon", 1e-5)))  # fmt: skip


def _global_lp_pool(ctx: ImportContext, node, attrs: dict) -> None:
    x_shape = ctx.shape(node.input[0])
    p = int(attrs.get("p", 2))
    if len(x_shape) < 3 or p < 1:
        raise ValueError(
            f"GlobalLpPool node {node.name!r}: needs an (n, c, d1, ...) input and p >= 1, got "
            f"input {x_shape} and p={p}"
        )
    ctx.emit("global_lp_pool", [node.input[0]], node.output[:1], node, p=p)


MORE_MAPPERS = {
    "Softplus": _unary("softplus"),
    "Mish": _unary("mish"),
    "Abs": _unary("abs", np.abs, batch_ok=True),
    "Exp": _unary("exp", np.exp),
    "Log": _unary("log", np.log),
    "Neg": _unary("neg", np.negative),
    "Reciprocal": _unary("reciprocal", np.reciprocal),
    "Floor": _unary("floor", np.floor, batch_ok=True),
    "Ceil": _unary("ceil", np.ceil, batch_ok=True),
    "ReduceMax": _reduce("reduce_max", np.max),
    "ReduceMin": _reduce("reduce_min", np.min),
    "ReduceL2": _reduce("reduce_l2", _l2),
    "InstanceNormalization": _instance_norm,
    "Expand": _expand,
    "Equal": _compare("equal", np.equal),
    "Less": _compare("less", np.less),
    "Greater": _compare("greater", np.greater),
    "Where": _where,
    "GlobalLpPool": _global_lp_pool,
}
