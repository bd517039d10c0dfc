"""ONNX mappers for data movement beyond the core glue: Split, Tile, SpaceToDepth and
DepthToSpace (Slice and Gather live with the shape glue in :mod:`.mappers_tensor`).

Like the glue mappers, each folds its node when the data is a constant and emits a graph IR
node otherwise. Split takes its sizes as an attribute (opset < 13), an input (13+) or, from
opset 18, ``num_outputs`` with a shorter last part.
"""

from __future__ import annotations

import numpy as np

from .importer import ImportContext

__all__ = ["EXTRA_TENSOR_MAPPERS"]


def _unsupported(node, why: str) -> NotImplementedError:
    return NotImplementedError(f"{node.op_type} node {node.name!r}: {why}")


def _split(ctx: ImportContext, node, attrs: dict) -> None:
    x = node.input[0]
    shape = ctx.shape(x)
    axis = int(attrs.get("axis", 0))
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"Split node {node.name!r}: axis {axis} for input {shape}")
    axis %= len(shape)
    dim, n = shape[axis], len(node.output)
    if dim is None:
        raise _unsupported(node, "splitting the dynamic batch dimension")
    if ctx.opset < 13:
        sizes = attrs.get("split")
    else:
        name = node.input[1] if len(node.input) > 1 else ""
        sizes = None if not name else ctx.require_const(name, node, "split").ravel().tolist()
    if sizes is None:
        n = int(attrs.get("num_outputs", n))
        chunk = -(-dim // n)
        if dim % n and ctx.opset < 18:
            raise ValueError(f"Split node {node.name!r}: {dim} does not split into {n} parts")
        sizes = [min(chunk, dim - i * chunk) for i in range(n)]
    sizes = [int(s) for s in sizes]
    if sum(sizes) != dim or len(sizes) != len(node.output) or min(sizes) < 0:
        raise ValueError(
            f"Split node {node.name!r}: sizes {sizes} for {len(node.output)} outputs do not "
            f"split dim {axis} of {shape}"
        )
    if ctx.is_const(x):
        parts = np.split(ctx.const(x), np.cumsum(sizes)[:-1], axis=axis)
        for out, part in zip(node.output, parts, strict=True):
            ctx.set_const(out, part)
        return
    ctx.emit("split", [x], list(node.output), node, axis=axis, sizes=tuple(sizes))


def _tile(ctx: ImportContext, node, attrs: dict) -> None:
    x = node.input[0]
    reps = [int(r) for r in ctx.require_const(node.input[1], node, "repeats").ravel()]
    if len(reps) != len(ctx.shape(x)) or min(reps, default=1) < 0:
        raise ValueError(f"Tile node {node.name!r}: repeats {reps} for input {ctx.shape(x)}")
    if ctx.is_const(x):
        ctx.set_const(node.output[0], np.tile(ctx.const(x), reps))
        return
    ctx.emit("tile", [x], node.output[:1], node, repeats=tuple(reps))


def _space_depth(ir_op: str):
    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        shape = ctx.shape(node.input[0])
        if len(shape) != 4:
            raise _unsupported(node, f"only 4-D (n, c, h, w) input is supported, got {shape}")
        b = int(attrs["blocksize"])
        if b < 1:
            raise ValueError(f"{node.op_type} node {node.name!r}: blocksize {b} must be >= 1")
        extra = {}
        if ir_op == "depth_to_space":
            extra["mode"] = attrs.get("mode", "DCR")
            if extra["mode"] not in ("DCR", "CRD"):
                raise ValueError(f"DepthToSpace node {node.name!r}: unknown mode {extra['mode']!r}")
        ctx.emit(ir_op, [node.input[0]], node.output[:1], node, blocksize=b, **extra)

    return mapper


EXTRA_TENSOR_MAPPERS = {
    "Split": _split,
    "Tile": _tile,
    "SpaceToDepth": _space_depth("space_to_depth"),
    "DepthToSpace": _space_depth("depth_to_space"),
}
