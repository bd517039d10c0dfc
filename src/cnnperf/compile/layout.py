"""Layout choice: run chains of depthwise-separable convolutions on the channel-blocked layout.

:func:`choose_layout` is the pass. A conv2d that ``ops.BlockedConv2d`` covers (1x1 stride-1
unpadded, or depthwise; float32; channels in multiples of 8; no activation, relu or relu6) is a
candidate; candidates that read each other's outputs (as input or as fused residual) form
groups, and a group that holds a depthwise convolution and at least :data:`MIN_GROUP` convs
switches to the blocked layout ``(n, c/8, h, w, 8)``: its convs get ``layout="nchw8c"``, a
``to_blocked`` node converts each value that enters the group, and a ``from_blocked`` node each
value that leaves it (read by another node or a graph output; a global average pool reads it
blocked and writes NCHW). Values inside the group are never converted. A value entering a
group that only the group reads, written by a conv with a short reduction (an RGB stem), is
written blocked by that conv instead (``layout="nchw_to_nchw8c"``: NCHW input, blocked output;
:data:`WRITER_MAX_TERMS`).

Where it pays (measured on the 2-core development machine, median of 60 interleaved calls,
``ops.BlockedConv2d`` against ``ops.plan_conv2d``'s choice on the same shapes, batch 1):

- depthwise 3x3, the 8 MobileNetV2 shapes: 0.33-0.59x the time of the NCHW kernels (which
  transpose each block of channels to channels-last and back on every call);
- pointwise 1x1, the 15 MobileNetV2 shapes: 0.48-0.93x (the blocked micro-kernel broadcasts 4
  input values and loads 3 weight vectors per input channel, and needs no packing).

A group without a depthwise convolution (the 1x1 convolutions of ResNet-50's bottlenecks, whose
3x3 convolutions stay NCHW) would pay a conversion per block around GEMMs that OpenBLAS runs
well; it is left as it is.
"""

from __future__ import annotations

import numpy as np

from ..ops.conv import conv_params
from ..ops.conv_blocked import BlockedConv2d
from .graph import Graph, Node
from .shapes import infer_shapes

__all__ = [
    "choose_layout",
    "undo_layout",
    "MIN_GROUP",
    "BLOCKED",
    "WRITES_BLOCKED",
    "WRITER_MAX_TERMS",
    "LAYOUT_OPS",
]

BLOCKED = "nchw8c"
# a conv that reads NCHW and writes a value entering a group blocked
WRITES_BLOCKED = "nchw_to_nchw8c"
# The longest reduction (c_in*kh*kw) of such a writer: RGB stems up to 7x7. There, reading the
# NCHW input and writing blocked took 0.54-0.76x the time of the NCHW conv + to_blocked (3x3
# and 7x7 stride-2 stems at 224x224, a 3x3 on 56x56, batch 1 and 8); a 3x3 conv of 32 channels
# (288 terms) was level with Winograd + to_blocked (0.97-1.03x).
WRITER_MAX_TERMS = 147
# The conversions this pass inserts (and undo_layout removes: no ONNX form of their own).
LAYOUT_OPS = ("to_blocked", "from_blocked")
# Fewest convs in a group worth its conversions (MobileNetV2's blocks hold 2-3 each and chain
# into one group of 51; a lone depthwise conv between NCHW layers converts twice for one layer).
MIN_GROUP = 3


def _candidate(g: Graph, n: Node, shapes: dict, input_layout: str = BLOCKED) -> bool:
    """Whether ``n`` is a conv ``BlockedConv2d`` runs with this input layout (an NCHW input:
    reductions of at most WRITER_MAX_TERMS terms)."""
    if n.op != "conv2d" or n.attrs.get("layout", "nchw") != "nchw":
        return False
    residual = bool(n.attrs.get("residual", False))
    consts = n.inputs[1:-1] if residual else n.inputs[1:]
    if not all(v in g.initializers for v in consts):
        return False
    x = shapes[n.inputs[0]]
    if len(x) != 4 or any(d is None for d in x[1:]):
        return False
    w = g.initializers[n.inputs[1]]
    a = n.attrs
    pt, pb, pl, pr = a.get("pads", (0, 0, 0, 0))
    try:
        p = conv_params((1, *x[1:]), w.shape, a.get("stride", (1, 1)), ((pt, pb), (pl, pr)),
                        a.get("dilation", (1, 1)), a.get("groups", 1))  # fmt: skip
    except ValueError:
        return False
    bias_ok = len(consts) < 2 or g.initializers[consts[1]].dtype == np.float32
    if input_layout == "nchw" and (residual or p.c_in * p.kh * p.kw > WRITER_MAX_TERMS):
        return False
    return bias_ok and BlockedConv2d.supports(
        p, w.dtype, a.get("activation"), residual, input_layout
    )


def _takes_blocked(n: Node) -> bool:
    """Ops outside the groups that read a blocked value as it is (and write NCHW): the global
    average pool, and max pools with symmetric pads of at most half the kernel (those
    ``ops.max_pool2d`` takes)."""
    if n.op == "max_pool2d":
        (kh, kw), (pt, pb, pl, pr) = n.attrs["kernel"], n.attrs.get("pads", (0, 0, 0, 0))
        return pt == pb and pl == pr and 2 * pt <= kh and 2 * pl <= kw
    return n.op == "global_avg_pool2d"


def _blocked_inputs(n: Node) -> list[int]:
    """Indices of a conv's inputs that are activations: x, and the residual if fused."""
    return [0, len(n.inputs) - 1] if n.attrs.get("residual", False) else [0]


def choose_layout(graph: Graph) -> Graph:
    """Switch groups of blocked-capable convs holding a depthwise conv to layout nchw8c,
    converting at the groups' borders (module docstring)."""
    g = graph.copy()
    shapes = infer_shapes(g)
    cand = [n for n in g.nodes if _candidate(g, n, shapes)]
    cand_all = [n for n in g.nodes if _candidate(g, n, shapes, "nchw")]
    if not cand and not cand_all:
        return g
    # union-find over candidates linked by a value one writes and another reads
    parent = {id(n): id(n) for n in cand}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    producers = g.producers()
    for n in cand:
        for i in _blocked_inputs(n):
            src = producers.get(n.inputs[i])
            if src is not None and id(src) in parent:
                parent[find(id(src))] = find(id(n))
    groups: dict[int, list[Node]] = {}
    for n in cand:
        groups.setdefault(find(id(n)), []).append(n)
    chosen = {
        id(n)
        for members in groups.values()
        if len(members) >= MIN_GROUP and any(m.attrs.get("groups", 1) > 1 for m in members)
        for n in members
    }
    uses = g.consumers()
    used_names = g._names()
    # convs that can write a value entering a group blocked themselves (an RGB stem), or a
    # value only max pools read (ResNet's stem and pool)
    writers = set()
    for n in cand_all:
        out = n.outputs[0]
        readers = uses.get(out, [])
        if (
            id(n) not in chosen
            and out not in g.outputs
            and readers
            and (
                all(id(r) in chosen and r.inputs[0] == out for r in readers)
                or all(r.op == "max_pool2d" and _takes_blocked(r) for r in readers)
            )
        ):
            writers.add(id(n))
    if not chosen and not writers:
        return g

    def fresh(base: str) -> str:
        name, i = f"{base}:{BLOCKED}", 0
        while name in used_names:
            i += 1
            name = f"{base}:{BLOCKED}_{i}"
        used_names.add(name)
        return name

    blocked: dict[str, str] = {}  # NCHW value -> its blocked twin
    nodes: list[Node] = []
    for n in g.nodes:
        if id(n) in writers:
            out = n.outputs[0]
            blocked[out] = fresh(out)
            n.outputs = [blocked[out]]
            n.attrs["layout"] = WRITES_BLOCKED
        if id(n) not in chosen:
            if _takes_blocked(n) and n.inputs[0] in blocked:
                n.inputs[0] = blocked[n.inputs[0]]
                n.attrs["layout"] = BLOCKED
            nodes.append(n)
            continue
        for i in _blocked_inputs(n):
            v = n.inputs[i]
            if v not in blocked:
                blocked[v] = fresh(v)
                nodes.append(Node("to_blocked", [v], [blocked[v]], name=f"{n.name}:to_blocked"))
            n.inputs[i] = blocked[v]
        out = n.outputs[0]
        blocked[out] = fresh(out)
        n.outputs = [blocked[out]]
        n.attrs["layout"] = BLOCKED
        nodes.append(n)
        readers = uses.get(out, [])
        if out in g.outputs or any(id(r) not in chosen and not _takes_blocked(r) for r in readers):
            nodes.append(Node("from_blocked", [blocked[out]], [out], name=f"{n.name}:from_blocked"))
    g.nodes = nodes
    return g.validate()


def undo_layout(graph: Graph) -> Graph:
    """The graph with every conv back on NCHW and the conversions gone (what
    ``cnnperf.onnx.save`` exports: other runtimes know nothing of ``layout``)."""
    g = graph.copy()
    rename: dict[str, str] = {}
    for n in g.nodes:
        if n.op == "to_blocked":
            rename[n.outputs[0]] = n.inputs[0]
        elif n.op == "from_blocked":
            rename[n.inputs[0]] = n.outputs[0]
    nodes = []
    for n in g.nodes:
        if n.op in LAYOUT_OPS:
            continue
        n.inputs = [rename.get(v, v) for v in n.inputs]
        n.outputs = [rename.get(v, v) for v in n.outputs]
        n.attrs.pop("layout", None)
        nodes.append(n)
    g.nodes = nodes
    return g.validate()
