"""Graph IR -> ONNX emitters for tensor glue (arithmetic, shapes, Pad, Slice, Resize & co.),
reductions and the normalisations written with them (LayerNormalization before opset 17, LRN
with an even window).

Shapes, axes, pads, indices and repeats become int64 initializers (inputs of the ONNX op, as
opset 13 on wants them). See :mod:`cnnperf.onnx.export_ops` for the emitter interface.

Example:
    >>> sorted(TENSOR_EXPORTERS)[:4]
    ['add', 'concat', 'depth_to_space', 'div']
"""

from __future__ import annotations

import math

import numpy as np

from ..compile.graph import Node
from .export_ops import Emitter, ExportContext, attr_op, unsupported

__all__ = ["TENSOR_EXPORTERS"]


def _int64(ctx: ExportContext, values, n: Node, what: str) -> str:
    return ctx.const(np.asarray(values, np.int64), f"{n.name}.{what}", np.int64)


def _reshape(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    shape = [int(d) for d in n.attrs["shape"]]
    attrs = {}
    if n.attrs.get("allowzero", False) and 0 in shape:
        if ctx.opset < 14:
            raise unsupported(n, f"allowzero with shape {shape} needs opset >= 14")
        attrs["allowzero"] = 1
    ctx.node("Reshape", [ins[0], _int64(ctx, shape, n, "shape")], outs, n.name, **attrs)


def _with_int64(onnx_op: str, attr: str) -> Emitter:
    """``onnx_op(x, int64(attrs[attr]))``: Squeeze/Unsqueeze axes, Tile repeats."""

    def emit(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
        values = [int(v) for v in n.attrs[attr]]
        if not values and onnx_op != "Tile":  # no axes: the identity (ONNX: every 1-dim)
            ctx.node("Identity", ins[:1], outs, n.name)
            return
        ctx.node(onnx_op, [ins[0], _int64(ctx, values, n, attr)], outs, n.name)

    return emit


def _reduce_over(
    ctx: ExportContext, op: str, x: str, out: str, axes, keepdims: bool, base: str
) -> None:
    """``op`` (ReduceMean, ReduceSum) over ``axes`` (empty: all): an attribute before the
    opset that made it an input (13 for ReduceSum, 18 for the others)."""
    ins, attrs = [x], {"keepdims": int(keepdims)}
    if axes and ctx.opset >= (13 if op == "ReduceSum" else 18):
        ins.append(ctx.const([int(a) for a in axes], base + ".axes", np.int64))
    elif axes:
        attrs["axes"] = [int(a) for a in axes]
    ctx.node(op, ins, [out], base, **attrs)


def _reduce(onnx_op: str) -> Emitter:
    def emit(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
        keepdims = bool(n.attrs.get("keepdims", True))
        _reduce_over(
            ctx, onnx_op, ins[0], outs[0], tuple(n.attrs.get("axes", ())), keepdims, n.name
        )

    return emit


def _pad(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    pads = [tuple(int(v) for v in p) for p in n.attrs["pads"]]
    mode = str(n.attrs.get("mode", "constant"))
    if mode == "wrap" and ctx.opset < 19:
        raise unsupported(n, f"Pad mode 'wrap' needs opset >= 19 (target {ctx.opset})")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise unsupported(n, f"unknown pad mode {mode!r}")
    flat = [b for b, _ in pads] + [a for _, a in pads]  # ONNX: all begins, then all ends
    pad_ins = [ins[0], _int64(ctx, flat, n, "pads")]
    if mode == "constant":
        pad_ins.append(ctx.const(float(n.attrs.get("value", 0.0)), f"{n.name}.value"))
    ctx.node("Pad", pad_ins, outs, n.name, mode=mode)


def _slice(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    a = n.attrs
    parts = [_int64(ctx, [int(v) for v in a[k]], n, k) for k in ("starts", "ends", "axes")]
    steps = a.get("steps") or [1] * len(a["starts"])
    ctx.node("Slice", [ins[0], *parts, _int64(ctx, steps, n, "steps")], outs, n.name)


def _gather(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    indices = _int64(ctx, n.attrs["indices"], n, "indices")
    ctx.node("Gather", [ins[0], indices], outs, n.name, axis=int(n.attrs.get("axis", 0)))


def _split(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    sizes = _int64(ctx, [int(v) for v in n.attrs["sizes"]], n, "sizes")
    ctx.node("Split", [ins[0], sizes], outs, n.name, axis=int(n.attrs.get("axis", 0)))


def _resize(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    """Resize by ``scales`` when ONNX's ``floor(in * scale)`` gives the IR's sizes, else by
    ``sizes`` (built from the input's run-time batch when it is dynamic)."""
    a, x_shape = n.attrs, ctx.shapes[n.inputs[0]]
    sizes, mode = list(a["sizes"]), str(a.get("mode", "nearest"))
    coord = str(a.get("coord", "half_pixel"))
    if coord in ("tf_crop_and_resize", "tf_half_pixel_for_nn") or (
        coord == "half_pixel_symmetric" and ctx.opset < 19
    ):
        raise unsupported(n, f"coordinate_transformation_mode {coord!r} at opset {ctx.opset}")
    if mode not in ("nearest", "linear"):
        raise unsupported(n, f"resize mode {mode!r}")
    given = a.get("scales")
    scales = [1.0 if i is None else o / i for i, o in zip(x_shape, sizes, strict=True)]
    if given is not None:
        scales = [float(v) for v in given]
    attrs = dict(mode=mode, coordinate_transformation_mode=coord)
    if mode == "nearest":
        rule = str(a.get("nearest_mode", "round_prefer_floor"))
        if rule == "simple":  # opset < 11: ceil when downsampling, else floor (per axis)
            resized = [v for v, i, o in zip(scales, x_shape, sizes, strict=True) if i != o]
            kinds = {"ceil" if v < 1.0 else "floor" for v in resized}
            if len(kinds) > 1:
                raise unsupported(n, "nearest_mode 'simple' both down- and upsampling")
            rule = kinds.pop() if kinds else "floor"
        attrs["nearest_mode"] = rule
    # ONNX Runtime multiplies in float32, ONNX's shape inference in float64: both must agree.
    by_scales = all(
        i is None
        or math.floor(float(np.float32(i) * np.float32(s)))
        == o
        == math.floor(i * float(np.float32(s)))
        for i, o, s in zip(x_shape, sizes, scales, strict=True)
    )
    implied = all(i is None or math.isclose(s, o / i, rel_tol=1e-6)
                  for i, o, s in zip(x_shape, sizes, scales, strict=True))  # fmt: skip
    if by_scales:
        const = ctx.const(np.asarray(scales, np.float32), f"{n.name}.scales")
        ctx.node("Resize", [ins[0], "", const], outs, n.name, **attrs)
        return
    if not implied:
        raise unsupported(n, f"sizes {sizes} and scales {scales} that ONNX cannot both express")
    if None not in x_shape:
        size_input = _int64(ctx, sizes, n, "sizes")
    elif x_shape[0] is None and None not in x_shape[1:]:
        shape, batch = ctx.temp(f"{n.name}.shape"), ctx.temp(f"{n.name}.batch")
        size_input = ctx.temp(f"{n.name}.sizes")
        ctx.node("Shape", [ins[0]], [shape], n.name)
        zero_one = [_int64(ctx, [v], n, f"b{v}") for v in (0, 1)]
        ctx.node("Slice", [shape, *zero_one], [batch], n.name)
        ctx.node("Concat", [batch, _int64(ctx, sizes[1:], n, "sizes")], [size_input], n.name,
                 axis=0)  # fmt: skip
    else:
        raise unsupported(n, f"sizes for an input {x_shape} with several dynamic dims")
    ctx.node("Resize", [ins[0], "", "", size_input], outs, n.name, **attrs)


def _layer_norm(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    rank = len(ctx.shapes[n.inputs[0]])
    axis, eps = int(n.attrs.get("axis", -1)) % rank, float(n.attrs.get("eps", 1e-5))
    if ctx.opset >= 17:
        ctx.node("LayerNormalization", ins, outs, n.name, axis=axis, epsilon=eps)
        return
    axes, base = list(range(axis, rank)), n.name
    t = {k: ctx.temp(f"{base}.{k}") for k in ("mean", "d", "sq", "var", "ve", "std", "y")}
    _reduce_over(ctx, "ReduceMean", ins[0], t["mean"], axes, True, base)
    ctx.node("Sub", [ins[0], t["mean"]], [t["d"]], base)
    ctx.node("Mul", [t["d"], t["d"]], [t["sq"]], base)
    _reduce_over(ctx, "ReduceMean", t["sq"], t["var"], axes, True, base)
    ctx.node("Add", [t["var"], ctx.const(eps, base + ".eps")], [t["ve"]], base)
    ctx.node("Sqrt", [t["ve"]], [t["std"]], base)
    ctx.node("Div", [t["d"], t["std"]], [t["y"]], base)
    if len(ins) < 3:
        ctx.node("Mul", [t["y"], ins[1]], outs, base)
        return
    scaled = ctx.temp(f"{base}.scaled")
    ctx.node("Mul", [t["y"], ins[1]], [scaled], base)
    ctx.node("Add", [scaled, ins[2]], outs, base)


def _lrn(ctx: ExportContext, n: Node, ins: list, outs: list) -> None:
    """LRN; an even window (valid ONNX that ONNX Runtime rejects) as its formula, the channel
    window's sum of squares a 1x1 Conv with a band of ones."""
    a = n.attrs
    size, alpha = int(a["size"]), float(a.get("alpha", 1e-4))
    beta, k = float(a.get("beta", 0.75)), float(a.get("k", 1.0))
    if size % 2:
        ctx.node("LRN", ins, outs, n.name, size=size, alpha=alpha, beta=beta, bias=k)
        return
    shape = ctx.shapes[n.inputs[0]]
    c = np.arange(shape[1])
    band = (c[None, :] >= c[:, None] - (size - 1) // 2) & (c[None, :] <= c[:, None] + size // 2)
    weight = band.astype(np.float32).reshape(len(c), len(c), *[1] * (len(shape) - 2))
    t = [ctx.temp(f"{n.name}.lrn{i}") for i in range(5)]
    ctx.node("Mul", [ins[0], ins[0]], [t[0]], n.name)
    ctx.node("Conv", [t[0], ctx.const(weight, f"{n.name}.band")], [t[1]], n.name)
    ctx.node("Mul", [t[1], ctx.const(alpha / size, f"{n.name}.alpha")], [t[2]], n.name)
    ctx.node("Add", [t[2], ctx.const(k, f"{n.name}.k")], [t[3]], n.name)
    ctx.node("Pow", [t[3], ctx.const(beta, f"{n.name}.beta")], [t[4]], n.name)
    ctx.node("Div", [ins[0], t[4]], outs, n.name)


#: The tensor-glue, reduction and normalisation IR ops' emitters.
TENSOR_EXPORTERS: dict[str, Emitter] = {
    "add": attr_op("Add"),
    "sub": attr_op("Sub"),
    "mul": attr_op("Mul"),
    "div": attr_op("Div"),
    "pow": attr_op("Pow"),
    "sum": attr_op("Sum"),
    "maximum": attr_op("Max"),
    "minimum": attr_op("Min"),
    "concat": attr_op("Concat", axis=lambda a: int(a["axis"])),
    "flatten": attr_op("Flatten", axis=lambda a: int(a.get("axis", 1))),
    "reshape": _reshape,
    "transpose": attr_op("Transpose", perm=lambda a: [int(p) for p in a["perm"]]),
    "squeeze": _with_int64("Squeeze", "axes"),
    "unsqueeze": _with_int64("Unsqueeze", "axes"),
    "tile": _with_int64("Tile", "repeats"),
    "identity": attr_op("Identity"),
    "dropout": attr_op("Dropout"),
    "layer_norm": _layer_norm,
    "local_response_norm": _lrn,
    "reduce_mean": _reduce("ReduceMean"),
    "reduce_sum": _reduce("ReduceSum"),
    "pad": _pad,
    "slice": _slice,
    "gather": _gather,
    "split": _split,
    "resize": _resize,
    "space_to_depth": attr_op("SpaceToDepth", blocksize=lambda a: int(a["blocksize"])),
    "depth_to_space": attr_op(
        "DepthToSpace", blocksize=lambda a: int(a["blocksize"]), mode=lambda a: a.get("mode", "DCR")
    ),
}
