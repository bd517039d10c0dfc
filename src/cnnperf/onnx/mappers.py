"""ONNX op table: one mapper per ONNX op type, for the network ops (conv, pools, norms, ...).

A mapper ``(ctx, node, attrs) -> None`` reads the ONNX node (attributes already decoded) and
emits graph IR nodes through ``ctx.emit`` (or records a folded constant). ONNX semantics are
mapped exactly: pools default to stride 1, AveragePool to ``count_include_pad=0``, Gemm to
``transB=0``, Softmax before opset 13 flattens to 2-D at ``axis`` (default 1). Old model-zoo
forms map onto arithmetic: BatchNormalization with ``spatial=0`` (per-activation statistics),
ImageScaler and Mean. The tables of
:mod:`.mappers_tensor`, :mod:`.mappers_extra`, :mod:`.mappers_extra_tensor` and
:mod:`.mappers_more` are merged into :data:`MAPPERS`, the importer's dispatch table. MaxPool's
Indices output is accepted while no node reads it and it is no graph output.
"""

from __future__ import annotations

import numpy as np

from .importer import ImportContext
from .mappers_extra import EXTRA_MAPPERS, float_input
from .mappers_extra_tensor import EXTRA_TENSOR_MAPPERS
from .mappers_more import MORE_MAPPERS
from .mappers_tensor import TENSOR_MAPPERS

__all__ = ["MAPPERS", "onnx_pads"]


def _unsupported(node, why: str) -> NotImplementedError:
    return NotImplementedError(f"{node.op_type} node {node.name!r}: {why}")


def onnx_pads(node, attrs: dict, in_hw, kernel, strides, dilations) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from ONNX ``pads`` / ``auto_pad`` for a 2-D window op.

    ``SAME_UPPER`` / ``SAME_LOWER`` give ``out = ceil(in / stride)`` with the odd pixel of
    padding at the end / the beginning; ``VALID`` pads nothing.

    Example:
        >>> onnx_pads(None, {"auto_pad": "SAME_LOWER"}, (5, 6), (2, 3), (1, 2), (1, 1))
        (1, 0, 1, 0)
    """
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        p = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])]
        if len(p) != 4 or min(p) < 0:
            raise ValueError(f"{node.op_type} node {node.name!r}: pads {p} must be 4 ints >= 0")
        return (p[0], p[2], p[1], p[3])  # ONNX order: (h_begin, w_begin, h_end, w_end)
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise _unsupported(node, f"unknown auto_pad {auto!r}")
    out = []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations, strict=True):
        total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
        small = total // 2
        out += [small, total - small] if auto == "SAME_UPPER" else [total - small, small]
    return tuple(out)


def _spatial_2d(ctx: ImportContext, node) -> tuple[int, int]:
    shape = ctx.shape(node.input[0])
    if len(shape) != 4:
        raise _unsupported(node, f"only 2-D (4-D NCHW input) is supported, got input {shape}")
    return shape[2], shape[3]


def _conv(ctx: ImportContext, node, attrs: dict) -> None:
    hw = _spatial_2d(ctx, node)
    w = ctx.require_const(node.input[1], node, "weight")
    if w.ndim != 4:
        raise _unsupported(node, f"weight of shape {w.shape}: only 2-D convolution is supported")
    kernel = tuple(attrs.get("kernel_shape", w.shape[2:]))
    strides = tuple(attrs.get("strides", (1, 1)))
    dil = tuple(attrs.get("dilations", (1, 1)))
    pads = onnx_pads(node, attrs, hw, kernel, strides, dil)
    ins = [node.input[0], node.input[1]]
    if len(node.input) > 2 and node.input[2]:
        ctx.require_const(node.input[2], node, "bias")
        ins.append(node.input[2])
    ctx.emit(
        "conv2d", ins, node.output[:1], node,
        stride=strides, pads=pads, dilation=dil, groups=int(attrs.get("group", 1)),
    )  # fmt: skip


def _pool(kind: str):
    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        hw = _spatial_2d(ctx, node)
        # MaxPool's optional Indices output (int64 positions) is fine while nothing reads it.
        if len(node.output) > 1 and ctx.is_used(node.output[1]):
            raise _unsupported(
                node,
                f"the Indices output {node.output[1]!r} is read (by a node or as a graph "
                "output); it is not supported",
            )
        kernel = tuple(int(k) for k in attrs["kernel_shape"])
        strides = tuple(attrs.get("strides", (1, 1)))
        dil = tuple(attrs.get("dilations", (1, 1)))
        pads = onnx_pads(node, attrs, hw, kernel, strides, dil)
        extra = (
            {} if kind == "max" else {"count_include_pad": bool(attrs.get("count_include_pad", 0))}
        )
        ctx.emit(
            f"{kind}_pool2d", [node.input[0]], node.output[:1], node,
            kernel=kernel, stride=strides, pads=pads, dilation=dil,
            ceil_mode=bool(attrs.get("ceil_mode", 0)), **extra,
        )  # fmt: skip

    return mapper


def _global_pool(kind: str):
    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        _spatial_2d(ctx, node)
        ctx.emit(f"global_{kind}_pool2d", [node.input[0]], node.output[:1], node)

    return mapper


def _batch_norm(ctx: ImportContext, node, attrs: dict) -> None:
    # Before opset 14 the extra (statistics) outputs are what make the node training-mode: it
    # normalises with the batch's statistics then, as ONNX Runtime does, used or not.
    if int(attrs.get("training_mode", 0)) or any(node.output[1:]):
        raise _unsupported(node, "training mode (extra outputs) is not supported")
    what = ("scale", "bias", "mean", "var")
    params = [ctx.require_const(v, node, w) for v, w in zip(node.input[1:5], what, strict=True)]
    eps = float(attrs.get("epsilon", 1e-5))
    if int(attrs.get("spatial", 1)) != 1:
        _batch_norm_per_activation(ctx, node, params, eps)
        return
    ctx.emit("batch_norm", list(node.input[:5]), node.output[:1], node, eps=eps)


def _batch_norm_per_activation(ctx: ImportContext, node, params, eps: float) -> None:
    """``spatial=0`` (opsets 7 and 8): statistics per (c, d1, ...) element, as the constants
    ``a = scale / sqrt(var + eps)`` and ``b = bias - mean * a`` of ``x * a + b``."""
    x = node.input[0]
    want = tuple(ctx.shape(x)[1:])
    bad = [f"{w} {p.shape}" for w, p in zip(("scale", "bias", "mean", "var"), params, strict=True)
           if tuple(p.shape) != want]  # fmt: skip
    if bad:
        raise ValueError(
            f"BatchNormalization node {node.name!r}: spatial=0 needs scale, bias, mean and var "
            f"of the input's shape past the batch, {want}; got {', '.join(bad)}"
        )
    scale, bias, mean, var = (p.astype(np.float64) for p in params)
    a = scale / np.sqrt(var + eps)
    names = [f"{node.output[0]}__bn_{k}" for k in ("a", "b", "xa")]
    ctx.set_const(names[0], a.astype(np.float32))
    ctx.set_const(names[1], (bias - mean * a).astype(np.float32))
    ctx.emit("mul", [x, names[0]], [names[2]], node)
    ctx.emit("add", [names[2], names[1]], node.output[:1], node)


def _image_scaler(ctx: ImportContext, node, attrs: dict) -> None:
    """ImageScaler (opsets 1-9, old model-zoo files): ``scale * x + bias[c]`` on (n, c, h, w)."""
    shape = ctx.shape(node.input[0])
    bias = np.asarray(attrs.get("bias", ()), np.float32)
    if len(shape) != 4 or bias.size != shape[1]:
        raise ValueError(
            f"ImageScaler node {node.name!r}: needs a 4-D input and one bias per channel; got "
            f"input {shape} and {bias.size} biases"
        )
    names = [f"{node.output[0]}__{k}" for k in ("scale", "bias", "scaled")]
    ctx.set_const(names[0], np.array(float(attrs.get("scale", 1.0)), np.float32))
    ctx.set_const(names[1], bias.reshape(1, -1, 1, 1))
    ctx.emit("mul", [node.input[0], names[0]], [names[2]], node)
    ctx.emit("add", [names[2], names[1]], node.output[:1], node)


def _mean(ctx: ImportContext, node, attrs: dict) -> None:
    """Mean: the element-wise sum of the (broadcast) inputs divided by their count."""
    ins = [v for v in node.input if v]
    if all(ctx.is_const(v) for v in ins):
        vals = [ctx.const(v) for v in ins]
        out = np.asarray(sum(vals[1:], vals[0]) / np.asarray(len(vals), vals[0].dtype))
        ctx.set_const(node.output[0], out.astype(np.result_type(*vals)))
        return
    count, total = f"{node.output[0]}__count", f"{node.output[0]}__sum"
    ctx.set_const(count, np.array(len(ins), np.float32))
    ctx.emit("sum" if len(ins) > 1 else "identity", [float_input(ctx, v) for v in ins],
             [total], node)  # fmt: skip
    ctx.emit("div", [total, count], node.output[:1], node)


def _unary(ir_op: str, **defaults):
    def mapper(ctx: ImportContext, node, attrs: dict) -> None:
        a = {k: float(attrs.get(k, v)) for k, v in defaults.items()}
        ctx.emit(ir_op, [node.input[0]], node.output[:1], node, **a)

    return mapper


def _clip(ctx: ImportContext, node, attrs: dict) -> None:
    if ctx.opset < 11:
        lo, hi = attrs.get("min", -np.inf), attrs.get("max", np.inf)
    else:
        lo_v = ctx.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        hi_v = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        for i, v in ((1, lo_v), (2, hi_v)):
            if len(node.input) > i and node.input[i] and v is None:
                raise _unsupported(node, "min/max must be constants")
        lo = -np.inf if lo_v is None else float(np.asarray(lo_v).item())
        hi = np.inf if hi_v is None else float(np.asarray(hi_v).item())
    ctx.emit("clip", [node.input[0]], node.output[:1], node, min=float(lo), max=float(hi))


def _softmax(ctx: ImportContext, node, attrs: dict) -> None:
    legacy = ctx.opset < 13
    axis = int(attrs.get("axis", 1 if legacy else -1))
    ctx.emit("softmax", [node.input[0]], node.output[:1], node, axis=axis, coerce_2d=legacy)


def _gemm(ctx: ImportContext, node, attrs: dict) -> None:
    ins = [v for v in node.input[:3]]
    if len(ins) == 3 and not ins[2]:
        ins = ins[:2]
    ctx.emit(
        "gemm", ins, node.output[:1], node,
        alpha=float(attrs.get("alpha", 1.0)), beta=float(attrs.get("beta", 1.0)),
        trans_a=int(attrs.get("transA", 0)), trans_b=int(attrs.get("transB", 0)),
    )  # fmt: skip


def _matmul(ctx: ImportContext, node, attrs: dict) -> None:
    ctx.emit("matmul", list(node.input[:2]), node.output[:1], node)


MAPPERS = {
    "Conv": _conv,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": _global_pool("avg"),
    "GlobalMaxPool": _global_pool("max"),
    "BatchNormalization": _batch_norm,
    "ImageScaler": _image_scaler,
    "Mean": _mean,
    "Relu": _unary("relu"),
    "LeakyRelu": _unary("leaky_relu", alpha=0.01),
    "Sigmoid": _unary("sigmoid"),
    "Tanh": _unary("tanh"),
    "HardSigmoid": _unary("hardsigmoid", alpha=0.2, beta=0.5),
    "HardSwish": _unary("hardswish"),
    "Clip": _clip,
    "Softmax": _softmax,
    "Gemm": _gemm,
    "MatMul": _matmul,
    **TENSOR_MAPPERS,
    **EXTRA_MAPPERS,
    **EXTRA_TENSOR_MAPPERS,
    **MORE_MAPPERS,
}
