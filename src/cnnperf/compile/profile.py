"""Per-node timing of a compiled model: where the time goes, node by node.

Each node's kernel is timed on its own (``time.perf_counter`` around the call) inside whole
forward passes, ``repeat`` times after one untimed warm-up pass (which also compiles the
kernels); a node's time is the median of its ``repeat`` measurements.

Example:
    >>> from cnnperf.compile import Graph, Node, compile_graph
    >>> g = Graph(nodes=[Node("conv2d", ["x", "w"], ["y"])], inputs={"x": (None, 1, 4, 4)},
    ...           initializers={"w": np.ones((2, 1, 3, 3), np.float32)}, outputs=["y"])
    >>> rows = profile_model(compile_graph(g), {"x": np.ones((1, 1, 4, 4), np.float32)}, 2)
    >>> rows[0]["op"], rows[0]["input_shapes"], rows[0]["output_shapes"], rows[0]["share"]
    ('conv2d', [(1, 1, 4, 4), (2, 1, 3, 3)], [(1, 2, 2, 2)], 1.0)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .executor import CompiledModel

__all__ = ["profile_model", "format_profile", "node_flops"]


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


def profile_model(
    model: CompiledModel, feeds: Mapping[str, np.ndarray], repeat: int = 10
) -> list[dict]:
    """One row per node: name, op, input/output shapes, conv algorithm, median seconds,
    share of the summed node times, GFLOP/s (conv2d, gemm, matmul; else None)."""
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
        t = medians[i]
        rows.append(
            {
                "name": node.name or f"{i}:{node.op}",
                "op": node.op,
                "input_shapes": in_shapes,
                "output_shapes": out_shapes,
                "algorithm": None if plan is None else plan.algorithm.name,
                "time_s": t,
                "share": t / total,
                "gflops": None if flops is None or t <= 0 else flops / t / 1e9,
            }
        )
    return rows


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
