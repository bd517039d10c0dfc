"""The tape half of the tracer (:mod:`cnnperf.compile.trace`): the IR forms that modules and
tape operations share (conv, pools, linear, batch statistics, GELU), and one mapper per autograd
tape operation (:data:`TAPE_OPS`), each emitting graph IR nodes through the tracer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import shapes
from ..autograd.tensor import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from .trace import _Tracer

__all__ = ["TAPE_OPS"]

_BIG = 2**62  # an ONNX Slice end past any dimension


# -- IR forms shared by modules and tape operations --------------------------------------------
def _pair(v: Any) -> tuple[int, int]:
    return tuple(int(u) for u in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _conv(tr: _Tracer, base: str, x: str, w: Tensor, b: Tensor | None, stride, padding,
          dilation, groups: int) -> str:  # fmt: skip
    k, d, s = w.shape[2:], _pair(dilation), _pair(stride)
    ins = [x, tr.weight(w, "a conv2d weight")]
    ins += [tr.weight(b, "a conv2d bias")] if b is not None else []
    pads = tuple(shapes.normalize_padding(padding, k, d, s))
    return tr.emit("conv2d", ins, base, stride=s, pads=pads, dilation=d, groups=int(groups))


def _pool(tr: _Tracer, base: str, kind: str, x: str, xt: Tensor, y: Tensor, kernel_size,
          stride=None, padding=0, dilation=1, ceil_mode=False, count_include_pad=True,
          divisor_override=None) -> str:  # fmt: skip
    k = _pair(kernel_size)
    s, (ph, pw), ceil = _pair(k if stride is None else stride), _pair(padding), bool(ceil_mode)
    if kind == "max":
        return tr.emit("max_pool2d", [x], base, kernel=k, stride=s, pads=(ph, ph, pw, pw),
                       dilation=_pair(dilation), ceil_mode=ceil)  # fmt: skip
    if divisor_override is None:
        return tr.emit("avg_pool2d", [x], base, kernel=k, stride=s, pads=(ph, ph, pw, pw),
                       ceil_mode=ceil, count_include_pad=bool(count_include_pad))  # fmt: skip
    # Window sums over a fixed divisor: a depthwise conv of 1/divisor; the trailing pads reach
    # the last (ceil_mode) window, where zeros add nothing, as in the pool.
    if xt.ndim != 4:
        raise tr.unsupported(f"avg_pool2d with divisor_override on a {xt.ndim}-D input")
    (h, w), (oh, ow), c = xt.shape[2:], y.shape[2:], xt.shape[1]
    pb, pr = max(ph, (oh - 1) * s[0] + k[0] - h - ph), max(pw, (ow - 1) * s[1] + k[1] - w - pw)
    if ((h + ph + pb - k[0]) // s[0] + 1, (w + pw + pr - k[1]) // s[1] + 1) != (oh, ow):
        raise tr.unsupported(f"avg_pool2d with divisor_override from {xt.shape} to {y.shape}")
    window = tr.const(np.full((c, 1, *k), 1 / divisor_override), base + ".window")
    return tr.emit("conv2d", [x, window], base, stride=s, pads=(ph, pb, pw, pr), groups=c)


def _adaptive_avg(tr: _Tracer, base: str, x: str, xt: Tensor, y: Tensor) -> str:
    (h, w), (oh, ow) = xt.shape[-2:], y.shape[-2:]
    if xt.ndim == 4 and (oh, ow) == (1, 1):
        return tr.emit("global_avg_pool2d", [x], base)
    if xt.ndim == 4 and h % oh == 0 and w % ow == 0:
        k = (h // oh, w // ow)
        return tr.emit("avg_pool2d", [x], base, kernel=k, stride=k)

    # Overlapping windows [floor(i*n/o), ceil((i+1)*n/o)): a matrix of 1/len per axis.
    def averaging(n: int, o: int) -> np.ndarray:
        a = np.zeros((o, n))
        for i in range(o):
            lo, hi = i * n // o, -(-(i + 1) * n // o)
            a[i, lo:hi] = 1.0 / (hi - lo)
        return a  # (o, n)

    if ow != w:
        x = tr.emit("matmul", [x, tr.const(averaging(w, ow).T, base + ".cols")], base + ".w")
    if oh != h:
        x = tr.emit("matmul", [tr.const(averaging(h, oh), base + ".rows"), x], base + ".h")
    return x if (oh, ow) != (h, w) else tr.emit("identity", [x], base)


def _linear(tr: _Tracer, base: str, x: str, xt: Tensor, w: Tensor, b: Tensor | None) -> str:
    if xt.ndim == 2:
        ins = [x, tr.name_of(w)] + ([tr.name_of(b)] if b is not None else [])
        return tr.emit("gemm", ins, base, trans_b=1)
    tr.weight(w, "a linear weight")
    wt = tr.const(w.data.T, tr.param_names.get(id(w), base + ".weight") + "_t")  # (in, out)
    y = tr.emit("matmul", [x, wt], base if b is None else base + ".matmul")
    return y if b is None else tr.emit("add", [y, tr.name_of(b)], base)


def _batch_stats_norm(tr: _Tracer, base: str, x: str, xt: Tensor, w: Tensor | None,
                      b: Tensor | None, eps: float) -> str:  # fmt: skip
    """Normalisation with the batch's own statistics (mean, biased variance) over every dim
    but the channel (dim 1): reductions and element-wise IR ops."""
    axes, per_channel = (0, *range(2, xt.ndim)), (-1,) + (1,) * (xt.ndim - 2)  # (c, 1, 1)
    mean = tr.emit("reduce_mean", [x], base + ".mean", axes=axes, keepdims=True)
    d = tr.emit("sub", [x, mean], base + ".centered")
    var = tr.emit("reduce_mean", [tr.emit("mul", [d, d], base + ".square")], base + ".var",
                  axes=axes, keepdims=True)  # fmt: skip
    std = tr.emit("sqrt", [tr.emit("add", [var, tr.const(eps, base + ".eps")], base)], base)
    y = tr.emit("div", [d, std], base + ".normalized")
    for op, t in (("mul", w), ("add", b)):
        if t is not None:
            tr.weight(t, f"a batch_norm {'weight' if op == 'mul' else 'bias'}")
            y = tr.emit(op, [y, tr.const(t.data.reshape(per_channel), base + "." + op)], base)
    return y


def _gelu(tr: _Tracer, base: str, x: str, approximate: str) -> str:
    """One ``gelu`` node: ``x/2 * (1 + erf(x / sqrt 2))``, or with ``approximate="tanh"``
    ``x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    if approximate not in ("none", "tanh"):
        raise tr.unsupported(f"gelu with approximate={approximate!r}")
    return tr.emit("gelu", [x], base, approximate=approximate)


# -- tape operations ----------------------------------------------------------------------------
TapeMapper = Callable[["_Tracer", Tensor, Any, str], str]


def _x(tr: _Tracer, node) -> str:
    return tr.name_of(node.parents[0])


def _unary(op: str, **attrs_of: Callable[[dict], Any]) -> TapeMapper:
    """An activation recorded by ``autograd.activations._pointwise`` (its kwargs on the tape)."""

    def mapper(tr: _Tracer, t: Tensor, node, base: str) -> str:
        kw = tr.saved(node, "kwargs") if attrs_of else {}
        return tr.emit(op, [_x(tr, node)], base, **{k: f(kw) for k, f in attrs_of.items()})

    return mapper


def _softmax_like(op: str) -> TapeMapper:
    def mapper(tr: _Tracer, t: Tensor, node, base: str) -> str:
        axis = int(tr.saved(node, "dim")) % max(t.ndim, 1)
        return tr.emit(op, [_x(tr, node)], base, axis=axis)

    return mapper


def _t_binary(op: str) -> TapeMapper:
    return lambda tr, t, node, base: tr.emit(op, [tr.name_of(p) for p in node.parents], base)


def _t_neg(tr: _Tracer, t: Tensor, node, base: str) -> str:
    return tr.emit("mul", [_x(tr, node), tr.const(-1.0, "minus_one")], base)


def _t_pow(tr: _Tracer, t: Tensor, node, base: str) -> str:
    exponent = tr.const(tr.saved(node, "p"), base + ".exponent")
    return tr.emit("pow", [_x(tr, node), exponent], base)


def _t_reduce(op: str) -> TapeMapper:
    def mapper(tr: _Tracer, t: Tensor, node, base: str) -> str:
        axes, keep = tuple(tr.saved(node, "axes")), bool(tr.saved(node, "keep"))
        if not axes:  # a 0-d input: nothing to reduce
            return tr.emit("identity", [_x(tr, node)], base)
        return tr.emit(op, [_x(tr, node)], base, axes=axes, keepdims=keep)

    return mapper


def _t_reshape(tr: _Tracer, t: Tensor, node, base: str) -> str:
    x = node.parents[0]
    if x.ndim and t.ndim and x.shape[0] == t.shape[0]:
        shape = (0, *t.shape[1:])  # keeps the batch dimension, whatever its size
    elif not tr.dynamic:
        shape = t.shape
    elif t.ndim == 1:
        shape = (-1,)
    else:
        raise tr.unsupported(
            f"a reshape from {x.shape} to {t.shape} (it mixes the dynamic batch into other "
            "dimensions: trace with a fixed batch size)"
        )
    return tr.emit("reshape", [_x(tr, node)], base, shape=shape)


def _t_permute(tr: _Tracer, t: Tensor, node, base: str) -> str:
    perm = tuple(int(p) for p in np.argsort(tr.saved(node, "inverse")))
    return tr.emit("transpose", [_x(tr, node)], base, perm=perm)


def _t_cat(tr: _Tracer, t: Tensor, node, base: str) -> str:
    parts = [tr.name_of(p) for p in node.parents]
    return tr.emit("concat", parts, base, axis=int(tr.saved(node, "d")))


def _t_getitem(tr: _Tracer, t: Tensor, node, base: str) -> str:
    x, index = node.parents[0], tr.saved(node, "index")
    parts = list(index) if isinstance(index, tuple) else [index]
    if t.data.size == 0:
        raise tr.unsupported(f"an index {index!r} with an empty result {t.shape}")
    real = sum(p is not None and p is not Ellipsis for p in parts)
    at = next((i for i, p in enumerate(parts) if p is Ellipsis), len(parts))
    parts[at : at + 1] = [slice(None)] * (x.ndim - real)
    if not tr.saved(node, "basic"):
        return _gather(tr, base, x, t, index, parts)
    cuts, drop, new = [], [], []  # cuts: (axis, start, end, step)
    ax = out = 0
    for p in parts:
        if p is None:
            new.append(out)
            out += 1
            continue
        if isinstance(p, slice) and p != slice(None):
            step = 1 if p.step is None else int(p.step)
            if step > 0:  # Python's and ONNX's clamping agree: any dim size works
                b, e = (0 if p.start is None else p.start), (_BIG if p.stop is None else p.stop)
            elif ax == 0 and tr.dynamic:
                raise tr.unsupported(f"an index {index!r} stepping backwards over the batch")
            else:
                r = range(x.shape[ax])[p]
                b, e = r[0], (r[-1] - 1 if r[-1] > 0 else -_BIG)
            cuts.append((ax, int(b), int(e), step))
        elif not isinstance(p, slice):  # an int: a slice of one, then squeezed
            cuts.append((ax, int(p), int(p) + 1 or _BIG, 1))
            drop.append(ax)
        out += isinstance(p, slice)
        ax += 1
    y = _x(tr, node)
    if cuts:
        axes, starts, ends, steps = (tuple(v) for v in zip(*cuts, strict=True))
        y = tr.emit("slice", [y], base, starts=starts, ends=ends, axes=axes, steps=steps)
    if drop:
        y = tr.emit("squeeze", [y], base, axes=tuple(drop))
    if new:
        y = tr.emit("unsqueeze", [y], base, axes=tuple(new))
    return y if y != _x(tr, node) else tr.emit("identity", [y], base)


def _gather(tr: _Tracer, base: str, x: Tensor, t: Tensor, index, parts: list) -> str:
    """``x[..., idx, ...]``: one integer or boolean array among full slices."""
    arrays = [i for i, p in enumerate(parts) if isinstance(p, np.ndarray)]
    if len(arrays) != 1 or any(p != slice(None) for p in parts if not isinstance(p, np.ndarray)):
        raise tr.unsupported(f"an index {index!r} (one integer or boolean array among ':')")
    ax, idx = arrays[0], parts[arrays[0]]
    if idx.dtype == np.bool_:
        if idx.ndim != 1:
            raise tr.unsupported(f"a {idx.ndim}-D boolean mask index")
        idx = np.flatnonzero(idx)
    return tr.emit("gather", [tr.name_of(x)], base, axis=ax, indices=idx.astype(np.int64).tolist())


def _t_conv(tr: _Tracer, t: Tensor, node, base: str) -> str:
    x, w, b = node.parents
    a = tr.saved(node, "args")
    return _conv(tr, base, tr.name_of(x), w, b, a["stride"], a["padding"], a["dilation"],
                 a["groups"])  # fmt: skip


def _t_conv_transpose(tr: _Tracer, t: Tensor, node, base: str) -> str:
    x, w, b = node.parents
    a = tr.saved(node, "args")
    ins = [tr.name_of(x), tr.weight(w, "a conv_transpose2d weight")]
    ins += [tr.weight(b, "a conv_transpose2d bias")] if b is not None else []
    ph, pw = _pair(a["padding"])
    return tr.emit("conv_transpose2d", ins, base, stride=_pair(a["stride"]),
                   pads=(ph, ph, pw, pw), output_padding=_pair(a["output_padding"]),
                   dilation=_pair(a["dilation"]), groups=int(a["groups"]))  # fmt: skip


def _t_linear(tr: _Tracer, t: Tensor, node, base: str) -> str:
    x, w, b = node.parents
    return _linear(tr, base, tr.name_of(x), x, w, b)


def _t_pool(kind: str) -> TapeMapper:
    def mapper(tr: _Tracer, t: Tensor, node, base: str) -> str:
        x = node.parents[0]
        return _pool(tr, base, kind, tr.name_of(x), x, t, **tr.saved(node, "args"))

    return mapper


def _t_adaptive_avg(tr: _Tracer, t: Tensor, node, base: str) -> str:
    return _adaptive_avg(tr, base, _x(tr, node), node.parents[0], t)


def _t_batch_norm(tr: _Tracer, t: Tensor, node, base: str) -> str:
    x, w, b = node.parents
    eps = float(tr.saved(node, "eps"))
    if tr.saved(node, "training"):
        return _batch_stats_norm(tr, base, tr.name_of(x), x, w, b, eps)
    c = x.shape[1]
    scale = tr.weight(w, "a batch_norm weight") or tr.const(np.ones(c), base + ".weight")
    shift = tr.weight(b, "a batch_norm bias") or tr.const(np.zeros(c), base + ".bias")
    stats = [tr.const(tr.saved(node, k), f"{base}.{k[6:]}") for k in ("saved_mean", "saved_var")]
    return tr.emit("batch_norm", [tr.name_of(x), scale, shift, *stats], base, eps=eps)


def _t_pad(tr: _Tracer, t: Tensor, node, base: str) -> str:
    x, widths, mode = node.parents[0], list(tr.saved(node, "pad")), tr.saved(node, "mode")
    modes = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    if mode not in modes:
        raise tr.unsupported(f"pad with mode={mode!r}")
    pads = [(0, 0)] * x.ndim
    for i in range(len(widths) // 2):  # (left, right, top, bottom, ...): last dim first
        pads[x.ndim - 1 - i] = (int(widths[2 * i]), int(widths[2 * i + 1]))
    value = 0.0
    grown = [(d, b > 0) for d, (b, e) in enumerate(pads) if b > 0 or e > 0]
    if mode == "constant" and grown:  # the fill value is not on the tape: read it back
        d, before = grown[0]
        at = [0] * t.ndim
        at[d] = 0 if before else t.shape[d] - 1
        value = float(t.data[tuple(at)])
    return tr.emit("pad", [tr.name_of(x)], base, pads=tuple(pads), mode=modes[mode], value=value)


def _t_prelu(tr: _Tracer, t: Tensor, node, base: str) -> str:
    x, w = node.parents
    tr.weight(w, "a prelu weight")
    slope = w.data.reshape(-1)
    if slope.size > 1:  # one slope per channel (dim 1), broadcast over the rest
        slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))
    return tr.emit("prelu", [tr.name_of(x), tr.const(slope, base + ".slope")], base)


def _t_dropout(tr: _Tracer, t: Tensor, node, base: str) -> str:
    raise tr.unsupported(
        "training-mode dropout (random; pass training=self.training so eval mode skips it)"
    )


_TAPE: dict[str, TapeMapper] = {
    **{op: _t_binary(op) for op in ("add", "sub", "mul", "div", "matmul")},
    "neg": _t_neg,
    "pow": _t_pow,
    "astype": lambda tr, t, node, base: _x(tr, node),  # the graph is float32 throughout
    "sum": _t_reduce("reduce_sum"),
    "mean": _t_reduce("reduce_mean"),
    "reshape": _t_reshape,
    "permute": _t_permute,
    "cat": _t_cat,
    "getitem": _t_getitem,
    "conv2d": _t_conv,
    "conv_transpose2d": _t_conv_transpose,
    "linear": _t_linear,
    "max_pool2d": _t_pool("max"),
    "avg_pool2d": _t_pool("avg"),
    "adaptive_avg_pool2d": _t_adaptive_avg,
    "batch_norm": _t_batch_norm,
    "pad": _t_pad,
    "dropout": _t_dropout,
    **{op: _unary(op) for op in ("relu", "sigmoid", "tanh", "hardswish", "selu")},
    "relu6": lambda tr, t, node, base: tr.emit("clip", [_x(tr, node)], base, min=0.0, max=6.0),
    "leaky_relu": _unary("leaky_relu", alpha=lambda kw: float(kw["negative_slope"])),
    "elu": _unary("elu", alpha=lambda kw: float(kw["alpha"])),
    "hardtanh": _unary(
        "clip", min=lambda kw: float(kw["min_val"]), max=lambda kw: float(kw["max_val"])
    ),
    "hardsigmoid": lambda tr, t, node, base: tr.emit(
        "hardsigmoid", [_x(tr, node)], base, alpha=1 / 6, beta=0.5
    ),
    "silu": lambda tr, t, node, base: _silu_of(tr, _x(tr, node), base),
    "gelu": lambda tr, t, node, base: _gelu(
        tr, base, _x(tr, node), tr.saved(node, "kwargs")["approximate"]
    ),
    "prelu": _t_prelu,
    "softmax": _softmax_like("softmax"),
    "log_softmax": _softmax_like("log_softmax"),
}

#: operation names read from the autograd tape that have a graph IR form (dropout: eval only)
TAPE_OPS = tuple(op for op in _TAPE if op != "dropout")


def _silu_of(tr: _Tracer, x: str, base: str) -> str:
    return tr.emit("mul", [x, tr.emit("sigmoid", [x], base + ".sigmoid")], base)
