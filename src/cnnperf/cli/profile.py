"""``cnnperf profile``: where an ONNX model's time goes, layer by layer, with a roofline.

The model is compiled as ``cnnperf.compile`` does (BN folding, activation fusion, conv plans
chosen for the profiled batch) and each node is timed on its own inside whole forward passes
(:func:`cnnperf.compile.profile.profile_model`: median of ``--repeat`` passes after a warm-up).
The machine's float32 peak (a large sgemm, :func:`cnnperf.bench.machine.sgemm_peak_gflops`)
and memory bandwidth (a large copy, :func:`~cnnperf.bench.machine.memory_bandwidth_gbs`) are
measured at start-up: the roof of the roofline.

Example:
    >>> fmt_shape((1, 64, 56, 56))
    '1x64x56x56'
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .run import parse_shape

__all__ = ["add_profile_parser", "run_profile_command", "profile_onnx", "format_report", "plot"]

SCHEMA = "cnnperf-profile/1"


def fmt_shape(shape) -> str:
    """``(1, 64, 56, 56)`` -> ``"1x64x56x56"``."""
    return "x".join(str(d) for d in shape)


def add_profile_parser(sub) -> argparse.ArgumentParser:
    """Register ``profile`` on the ``cnnperf`` subparsers."""
    p = sub.add_parser(
        "profile",
        help="per-layer time, GFLOP/s, bytes and a roofline of an ONNX model",
        description="Compile an ONNX model with cnnperf and time every node of it on random "
        "input: op, shapes, conv algorithm, median time and share, GFLOP/s and the fraction "
        "of the machine's sgemm peak, bytes moved, arithmetic intensity, the ops fused into "
        "it; then the totals and the planned peak activation memory.",
    )
    p.add_argument("model", metavar="MODEL", help="path to an .onnx file")
    p.add_argument("--batch", type=_positive_int, default=1, help="batch size (default 1)")
    p.add_argument(
        "--shape",
        type=parse_shape,
        metavar="C,H,W",
        help="input shape without the batch (for models with dynamic dimensions)",
    )
    p.add_argument(
        "--repeat", type=_positive_int, default=10, help="timed passes; median (default 10)"
    )
    p.add_argument("--json", metavar="FILE", help="write every number as JSON ('-': stdout)")
    p.add_argument(
        "--plot", metavar="FILE.png", help="roofline and per-layer time chart (needs matplotlib)"
    )
    return p


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def profile_onnx(path, batch: int = 1, shape: tuple | None = None, repeat: int = 10) -> dict:
    """Compile and profile the ONNX model at ``path``; the report as a JSON-ready dict.

    Args:
        batch: the batch size of the random input (conv plans are chosen for it).
        shape: the input shape without the batch, for a one-input model with dynamic dims.
        repeat: timed forward passes; each node's time is its median.

    Raises:
        FileNotFoundError, ValueError, NotImplementedError: no such file, a malformed model,
            an op cnnperf does not cover (from :func:`cnnperf.onnx.import_model`).
    """
    from ..bench import machine
    from ..compile import compile_graph
    from ..compile.profile import profile_model, profile_totals
    from ..config import get_num_threads
    from ..onnx import import_model

    overrides = None
    if shape is not None:
        from ..onnx.importer import parse_model

        proto = parse_model(path)
        consts = {t.name for t in proto.graph.initializer}
        names = [vi.name for vi in proto.graph.input if vi.name not in consts]
        if len(names) != 1:
            raise ValueError(f"--shape needs a one-input model; inputs: {names}")
        overrides = {names[0]: (None, *shape)}
    source = import_model(path, overrides)
    fixed = source.copy()  # plans chosen for this batch
    for name, dims in fixed.inputs.items():
        if dims and dims[0] is None:
            fixed.inputs[name] = (batch, *dims[1:])
        elif dims and dims[0] != batch:
            raise ValueError(
                f"--batch {batch}: the model's input {name!r} has the fixed shape {dims}"
            )
    model = compile_graph(fixed)
    rng = np.random.default_rng(0)
    feeds = {
        name: rng.standard_normal((batch, *dims[1:])).astype(np.float32)
        for name, dims in model.graph.inputs.items()
    }
    peak = machine.sgemm_peak_gflops()
    bandwidth = machine.memory_bandwidth_gbs()
    rows = profile_model(model, feeds, repeat, peak_gflops=peak, source_graph=source)
    plan = model.memory_plan(batch)
    return {
        "schema": SCHEMA,
        "model": str(path),
        "batch": batch,
        "inputs": {k: list(v.shape) for k, v in feeds.items()},
        "repeat": repeat,
        "statistic": f"median of {repeat} forward passes after one warm-up pass, per node",
        "machine": {
            "cpu": machine.cpu_model(),
            "threads": get_num_threads(),
            "peak_gflops": peak,
            "peak_method": "best of 5 float32 BLAS sgemms of 2048^3",
            "memory_bandwidth_gbs": bandwidth,
            "bandwidth_method": "best of 5 NumPy copies of 128 MiB, (read + write) / time",
        },
        "nodes": [_json_row(r) for r in rows],
        "total": profile_totals(rows, peak),
        "memory": {
            "planned_peak_bytes": plan.planned_peak_bytes,
            "naive_bytes": plan.naive_bytes,
            "live_peak_bytes": plan.live_peak_bytes,
            "buffers": len(plan.buffer_bytes),
            "largest_layer": plan.largest_layer,
            "largest_layer_bytes": plan.largest_layer_bytes,
        },
    }


def _json_row(r: dict) -> dict:
    return {
        **r,
        "input_shapes": [list(s) for s in r["input_shapes"]],
        "output_shapes": [list(s) for s in r["output_shapes"]],
    }


def _io(r: dict) -> str:
    ins = [s for s, c in zip(r["input_shapes"], r["const_inputs"], strict=True) if not c]
    return f"{','.join(map(fmt_shape, ins))} -> {','.join(map(fmt_shape, r['output_shapes']))}"


def _clip(name: str, width: int) -> str:
    """``name`` cut to ``width`` from the left: ONNX names end in what tells nodes apart."""
    return name if len(name) <= width else ".." + name[len(name) - width + 2 :]


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_report(report: dict) -> str:
    """The per-layer table (execution order), the total line and the memory plan."""
    m, rows = report["machine"], report["nodes"]
    name_w = min(40, max([4] + [len(r["name"]) for r in rows]))
    io_w = max([len("input -> output")] + [len(_io(r)) for r in rows])
    algo_w = max([4] + [len(r["algorithm"] or "-") for r in rows])
    head = (
        f"{'node':<{name_w}} {'op':<17} {'input -> output':<{io_w}} {'algo':<{algo_w}}"
        f"{'ms':>9}{'%':>6}{'GFLOP/s':>9}{'%peak':>6}{'MB':>8}{'FLOP/B':>8}  fused"
    )
    lines = [
        f"cnnperf profile: {report['model']}, inputs {report['inputs']}, "
        f"{m['threads']} thread(s), {m['cpu']}",
        f"peak {m['peak_gflops']:.0f} GFLOP/s (float32 sgemm), memory bandwidth "
        f"{m['memory_bandwidth_gbs']:.1f} GB/s (copy); {report['statistic']}",
        "",
        head,
        "-" * len(head),
    ]
    for r in rows:
        pct = None if r["peak_fraction"] is None else 100 * r["peak_fraction"]
        lines.append(
            f"{_clip(r['name'], name_w):<{name_w}} {r['op']:<17} {_io(r):<{io_w}} "
            f"{r['algorithm'] or '-':<{algo_w}}{r['time_s'] * 1e3:>9.3f}"
            f"{100 * r['share']:>5.1f}%{_num(r['gflops'], '.1f'):>9}{_num(pct, '.0f'):>6}"
            f"{r['bytes'] / 1e6:>8.2f}{_num(r['intensity'], '.1f'):>8}  "
            f"{'+'.join(r['fused']) or '-'}"
        )
    t = report["total"]
    pct = None if t["peak_fraction"] is None else 100 * t["peak_fraction"]
    lines.append("-" * len(head))
    lines.append(
        f"{'total':<{name_w}} {len(rows)} nodes, {t['flops'] / 1e9:.3f} GFLOP, "
        f"{t['time_s'] * 1e3:.3f} ms summed, {_num(t['gflops'], '.1f')} GFLOP/s "
        f"({_num(pct, '.0f')}% of peak), {t['bytes'] / 1e6:.2f} MB moved; conv/gemm nodes "
        f"take {100 * (t['compute_share'] or 0):.0f}% of the time"
    )
    mem, mib = report["memory"], 1 / 2**20
    lines.append(
        f"planned peak activation memory (batch {report['batch']}): "
        f"{mem['planned_peak_bytes'] * mib:.2f} MiB in {mem['buffers']} buffers + outputs "
        f"(naive {mem['naive_bytes'] * mib:.2f} MiB; largest layer {mem['largest_layer']!r}: "
        f"{mem['largest_layer_bytes'] * mib:.2f} MiB in + out)"
    )
    return "\n".join(lines)


def plot(report: dict, path: str) -> None:
    """Write a PNG: the roofline (conv/gemm nodes, log-log) and the per-layer time bars.

    Raises:
        RuntimeError: matplotlib is not installed (``pip install 'cnnperf[plot]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError(
            f"--plot needs matplotlib, which is not installed ({e}): "
            "pip install 'cnnperf[plot]' (or pip install matplotlib)"
        ) from None
    m, rows = report["machine"], report["nodes"]
    peak, bw = m["peak_gflops"], m["memory_bandwidth_gbs"]
    pts = [r for r in rows if r["intensity"] and r["gflops"]]
    fig, (roof, bars) = plt.subplots(
        1, 2, figsize=(15, max(5.0, 0.18 * len(rows) + 1.5)), layout="constrained"
    )
    xs = [r["intensity"] for r in pts] + [peak / bw]
    lo, hi = min(xs) / 2, max(xs) * 2
    grid = np.geomspace(lo, hi, 200)
    roof.loglog(grid, np.minimum(peak, bw * grid), color="black", linewidth=1.5)
    roof.axhline(peak, color="tab:red", linestyle="--", linewidth=1,
                 label=f"sgemm peak {peak:.0f} GFLOP/s")  # fmt: skip
    roof.loglog(grid, bw * grid, color="tab:blue", linestyle="--", linewidth=1,
                label=f"memory {bw:.1f} GB/s")  # fmt: skip
    for op, color in (("conv2d", "tab:green"), ("gemm", "tab:purple"), ("matmul", "tab:orange")):
        sel = [r for r in pts if r["op"] == op]
        if sel:
            roof.scatter([r["intensity"] for r in sel], [r["gflops"] for r in sel], s=24,
                         color=color, label=op, zorder=3)  # fmt: skip
    roof.set_xlim(lo, hi)
    top = max([peak] + [r["gflops"] for r in pts])
    low = min([bw * lo] + [r["gflops"] for r in pts])
    roof.set_ylim(low / 2, top * 2)
    roof.set_xlabel("arithmetic intensity (FLOP/byte, float32)")
    roof.set_ylabel("GFLOP/s (median)")
    roof.set_title(
        "roofline: one point per conv/gemm node (FLOPs of the direct algorithm:\n"
        "Winograd and FFT do fewer, and can sit above the roof)",
        fontsize=9,
    )
    roof.grid(True, which="both", alpha=0.3)
    roof.legend(fontsize=8, loc="lower right")
    names = [r["name"] for r in rows]
    colors = ["tab:green" if r["op"] == "conv2d" else "tab:gray" for r in rows]
    bars.barh(range(len(rows)), [r["time_s"] * 1e3 for r in rows], color=colors)
    bars.set_yticks(range(len(rows)))
    bars.set_yticklabels(names, fontsize=7)
    bars.invert_yaxis()  # execution order, top to bottom
    bars.set_xlabel("median time (ms)")
    bars.set_title(f"per-layer time, {report['total']['time_s'] * 1e3:.2f} ms in all", fontsize=10)
    bars.grid(axis="x", alpha=0.3)
    fig.suptitle(f"cnnperf profile: {report['model']}, inputs {report['inputs']}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_profile_command(args: argparse.Namespace, out=None, err=None) -> int:
    """Run ``cnnperf profile`` for parsed ``args``; exit status (2 on a bad model or input)."""
    out, err = out or sys.stdout, err or sys.stderr
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "cnnperf profile: error: --plot needs matplotlib, which is not installed: "
                "pip install 'cnnperf[plot]' (or pip install matplotlib)",
                file=err,
            )
            return 2
    try:
        report = profile_onnx(args.model, args.batch, args.shape, args.repeat)
    except (ValueError, FileNotFoundError, NotImplementedError, ImportError, TypeError) as e:
        print(f"cnnperf profile: error: {e}", file=err)
        return 2
    text = err if args.json == "-" else out  # keep stdout pure JSON with --json -
    print(format_report(report), file=text)
    if args.json:
        data = json.dumps(report, indent=1, allow_nan=False)
        if args.json == "-":
            print(data, file=out)
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(data + "\n")
            print(f"wrote {args.json}", file=text)
    if args.plot:
        plot(report, args.plot)
        print(f"wrote {args.plot}", file=text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``cnnperf profile`` on its own: ``main(["model.onnx", "--json", "-"])``."""
    parser = argparse.ArgumentParser(prog="cnnperf")
    add_profile_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["profile", *(sys.argv[1:] if argv is None else argv)])
    return run_profile_command(args)
