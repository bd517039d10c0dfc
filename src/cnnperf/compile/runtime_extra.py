"""Kernel builders for the graph IR ops beyond the CNN core (see :mod:`.runtime`).

Transposed convolution, the extra activations, LRN, layer norm, reductions, padding, resizing
and data movement (slice, gather, split, tile, space/depth). Each builder returns
``(fn, arg_names)`` like those in :mod:`.runtime`, which merges :data:`EXTRA_BUILDERS` into
its table. ``ops`` computes where it has the op (conv_transpose2d, pad, local_response_norm,
elu, selu, prelu, log_softmax; erf through the exact GELU); the rest is NumPy glue. Float32
in, float32 out; every output is a new array (never a view of an input: the memory plan
counts these ops' outputs as buffers of their own).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from .. import ops
from .graph import Graph, Node
from .shapes import slice_bounds

__all__ = ["EXTRA_BUILDERS", "erf_numpy", "resize_numpy"]

Kernel = tuple[Callable[..., tuple], list[str]]

# ONNX Selu's default attributes: the constants of Klambauer et al. rounded to float32.
_SELU_ALPHA, _SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


def _const(graph: Graph, name: str, node: Node) -> np.ndarray:
    if name not in graph.initializers:
        raise NotImplementedError(
            f"{node.op} {node.name!r}: input {name!r} must be a constant (initializer)"
        )
    return graph.initializers[name]


def _simple(fn: Callable) -> Callable:
    def builder(node: Node, graph: Graph, shapes: dict) -> Kernel:
        a = node.attrs
        return (lambda *xs: (fn(a, *xs),)), node.inputs

    return builder


def _conv_transpose(node: Node, graph: Graph, shapes: dict) -> Kernel:
    a = node.attrs
    weight = _const(graph, node.inputs[1], node)
    bias = _const(graph, node.inputs[2], node) if len(node.inputs) > 2 else None
    stride, dil = tuple(a.get("stride", (1, 1))), tuple(a.get("dilation", (1, 1)))
    groups = int(a.get("groups", 1))
    pt, pb, pl, pr = a.get("pads", (0, 0, 0, 0))
    oph, opw = a.get("output_padding", (0, 0))
    oh, ow = shapes[node.outputs[0]][2:]
    # ops' (PyTorch's) form: symmetric pads, output_padding below the stride or the dilation.
    torch_op = (oph < stride[0] or oph < dil[0]) and (opw < stride[1] or opw < dil[1])
    if pt == pb >= 0 and pl == pr >= 0 and torch_op:

        def run_torch(x):
            y = ops.conv_transpose2d(x, weight, bias, stride, (pt, pl), (oph, opw), groups, dil)
            return (y,)

        return run_torch, node.inputs[:1]

    def run(x):
        full = ops.conv_transpose2d(x, weight, None, stride, 0, 0, groups, dil)  # (n, c, fh, fw)
        out = np.zeros((*full.shape[:2], oh, ow), full.dtype)
        # Output row i is row i + pt of the unpadded result; past its end only the bias.
        r0, r1 = max(0, -pt), min(oh, full.shape[2] - pt)
        c0, c1 = max(0, -pl), min(ow, full.shape[3] - pl)
        out[:, :, r0:r1, c0:c1] = full[:, :, r0 + pt : r1 + pt, c0 + pl : c1 + pl]
        if bias is not None:
            out += bias.reshape(1, -1, 1, 1)
        return (out,)

    return run, node.inputs[:1]


def erf_numpy(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, from the exact GELU (``ops.gelu``) in float64.

    ``gelu(v) = v/2 * (1 + erf(v / sqrt 2))``, so ``erf(x) = 2 gelu(sqrt(2) x) / (sqrt(2) x) - 1``;
    float64 keeps the subtraction's error near 1e-16, far below float32's rounding. Near 0 the
    series ``2/sqrt(pi) (x - x**3/3)`` is used and past |x| = 6 erf is +-1 in float64.

    Example:
        >>> erf_numpy(np.array([0.0, 0.5, -8.0])).round(4).tolist()
        [0.0, 0.5205, -1.0]
    """
    x = np.asarray(x)
    a = np.abs(x)
    tiny, huge = a < 1e-4, ~(a <= 6.0) & ~np.isnan(x)
    v = x.astype(np.float64)
    v *= math.sqrt(2.0)
    if tiny.any():
        v[tiny] = 1.0  # not 0 / 0; overwritten below
    y = ops.gelu(v)
    y *= 2.0
    y /= v
    y -= 1.0
    if tiny.any():
        t = x[tiny].astype(np.float64)
        y[tiny] = (2.0 / math.sqrt(math.pi)) * (t - t**3 / 3.0)
    if huge.any():
        y[huge] = np.sign(x[huge])
    return y.astype(x.dtype)


def _prelu(node: Node, graph: Graph, shapes: dict) -> Kernel:
    slope = graph.initializers.get(node.inputs[1])
    x_rank = len(shapes[node.inputs[0]])
    if slope is not None and x_rank >= 2:
        c = shapes[node.inputs[0]][1]
        trailing = slope.shape[-(x_rank - 2) :] if x_rank > 2 else ()
        if slope.size == 1:
            w = slope.reshape(1)
            return (lambda x: (ops.prelu(x, w),)), node.inputs[:1]
        per_channel = slope.ndim >= x_rank - 1 and slope.shape[-(x_rank - 1)] == c
        if per_channel and slope.size == c and all(d == 1 for d in trailing):
            w = np.ascontiguousarray(slope.reshape(c))  # (c,)
            return (lambda x: (ops.prelu(x, w),)), node.inputs[:1]

    def run(x, s):
        return (np.where(x > 0, x, x * s).astype(x.dtype, copy=False),)

    return run, node.inputs


def _selu(a, x):
    alpha, gamma = float(a.get("alpha", _SELU_ALPHA)), float(a.get("gamma", _SELU_GAMMA))
    if math.isclose(alpha, _SELU_ALPHA, rel_tol=1e-7) and math.isclose(gamma, _SELU_GAMMA):
        return ops.selu(x)
    neg = np.asarray(alpha, x.dtype) * np.expm1(np.minimum(x, 0))
    return np.asarray(gamma, x.dtype) * np.where(x > 0, x, neg)


def _softmax_like(fn):
    def builder(node: Node, graph: Graph, shapes: dict) -> Kernel:
        axis, coerce = int(node.attrs.get("axis", -1)), bool(node.attrs.get("coerce_2d", False))

        def run(x):
            if not coerce:
                return (fn(x, axis),)
            rows = int(np.prod(x.shape[: axis % x.ndim]))
            return (fn(x.reshape(rows, -1), 1).reshape(x.shape),)  # (rows, rest)

        return run, node.inputs

    return builder


def _lrn(a, x):
    size = int(a["size"])
    args = (size, float(a.get("alpha", 1e-4)), float(a.get("beta", 0.75)), float(a.get("k", 1.0)))
    if size % 2:
        return ops.local_response_norm(x, *args)
    # An even window leans forward in ONNX ([c - size/2 + 1, c + size/2]) but backward in
    # PyTorch's: mirroring the channels turns one into the other.
    return np.ascontiguousarray(ops.local_response_norm(x[:, ::-1], *args)[:, ::-1])


def _layer_norm(node: Node, graph: Graph, shapes: dict) -> Kernel:
    eps = float(node.attrs.get("eps", 1e-5))
    axis = int(node.attrs.get("axis", -1))

    def run(x, scale, bias=None):
        ax = axis % x.ndim
        norm_shape = x.shape[ax:]
        x2 = x.reshape(-1, math.prod(norm_shape))  # (rows, normalised); float32 sums along
        # the contiguous axis are pairwise, so float32 statistics stay accurate
        d = x2 - x2.mean(axis=1, keepdims=True)
        var = np.mean(np.square(d), axis=1, keepdims=True)
        d *= 1.0 / np.sqrt(var + np.asarray(eps, x.dtype))
        d *= np.broadcast_to(scale, norm_shape).reshape(1, -1)
        if bias is not None:
            d += np.broadcast_to(bias, norm_shape).reshape(1, -1)
        return (d.reshape(x.shape),)

    return run, node.inputs


def _reduce(kind: str):
    def fn(a, x):
        axes = tuple(a["axes"]) or None
        keep = bool(a.get("keepdims", True))
        reduce = np.mean if kind == "mean" else np.sum
        # np.asarray: a reduction over every axis is a NumPy scalar, the graph's values arrays
        return np.asarray(reduce(x, axis=axes, keepdims=keep, dtype=np.float64).astype(x.dtype))

    return _simple(fn)


def _pad(a, x):
    pads, mode, value = a["pads"], a.get("mode", "constant"), float(a.get("value", 0.0))
    # Negative pads crop first; the rest grows.
    x = x[tuple(slice(max(-b, 0), None if e >= 0 else e) for b, e in pads)]
    grow = [(max(b, 0), max(e, 0)) for b, e in pads]
    if mode == "wrap":
        return np.pad(x, grow, mode="wrap")
    torch_pad = tuple(w for b, e in reversed(grow) for w in (b, e))  # last dim first
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[mode]
    return ops.pad(x, torch_pad, torch_mode, value)


def _coords(coord: str, out_len: int, in_len: int, scale: float) -> np.ndarray:
    """Input coordinate of each output index, in float32 as ONNX Runtime computes it."""
    f = np.float32
    x, s = np.arange(out_len, dtype=f), f(scale)
    if coord == "asymmetric":
        return x / s
    if coord == "align_corners":
        return x * f(in_len - 1) / f(out_len - 1) if out_len > 1 else np.zeros(1, f)
    if coord == "tf_half_pixel_for_nn":
        return (x + f(0.5)) / s
    half = (x + f(0.5)) / s - f(0.5)
    if coord == "pytorch_half_pixel":
        return half if out_len > 1 else np.zeros(1, f)
    if coord == "half_pixel_symmetric":
        adjust = f(out_len) / (s * f(in_len))
        return f(in_len) / f(2) * (f(1) - adjust) + half
    return half  # half_pixel


def _nearest_index(orig: np.ndarray, nearest_mode: str, down: bool) -> np.ndarray:
    v = orig.astype(np.float64)  # exact: the float32 coordinate, rounded without new error
    away = np.sign(v) * np.floor(np.abs(v) + 0.5)  # C's round(): halves away from zero
    if nearest_mode == "round_prefer_floor":
        return np.where(v == np.trunc(v) + 0.5, np.floor(v), away)
    if nearest_mode == "round_prefer_ceil":
        return away
    if nearest_mode == "floor":
        return np.floor(v)
    if nearest_mode == "ceil":
        return np.ceil(v)
    return np.ceil(v) if down else np.floor(v)  # "simple", ONNX Runtime's rule before opset 11


def resize_numpy(x: np.ndarray, sizes, scales, mode: str = "nearest", coord: str = "half_pixel",
                 nearest_mode: str = "round_prefer_floor") -> np.ndarray:  # fmt: skip
    """ONNX Resize (nearest or linear), one axis at a time, on any rank.

    Args:
        x: the input; ``sizes`` the output shape (None: keep the dim), ``scales`` the
            per-dim scales the coordinate transform divides by.
        mode, coord, nearest_mode: as the ONNX attributes (see ``graph.OPS["resize"]``).

    Shape:
        The output has shape ``sizes``. Linear mode clamps the source coordinate to
        ``[0, in - 1]`` and blends the two neighbours: n-linear, as separable 1-D passes.

    Example:
        >>> resize_numpy(np.array([[1.0, 2.0]], np.float32), (1, 4), (1.0, 2.0)).tolist()
        [[1.0, 1.0, 2.0, 2.0]]
    """
    original = x
    for ax, (out_len, scale) in enumerate(zip(sizes, scales, strict=True)):
        in_len = x.shape[ax]
        if out_len is None or (out_len == in_len and scale == 1.0):
            continue
        orig = _coords(coord, out_len, in_len, scale)
        shape = [1] * x.ndim
        shape[ax] = out_len
        if mode == "nearest":
            idx = _nearest_index(orig, nearest_mode, scale < 1.0)
            x = np.take(x, np.clip(idx, 0, in_len - 1).astype(np.int64), axis=ax)
            continue
        pos = np.clip(orig, np.float32(0), np.float32(in_len - 1))
        i0 = np.minimum(pos.astype(np.int64), in_len - 1)
        i1 = np.minimum(i0 + 1, in_len - 1)
        w1 = np.abs(pos - i0.astype(np.float32))
        w0 = np.abs(pos - i1.astype(np.float32))
        w0[i0 == i1], w1[i0 == i1] = 0.5, 0.5
        x0, x1 = np.take(x, i0, axis=ax), np.take(x, i1, axis=ax)
        x0 *= w0.reshape(shape).astype(x.dtype)
        x1 *= w1.reshape(shape).astype(x.dtype)
        x = np.add(x0, x1, out=x0)
    return x.copy() if x is original else np.ascontiguousarray(x)


def _resize(a, x):
    mode, coord = a.get("mode", "nearest"), a.get("coord", "half_pixel")
    rounding = a.get("nearest_mode", "round_prefer_floor")
    return resize_numpy(x, a["sizes"], a["scales"], mode, coord, rounding)


def _slice(a, x):
    index = [slice(None)] * x.ndim
    for ax, b, e, st in zip(a["axes"], a["starts"], a["ends"], a["steps"], strict=True):
        index[ax] = slice_bounds(x.shape[ax], b, e, st)
    return x[tuple(index)].copy()  # a copy even where the slice is contiguous: no aliasing


def _gather(a, x):
    axis, idx = a["axis"] % x.ndim, np.asarray(a["indices"], np.int64)
    return np.take(x, np.where(idx < 0, idx + x.shape[axis], idx), axis=axis)


def _split(node: Node, graph: Graph, shapes: dict) -> Kernel:
    axis, sizes = int(node.attrs["axis"]), list(node.attrs["sizes"])
    cuts = np.cumsum(sizes)[:-1].tolist()

    def run(x):
        return tuple(p.copy() for p in np.split(x, cuts, axis=axis))

    return run, node.inputs


def _space_to_depth(a, x):
    n, c, h, w = x.shape
    b = a["blocksize"]
    t = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)  # (n, b, b, c, h/b, w/b)
    return t.copy().reshape(n, c * b * b, h // b, w // b)


def _depth_to_space(a, x):
    n, c, h, w = x.shape
    b, crd = a["blocksize"], a.get("mode", "DCR") == "CRD"
    if crd:
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(
            0, 1, 4, 2, 5, 3
        )  # (n, c', h, b, w, b)
    else:
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(
            0, 3, 4, 1, 5, 2
        )  # (n, c', h, b, w, b)
    return t.copy().reshape(n, c // (b * b), h * b, w * b)


def _variadic(ufunc):
    return _simple(lambda a, *xs: functools.reduce(ufunc, xs))


EXTRA_BUILDERS: dict[str, Callable[[Node, Graph, dict], Kernel]] = {
    "conv_transpose2d": _conv_transpose,
    "elu": _simple(lambda a, x: ops.elu(x, float(a.get("alpha", 1.0)))),
    "selu": _simple(_selu),
    "prelu": _prelu,
    "erf": _simple(lambda a, x: erf_numpy(x)),
    "sqrt": _simple(lambda a, x: np.sqrt(x)),
    "pow": _simple(lambda a, x, y: np.power(x, y)),
    "log_softmax": _softmax_like(ops.log_softmax),
    "sum": _variadic(np.add),
    "maximum": _variadic(np.maximum),
    "minimum": _variadic(np.minimum),
    "local_response_norm": _simple(_lrn),
    "layer_norm": _layer_norm,
    "reduce_mean": _reduce("mean"),
    "reduce_sum": _reduce("sum"),
    "pad": _simple(_pad),
    "resize": _simple(_resize),
    "slice": _simple(_slice),
    "gather": _simple(_gather),
    "split": _split,
    "tile": _simple(lambda a, x: np.tile(x, a["repeats"])),
    "space_to_depth": _simple(_space_to_depth),
    "depth_to_space": _simple(_depth_to_space),
}
