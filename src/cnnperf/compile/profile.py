"""Per-node timing of a compiled model: where the time goes, node by node.

Each node's kernel is timed on its own (``time.perf_counter`` around the call) inside whole
forward passes, ``repeat`` times after one untimed warm-up pass (which also compiles the
kernels); a node's time is the median of its ``repeat`` measurements. Steps that a compiled
run executes together (the chains of blocked layers, an expansion fused with its depthwise
conv: ``executor._chain_runs``) are timed here one node at a time, each in its own region.

Besides time, each row carries the node's work and traffic for a roofline: FLOPs (conv2d,
gemm, matmul), bytes moved (inputs, weights and outputs at float32, each read or written
once; 0 for ops that return a view), arithmetic intensity (FLOP per byte) and the ops that the
passes folded into it (a batch_norm folded into a conv's weight, an activation the conv applies
as it writes).

Example:
    >>> from cnnperf.compile import Graph, Node, compile_graph
    >>> g = Graph(nodes=[Node("conv2d", ["x", "w"], ["y"])], inputs={"x": (None, 1, 4, 4)},
    ...           initializers={"w": np.ones((2, 1, 3, 3), np.float32)}, outputs=["y"])
    >>> rows = profile_model(compile_graph(g), {"x": np.ones((1, 1, 4, 4), np.float32)}, 2)
    >>> rows[0]["op"], rows[0]["input_shapes"], rows[0]["output_shapes"], rows[0]["share"]
    ('conv2d', [(1, 1, 4, 4), (2, 1, 3, 3)], [(1, 2, 2, 2)], 1.0)
    >>> rows[0]["flops"], rows[0]["bytes"], rows[0]["fused"]  # 2*1*2*1*3*3*2*2; (16+18+8)*4
    (144, 168, [])
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .graph import ACTIVATION_OPS, Graph, Node
from .layout import BLOCKED
from .memory import ALIAS_OPS

if TYPE_CHECKING:  # pragma: no cover
    from .executor import CompiledModel

__all__ = [
    "profile_model",
    "format_profile",
    "node_flops",
    "node_bytes",
    "fused_ops",
    "profile_totals",
]

# Ops a pass may fold into the conv before it (see passes.py), and ops that vanish in passes.
_FOLDABLE = ("batch_norm",)
_ELIMINATED = ("identity", "dropout")


def node_flops(op: str, in_shapes: list[tuple], out_shapes: list[tuple]) -> int | None:
    """Multiply-adds x 2 of a conv2d (``2*n*c_out*(c_in/g)*kh*kw*oh*ow``) or gemm/matmul
    (``2*m*k*n``) node, from its concrete shapes; None for other ops."""
    if op == "conv2d" and len(in_shapes) >= 2:
        _, c_in_g, kh, kw = in_shapes[1]
        return 2 * int(np.prod(out_shapes[0])) * c_in_g * kh * kw
    if op == "gemm":  # a: (m, k) or (k, m) -> out (m, n)
        m = out_shapes[0][0]
        return 2 * int(np.prod(out_shapes[0])) * (int(np.prod(in_shapes[0])) // max(m, 1))
    if op == "matmul" and in_shapes[0]:
        return 2 * int(np.prod(out_shapes[0])) * int(in_shapes[0][-1])
    return None


def node_bytes(op: str, in_shapes: list[tuple], out_shapes: list[tuple], itemsize: int = 4) -> int:
    """Bytes a node moves if it reads each input (weights included) and writes each output
    once: ``itemsize * (sum of input sizes + sum of output sizes)``; 0 for the ops whose output
    is a view of their input (reshape, flatten, ...: nothing is copied).

    Example:
        >>> node_bytes("relu", [(2, 3)], [(2, 3)]), node_bytes("flatten", [(2, 3)], [(2, 3)])
        (48, 0)
    """
    if op in ALIAS_OPS:
        return 0
    return itemsize * sum(math.prod(s) for s in [*in_shapes, *out_shapes])


def _activation_label(activation) -> str:
    if isinstance(activation, tuple):  # ("leaky_relu", alpha)
        return f"{activation[0]}({', '.join(f'{a:g}' for a in activation[1:])})"
    return str(activation)


def fused_ops(node: Node, source: Graph | None = None) -> list[str]:
    """The ops the passes merged into ``node``, in the order the source graph ran them.

    The activation is what ``fuse_conv_activation`` recorded (``attrs["activation"]``). The
    passes leave no record of a folded batch_norm, so it is found by comparing with ``source``,
    the graph before the passes: walking back from the node's output through the source's
    producers, every batch_norm met before the conv (or gemm) that writes the same input was
    folded into it (identity and dropout nodes are skipped). Without ``source`` only the
    activation is known.

    Example:
        >>> src = Graph(nodes=[Node("conv2d", ["x", "w"], ["c"], name="conv"),
        ...     Node("batch_norm", ["c", "s", "b", "m", "v"], ["n"]), Node("relu", ["n"], ["y"])],
        ...     inputs={"x": (1, 1, 2, 2)}, outputs=["y"])
        >>> fused_ops(Node("conv2d", ["x", "w2", "b2"], ["y"], {"activation": "relu"}), src)
        ['batch_norm', 'relu']
    """
    activation = node.attrs.get("activation")
    tail = [] if activation is None else [_activation_label(activation)]
    if source is None or node.op not in ("conv2d", "gemm") or not node.outputs:
        return tail
    producers = source.producers()
    walked: list[str] = []
    value = _nchw_name(node.outputs[0])
    while True:
        prod = producers.get(value)
        if prod is None:
            return tail
        if prod.op == node.op:
            if prod.inputs[:1] != [_nchw_name(v) for v in node.inputs[:1]]:
                return tail  # a different conv: the node is not a rewrite of this chain
            break
        if prod.op not in (*_FOLDABLE, *ACTIVATION_OPS, *_ELIMINATED):
            return tail
        walked.append(prod.op)
        value = prod.inputs[0]
    folded = [op for op in reversed(walked) if op in _FOLDABLE]
    return folded + tail


def _nchw_name(value: str) -> str:
    """The source graph's name of a value the layout pass renamed to its blocked twin
    (``compile.layout``: ``name:nchw8c`` or ``name:nchw8c_<i>``)."""
    base, sep, _ = value.rpartition(":" + BLOCKED)
    return base if sep else value


def profile_model(
    model: CompiledModel,
    feeds: Mapping[str, np.ndarray],
    repeat: int = 10,
    *,
    peak_gflops: float | None = None,
    source_graph: Graph | None = None,
) -> list[dict]:
    """One row per node, in execution order.

    Keys: ``name``, ``op``, ``input_shapes`` and ``output_shapes`` (concrete, weights
    included), ``const_inputs`` (which inputs are initializers), ``algorithm`` (a conv's
    plan), ``time_s`` (median), ``share`` (of the summed node times), ``gflops`` (None for
    ops without a FLOP count), ``flops``, ``bytes`` (:func:`node_bytes`), ``intensity``
    (FLOP/byte), ``peak_fraction`` (GFLOP/s over ``peak_gflops``, when given) and ``fused``
    (:func:`fused_ops`; pass ``source_graph``, the graph before the passes, to see folded
    batch norms).
    """
    if repeat < 1:
        raise ValueError(f"profile: repeat must be >= 1, got {repeat}")
    model.run(feeds)  # warm-up: compiles the kernels
    times: list[list[float]] = [[] for _ in model._steps]
    shapes: list[tuple[list[tuple], list[tuple]]] = []
    for r in range(repeat):
        env = model._check_inputs(feeds)
        env.update(model.graph.initializers)
        for i, (fn, args, outs, free) in enumerate(model._steps):
            values = [env[a] for a in args]
            t0 = time.perf_counter()
            results = fn(*values)
            times[i].append(time.perf_counter() - t0)
            env.update(zip(outs, results, strict=True))
            if r == 0:
                node = model.graph.nodes[i]
                shapes.append(
                    ([tuple(np.shape(env[v])) for v in node.inputs],
                     [tuple(np.shape(x)) for x in results])
                )  # fmt: skip
            for v in free:
                del env[v]
    medians = [float(np.median(t)) for t in times]
    total = sum(medians) or 1.0
    rows = []
    for i, node in enumerate(model.graph.nodes):
        fn = model._steps[i][0]
        plan = getattr(fn, "plan", None)
        in_shapes, out_shapes = shapes[i]
        flops = node_flops(node.op, in_shapes, out_shapes)
        moved = node_bytes(node.op, in_shapes, out_shapes)
        t = medians[i]
        gflops = None if flops is None or t <= 0 else flops / t / 1e9
        fraction = None if gflops is None or not peak_gflops else gflops / peak_gflops
        rows.append(
            {
                "name": node.name or f"{i}:{node.op}",
                "op": node.op,
                "input_shapes": in_shapes,
                "output_shapes": out_shapes,
                "const_inputs": [v in model.graph.initializers for v in node.inputs],
                # the algorithm run at this batch size (an "auto" plan may choose per size)
                "algorithm": None if plan is None else plan.algorithm_for(in_shapes[0][0])[0].name,
                "time_s": t,
                "share": t / total,
                "gflops": gflops,
                "flops": flops,
                "bytes": moved,
                "intensity": None if flops is None or moved <= 0 else flops / moved,
                "peak_fraction": fraction,
                "fused": fused_ops(node, source_graph),
            }
        )
    return rows


def profile_totals(rows: list[dict], peak_gflops: float | None = None) -> dict:
    """The whole model: summed node time, FLOPs and bytes, GFLOP/s over the summed time, its
    fraction of ``peak_gflops``, and the share of the time spent in conv/gemm/matmul nodes.

    Example:
        >>> t = profile_totals([{"op": "relu", "time_s": 0.5, "flops": None, "bytes": 8},
        ...                     {"op": "gemm", "time_s": 0.5, "flops": 2e9, "bytes": 8}], 4.0)
        >>> t["flops"], t["bytes"], t["gflops"], t["peak_fraction"], t["compute_share"]
        (2000000000, 16, 2.0, 0.5, 0.5)
    """
    t = sum(r["time_s"] for r in rows)
    flops = int(sum(r["flops"] or 0 for r in rows))
    gflops = flops / t / 1e9 if t > 0 else None
    compute = sum(r["time_s"] for r in rows if r["flops"] is not None)
    return {
        "time_s": t,
        "flops": flops,
        "bytes": int(sum(r["bytes"] for r in rows)),
        "gflops": gflops,
        "peak_fraction": gflops / peak_gflops if gflops is not None and peak_gflops else None,
        "compute_share": compute / t if t > 0 else None,
    }


def format_profile(rows: list[dict]) -> str:
    """The rows of :func:`profile_model` as a text table (slowest first)."""
    lines = [f"{'node':<28} {'op':<18} {'output':<20} {'algo':<16} {'ms':>8} {'%':>6} GFLOP/s"]
    for r in sorted(rows, key=lambda r: -r["time_s"]):
        gf = "" if r["gflops"] is None else f"{r['gflops']:.1f}"
        out = "x".join(str(d) for d in r["output_shapes"][0]) if r["output_shapes"] else ""
        lines.append(
            f"{r['name'][:28]:<28} {r['op']:<18} {out:<20} {r['algorithm'] or '':<16} "
            f"{r['time_s'] * 1e3:>8.3f} {100 * r['share']:>5.1f}% {gf}"
        )
    return "\n".join(lines)
