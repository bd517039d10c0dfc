"""Graph rewrites for inference; each pass takes a Graph and returns a new Graph.

- :func:`eliminate_identity`: drop Identity and (inference) Dropout nodes.
- :func:`fold_batchnorm`: fold a batch_norm that follows a conv into the conv's weight and bias.
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

__all__ = ["eliminate_identity", "fold_batchnorm", "fuse_conv_activation", "DEFAULT_PASSES"]


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


DEFAULT_PASSES = (eliminate_identity, fold_batchnorm, fuse_conv_activation)
