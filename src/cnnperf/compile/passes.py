"""Graph rewrites for inference; each pass takes a Graph and returns a new Graph.

- :func:`eliminate_identity`: drop Identity and (inference) Dropout nodes.
- :func:`fold_batchnorm`: fold a batch_norm that follows a conv into the conv's weight and bias.
- :func:`fuse_residual_add`: let a conv add a residual (and apply the activation after the
  add) as it writes: ``relu(conv(x) + r)`` becomes one conv node.
- :func:`fuse_conv_activation`: let a conv apply the activation that follows it as it writes.

A rewrite only happens where the intermediate value has no other reader and is not a graph
output, so the graph computes the same outputs (up to float32 rounding for the BN fold).

Example:
    >>> from cnnperf.compile.graph import Graph, Node
    >>> g = Graph(nodes=[Node("conv2d", ["x", "w"], ["t"]), Node("relu", ["t"], ["y"])],
    ...           initializers={"w": np.ones((2, 1, 1, 1), np.float32)},
    ...           inputs={"x": (1, 1, 2, 2)}, outputs=["y"])
    >>> [(n.op, n.attrs.get("activation")) for n in fuse_conv_activation(g).nodes]
    [('conv2d', 'relu')]
"""

from __future__ import annotations

import numpy as np

from .graph import Graph, Node
from .runtime import activation_of
from .shapes import infer_shapes

__all__ = [
    "eliminate_identity",
    "fold_batchnorm",
    "fuse_residual_add",
    "fuse_conv_activation",
    "DEFAULT_PASSES",
]


def _single_private_use(g: Graph, value: str, uses: dict[str, list[Node]]) -> Node | None:
    """The one node reading ``value`` if it is its only reader and value is no graph output."""
    readers = uses.get(value, [])
    if len(readers) != 1 or value in g.outputs:
        return None
    return readers[0]


def _rename_uses(g: Graph, old: str, new: str) -> None:
    for n in g.nodes:
        n.inputs = [new if v == old else v for v in n.inputs]


def eliminate_identity(graph: Graph) -> Graph:
    """Remove ``identity`` and ``dropout`` nodes, wiring their readers to their input."""
    g = graph.copy()
    producers = g.producers()
    kept: list[Node] = []
    for n in g.nodes:
        if n.op not in ("identity", "dropout"):
            kept.append(n)
            continue
        src, dst = n.inputs[0], n.outputs[0]
        if dst not in g.outputs:
            _rename_uses(g, dst, src)
            continue
        prod = producers.get(src)
        if prod is not None and src not in g.outputs:
            # dst is a graph output: let the producer write dst directly.
            prod.outputs = [dst if v == src else v for v in prod.outputs]
            _rename_uses(g, src, dst)
            continue
        kept.append(n)  # graph input or initializer copied to an output: keep the copy
    g.nodes = kept
    return g.validate()


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold ``batch_norm(conv(x, w, b))`` into ``conv(x, w', b')`` with constant statistics.

    ``s = scale / sqrt(var + eps)``, ``w' = w * s[:, None, None, None]``,
    ``b' = (b - mean) * s + bn_bias`` (computed in float64, stored in the weight's dtype).
    A conv that already carries an activation is left alone.
    """
    g = graph.copy()
    uses = g.consumers()
    producers = g.producers()
    drop: set[int] = set()
    for bn in g.nodes:
        if bn.op != "batch_norm":
            continue
        conv = producers.get(bn.inputs[0])
        if (
            conv is None
            or conv.op != "conv2d"
            or conv.attrs.get("activation") is not None
            or conv.attrs.get("residual")
            or _single_private_use(g, conv.outputs[0], uses) is not bn
            or not all(v in g.initializers for v in bn.inputs[1:5] + conv.inputs[1:])
        ):
            continue
        w = g.initializers[conv.inputs[1]]
        scale, beta, mean, var = (g.initializers[v].astype(np.float64) for v in bn.inputs[1:5])
        b = g.initializers[conv.inputs[2]].astype(np.float64) if len(conv.inputs) > 2 else 0.0
        s = scale / np.sqrt(var + float(bn.attrs.get("eps", 1e-5)))  # (c_out,)
        w_name = g.fresh_name(conv.inputs[1] + "_bnfold")
        g.initializers[w_name] = (w.astype(np.float64) * s[:, None, None, None]).astype(w.dtype)
        b_name = g.fresh_name(bn.outputs[0] + "_bnfold_bias")
        g.initializers[b_name] = ((b - mean) * s + beta).astype(w.dtype)
        conv.inputs = [conv.inputs[0], w_name, b_name]
        conv.outputs = [bn.outputs[0]]
        drop.add(id(bn))
    g.nodes = [n for n in g.nodes if id(n) not in drop]
    return g.remove_unused().validate()


def fuse_conv_activation(graph: Graph) -> Graph:
    """Give a conv the activation node that alone reads its output (relu, leaky_relu,
    sigmoid, tanh, hardswish, hardsigmoid(1/6, 1/2), clip(0, 6) as relu6, clip(0, inf))."""
    g = graph.copy()
    uses = g.consumers()
    producers = g.producers()
    drop: set[int] = set()
    for act in g.nodes:
        activation = activation_of(act)
        if activation is None:
            continue
        conv = producers.get(act.inputs[0])
        if (
            conv is None
            or conv.op != "conv2d"
            or conv.attrs.get("activation") is not None
            or _single_private_use(g, conv.outputs[0], uses) is not act
        ):
            continue
        conv.attrs["activation"] = activation
        conv.outputs = [act.outputs[0]]
        drop.add(id(act))
    g.nodes = [n for n in g.nodes if id(n) not in drop]
    return g.validate()


def _one_dynamic_batch(g: Graph, shape: tuple) -> bool:
    """Whether ``shape`` is static but for a None batch (dim 0), and every None in the graph
    comes from its one dynamic input: then two such equal shapes are equal at run time."""
    if any(d is None for d in shape[1:]):
        return False
    dynamic = [name for name, dims in g.inputs.items() if None in tuple(dims)]
    return shape[:1] != (None,) or len(dynamic) == 1


def fuse_residual_add(graph: Graph) -> Graph:
    """Fuse ``add(conv(x), r)`` (either operand order) and the activation after it into the
    conv: ``act(conv(x) + bias + r)`` becomes one ``conv2d`` node with ``residual=True`` and
    ``r`` as its last input (``activation`` set when an activation node alone reads the sum).

    Only where the conv has neither an activation nor a residual yet, its output is read by
    the add alone and is no graph output, ``r`` is a graph input or the output of a node
    before the conv (the fused conv reads it where the conv stood), and ``r`` has exactly the
    conv output's shape (no broadcasting). The sum is rounded to float32 before the
    activation, as unfused; NaN and Inf propagate.

    Example:
        >>> g = Graph(nodes=[Node("conv2d", ["x", "w"], ["t"]), Node("add", ["x", "t"], ["s"]),
        ...                  Node("relu", ["s"], ["y"])],
        ...           initializers={"w": np.ones((1, 1, 1, 1), np.float32)},
        ...           inputs={"x": (None, 1, 2, 2)}, outputs=["y"])
        >>> [(n.op, n.inputs, n.outputs, n.attrs) for n in fuse_residual_add(g).nodes]
        [('conv2d', ['x', 'w', 'x'], ['y'], {'residual': True, 'activation': 'relu'})]
    """
    g = graph.copy()
    uses = g.consumers()
    producers = g.producers()
    shapes = infer_shapes(g)
    position = {id(n): i for i, n in enumerate(g.nodes)}
    drop: set[int] = set()
    for add in g.nodes:
        if add.op != "add" or len(add.inputs) != 2:
            continue
        for t, r in (add.inputs, add.inputs[::-1]):
            conv = producers.get(t)
            if (
                conv is None
                or conv.op != "conv2d"
                or conv.attrs.get("activation") is not None
                or conv.attrs.get("residual")
                or _single_private_use(g, t, uses) is not add
                or not (r in g.inputs or position[id(producers.get(r, add))] < position[id(conv)])
                or shapes[r] != shapes[t]
                or not _one_dynamic_batch(g, shapes[t])
            ):
                continue
            conv.inputs = [*conv.inputs, r]
            conv.attrs["residual"] = True
            conv.outputs = list(add.outputs)
            drop.add(id(add))
            act = _single_private_use(g, add.outputs[0], uses)
            activation = None if act is None else activation_of(act)
            if activation is not None:
                conv.attrs["activation"] = activation
                conv.outputs = list(act.outputs)
                drop.add(id(act))
            break
    g.nodes = [n for n in g.nodes if id(n) not in drop]
    return g.validate()


DEFAULT_PASSES = (eliminate_identity, fold_batchnorm, fuse_residual_add, fuse_conv_activation)
