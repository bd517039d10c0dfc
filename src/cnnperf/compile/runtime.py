"""Executable kernels for each graph IR op: a builder per op turns a node into a callable.

A builder sees the node, the graph (its initializers) and the static shapes; it does the
per-model work once (a conv's plan and prepared weight, a gemm's transposed weight) and returns
``(fn, args)``: at run time ``fn(*values_of(args))`` returns the node's outputs as a tuple.
Where ``ops`` covers an IR form the kernel calls it; the few forms ``ops`` does not cover (ONNX
pooling with asymmetric or large pads, HardSigmoid with other slopes) are NumPy glue here. The
builders of the ops beyond the CNN core live in :mod:`.runtime_extra` and
:mod:`.runtime_math` and are merged in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import ops
from .graph import Graph, Node
from .runtime_extra import EXTRA_BUILDERS
from .runtime_math import MATH_BUILDERS
from .shapes import pool_output_size, reshape_shape

__all__ = ["build_kernel", "pool2d_numpy", "activation_of"]

Kernel = tuple[Callable[..., tuple], list[str]]


def activation_of(node: Node):
    """The ``ops.conv2d`` activation equal to an activation node, or None if it has none."""
    a = node.attrs
    if node.op in ("relu", "sigmoid", "tanh", "hardswish"):
        return node.op
    if node.op == "gelu":
        approximate = a.get("approximate", "none")
        return {"none": "gelu", "tanh": "gelu_tanh"}.get(approximate)
    if node.op == "leaky_relu":
        return ("leaky_relu", float(a.get("alpha", 0.01)))
    if node.op == "hardsigmoid":
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        return "hardsigmoid" if abs(alpha - 1 / 6) < 1e-7 and beta == 0.5 else None
    if node.op == "clip":
        lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
        if lo == 0 and hi == 6:
            return "relu6"
        if lo == 0 and hi == np.inf:
            return "relu"
    return None


def _const(graph: Graph, name: str, node: Node) -> np.ndarray:
    if name not in graph.initializers:
        raise NotImplementedError(
            f"{node.op} {node.name!r}: input {name!r} must be a constant (initializer)"
        )
    return graph.initializers[name]


def _conv(node: Node, graph: Graph, shapes: dict) -> Kernel:
    a = node.attrs
    residual = bool(a.get("residual", False))
    if residual and len(node.inputs) < 3:
        raise ValueError(
            f"conv2d {node.name!r}: residual=True needs inputs (x, weight[, bias], residual), "
            f"got {node.inputs}"
        )
    n_bias = len(node.inputs) - 2 - int(residual)  # inputs (x, weight[, bias][, residual])
    weight = _const(graph, node.inputs[1], node)
    bias = _const(graph, node.inputs[2], node) if n_bias else None
    x_shape = shapes[node.inputs[0]]
    pt, pb, pl, pr = a.get("pads", (0, 0, 0, 0))
    kwargs = dict(
        stride=a.get("stride", (1, 1)), padding=((pt, pb), (pl, pr)),
        dilation=a.get("dilation", (1, 1)), groups=a.get("groups", 1),
        activation=a.get("activation"),
    )  # fmt: skip
    layout = a.get("layout", "nchw")
    if layout == "nchw":
        plan = ops.plan_conv2d(
            weight, bias, input_shape=(1 if x_shape[0] is None else x_shape[0], *x_shape[1:]),
            **kwargs,
        )  # fmt: skip
        c_out, oh, ow = plan.params.output_shape[1:]

        def fits(out, x):
            return out.shape == (x.shape[0], c_out, oh, ow) and out.dtype == plan.dtype

        return _conv_kernel(node, plan, fits, plan, residual)
    # "nchw8c" reads and writes channel-blocked arrays, "nchw_to_nchw8c" reads NCHW
    if layout == "nchw8c":
        x_shape = (x_shape[0], x_shape[1] * x_shape[4], x_shape[2], x_shape[3])
    try:
        conv = ops.BlockedConv2d(
            weight, bias, input_shape=x_shape,
            input_layout="nchw8c" if layout == "nchw8c" else "nchw", **kwargs,
        )  # fmt: skip
    except ValueError as e:
        raise ValueError(f"conv2d {node.name!r}: {e}") from None

    def fits_blocked(out, x):
        return out.shape == conv.output_shape(x.shape[0])

    return _conv_kernel(node, conv, fits_blocked, _Named(conv.name), residual)


def _conv_kernel(node: Node, run: Callable, fits: Callable, shown, residual: bool) -> Kernel:
    """The executor's kernel for a conv: ``run(x, residual=, out=)`` with the node named in
    its errors; ``.into`` writes into a planned buffer when ``fits(out, x)`` (else allocates);
    ``.plan`` is what CompiledModel.profile reads (``shown.algorithm_for(n)``); ``.bind(out,
    x, r=None)``, where ``run`` has one, prepares the call for those fixed arrays (a callable
    without arguments, or None)."""

    def call(x, r=None, out=None):
        try:
            return (run(x, residual=r, out=out),)
        except ValueError as e:
            raise ValueError(f"conv2d {node.name!r}: {e}") from None

    def into(out, x, r=None):
        return call(x, r, out if fits(out, x) else None)

    call.plan = shown
    call.into = into
    if hasattr(run, "bind"):  # a kernel that can be prepared for fixed buffers

        def bind(out, x, r=None):
            return run.bind(x, out, r)

        call.bind = bind
    args = [node.inputs[0], node.inputs[-1]] if residual else node.inputs[:1]
    return call, args


class _Named:
    """What CompiledModel.profile reads of a conv's plan: ``algorithm_for(n)[0].name``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def algorithm_for(self, n: int) -> tuple:
        return self, None


def _reorder(fn: Callable) -> Callable:
    def builder(node: Node, graph: Graph, shapes: dict) -> Kernel:
        def call(x):
            return (fn(x),)

        def into(out, x):
            try:
                return (fn(x, out),)
            except ValueError:  # the planned buffer does not fit this run: allocate
                return call(x)

        call.into = into
        return call, node.inputs[:1]

    return builder


def _windows(xp: np.ndarray, k, s, d, out_hw) -> np.ndarray:
    """(n, c, oh, ow, kh, kw) strided view of the windows of padded ``xp``."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = k, s, d, out_hw
    v = np.lib.stride_tricks.sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), (2, 3))
    return v[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, ::dh, ::dw]


def pool2d_numpy(x: np.ndarray, kind: str, kernel, stride, pads, dilation=(1, 1),
                 ceil_mode=False, count_include_pad=False) -> np.ndarray:  # fmt: skip
    """ONNX MaxPool/AveragePool on (n, c, h, w) with any pads (top, bottom, left, right).

    Windows are clipped to the padded extent ``h + top + bottom`` (a ceil_mode window hanging
    past it counts only what lies inside); the average divides by the input elements in the
    window, or with ``count_include_pad`` by the window's part inside the padded extent.

    Example:
        >>> x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
        >>> pool2d_numpy(x, "max", (2, 2), (2, 2), (0, 1, 0, 1)).ravel().tolist()
        [4.0, 5.0, 7.0, 8.0]
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    pt, pb, pl, pr = pads
    oh = pool_output_size(h, kh, sh, pt, pb, dh, ceil_mode)
    ow = pool_output_size(w, kw, sw, pl, pr, dw, ceil_mode)
    # Room for every window, including ceil_mode windows that hang past the padded extent.
    hp = max(h + pt + pb, (oh - 1) * sh + dh * (kh - 1) + 1)
    wp = max(w + pl + pr, (ow - 1) * sw + dw * (kw - 1) + 1)
    fill = -np.inf if kind == "max" else 0.0
    xp = np.full((n, c, hp, wp), fill, x.dtype)
    xp[:, :, pt : pt + h, pl : pl + w] = x
    win = _windows(xp, kernel, stride, dilation, (oh, ow))
    if kind == "max":
        return np.ascontiguousarray(win.max(axis=(4, 5)))
    total = win.sum(axis=(4, 5), dtype=x.dtype)
    mask = np.zeros((1, 1, hp, wp), x.dtype)
    if count_include_pad:
        mask[:, :, : h + pt + pb, : w + pl + pr] = 1
    else:
        mask[:, :, pt : pt + h, pl : pl + w] = 1
    count = _windows(mask, kernel, stride, dilation, (oh, ow)).sum(axis=(4, 5))
    return np.ascontiguousarray(total / np.maximum(count, 1).astype(x.dtype))


def _pool(node: Node, graph: Graph, shapes: dict) -> Kernel:
    a = node.attrs
    kernel, stride = tuple(a["kernel"]), tuple(a.get("stride", a["kernel"]))
    dil, (pt, pb, pl, pr) = tuple(a.get("dilation", (1, 1))), a.get("pads", (0, 0, 0, 0))
    ceil, cip = bool(a.get("ceil_mode", False)), bool(a.get("count_include_pad", False))
    kind = "max" if node.op == "max_pool2d" else "avg"
    # ops' pools are PyTorch's: symmetric pads of at most half the kernel (avg: no dilation).
    symmetric = pt == pb and pl == pr and 2 * pt <= kernel[0] and 2 * pl <= kernel[1]
    if a.get("layout", "nchw") == "nchw8c":  # compile.layout: symmetric max pools only
        if not (symmetric and kind == "max"):
            raise ValueError(f"{node.op} {node.name!r}: layout nchw8c takes a max pool with "
                             f"symmetric pads of at most half the kernel")  # fmt: skip

        def blocked(x):
            return (ops.max_pool2d_blocked(x, kernel, stride, (pt, pl), dil, ceil),)

        def into(out, x):
            try:
                return (ops.max_pool2d_blocked(x, kernel, stride, (pt, pl), dil, ceil, out),)
            except ValueError:  # not its shape: allocate (or raise the argument error)
                return blocked(x)

        def bind(out, x):
            return ops.bind_max_pool2d_blocked(x, out, kernel, stride, (pt, pl), dil, ceil)

        blocked.into, blocked.bind = into, bind
        return blocked, node.inputs
    if symmetric and kind == "max":
        return (lambda x: (ops.max_pool2d(x, kernel, stride, (pt, pl), dil, ceil),)), node.inputs
    if symmetric and dil == (1, 1):
        return (lambda x: (ops.avg_pool2d(x, kernel, stride, (pt, pl), ceil, cip),)), node.inputs

    def run(x):
        return (pool2d_numpy(x, kind, kernel, stride, (pt, pb, pl, pr), dil, ceil, cip),)

    return run, node.inputs


def _global_avg_pool(node: Node, graph: Graph, shapes: dict) -> Kernel:
    if node.attrs.get("layout") != "nchw8c":
        return (lambda x: (x.mean(axis=(2, 3), keepdims=True, dtype=x.dtype),)), node.inputs

    def run(x):
        return (ops.global_avg_pool2d_blocked(x),)

    def into(out, x):
        fits = out.shape == (x.shape[0], x.shape[1] * x.shape[4], 1, 1)
        return (ops.global_avg_pool2d_blocked(x, out if fits else None),)

    def bind(out, x):
        return ops.bind_global_avg_pool2d_blocked(x, out)

    run.into, run.bind = into, bind
    return run, node.inputs


def _batch_norm(node: Node, graph: Graph, shapes: dict) -> Kernel:
    scale, bias, mean, var = (_const(graph, v, node) for v in node.inputs[1:5])
    eps = float(node.attrs.get("eps", 1e-5))
    return (lambda x: (ops.batch_norm(x, mean, var, scale, bias, eps=eps),)), node.inputs[:1]


# Rows up to which a constant-weight float32 gemm runs ops.PackedLinear instead of BLAS. A
# 1280 -> 1000 classifier alone, its weight evicted from cache before each call (2 threads,
# medians of 50): 0.32 ms against NumPy's 0.39 at 1 row, 0.42 against 0.61 at 8; with the
# weight in cache 0.085 against 0.058 at 1 row, 0.17 against 0.32 at 8. Inside the compiled
# models (interleaved medians of 30-60 runs): MobileNetV2 0.99x at batch 8, ResNet-18 and
# MobileNetV2 level (0.997-1.006x) at batch 1 and ResNet-18 at batch 8.
PACKED_LINEAR_ROWS = 8


def _gemm(node: Node, graph: Graph, shapes: dict) -> Kernel:
    a = node.attrs
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    ta, tb = bool(a.get("trans_a", 0)), bool(a.get("trans_b", 0))
    c_name = node.inputs[2] if len(node.inputs) > 2 else None
    c = graph.initializers.get(c_name) if c_name else None
    b = graph.initializers.get(node.inputs[1])
    if b is not None and (c_name is None or c is not None):
        # Constant weight: one (out, in) matrix with alpha folded in, beta*C as the bias.
        w = np.ascontiguousarray((b if tb else b.T) * np.asarray(alpha, b.dtype))  # (n, k)
        bias = None if c is None else np.asarray(beta * c, b.dtype)
        vec = (
            bias is not None
            and bias.ndim <= 2
            and bias.size == w.shape[0]
            and (bias.ndim < 2 or bias.shape[0] == 1)
        )

        packed = (
            ops.PackedLinear(w, None if bias is None else bias.reshape(-1))
            if w.dtype == np.float32 and w.ndim == 2 and (bias is None or vec)
            else None
        )

        def run_linear(x):
            x2 = x.T if ta else x
            if (
                packed is not None
                and x2.ndim == 2
                and 0 < x2.shape[0] <= PACKED_LINEAR_ROWS
                and x2.dtype == np.float32
                and x2.shape[1] == w.shape[1]
            ):
                return (packed(x2),)
            if vec:
                return (ops.linear(x2, w, bias.reshape(-1)),)
            y = ops.linear(x2, w)
            return (y if bias is None else y + bias,)

        return run_linear, node.inputs[:1]

    def run(x, y, *rest):
        out = alpha * ((x.T if ta else x) @ (y.T if tb else y))
        if rest:
            out = out + beta * rest[0]
        return (out.astype(x.dtype, copy=False),)

    return run, node.inputs


def _hardsigmoid(node: Node, graph: Graph, shapes: dict) -> Kernel:
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    if activation_of(node) == "hardsigmoid":
        return (lambda x: (ops.hardsigmoid(x),)), node.inputs

    def run(x):
        y = x * np.asarray(alpha, x.dtype) + np.asarray(beta, x.dtype)
        return (np.clip(y, 0, 1, out=y),)

    return run, node.inputs


def _clip(node: Node, graph: Graph, shapes: dict) -> Kernel:
    lo, hi = float(node.attrs.get("min", -np.inf)), float(node.attrs.get("max", np.inf))

    def run(x):
        return (np.clip(x, np.asarray(lo, x.dtype), np.asarray(hi, x.dtype)),)

    return run, node.inputs


def _softmax(node: Node, graph: Graph, shapes: dict) -> Kernel:
    axis, coerce = int(node.attrs.get("axis", -1)), bool(node.attrs.get("coerce_2d", False))
    if not coerce:
        return (lambda x: (ops.softmax(x, axis),)), node.inputs

    def run(x):
        ax = axis % x.ndim if x.ndim else 0
        rows = int(np.prod(x.shape[:ax]))
        return (ops.softmax(x.reshape(rows, -1), 1).reshape(x.shape),)  # (rows, rest)

    return run, node.inputs


def _reshape(node: Node, graph: Graph, shapes: dict) -> Kernel:
    shape, allowzero = tuple(node.attrs["shape"]), bool(node.attrs.get("allowzero", False))

    def run(x):
        return (x.reshape(reshape_shape(x.shape, shape, allowzero)),)

    return run, node.inputs


def _flatten(node: Node, graph: Graph, shapes: dict) -> Kernel:
    axis = int(node.attrs.get("axis", 1))

    def run(x):
        ax = axis % x.ndim if axis < 0 else axis
        # (prod(x[:axis]), prod(x[axis:])); math.prod: np.prod of a tuple took 6 us a call
        return (x.reshape(math.prod(x.shape[:ax]), -1),)

    return run, node.inputs


def _simple(fn: Callable) -> Callable:
    def builder(node: Node, graph: Graph, shapes: dict) -> Kernel:
        a = node.attrs
        return (lambda *xs: (fn(a, *xs),)), node.inputs

    return builder


def _binary(ufunc: np.ufunc) -> Callable:
    """Builder of an element-wise binary op (NumPy broadcasting) that can also write into a
    planned buffer: ``fn.into(out, x, y)`` uses ``out=`` when the result's shape and dtype
    are exactly ``out``'s, else allocates as ``fn`` does."""

    def builder(node: Node, graph: Graph, shapes: dict) -> Kernel:
        def run(x, y):
            return (ufunc(x, y),)

        def into(out, x, y):
            try:
                shape = np.broadcast_shapes(np.shape(x), np.shape(y))
            except ValueError:
                shape = None  # let the ufunc raise its own error
            if shape != out.shape or np.result_type(x, y) != out.dtype:
                return (ufunc(x, y),)
            return (ufunc(x, y, out=out),)

        run.into = into
        return run, node.inputs

    return builder


def _unsqueeze(a, x):
    out_rank = x.ndim + len(a["axes"])
    return np.expand_dims(x, tuple(sorted(ax % out_rank for ax in a["axes"])))


_BUILDERS: dict[str, Callable[[Node, Graph, dict], Kernel]] = {
    "conv2d": _conv,
    "max_pool2d": _pool,
    "avg_pool2d": _pool,
    "batch_norm": _batch_norm,
    "to_blocked": _reorder(ops.to_blocked),
    "from_blocked": _reorder(ops.from_blocked),
    "gemm": _gemm,
    "hardsigmoid": _hardsigmoid,
    "clip": _clip,
    "softmax": _softmax,
    "reshape": _reshape,
    "flatten": _flatten,
    "global_avg_pool2d": _global_avg_pool,
    "global_max_pool2d": _simple(lambda a, x: x.max(axis=(2, 3), keepdims=True)),
    "relu": _simple(lambda a, x: ops.relu(x)),
    "leaky_relu": _simple(lambda a, x: ops.leaky_relu(x, float(a.get("alpha", 0.01)))),
    "sigmoid": _simple(lambda a, x: ops.sigmoid(x)),
    "tanh": _simple(lambda a, x: ops.tanh(x)),
    "hardswish": _simple(lambda a, x: ops.hardswish(x)),
    "matmul": _simple(lambda a, x, y: np.matmul(x, y)),
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "div": _binary(np.divide),
    "concat": _simple(lambda a, *xs: np.concatenate(xs, axis=a["axis"])),
    "transpose": _simple(lambda a, x: np.ascontiguousarray(np.transpose(x, a["perm"]))),
    "squeeze": _simple(lambda a, x: np.squeeze(x, tuple(ax % x.ndim for ax in a["axes"]))),
    "unsqueeze": _simple(_unsqueeze),
    "identity": _simple(lambda a, x: x),
    "dropout": _simple(lambda a, x: x),
    **EXTRA_BUILDERS,
    **MATH_BUILDERS,
}


def build_kernel(node: Node, graph: Graph, shapes: dict) -> Kernel:
    """``(fn, arg_names)`` for ``node``: ``fn(*args)`` returns the tuple of its outputs."""
    return _BUILDERS[node.op](node, graph, shapes)
