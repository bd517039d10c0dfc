"""Static shape inference for the graph IR; ``None`` marks the dynamic batch dimension.

Example:
    >>> from cnnperf.compile.graph import Graph, Node
    >>> g = Graph(
    ...     nodes=[Node("conv2d", ["x", "w"], ["y"], {"stride": (2, 2), "pads": (1, 1, 1, 1)})],
    ...     initializers={"w": np.zeros((8, 3, 3, 3), np.float32)},
    ...     inputs={"x": (None, 3, 9, 9)}, outputs=["y"])
    >>> infer_shapes(g)["y"]
    (None, 8, 5, 5)
"""

from __future__ import annotations

import math

import numpy as np

from .graph import Graph, Node

__all__ = [
    "infer_shapes",
    "infer_node",
    "pool_output_size",
    "broadcast_shapes",
    "slice_bounds",
    "Shape",
]

Shape = tuple  # of int | None


def pool_output_size(size: int, k: int, s: int, p0: int, p1: int, d: int, ceil_mode: bool) -> int:
    """Output length of a pooling window sweep with pads ``p0`` (before) and ``p1`` (after).

    ``floor_or_ceil((size + p0 + p1 - d*(k-1) - 1) / s) + 1``; with ``ceil_mode`` a last window
    that would start in the trailing padding is dropped (ONNX and PyTorch agree on this).
    """
    span = size + p0 + p1 - d * (k - 1) - 1
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + p0:
            out -= 1
    else:
        out = span // s + 1
    return out


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy (ONNX multidirectional) broadcasting of shapes that may hold ``None``."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        static = {d for d in dims if d is not None and d != 1}
        if len(static) > 1:
            raise ValueError(f"shapes {shapes} cannot be broadcast together")
        if static:
            out.append(static.pop())
        elif None in dims:
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def _prod(dims) -> int | None:
    return None if any(d is None for d in dims) else math.prod(dims)


def _axis(axis: int, rank: int, what: str) -> int:
    if not -rank <= axis < rank:
        raise ValueError(f"{what}: axis {axis} out of range for rank {rank}")
    return axis % rank


def _spatial(node: Node, x: Shape) -> tuple[int, int]:
    if len(x) != 4 or x[2] is None or x[3] is None:
        raise ValueError(f"{node.op} {node.name!r}: expected a 4-D (n, c, h, w) input, got {x}")
    return x[2], x[3]


def _conv(node: Node, s: list[Shape]) -> list[Shape]:
    if node.attrs.get("layout", "nchw") == "nchw_to_nchw8c":  # NCHW in, blocked out
        n, c_out, oh, ow = _conv(_as_nchw(node), s)[0]
        return [(n, c_out // 8, oh, ow, 8)]
    if node.attrs.get("layout", "nchw") == "nchw8c":
        x = s[0]
        if len(x) != 5 or x[4] != 8:
            raise ValueError(f"conv2d {node.name!r}: layout nchw8c needs an (n, c/8, h, w, 8) "
                             f"input, got {x}")  # fmt: skip
        n, c_out, oh, ow = _conv(_as_nchw(node), [_logical(x), *s[1:]])[0]
        return [(n, c_out // 8, oh, ow, 8)]
    h, w = _spatial(node, s[0])
    c_out, _, kh, kw = s[1]
    a = node.attrs
    (sh, sw), (dh, dw) = a.get("stride", (1, 1)), a.get("dilation", (1, 1))
    pt, pb, pl, pr = a.get("pads", (0, 0, 0, 0))
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"conv2d {node.name!r}: input {s[0]} gives an empty output ({oh}x{ow})")
    return [(s[0][0], c_out, oh, ow)]


def _logical(x: Shape) -> Shape:
    """A channel-blocked (n, c/8, h, w, 8) shape as the (n, c, h, w) it holds."""
    return (x[0], x[1] * x[4], x[2], x[3])


def _as_nchw(node: Node) -> Node:
    return Node(node.op, node.inputs, node.outputs,
                {k: v for k, v in node.attrs.items() if k != "layout"}, node.name)  # fmt: skip


def _to_blocked(node: Node, s: list[Shape]) -> list[Shape]:
    x = s[0]
    if len(x) != 4 or x[1] is None or x[1] % 8:
        raise ValueError(f"to_blocked {node.name!r}: needs (n, c, h, w) with c a multiple of 8, "
                         f"got {x}")  # fmt: skip
    return [(x[0], x[1] // 8, x[2], x[3], 8)]


def _from_blocked(node: Node, s: list[Shape]) -> list[Shape]:
    x = s[0]
    if len(x) != 5 or x[4] != 8:
        raise ValueError(f"from_blocked {node.name!r}: needs (n, c/8, h, w, 8), got {x}")
    return [_logical(x)]


def _pool(node: Node, s: list[Shape]) -> list[Shape]:
    if node.attrs.get("layout", "nchw") == "nchw8c":  # a blocked input, an NCHW output
        if len(s[0]) != 5 or s[0][4] != 8:
            raise ValueError(f"{node.op} {node.name!r}: layout nchw8c needs an (n, c/8, h, w, "
                             f"8) input, got {s[0]}")  # fmt: skip
        s = [_logical(s[0])]
    h, w = _spatial(node, s[0])
    a = node.attrs
    (kh, kw), (sh, sw) = a["kernel"], a.get("stride", a["kernel"])
    (dh, dw), (pt, pb, pl, pr) = a.get("dilation", (1, 1)), a.get("pads", (0, 0, 0, 0))
    ceil = bool(a.get("ceil_mode", False))
    oh = pool_output_size(h, kh, sh, pt, pb, dh, ceil)
    ow = pool_output_size(w, kw, sw, pl, pr, dw, ceil)
    if oh < 1 or ow < 1:
        raise ValueError(f"{node.op} {node.name!r}: input {s[0]} gives an empty output")
    return [(*s[0][:2], oh, ow)]


def _gemm(node: Node, s: list[Shape]) -> list[Shape]:
    a, b = s[0], s[1]
    if len(a) != 2 or len(b) != 2:
        raise ValueError(f"gemm {node.name!r}: inputs must be 2-D, got {a} and {b}")
    m, k = a[::-1] if node.attrs.get("trans_a") else a
    k2, n = b[::-1] if node.attrs.get("trans_b") else b
    if None not in (k, k2) and k != k2:
        raise ValueError(f"gemm {node.name!r}: inner dimensions differ ({a} @ {b})")
    return [(m, n)]


def _matmul(node: Node, s: list[Shape]) -> list[Shape]:
    a, b = s
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"matmul {node.name!r}: scalar operand")
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if None not in (a2[-1], b2[-2]) and a2[-1] != b2[-2]:
        raise ValueError(f"matmul {node.name!r}: inner dimensions differ ({a} @ {b})")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return [out]


def _concat(node: Node, s: list[Shape]) -> list[Shape]:
    rank = len(s[0])
    ax = _axis(node.attrs["axis"], rank, f"concat {node.name!r}")
    out = list(s[0])
    dims = [t[ax] for t in s]
    out[ax] = None if None in dims else sum(dims)
    return [tuple(out)]


def _flatten(node: Node, s: list[Shape]) -> list[Shape]:
    x = s[0]
    ax = node.attrs.get("axis", 1)
    ax = ax + len(x) if ax < 0 else ax
    return [(_prod(x[:ax]), _prod(x[ax:]))]


def reshape_shape(x: Shape, shape: tuple, allowzero: bool = False) -> Shape:
    """ONNX Reshape's output shape: 0 copies the input dimension (unless allowzero), -1 is
    inferred; ``None`` entries in ``x`` (batch) propagate where copied."""
    out = [x[i] if (d == 0 and not allowzero) else d for i, d in enumerate(shape)]
    if -1 in out:
        i = out.index(-1)
        known = [d for j, d in enumerate(out) if j != i]
        total = _prod(x)
        if total is None:
            # The batch dimension is dynamic: -1 is static only if the batch is copied.
            rest = [d for d in x if d is not None]
            if None in known:
                known_static = [d for d in known if d is not None]
                out[i] = math.prod(rest) // max(1, math.prod(known_static))
            else:
                out[i] = None
        else:
            out[i] = total // max(1, math.prod(known))
    return tuple(out)


def _squeeze(node: Node, s: list[Shape]) -> list[Shape]:
    x = s[0]
    axes = {a % len(x) for a in node.attrs["axes"]}
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def _unsqueeze(node: Node, s: list[Shape]) -> list[Shape]:
    x = list(s[0])
    rank = len(x) + len(node.attrs["axes"])
    for a in sorted(a % rank for a in node.attrs["axes"]):
        x.insert(a, 1)
    return [tuple(x)]


def slice_bounds(dim: int, start: int, end: int, step: int) -> slice:
    """The Python slice equal to ONNX Slice's ``(start, end, step)`` on a dim of length ``dim``.

    Negative start/end count from the end; both are then clamped (to ``[0, dim]``, or for a
    negative step to ``[0, dim - 1]`` and ``[-1, dim - 1]``, where -1 means "through index 0").

    Example:
        >>> list(range(5))[slice_bounds(5, -1, -2**63, -2)]
        [4, 2, 0]
    """
    if step == 0:
        raise ValueError("slice: step must not be 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return slice(start, None if end < 0 else end, step)


def _slice(node: Node, s: list[Shape]) -> list[Shape]:
    out = list(s[0])
    a = node.attrs
    for ax, b, e, st in zip(a["axes"], a["starts"], a["ends"], a["steps"], strict=True):
        if out[ax] is not None:
            out[ax] = len(range(out[ax])[slice_bounds(out[ax], b, e, st)])
    return [tuple(out)]


def _conv_transpose(node: Node, s: list[Shape]) -> list[Shape]:
    h, w = _spatial(node, s[0])
    _, cog, kh, kw = s[1]
    a = node.attrs
    (sh, sw), (dh, dw) = a.get("stride", (1, 1)), a.get("dilation", (1, 1))
    pt, pb, pl, pr = a.get("pads", (0, 0, 0, 0))
    oph, opw = a.get("output_padding", (0, 0))
    oh = (h - 1) * sh + dh * (kh - 1) + 1 - pt - pb + oph
    ow = (w - 1) * sw + dw * (kw - 1) + 1 - pl - pr + opw
    if oh < 1 or ow < 1:
        raise ValueError(f"conv_transpose2d {node.name!r}: input {s[0]} gives an empty output")
    return [(s[0][0], cog * a.get("groups", 1), oh, ow)]


def _reduce(node: Node, s: list[Shape]) -> list[Shape]:
    x, axes = s[0], set(node.attrs["axes"]) or set(range(len(s[0])))
    if node.attrs.get("keepdims", True):
        return [tuple(1 if i in axes else d for i, d in enumerate(x))]
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def _gather(node: Node, s: list[Shape]) -> list[Shape]:
    x, ax = s[0], node.attrs["axis"] % len(s[0])
    idx_shape = tuple(np.shape(node.attrs["indices"]))
    return [(*x[:ax], *idx_shape, *x[ax + 1 :])]


def _split(node: Node, s: list[Shape]) -> list[Shape]:
    ax = node.attrs["axis"] % len(s[0])
    return [tuple(n if i == ax else d for i, d in enumerate(s[0])) for n in node.attrs["sizes"]]


def _space_to_depth(node: Node, s: list[Shape]) -> list[Shape]:
    n, c, h, w = s[0]
    b = node.attrs["blocksize"]
    if h % b or w % b:
        raise ValueError(f"space_to_depth {node.name!r}: {s[0]} is not divisible by {b}")
    return [(n, c * b * b, h // b, w // b)]


def _depth_to_space(node: Node, s: list[Shape]) -> list[Shape]:
    n, c, h, w = s[0]
    b = node.attrs["blocksize"]
    if c % (b * b):
        raise ValueError(f"depth_to_space {node.name!r}: {c} channels not divisible by {b * b}")
    return [(n, c // (b * b), h * b, w * b)]


def _expand(node: Node, s: list[Shape]) -> list[Shape]:
    try:
        return [broadcast_shapes(s[0], tuple(node.attrs["shape"]))]
    except ValueError:
        raise ValueError(
            f"expand {node.name!r}: input {s[0]} does not broadcast to {tuple(node.attrs['shape'])}"
        ) from None


def _none_times(d, r: int):
    return None if d is None else d * r


def _same(node: Node, s: list[Shape]) -> list[Shape]:
    return [s[0]]


def _broadcast(node: Node, s: list[Shape]) -> list[Shape]:
    return [broadcast_shapes(*s)]


_BROADCASTING = ("add", "sub", "mul", "div", "pow", "sum", "maximum", "minimum", "equal", "less",
                 "greater", "where")  # fmt: skip
_REDUCING = ("reduce_mean", "reduce_sum", "reduce_max", "reduce_min", "reduce_l2")

_RULES = {
    "conv2d": _conv,
    "to_blocked": _to_blocked,
    "from_blocked": _from_blocked,
    "max_pool2d": _pool,
    "avg_pool2d": _pool,
    "global_avg_pool2d": lambda n, s: [
        (s[0][0], s[0][1] * s[0][4], 1, 1)
        if n.attrs.get("layout") == "nchw8c"
        else (*s[0][:2], 1, 1)
    ],
    "global_max_pool2d": lambda n, s: [(*s[0][:2], 1, 1)],
    "gemm": _gemm,
    "matmul": _matmul,
    "concat": _concat,
    "flatten": _flatten,
    "reshape": lambda n, s: [
        reshape_shape(s[0], tuple(n.attrs["shape"]), bool(n.attrs.get("allowzero", False)))
    ],
    "transpose": lambda n, s: [tuple(s[0][p] for p in n.attrs["perm"])],
    "squeeze": _squeeze,
    "unsqueeze": _unsqueeze,
    **{op: _broadcast for op in _BROADCASTING},
    "conv_transpose2d": _conv_transpose,
    **{op: _reduce for op in _REDUCING},
    "pad": lambda n, s: [
        tuple(
            None if d is None else d + b + a
            for d, (b, a) in zip(s[0], n.attrs["pads"], strict=True)
        )
    ],
    "resize": lambda n, s: [tuple(n.attrs["sizes"])],
    "slice": _slice,
    "gather": _gather,
    "split": _split,
    "tile": lambda n, s: [
        tuple(_none_times(d, r) for d, r in zip(s[0], n.attrs["repeats"], strict=True))
    ],
    "space_to_depth": _space_to_depth,
    "depth_to_space": _depth_to_space,
    "expand": _expand,
    "global_lp_pool": lambda n, s: [(*s[0][:2], *(1,) * (len(s[0]) - 2))],
}


def infer_node(node: Node, in_shapes: list[Shape]) -> list[Shape]:
    """Output shapes of ``node`` given its input shapes (element-wise ops keep the shape)."""
    return _RULES.get(node.op, _same)(node, in_shapes)


def infer_shapes(graph: Graph) -> dict[str, Shape]:
    """Every value's shape: inputs, initializers and each node's outputs, in graph order."""
    shapes: dict[str, Shape] = {k: tuple(v.shape) for k, v in graph.initializers.items()}
    shapes.update({k: tuple(v) for k, v in graph.inputs.items()})
    for n in graph.nodes:
        outs = infer_node(n, [shapes[i] for i in n.inputs])
        shapes.update(zip(n.outputs, outs, strict=False))
    return shapes
