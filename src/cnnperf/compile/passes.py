"""Graph rewrites for inference; each pass takes a Graph and returns a new Graph.

- :func:`eliminate_identity`: drop Identity and (inference) Dropout nodes.
- :func:`fold_batchnorm`: fold a batch_norm that follows a conv into the conv's weight and bias.
- :func:`fuse_residual_add`: let a conv add a residual (and apply the activation after the
  add) as it writes: ``relu(conv(x) + r)`` becomes one conv node.
- :func:`fuse_conv_activation`: let a conv apply the activation that follows it as it writes.
- :func:`~cnnperf.compile.layout.choose_layout` (last, in :mod:`.layout`): chains of
  depthwise-separable convolutions on the channel-blocked layout.
- :func:`fuse_gelu_pattern`: GELU spelled in erf or tanh and arithmetic (as exporters write
  it) becomes one ``gelu`` node, which a conv before it can then carry as its activation.

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

import math

import numpy as np

from .graph import Graph, Node
from .layout import choose_layout
from .runtime import activation_of
from .shapes import infer_shapes

__all__ = [
    "eliminate_identity",
    "fold_batchnorm",
    "fuse_residual_add",
    "fuse_conv_activation",
    "fuse_gelu_pattern",
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


_SQRT2, _SQRT_2_OVER_PI, _GELU_TANH_C = math.sqrt(2.0), math.sqrt(2.0 / math.pi), 0.044715


def _const_is(g: Graph, name: str, value: float) -> bool:
    """Whether ``name`` is a one-element initializer equal to ``value`` up to float32 rounding."""
    a = g.initializers.get(name)
    if a is None or a.size != 1 or a.dtype.kind != "f":
        return False
    return abs(float(a.reshape(())) - value) <= 1e-6 * abs(value)


def _other(node: Node, value: str) -> str | None:
    """The other input of a two-input node that reads ``value`` once, else None."""
    if len(node.inputs) != 2 or node.inputs.count(value) != 1:
        return None
    return node.inputs[1] if node.inputs[0] == value else node.inputs[0]


class _GeluMatch:
    """Walks one candidate ``1 + gate`` add back to x and forward to the product's root."""

    def __init__(self, g: Graph, uses: dict, producers: dict) -> None:
        self.g, self.uses, self.producers = g, uses, producers
        self.nodes: list[Node] = []

    def private(self, value: str, reader: Node) -> Node | None:
        """The producer of ``value`` if ``reader`` alone reads it and it is no graph output."""
        if _single_private_use(self.g, value, self.uses) is not reader:
            return None
        node = self.producers.get(value)
        if node is not None:
            self.nodes.append(node)
        return node

    def const_operand(self, node: Node | None, op: str, value: float) -> str | None:
        """For ``node = op(v, c)`` (either order for mul) with c == value: v, else None."""
        if node is None or node.op != op or len(node.inputs) != 2:
            return None
        a, b = node.inputs
        if _const_is(self.g, b, value):
            return a
        return b if op == "mul" and _const_is(self.g, a, value) else None

    def x_of_erf(self, gate: Node) -> str | None:
        arg = self.private(gate.inputs[0], gate)
        return self.const_operand(arg, "div", _SQRT2) or self.const_operand(arg, "mul", 1 / _SQRT2)

    def x_of_tanh(self, gate: Node) -> str | None:
        scaled = self.private(gate.inputs[0], gate)
        poly_value = self.const_operand(scaled, "mul", _SQRT_2_OVER_PI)
        poly = None if poly_value is None else self.private(poly_value, scaled)
        if poly is None or poly.op != "add" or len(poly.inputs) != 2:
            return None
        for x, t in (poly.inputs, poly.inputs[::-1]):
            term = self.producers.get(t)
            cube_value = self.const_operand(term, "mul", _GELU_TANH_C)
            if cube_value is None or _single_private_use(self.g, t, self.uses) is not poly:
                continue
            cube = self.producers.get(cube_value)
            if _single_private_use(self.g, cube_value, self.uses) is not term or cube is None:
                continue
            if self.is_cube(cube, x):
                self.nodes += [term, cube]
                return x
        return None

    def is_cube(self, cube: Node, x: str) -> bool:
        if cube.op == "pow":
            return cube.inputs[0] == x and _const_is(self.g, cube.inputs[1], 3.0)
        sq_value = _other(cube, x) if cube.op == "mul" else None
        sq = self.producers.get(sq_value) if sq_value else None
        if sq is None or sq.op != "mul" or sq.inputs != [x, x]:
            return False
        if _single_private_use(self.g, sq_value, self.uses) is not cube:
            return False
        self.nodes.append(sq)
        return True

    def root(self, add: Node, x: str) -> Node | None:
        """The last mul of ``x * 0.5 * add`` (any association and operand order)."""
        p = add.outputs[0]
        m1 = _single_private_use(self.g, p, self.uses)
        other = _other(m1, p) if m1 is not None and m1.op == "mul" else None
        if other is None:
            return None
        if other == x or _const_is(self.g, other, 0.5):  # (x * p) * 0.5 or (p * 0.5) * x
            m2 = _single_private_use(self.g, m1.outputs[0], self.uses)
            last = _other(m2, m1.outputs[0]) if m2 is not None and m2.op == "mul" else None
            if last is None or not (_const_is(self.g, last, 0.5) if other == x else last == x):
                return None
            self.nodes.append(m1)
            return m2
        half = self.producers.get(other)  # p * (x * 0.5)
        if self.const_operand(half, "mul", 0.5) != x:
            return None
        if _single_private_use(self.g, other, self.uses) is not m1:
            return None
        self.nodes.append(half)
        return m1


def fuse_gelu_pattern(graph: Graph) -> Graph:
    """Replace GELU spelled in element-wise ops by one ``gelu`` node.

    Recognised: ``x * 0.5 * (1 + erf(x / sqrt 2))`` with ``x / 1.4142135`` or
    ``x * 0.70710677``, and ``x * 0.5 * (1 + tanh(0.7978846 * (x + 0.044715 * x^3)))`` with
    ``x^3`` as ``x * (x * x)``, ``(x * x) * x`` or ``pow(x, 3)``; the product in any order and
    association (PyTorch's exporter: ``(x * (1 + erf)) * 0.5``; cnnperf's: ``(x * 0.5) *
    (1 + erf)``), adds and muls with their operands either way round. Constants must be
    one-element initializers equal to these values up to float32 rounding. Only where every
    intermediate value is read by the pattern alone and is no graph output, and the result
    has x's shape (a constant must not broadcast it).

    Example:
        >>> c = {k: np.array(v, np.float32) for k, v in
        ...      {"r2": 2**0.5, "one": 1.0, "half": 0.5}.items()}
        >>> g = Graph(nodes=[Node("div", ["x", "r2"], ["a"]), Node("erf", ["a"], ["e"]),
        ...     Node("add", ["e", "one"], ["p"]), Node("mul", ["x", "p"], ["q"]),
        ...     Node("mul", ["q", "half"], ["y"])], initializers=c,
        ...     inputs={"x": (None, 3)}, outputs=["y"])
        >>> [(n.op, n.inputs, n.outputs, n.attrs) for n in fuse_gelu_pattern(g).nodes]
        [('gelu', ['x'], ['y'], {'approximate': 'none'})]
    """
    g = graph.copy()
    uses, producers, shapes = g.consumers(), g.producers(), infer_shapes(g)
    drop: set[int] = set()
    replace: dict[int, Node] = {}
    for add in list(g.nodes):
        if add.op != "add" or len(add.inputs) != 2 or id(add) in drop:
            continue
        for gate_value, one in (add.inputs, add.inputs[::-1]):
            gate = producers.get(gate_value)
            if (
                not _const_is(g, one, 1.0)
                or gate is None
                or gate.op not in ("erf", "tanh")
                or _single_private_use(g, gate_value, uses) is not add
            ):
                continue
            m = _GeluMatch(g, uses, producers)
            x = m.x_of_erf(gate) if gate.op == "erf" else m.x_of_tanh(gate)
            root = None if x is None else m.root(add, x)
            matched = [*m.nodes, gate, add]
            if (
                root is None
                or shapes.get(root.outputs[0]) != shapes.get(x)
                or any(id(n) in drop or id(n) in replace for n in [*matched, root])
            ):
                continue
            approximate = "none" if gate.op == "erf" else "tanh"
            replace[id(root)] = Node("gelu", [x], list(root.outputs),
                                     {"approximate": approximate}, name=root.name)  # fmt: skip
            drop.update(id(n) for n in matched)
            break
    g.nodes = [replace.get(id(n), n) for n in g.nodes if id(n) not in drop]
    return g.remove_unused().validate()


DEFAULT_PASSES = (
    eliminate_identity,
    fuse_gelu_pattern,
    fold_batchnorm,
    fuse_residual_add,
    fuse_conv_activation,
    choose_layout,
)
