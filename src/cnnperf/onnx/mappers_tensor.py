"""ONNX mappers for tensor glue: arithmetic, Concat, Reshape & co, Constant and shape folding.

Every mapper here folds its node when all its inputs are constants (so PyTorch's exported
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains become one constant shape) and
emits a graph IR node otherwise. Slice and Gather run on activations too (their starts, ends,
axes, steps and indices must be constants); Cast to types other than float32 and bool (a float32
mask at run time), ConstantOfShape and Range only fold: on run-time values they raise
NotImplementedError.
"""

from __future__ import annotations

import numpy as np

from .importer import BATCH, ImportContext

__all__ = ["TENSOR_MAPPERS"]


def _inputs(node) -> list[str]:
    return list(node.input)


def _all_const(ctx: ImportContext, node) -> bool:
    return all(ctx.is_const(v) for v in node.input if v)


def _unsupported(node, why: str) -> NotImplementedError:
    return NotImplementedError(f"{node.op_type} node {node.name!r}: {why}")


def _check_no_batch(node, *arrays) -> None:
    for a in arrays:
        if a.dtype.kind in "iu" and np.any(np.abs(a) >= BATCH):
            raise _unsupported(
                node,
                "shape arithmetic on the dynamic batch dimension is not supported; "
                "load with input_shapes={name: shape} giving a fixed batch size",
            )


def _legacy_axis(ctx: ImportContext, node, attrs: dict, b: str) -> str:
    """``b`` aligned to ``a`` as opset < 7's ``broadcast=1, axis=k`` meant: b's dims match a's
    from dim k on (multidirectional broadcasting matches trailing dims). Models stamped with a
    later opset that keep these attributes come from old converters; ONNX Runtime rejects them."""
    if not int(attrs.get("broadcast", 0)) or "axis" not in attrs:
        return b
    a_shape, b_shape = ctx.shape(node.input[0]), ctx.shape(b)
    rank = len(a_shape)
    axis = int(attrs["axis"]) % rank if -rank <= int(attrs["axis"]) < rank else None
    if axis is None or axis + len(b_shape) > rank:
        raise ValueError(
            f"{node.op_type} node {node.name!r}: legacy broadcast axis {attrs['axis']} does not "
            f"fit B of shape {b_shape} into A of shape {a_shape}"
        )
    trailing = rank - axis - len(b_shape)
    if trailing == 0:
        return b
    if ctx.is_const(b):
        aligned = f"{b}__axis{axis}_rank{rank}"
        ctx.set_const(aligned, ctx.const(b).reshape(*b_shape, *([1] * trailing)))
        return aligned
    aligned = f"{node.output[0]}__aligned_b"
    axes = tuple(range(len(b_shape), len(b_shape) + trailing))
    ctx.emit("unsqueeze", [b], [aligned], node, axes=axes)
    return aligned


def _binary(ir_op: str, fn):
    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        a, b = node.input[0], _legacy_axis(ctx, node, attrs, node.input[1])
        if ctx.is_const(a) and ctx.is_const(b):
            x, y = ctx.const(a), ctx.const(b)
            _check_no_batch(node, x, y)
            out = fn(x, y)
            if x.dtype.kind in "iu" and ir_op == "div":
                out = np.trunc(out).astype(x.dtype)  # ONNX integer Div truncates
            ctx.set_const(node.output[0], np.asarray(out).astype(np.result_type(x, y)))
            return
        ctx.emit(ir_op, [a, b], node.output[:1], node)

    return mapper


def _axes(ctx: ImportContext, node, attrs: dict) -> list[int] | None:
    """Squeeze/Unsqueeze axes: an attribute before opset 13, an optional input from 13 on."""
    if ctx.opset < 13:
        return list(attrs["axes"]) if "axes" in attrs else None
    if len(node.input) > 1 and node.input[1]:
        return [int(v) for v in ctx.require_const(node.input[1], node, "axes").ravel()]
    return None


def _unsqueeze(ctx: ImportContext, node, attrs: dict) -> None:
    axes = _axes(ctx, node, attrs)
    if axes is None:
        raise ValueError(f"Unsqueeze node {node.name!r} has no axes")
    x = node.input[0]
    if ctx.is_const(x):
        v = ctx.const(x)
        rank = v.ndim + len(axes)
        ctx.set_const(node.output[0], np.expand_dims(v, tuple(sorted(a % rank for a in axes))))
        return
    ctx.emit("unsqueeze", [x], node.output[:1], node, axes=tuple(axes))


def _squeeze(ctx: ImportContext, node, attrs: dict) -> None:
    axes = _axes(ctx, node, attrs)
    x = node.input[0]
    shape = ctx.shape(x)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    bad = [a for a in axes if shape[a % len(shape)] != 1]
    if bad:
        raise ValueError(f"Squeeze node {node.name!r}: axes {bad} of shape {shape} are not 1")
    if ctx.is_const(x):
        ctx.set_const(node.output[0], np.squeeze(ctx.const(x), tuple(a % len(shape) for a in axes)))
        return
    ctx.emit("squeeze", [x], node.output[:1], node, axes=tuple(axes))


def _concat(ctx: ImportContext, node, attrs: dict) -> None:
    axis = int(attrs["axis"])
    ins = [v for v in node.input if v]
    if _all_const(ctx, node):
        ctx.set_const(node.output[0], np.concatenate([ctx.const(v) for v in ins], axis=axis))
        return
    ctx.emit("concat", ins, node.output[:1], node, axis=axis)


def _flatten(ctx: ImportContext, node, attrs: dict) -> None:
    axis = int(attrs.get("axis", 1))
    x = node.input[0]
    if ctx.is_const(x):
        v = ctx.const(x)
        ax = axis % v.ndim if axis < 0 else axis
        ctx.set_const(node.output[0], v.reshape(int(np.prod(v.shape[:ax])), -1))
        return
    ctx.emit("flatten", [x], node.output[:1], node, axis=axis)


def _reshape(ctx: ImportContext, node, attrs: dict) -> None:
    x = node.input[0]
    if ctx.opset < 5 or len(node.input) < 2:
        shape = [int(v) for v in attrs["shape"]]
    else:
        shape = [int(v) for v in ctx.require_const(node.input[1], node, "shape").ravel()]
    allowzero = bool(attrs.get("allowzero", 0))
    in_shape = ctx.shape(x)
    for i, d in enumerate(shape):
        if d == BATCH:
            if i == 0 and in_shape and in_shape[0] is None and not allowzero:
                shape[i] = 0  # the dynamic batch, copied from the input
            else:
                raise _unsupported(
                    node, "the dynamic batch dimension moves; load with a fixed batch size"
                )
    if ctx.is_const(x):
        from ..compile.shapes import reshape_shape

        v = ctx.const(x)
        ctx.set_const(node.output[0], v.reshape(reshape_shape(v.shape, tuple(shape), allowzero)))
        return
    ctx.emit("reshape", [x], node.output[:1], node, shape=tuple(shape), allowzero=allowzero)


def _transpose(ctx: ImportContext, node, attrs: dict) -> None:
    x = node.input[0]
    rank = len(ctx.shape(x))
    perm = tuple(int(p) for p in attrs.get("perm", range(rank - 1, -1, -1)))
    if ctx.is_const(x):
        ctx.set_const(node.output[0], np.transpose(ctx.const(x), perm))
        return
    ctx.emit("transpose", [x], node.output[:1], node, perm=perm)


def _constant(ctx: ImportContext, node, attrs: dict) -> None:
    import onnx

    if "value" in attrs:
        value = onnx.numpy_helper.to_array(attrs["value"])
    elif "value_float" in attrs:
        value = np.array(attrs["value_float"], np.float32)
    elif "value_floats" in attrs:
        value = np.array(attrs["value_floats"], np.float32)
    elif "value_int" in attrs:
        value = np.array(attrs["value_int"], np.int64)
    elif "value_ints" in attrs:
        value = np.array(attrs["value_ints"], np.int64)
    else:
        raise _unsupported(node, f"unsupported Constant attribute(s) {sorted(attrs)}")
    ctx.set_const(node.output[0], value)


def _identity(ir_op: str):
    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        x = node.input[0]
        if ir_op == "dropout":
            if len(node.output) > 1 and ctx.is_used(node.output[1]):
                raise _unsupported(node, "the mask output is not supported (inference only)")
            if ctx.opset >= 12 and len(node.input) > 2 and node.input[2]:
                training = ctx.require_const(node.input[2], node, "training_mode")
                if bool(np.asarray(training).item()):
                    raise _unsupported(node, "training_mode=True is not supported")
        if ctx.is_const(x):
            ctx.set_const(node.output[0], ctx.const(x))
            return
        ctx.emit(ir_op, [x], node.output[:1], node)

    return mapper


def _shape(ctx: ImportContext, node, attrs: dict) -> None:
    dims = [BATCH if d is None else d for d in ctx.shape(node.input[0])]
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    dims = dims[start:] if end is None else dims[start : int(end)]
    ctx.set_const(node.output[0], np.array(dims, np.int64))


def _fold_only(fn):
    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        if not _all_const(ctx, node):
            raise _unsupported(node, "supported only on constants (shape computations)")
        ctx.set_const(node.output[0], fn(ctx, node, attrs, [ctx.const(v) for v in node.input]))

    return mapper


def _gather(ctx: ImportContext, node, attrs: dict) -> None:
    x = node.input[0]
    idx = ctx.require_const(node.input[1], node, "indices")
    shape = ctx.shape(x)
    axis = int(attrs.get("axis", 0))
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"Gather node {node.name!r}: axis {axis} for data of shape {shape}")
    axis %= len(shape)
    dim = shape[axis]
    if idx.dtype.kind not in "iu":
        raise ValueError(f"Gather node {node.name!r}: indices must be integers, got {idx.dtype}")
    if dim is not None and idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise ValueError(
            f"Gather node {node.name!r}: indices {idx.ravel().tolist()} out of range for dim "
            f"{axis} of size {dim}"
        )
    if ctx.is_const(x):
        data = ctx.const(x)
        ctx.set_const(node.output[0], np.take(data, np.where(idx < 0, idx + dim, idx), axis=axis))
        return
    if dim is None:
        raise _unsupported(node, "gathering along the dynamic batch dimension")
    ctx.emit("gather", [x], node.output[:1], node, axis=axis, indices=_nested(idx))


def _nested(a: np.ndarray):
    """An int array as nested tuples (a plain int when 0-d): a hashable attribute value."""
    return int(a) if a.ndim == 0 else tuple(_nested(v) for v in a)


def _cast(ctx: ImportContext, node, attrs: dict) -> None:
    import onnx

    to = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(attrs["to"])))
    x = node.input[0]
    if ctx.is_const(x):
        ctx.set_const(node.output[0], ctx.const(x).astype(to))
    elif to == np.float32:
        ctx.emit("identity", [x], node.output[:1], node)
    elif to == np.bool_:
        # Booleans at run time are float32 masks (graph.OPS): x != 0 (NaN too) becomes 1.0.
        one, zero = f"{node.output[0]}__one", f"{node.output[0]}__zero"
        ctx.set_const(one, np.array(1.0, np.float32))
        ctx.set_const(zero, np.array(0.0, np.float32))
        ctx.emit("where", [x, one, zero], node.output[:1], node)
    else:
        raise _unsupported(node, f"casting run-time values to {to} is not supported")


def _slice(ctx: ImportContext, node, attrs: dict) -> None:
    from ..compile.shapes import slice_bounds

    x = node.input[0]
    shape = ctx.shape(x)
    if ctx.opset < 10:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes, steps = list(attrs.get("axes", range(len(starts)))), [1] * len(starts)
    else:
        names = [*node.input[1:5], "", "", ""][:4]
        what = ("starts", "ends", "axes", "steps")
        vals = [
            ctx.require_const(v, node, w).ravel().tolist() if v else None
            for v, w in zip(names, what, strict=True)
        ]
        starts, ends = vals[0], vals[1]
        axes = vals[2] if vals[2] is not None else list(range(len(starts)))
        steps = vals[3] if vals[3] is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError(f"Slice node {node.name!r}: starts, ends, axes, steps differ in length")
    if any(not -len(shape) <= a < len(shape) for a in axes) or 0 in steps:
        raise ValueError(f"Slice node {node.name!r}: axes {axes} / steps {steps} for {shape}")
    axes = [int(a) % len(shape) for a in axes]
    if len(set(axes)) != len(axes):
        raise ValueError(f"Slice node {node.name!r}: repeated axes {axes}")
    if ctx.is_const(x):
        data = ctx.const(x)
        index = [slice(None)] * data.ndim
        for a, b, e, st in zip(axes, starts, ends, steps, strict=True):
            index[a] = slice_bounds(data.shape[a], int(b), int(e), int(st))
        ctx.set_const(node.output[0], data[tuple(index)])
        return
    ctx.emit(
        "slice", [x], node.output[:1], node, starts=tuple(int(v) for v in starts),
        ends=tuple(int(v) for v in ends), axes=tuple(axes), steps=tuple(int(v) for v in steps),
    )  # fmt: skip


def _range(ctx, node, attrs, vals):
    """Range (opset 11) on constants: ``arange(start, limit, delta)`` in the inputs' dtype."""
    _check_no_batch(node, *vals)
    start, limit, delta = (np.asarray(v).reshape(()) for v in vals)
    if delta == 0:
        raise ValueError(f"Range node {node.name!r}: delta must not be 0")
    return np.arange(start, limit, delta, dtype=np.result_type(start, limit, delta))


def _constant_of_shape(ctx, node, attrs, vals):
    import onnx

    value = onnx.numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, "f4")
    return np.full(tuple(int(d) for d in vals[0]), value.ravel()[0], value.dtype)


TENSOR_MAPPERS = {
    "Add": _binary("add", np.add),
    "Sub": _binary("sub", np.subtract),
    "Mul": _binary("mul", np.multiply),
    "Div": _binary("div", np.divide),
    "Concat": _concat,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Constant": _constant,
    "Identity": _identity("identity"),
    "Dropout": _identity("dropout"),
    "Shape": _shape,
    "Gather": _gather,
    "Cast": _cast,
    "Slice": _slice,
    "ConstantOfShape": _fold_only(_constant_of_shape),
    "Range": _fold_only(_range),
}
