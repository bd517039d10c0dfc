"""Kernel builders for the graph IR's element-wise math, masks, extra reductions and norms.

GELU (``ops.gelu``, either form), Softplus and Mish, the unary math ops (abs, exp, log, neg,
reciprocal, floor, ceil), the comparison masks and ``where``, ``expand``, reduce_max /
reduce_min / reduce_l2, instance normalisation and global Lp pooling. Each builder returns
``(fn, arg_names)`` like those in :mod:`.runtime`, which merges :data:`MATH_BUILDERS` into its
table. Float32 in, float32 out (float64 statistics where a sum is taken); every output is a
new array, never a view of an input.

Example:
    >>> from cnnperf.compile.graph import Node
    >>> fn, args = MATH_BUILDERS["softplus"](Node("softplus", ["x"], ["y"]), None, {})
    >>> fn(np.array([0.0, 100.0]))[0].round(4).tolist()
    [0.6931, 100.0]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import ops
from .graph import Graph, Node

__all__ = ["MATH_BUILDERS", "softplus_numpy", "mish_numpy"]

Kernel = tuple[Callable[..., tuple], list[str]]


def _simple(fn: Callable) -> Callable:
    def builder(node: Node, graph: Graph, shapes: dict) -> Kernel:
        a = node.attrs
        return (lambda *xs: (fn(a, *xs),)), node.inputs

    return builder


def softplus_numpy(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x))`` without overflow: ``max(x, 0) + log1p(exp(-|x|))``, in x's dtype.

    Example:
        >>> softplus_numpy(np.array([-800.0, 0.0, 800.0])).round(4).tolist()
        [0.0, 0.6931, 800.0]
    """
    x = np.asarray(x)
    return np.asarray(np.logaddexp(np.zeros((), x.dtype), x))


def mish_numpy(x: np.ndarray) -> np.ndarray:
    """``x * tanh(softplus(x))`` (Misra, "Mish: A Self Regularized Non-Monotonic Activation
    Function", 2019), in x's dtype.

    Example:
        >>> round(float(mish_numpy(np.array([1.0], np.float32))[0]), 4)
        0.8651
    """
    y = np.tanh(softplus_numpy(x))
    y *= x
    return y


def _gelu(node: Node, graph: Graph, shapes: dict) -> Kernel:
    approximate = node.attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ValueError(
            f"gelu {node.name!r}: approximate must be 'none' or 'tanh', got {approximate!r}"
        )
    return (lambda x: (ops.gelu(x, approximate),)), node.inputs[:1]


def _unary(fn: Callable) -> Callable:
    """A NumPy ufunc on one input; warnings (log(0), 1/0) are off: ONNX returns inf or NaN."""

    def run(a, x):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.asarray(fn(x), x.dtype)

    return _simple(run)


def _mask(ufunc: np.ufunc) -> Callable:
    return _simple(lambda a, x, y: np.asarray(ufunc(x, y), np.result_type(x, y)))


def _where(a, cond, x, y):
    return np.where(cond != 0, x, y).astype(np.result_type(x, y), copy=False)


def _reduce(kind: str) -> Callable:
    def fn(a, x):
        axes = tuple(a["axes"]) or None
        keep = bool(a.get("keepdims", True))
        if kind == "max":
            y = np.max(x, axis=axes, keepdims=keep)
        elif kind == "min":
            y = np.min(x, axis=axes, keepdims=keep)
        else:
            y = np.sqrt(np.sum(np.square(x, dtype=np.float64), axis=axes, keepdims=keep))
        return np.array(y, dtype=x.dtype)  # a new array, also for a reduction to a scalar

    return _simple(fn)


def _instance_norm(a, x, scale, bias):
    eps = float(a.get("eps", 1e-5))
    axes = tuple(range(2, x.ndim))
    per_channel = (1, -1) + (1,) * (x.ndim - 2)  # (1, c, 1, ...)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)  # (n, c, 1, ...)
    d = x64 - mean
    var = np.mean(np.square(d), axis=axes, keepdims=True)
    d /= np.sqrt(var + eps)
    d *= np.asarray(scale, np.float64).reshape(per_channel)
    d += np.asarray(bias, np.float64).reshape(per_channel)
    return d.astype(x.dtype)


def _expand(a, x):
    target = tuple(a["shape"])
    rank = max(x.ndim, len(target))
    xs = (1,) * (rank - x.ndim) + x.shape
    ts = (1,) * (rank - len(target)) + target
    out = tuple(d if t == 1 else t for d, t in zip(xs, ts, strict=True))
    return np.broadcast_to(x, out).copy()


def _global_lp_pool(a, x):
    p = float(a.get("p", 2))
    axes = tuple(range(2, x.ndim))
    s = np.sum(np.abs(x.astype(np.float64)) ** p, axis=axes, keepdims=True)
    return (s ** (1.0 / p)).astype(x.dtype)


MATH_BUILDERS: dict[str, Callable[[Node, Graph, dict], Kernel]] = {
    "gelu": _gelu,
    "softplus": _simple(lambda a, x: softplus_numpy(x)),
    "mish": _simple(lambda a, x: mish_numpy(x)),
    "abs": _unary(np.abs),
    "exp": _unary(np.exp),
    "log": _unary(np.log),
    "neg": _unary(np.negative),
    "reciprocal": _unary(np.reciprocal),
    "floor": _unary(np.floor),
    "ceil": _unary(np.ceil),
    "reduce_max": _reduce("max"),
    "reduce_min": _reduce("min"),
    "reduce_l2": _reduce("l2"),
    "instance_norm": _simple(_instance_norm),
    "expand": _simple(_expand),
    "equal": _mask(np.equal),
    "less": _mask(np.less),
    "greater": _mask(np.greater),
    "where": _simple(_where),
    "global_lp_pool": _simple(_global_lp_pool),
}
