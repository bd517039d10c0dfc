"""ONNX mappers beyond the CNN core: ConvTranspose, activations, math, norms, reductions, Pad,
Resize and Upsample.

Each mapper reads the ONNX node in every attribute form its opsets 7 to 21 use (Pad's pads as
an attribute before opset 11 and as an input after, Reduce* axes as an attribute or an input,
Resize's scales/sizes/coordinate modes, Upsample's scales) and emits one graph IR node (Gelu,
opset 20, is the IR's ``gelu``). Forms cnnperf does not compute (cubic Resize, antialiased
downscaling, tf_crop_and_resize) raise NotImplementedError naming the node.
"""

from __future__ import annotations

import math

import numpy as np

from ..compile.shapes import broadcast_shapes
from .importer import BATCH, ImportContext

__all__ = ["EXTRA_MAPPERS", "float_input", "reduce_mapper"]

_SELU_ALPHA, _SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


def _unsupported(node, why: str) -> NotImplementedError:
    return NotImplementedError(f"{node.op_type} node {node.name!r}: {why}")


def _input(node, i: int) -> str:
    """The name of optional input ``i``, or "" when it is absent."""
    return node.input[i] if len(node.input) > i else ""


def float_input(ctx: ImportContext, name: str) -> str:
    """``name``, or for an integer constant a float32 copy of it (run-time graphs are float)."""
    value = ctx.const(name)
    if value is None or value.dtype.kind == "f":
        return name
    copy = f"{name}__float32"
    ctx.set_const(copy, value.astype(np.float32))
    return copy


def _conv_transpose(ctx: ImportContext, node, attrs: dict) -> None:
    x_shape = ctx.shape(node.input[0])
    w = ctx.require_const(node.input[1], node, "weight")
    if len(x_shape) != 4 or w.ndim != 4:
        raise _unsupported(node, f"only 2-D (input {x_shape}, weight {w.shape}) is supported")
    if w.shape[0] != x_shape[1]:
        raise ValueError(
            f"ConvTranspose node {node.name!r}: weight of shape {w.shape} expects "
            f"{w.shape[0]} input channels, input {x_shape} has {x_shape[1]}"
        )
    kernel = tuple(int(k) for k in attrs.get("kernel_shape", w.shape[2:]))
    strides = tuple(int(s) for s in attrs.get("strides", (1, 1)))
    dil = tuple(int(d) for d in attrs.get("dilations", (1, 1)))
    out_pad = [int(p) for p in attrs.get("output_padding", (0, 0))]
    auto = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    dims = zip(x_shape[2:], strides, kernel, dil, strict=True)
    full = [(i - 1) * s + (k - 1) * d + 1 for i, s, k, d in dims]  # unpadded output size
    if "output_shape" in attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        # As ONNX Runtime: the total padding (towards output_shape, else towards in * stride)
        # is clamped at 0, SAME_UPPER puts its odd pixel at the end; an output_shape past the
        # unpadded result is met with bias-only rows at the end, in * stride is not.
        given = "output_shape" in attrs
        if given:
            out = [int(v) for v in attrs["output_shape"]][-2:]
        else:
            out = [i * s for i, s in zip(x_shape[2:], strides, strict=True)]
        pads, out_pad_eff = [], []
        for f, op, o in zip(full, out_pad, out, strict=True):
            total = max(0, f + op - o)
            begin = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads += [begin, total - begin]
            out_pad_eff.append(o - (f - total) if given else op)
        pads = (pads[0], pads[1], pads[2], pads[3])
    elif auto == "VALID":
        pads, out_pad_eff = (0, 0, 0, 0), out_pad
    elif auto == "NOTSET":
        p = [int(v) for v in attrs.get("pads", (0, 0, 0, 0))]
        pads, out_pad_eff = (p[0], p[2], p[1], p[3]), out_pad
    else:
        raise _unsupported(node, f"unknown auto_pad {auto!r}")
    if min(pads) < 0 or min(out_pad_eff) < 0:
        raise ValueError(f"ConvTranspose node {node.name!r}: negative pads {pads}")
    ins = list(node.input[:2])
    if _input(node, 2):
        ctx.require_const(node.input[2], node, "bias")
        ins.append(node.input[2])
    ctx.emit(
        "conv_transpose2d", ins, node.output[:1], node, stride=strides, pads=pads,
        output_padding=tuple(out_pad_eff), dilation=dil, groups=int(attrs.get("group", 1)),
    )  # fmt: skip


def _unary(ir_op: str, **defaults):
    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        a = {k: float(attrs.get(k, v)) for k, v in defaults.items()}
        ctx.emit(ir_op, [node.input[0]], node.output[:1], node, **a)

    return mapper


def _gelu(ctx: ImportContext, node, attrs: dict) -> None:
    """Gelu (opset 20): one IR ``gelu`` node, ``approximate`` "none" (erf) or "tanh"."""
    approx = attrs.get("approximate", "none")
    if approx not in ("none", "tanh"):
        raise ValueError(f"Gelu node {node.name!r}: approximate={approx!r} is not 'none' or 'tanh'")
    ctx.emit("gelu", [node.input[0]], node.output[:1], node, approximate=approx)


def _prelu(ctx: ImportContext, node, attrs: dict) -> None:
    x, slope = ctx.shape(node.input[0]), ctx.shape(node.input[1])
    try:
        fits = broadcast_shapes(x, slope) == tuple(x)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"PRelu node {node.name!r}: slope {slope} does not broadcast to {x}")
    ctx.emit("prelu", [node.input[0], float_input(ctx, node.input[1])], node.output[:1], node)


def _pow(ctx: ImportContext, node, attrs: dict) -> None:
    a, b = node.input[0], node.input[1]
    if ctx.is_const(a) and ctx.is_const(b):
        x, y = ctx.const(a), ctx.const(b)
        ctx.set_const(node.output[0], np.power(x, y).astype(x.dtype))
        return
    ctx.emit("pow", [float_input(ctx, a), float_input(ctx, b)], node.output[:1], node)


def _softmax_like(ir_op: str):
    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        legacy = ctx.opset < 13
        axis = int(attrs.get("axis", 1 if legacy else -1))
        ctx.emit(ir_op, [node.input[0]], node.output[:1], node, axis=axis, coerce_2d=legacy)

    return mapper


def _variadic(ir_op: str, fn):
    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        ins = [v for v in node.input if v]
        if all(ctx.is_const(v) for v in ins):
            vals = [ctx.const(v) for v in ins]
            out = vals[0]
            for v in vals[1:]:
                out = fn(out, v)
            ctx.set_const(node.output[0], np.asarray(out).astype(np.result_type(*vals)))
            return
        if len(ins) == 1:
            ctx.emit("identity", ins, node.output[:1], node)
            return
        ctx.emit(ir_op, [float_input(ctx, v) for v in ins], node.output[:1], node)

    return mapper


def _lrn(ctx: ImportContext, node, attrs: dict) -> None:
    if len(ctx.shape(node.input[0])) < 3:
        raise ValueError(f"LRN node {node.name!r}: input must be (n, c, ...) with rank >= 3")
    ctx.emit(
        "local_response_norm", [node.input[0]], node.output[:1], node, size=int(attrs["size"]),
        alpha=float(attrs.get("alpha", 1e-4)), beta=float(attrs.get("beta", 0.75)),
        k=float(attrs.get("bias", 1.0)),
    )  # fmt: skip


def _layer_norm(ctx: ImportContext, node, attrs: dict) -> None:
    if any(node.output[1:]):
        raise _unsupported(node, "the Mean and InvStdDev outputs are not supported")
    x = ctx.shape(node.input[0])
    axis = int(attrs.get("axis", -1))
    if not -len(x) <= axis < len(x):
        raise ValueError(f"LayerNormalization node {node.name!r}: axis {axis} for input {x}")
    ins = [node.input[0], float_input(ctx, node.input[1])]
    if _input(node, 2):
        ins.append(float_input(ctx, node.input[2]))
    for v in ins[1:]:
        if len(ctx.shape(v)) > len(x) - axis % len(x):
            raise ValueError(
                f"LayerNormalization node {node.name!r}: {v!r} of shape {ctx.shape(v)} does "
                f"not broadcast over the normalised dims {x[axis % len(x) :]}"
            )
    ctx.emit(
        "layer_norm", ins, node.output[:1], node, axis=axis % len(x),
        eps=float(attrs.get("epsilon", 1e-5)),
    )  # fmt: skip


_FOLDS = {"reduce_mean": np.mean, "reduce_sum": np.sum}


def reduce_mapper(ir_op: str, axes_input_from: int, fold=None):
    """The mapper of an ONNX Reduce* op: axes an attribute before opset ``axes_input_from``
    and an optional input from it on (``noop_with_empty_axes``); constants are folded with
    ``fold(v, axis=, keepdims=)`` (default: np.mean / np.sum for reduce_mean / reduce_sum)."""
    fold = fold or _FOLDS[ir_op]

    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        x = node.input[0]
        rank = len(ctx.shape(x))
        if ctx.opset >= axes_input_from:
            name = _input(node, 1)
            axes = None if not name else ctx.require_const(name, node, "axes").ravel().tolist()
        else:
            axes = attrs.get("axes")
        keep = bool(attrs.get("keepdims", 1))
        if not axes:
            if int(attrs.get("noop_with_empty_axes", 0)):
                ctx.emit("identity", [x], node.output[:1], node)
                return
            axes = list(range(rank))
        bad = [a for a in axes if not -rank <= int(a) < rank]
        if bad:
            raise ValueError(f"{node.op_type} node {node.name!r}: axes {bad} for rank {rank}")
        axes = tuple(sorted({int(a) % rank for a in axes}))
        if ctx.is_const(x):
            v = ctx.const(x)
            ctx.set_const(node.output[0], np.asarray(fold(v, axis=axes, keepdims=keep), v.dtype))
            return
        ctx.emit(ir_op, [x], node.output[:1], node, axes=axes, keepdims=keep)

    return mapper


def _pad(ctx: ImportContext, node, attrs: dict) -> None:
    x = node.input[0]
    shape = ctx.shape(x)
    rank = len(shape)
    mode = attrs.get("mode", "constant")
    if ctx.opset < 11:
        flat, value = [int(p) for p in attrs["pads"]], float(attrs.get("value", 0.0))
        axes = list(range(rank))
    else:
        flat = ctx.require_const(node.input[1], node, "pads").ravel().tolist()
        cv = ctx.const(_input(node, 2))
        if _input(node, 2) and cv is None:
            raise _unsupported(node, "constant_value must be a constant")
        value = 0.0 if cv is None or cv.size == 0 else float(cv.ravel()[0])
        axes_name = _input(node, 3)
        axes = list(range(rank))
        if axes_name:
            axes = [int(a) % rank for a in ctx.require_const(axes_name, node, "axes").ravel()]
    if len(flat) != 2 * len(axes):
        raise ValueError(f"Pad node {node.name!r}: {len(flat)} pads for {len(axes)} axes")
    pads = [(0, 0)] * rank
    for i, a in enumerate(axes):
        pads[a] = (int(flat[i]), int(flat[i + len(axes)]))
    out = [None if d is None else d + b + e for d, (b, e) in zip(shape, pads, strict=True)]
    if any(d is not None and d < 0 for d in out):
        raise ValueError(f"Pad node {node.name!r}: pads {flat} crop input {shape} below empty")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise _unsupported(node, f"mode {mode!r} is not supported")
    for d, (b, e) in zip(shape, pads, strict=True):
        if mode in ("reflect", "edge", "wrap") and d is not None and (b or e) and d < 1:
            raise ValueError(f"Pad node {node.name!r}: cannot {mode}-pad an empty dim")
        if mode == "reflect" and d is not None and max(b, e) >= d:
            raise ValueError(
                f"Pad node {node.name!r}: reflect pads {(b, e)} must be less than the dim "
                f"they pad ({d}) of input {shape}"
            )
    ctx.emit("pad", [float_input(ctx, x)], node.output[:1], node, pads=tuple(pads), mode=mode,
             value=value)  # fmt: skip


_COORDS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
           "tf_half_pixel_for_nn", "half_pixel_symmetric")  # fmt: skip
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _resize_args(ctx: ImportContext, node, attrs: dict):
    """(scales or None, sizes or None, axes) from Upsample / Resize in any opset's form."""
    if node.op_type == "Upsample" and ctx.opset < 9:
        return [float(s) for s in attrs["scales"]], None, None
    if node.op_type == "Upsample" or ctx.opset < 11:
        return ctx.require_const(node.input[1], node, "scales").ravel().tolist(), None, None
    scales = ctx.const(_input(node, 2))
    sizes = ctx.const(_input(node, 3))
    for i, v, what in ((2, scales, "scales"), (3, sizes, "sizes")):
        if _input(node, i) and v is None:
            raise _unsupported(node, f"{what} must be a constant")
    scales = None if scales is None or scales.size == 0 else scales.ravel().tolist()
    sizes = None if sizes is None or sizes.size == 0 else sizes.ravel().tolist()
    if (scales is None) == (sizes is None):
        raise ValueError(f"Resize node {node.name!r}: give exactly one of scales and sizes")
    return scales, sizes, attrs.get("axes")


def _resize(ctx: ImportContext, node, attrs: dict) -> None:
    shape = ctx.shape(node.input[0])
    rank = len(shape)
    mode = {"bilinear": "linear"}.get(attrs.get("mode", "nearest"), attrs.get("mode", "nearest"))
    if mode not in ("nearest", "linear"):
        raise _unsupported(node, f"mode {mode!r} is not supported (nearest and linear are)")
    legacy = node.op_type == "Upsample" or ctx.opset < 11
    coord = "asymmetric" if legacy else attrs.get("coordinate_transformation_mode", "half_pixel")
    rounding = "simple" if legacy else attrs.get("nearest_mode", "round_prefer_floor")
    if coord not in _COORDS:
        raise _unsupported(node, f"coordinate_transformation_mode {coord!r} is not supported")
    if rounding not in (*_NEAREST, "simple"):
        raise _unsupported(node, f"nearest_mode {rounding!r} is not supported")
    scales, sizes, axes = _resize_args(ctx, node, attrs)
    axes = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    given = scales if sizes is None else sizes
    if len(given) != len(axes):
        raise ValueError(f"Resize node {node.name!r}: {len(given)} values for {len(axes)} dims")
    out, dim_scales = list(shape), [1.0] * rank
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    if sizes is not None and policy != "stretch":
        if policy not in ("not_larger", "not_smaller"):
            raise _unsupported(node, f"keep_aspect_ratio_policy {policy!r} is not supported")
        ratios = [np.float32(sizes[i]) / np.float32(shape[a]) for i, a in enumerate(axes)]
        common = min(ratios) if policy == "not_larger" else max(ratios)
        sizes = [math.floor(float(common * np.float32(shape[a])) + 0.5) for a in axes]
        scales = [float(common)] * len(axes)
    for i, a in enumerate(axes):
        d = shape[a]
        if d is None:
            if (sizes is not None and sizes[i] != BATCH) or (sizes is None and scales[i] != 1):
                raise _unsupported(node, "resizing the dynamic batch dimension")
            continue
        # Scales as ONNX Runtime holds them, in float32: sizes / input unless given.
        if sizes is not None:
            out[a] = int(sizes[i])
            f32 = np.float32(sizes[i]) / np.float32(d) if scales is None else np.float32(scales[i])
        else:
            f32 = np.float32(scales[i])
            out[a] = int(f32 * np.float32(d))
        dim_scales[a] = float(f32)
        if out[a] < 1:
            raise ValueError(f"Resize node {node.name!r}: input {shape} gives output {out}")
    down = any(s < 1 for s in dim_scales)
    if mode == "linear" and int(attrs.get("antialias", 0)) and down:
        raise _unsupported(node, "antialiased downscaling is not supported")
    ctx.emit(
        "resize", [node.input[0]], node.output[:1], node, sizes=tuple(out),
        scales=tuple(dim_scales), mode=mode, coord=coord, nearest_mode=rounding,
    )  # fmt: skip


EXTRA_MAPPERS = {
    "ConvTranspose": _conv_transpose,
    "Elu": _unary("elu", alpha=1.0),
    "Selu": _unary("selu", alpha=_SELU_ALPHA, gamma=_SELU_GAMMA),
    "PRelu": _prelu,
    "Erf": _unary("erf"),
    "Gelu": _gelu,
    "Sqrt": _unary("sqrt"),
    "Pow": _pow,
    "LogSoftmax": _softmax_like("log_softmax"),
    "Sum": _variadic("sum", np.add),
    "Max": _variadic("maximum", np.maximum),
    "Min": _variadic("minimum", np.minimum),
    "LRN": _lrn,
    "LayerNormalization": _layer_norm,
    "ReduceMean": reduce_mapper("reduce_mean", axes_input_from=18),
    "ReduceSum": reduce_mapper("reduce_sum", axes_input_from=13),
    "Pad": _pad,
    "Resize": _resize,
    "Upsample": _resize,
}
