"""``cnnperf run``: run an ONNX model on an input, print outputs, top-5 and latency.

Example:
    >>> parse_shape("3,32,32")
    (3, 32, 32)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

__all__ = ["add_run_parser", "run_run_command", "run_model", "main", "parse_shape"]


def parse_shape(text: str) -> tuple[int, ...]:
    """``"C,H,W"`` -> ``(C, H, W)`` (positive ints)."""
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"--shape must be positive ints like 3,224,224: {text!r}")
    return dims


def add_run_parser(sub) -> argparse.ArgumentParser:
    """Register ``run`` on the ``cnnperf`` subparsers."""
    p = sub.add_parser(
        "run",
        help="run an ONNX model: output shapes, top-5, latency percentiles",
        description="Compile an ONNX model with cnnperf, run it on an input (a .npy file or "
        "random normal data), print each output's shape, the top-5 classes of 2-D (logits) "
        "outputs, the first run's time (including kernel compilation), then the p50/p90/p99 "
        "latency and the throughput over --runs timed runs.",
    )
    p.add_argument("model", metavar="MODEL", help="path to an .onnx file")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", metavar="FILE.npy", help="input array (one-input models)")
    src.add_argument("--random", action="store_true", help="random normal input (the default)")
    p.add_argument("--batch", type=int, default=1, help="batch size of random input (default 1)")
    p.add_argument(
        "--shape",
        type=parse_shape,
        metavar="C,H,W",
        help="input shape without the batch (for models with dynamic dimensions)",
    )
    p.add_argument("--runs", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON document")  # fmt: skip
    return p


def _inputs(model, args) -> dict[str, np.ndarray]:
    if args.input is not None:
        if len(model.input_names) != 1:
            raise ValueError(f"--input needs a one-input model; inputs: {model.input_names}")
        x = np.load(args.input)
        return {model.input_names[0]: np.asarray(x, np.float32)}
    rng = np.random.default_rng(0)
    return {
        name: rng.standard_normal((args.batch, *shape[1:])).astype(np.float32)
        for name, shape in model.graph.inputs.items()
    }


def run_model(args: argparse.Namespace) -> dict:
    """Do the work of ``cnnperf run`` and return the report (what ``--json`` prints)."""
    from ..onnx import load

    if args.batch < 1 or args.runs < 1:
        raise ValueError(f"--batch and --runs must be >= 1, got {args.batch} and {args.runs}")
    shapes = None
    if args.shape is not None:
        from ..onnx.importer import parse_model

        proto = parse_model(args.model)
        consts = {t.name for t in proto.graph.initializer}
        names = [vi.name for vi in proto.graph.input if vi.name not in consts]
        shapes = {names[0]: (None, *args.shape)} if len(names) == 1 else None
        if shapes is None:
            raise ValueError(f"--shape needs a one-input model; inputs: {names}")
    model = load(args.model, input_shapes=shapes)
    feeds = _inputs(model, args)
    t0 = time.perf_counter()
    outs = model.run(feeds)
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        model.run(feeds)
        times.append(time.perf_counter() - t0)
    p50, p90, p99 = (float(v) for v in np.percentile(times, [50, 90, 99]))
    batch = next(iter(feeds.values())).shape[0] if feeds else 1
    report = {
        "model": str(args.model),
        "inputs": {k: list(v.shape) for k, v in feeds.items()},
        "outputs": {},
        "first_run_s": first,
        "runs": args.runs,
        "latency_s": {"p50": p50, "p90": p90, "p99": p99},
        "throughput_per_s": batch / p50 if p50 > 0 else None,
    }
    for name, y in outs.items():
        entry: dict = {"shape": list(y.shape)}
        if y.ndim == 2:
            top = np.argsort(-y, axis=1, kind="stable")[:, :5]
            entry["top5"] = [
                [[int(i), float(row[i])] for i in idx] for row, idx in zip(y, top, strict=True)
            ]
        report["outputs"][name] = entry
    return report


def _print_text(r: dict) -> None:
    print(f"model {r['model']}: inputs {r['inputs']}")
    for name, o in r["outputs"].items():
        print(f"  output {name}: shape {tuple(o['shape'])}")
        for b, row in enumerate(o.get("top5", [])[:4]):
            print(f"    [{b}] top-5: " + ", ".join(f"{i} ({v:.4g})" for i, v in row))
    lat = r["latency_s"]
    print(f"first run (includes compilation): {r['first_run_s'] * 1e3:.1f} ms")
    print(
        f"latency over {r['runs']} runs: p50 {lat['p50'] * 1e3:.3f} ms, p90 "
        f"{lat['p90'] * 1e3:.3f} ms, p99 {lat['p99'] * 1e3:.3f} ms; throughput "
        f"{r['throughput_per_s']:.1f} samples/s"
    )


def run_run_command(args: argparse.Namespace) -> int:
    """Run ``cnnperf run`` for parsed ``args``; exit status (2 on a bad model or input)."""
    try:
        report = run_model(args)
    except (ValueError, FileNotFoundError, NotImplementedError, ImportError) as e:
        print(f"cnnperf run: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_text(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``cnnperf run`` on its own: ``main(["model.onnx", "--random", "--json"])``."""
    parser = argparse.ArgumentParser(prog="cnnperf")
    add_run_parser(parser.add_subparsers(dest="command"))
    return run_run_command(parser.parse_args(["run", *(sys.argv[1:] if argv is None else argv)]))
