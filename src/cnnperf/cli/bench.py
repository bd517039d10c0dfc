"""``cnnperf bench``: the layer suite, every cnnperf algorithm, PyTorch and ONNX Runtime."""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["add_bench_parser", "run_bench_command"]

_REEXEC_MARK = "CNNPERF_BENCH_REEXEC"

_EPILOG = """\
layers: a suite name (resnet18.layer1.3x3/b8), a name without /bN (every batch), or a shape
spec N,C,H,W,CO,K[,stride[,pad[,groups]]] (pad defaults to K//2, stride and groups to 1),
e.g. --layer 1,64,56,56,64,3 or --layer 8,144,56,56,144,3,2,1,144 (depthwise).

Times are medians of interleaved rounds (each round runs every engine once, in rotating
order) after one warm-up call each; ratios are time(cnnperf auto) / time(peer), below 1 means
cnnperf is faster. Marks: ! output differs from the reference, * fewer rounds (time budget).
Unless --spin, the command restarts itself once with OMP_WAIT_POLICY=PASSIVE and
OPENBLAS_THREAD_TIMEOUT=4 so that idle thread pools sleep instead of spinning against the
engine that runs next.
"""


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def add_bench_parser(sub) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to ``sub`` (the subparsers of the ``cnnperf`` parser)."""
    p = sub.add_parser(
        "bench",
        help="benchmark conv layers of real networks against PyTorch and ONNX Runtime",
        description="Time the convolution layers of ResNet-18/50, VGG-16, MobileNetV2, AlexNet "
        "and Inception at batch 1 and 8 with every cnnperf algorithm, auto, PyTorch and ONNX "
        "Runtime, in one process at the same thread count; print median times, GFLOP/s, the "
        "fraction of the machine's sgemm peak and time ratios against the peers.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sel = p.add_argument_group("layers")
    sel.add_argument("--quick", action="store_true", help="a representative subset (< 30 s)")
    sel.add_argument(
        "--layer",
        action="append",
        metavar="NAME|SPEC",
        help="run this layer (repeatable; see below)",
    )
    sel.add_argument("--tag", action="append", help="only layers with this tag (repeatable)")
    sel.add_argument(
        "--batch",
        action="append",
        type=_positive_int,
        help="only this batch size (1 or 8); with --train: the training batch (default 64)",
    )
    sel.add_argument("--list", action="store_true", help="list the suite's layers and exit")
    sel.add_argument(
        "--models",
        action="store_true",
        help="time whole networks instead of layers: ResNet-18 and MobileNetV2 at 224x224, "
        "batch 1 and 8 (--quick: batch 1; --batch to choose), exported to ONNX, with cnnperf, "
        "ONNX Runtime and PyTorch eager; also cnnperf's load + first-inference time, its error "
        "against ONNX Runtime and its planned activation memory",
    )
    sel.add_argument(
        "--train",
        action="store_true",
        help="time a training step (forward, backward, SGD) of a LeNet-size CNN at batch 64 "
        "(--batch to change) against PyTorch instead of the layers; --detail adds where "
        "cnnperf's time goes",
    )
    tm = p.add_argument_group("timing")
    tm.add_argument("--threads", type=_positive_int, help="threads for every engine")
    tm.add_argument(
        "--rounds",
        type=_positive_int,
        help="timed rounds (default: adaptive, --target seconds per engine, 5 to 200 rounds)",
    )
    tm.add_argument(
        "--target",
        type=_positive_float,
        metavar="SECONDS",
        help="adaptive rounds: timed seconds per engine (default 0.3; --quick 0.05)",
    )
    tm.add_argument(
        "--budget",
        type=_positive_float,
        metavar="SECONDS",
        help="per engine and layer: no more rounds after this long (default 2; --quick 0.5)",
    )
    tm.add_argument(
        "--tol",
        type=_positive_float,
        help="norm-relative output tolerance against the reference (default 1e-4; --models: "
        "1e-3, a whole network's float32 error)",
    )
    tm.add_argument(
        "--engines",
        metavar="LIST",
        help="comma-separated engines to run (algorithm names, auto, torch, ort)",
    )
    tm.add_argument("--no-peers", action="store_true", help="skip PyTorch and ONNX Runtime")
    tm.add_argument(
        "--spin",
        action="store_true",
        help="keep the libraries' spinning thread pools (OpenMP, OpenBLAS, ONNX Runtime)",
    )
    tm.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write all raw numbers as JSON ('-': stdout)")
    out.add_argument("--plot", metavar="FILE.png", help="bar chart of GFLOP/s (needs matplotlib)")
    out.add_argument(
        "--detail", action="store_true", help="also print every engine's numbers per layer"
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(bench_error=p.error)
    return p


def _list_suite(out) -> int:
    from ..bench.suite import QUICK, SUITE

    w = max(len(layer.name) for layer in SUITE)
    print(f"{'layer':<{w}}  {'shape':<30}{'GFLOP':>8}  quick  tags", file=out)
    for layer in SUITE:
        quick = "yes" if layer.name in QUICK else ""
        gflop = layer.params().flops / 1e9
        print(
            f"{layer.name:<{w}}  {layer.describe():<30}{gflop:>8.3f}  {quick:<5}  "
            f"{' '.join(sorted(layer.tags))}",
            file=out,
        )
    print(f"{len(SUITE)} layers, {len(QUICK)} in --quick", file=out)
    return 0


def reexec_with_passive_pools(args) -> None:
    """Restart this command once with passive thread pools (they read the variables at load)."""
    from ..bench.machine import PASSIVE_POOL_ENV, pools_are_passive

    if args.spin or pools_are_passive() or os.environ.get(_REEXEC_MARK) or os.name != "posix":
        return
    env = dict(os.environ)
    for key, value in PASSIVE_POOL_ENV.items():
        env.setdefault(key, value)  # a user's explicit setting wins
    env[_REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "cnnperf", *sys.argv[1:]], env)


def run_bench_command(args, *, top_level: bool = False, out=None, err=None) -> int:
    """Run ``cnnperf bench`` with parsed ``args``.

    Args:
        top_level: the process was started as the ``cnnperf`` command (not called from Python
            with an argv list): it may restart itself with passive thread pools.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    error = args.bench_error
    if args.models:
        return _run_models_bench(args, top_level=top_level, out=out, err=err)
    if args.train:
        return _run_train_bench(args, top_level=top_level, out=out, err=err)
    if args.list:
        return _list_suite(out)
    from ..bench import core, report
    from ..bench.progress import ProgressBar
    from ..bench.suite import select_layers
    from ..config import available_cores, get_num_threads
    from ..ops.conv_algos import CONV_ALGOS

    try:
        layers = select_layers(args.layer, quick=args.quick, tags=args.tag, batches=args.batch)
    except ValueError as e:
        error(str(e))
    cores = available_cores()
    threads = args.threads if args.threads is not None else get_num_threads()
    if threads > cores:
        error(f"--threads {threads}: only {cores} core(s) available")
    engines = None
    if args.engines:
        engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
        known = [*CONV_ALGOS, "auto", "plan", "torch", "ort"]
        bad = [e for e in engines if e not in known]
        if bad or not engines:
            error(f"--engines: unknown engine(s) {bad or [args.engines]}; choose from {known}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            error(
                "--plot needs matplotlib, which is not installed: "
                "pip install 'cnnperf[plot]' (or pip install matplotlib)"
            )
    if top_level:
        reexec_with_passive_pools(args)

    settings = core.BenchSettings(
        rounds=args.rounds,
        target_s=args.target or (0.05 if args.quick else 0.3),
        budget_s=args.budget or (0.5 if args.quick else 2.0),
        tol=args.tol or 1e-4,
        seed=args.seed,
        engines=engines,
        peers=() if args.no_peers else ("torch", "ort"),
        ort_spin=args.spin,
    )
    bar = ProgressBar(err, enabled=False if args.no_progress else None)
    try:
        result = core.run(layers, settings, threads=threads, progress=bar)
    finally:
        bar.close()
    summary = report.summarize(result)
    text = out if args.json != "-" else err  # keep stdout pure JSON with --json -
    _print_report(result, summary, args, text)
    if args.json:
        _write_json(args.json, report.to_json(result, summary), out, text)
    if args.plot:
        report.plot(result, args.plot)
        print(f"wrote {args.plot}", file=text)
    return 0


def _write_json(path: str, doc: dict, out, text) -> None:
    """Write ``doc`` to ``path`` ('-': to ``out``, which then carries nothing else)."""
    data = json.dumps(doc, indent=1, allow_nan=False)
    if path == "-":
        print(data, file=out)
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(data + "\n")
    print(f"wrote {path}", file=text)


def _run_models_bench(args, *, top_level: bool, out, err) -> int:
    """``cnnperf bench --models``: whole networks (:mod:`cnnperf.bench.models`)."""
    from ..config import available_cores, get_num_threads

    error = args.bench_error
    flags = {"--layer": args.layer, "--tag": args.tag, "--list": args.list,
             "--train": args.train, "--engines": args.engines, "--plot": args.plot}  # fmt: skip
    clash = [flag for flag, value in flags.items() if value]
    if clash:
        error(f"--models times whole networks; it does not take {', '.join(clash)}")
    threads = args.threads if args.threads is not None else get_num_threads()
    if threads > available_cores():
        error(f"--threads {threads}: only {available_cores()} core(s) available")
    if top_level:
        reexec_with_passive_pools(args)
    from ..bench import report
    from ..bench.models import ModelsBenchSettings, run_models_bench
    from ..bench.progress import ProgressBar

    settings = ModelsBenchSettings(
        batches=tuple(args.batch) if args.batch else (1,) if args.quick else (1, 8),
        rounds=args.rounds,
        target_s=args.target or (0.3 if args.quick else 1.0),
        budget_s=args.budget or (1.0 if args.quick else 4.0),
        tol=args.tol or 1e-3,
        seed=args.seed,
        peers=() if args.no_peers else ("ort", "torch"),
        ort_spin=args.spin,
    )
    bar = ProgressBar(err, enabled=False if args.no_progress else None)
    try:
        result = run_models_bench(settings, threads=threads, progress=bar)
    except ImportError as e:
        error(str(e))
    finally:
        bar.close()
    text = out if args.json != "-" else err  # keep stdout pure JSON with --json -
    print(report.format_models_report(result), file=text)
    if args.json:
        _write_json(args.json, report.models_json(result), out, text)
    return 0


def _run_train_bench(args, *, top_level: bool, out, err) -> int:
    """``cnnperf bench --train``: the training-step benchmark (:mod:`cnnperf.bench.train_step`)."""
    from ..config import available_cores, get_num_threads

    error = args.bench_error
    clash = [
        flag
        for flag, value in (
            ("--layer", args.layer),
            ("--quick", args.quick),
            ("--tag", args.tag),
            ("--list", args.list),
            ("--engines", args.engines),
            ("--plot", args.plot),
        )
        if value
    ]
    if clash:
        error(f"--train times one training step; it does not take {', '.join(clash)}")
    if args.batch and len(args.batch) > 1:
        error(f"--train takes one --batch, got {args.batch}")
    cores = available_cores()
    threads = args.threads if args.threads is not None else get_num_threads()
    if threads > cores:
        error(f"--threads {threads}: only {cores} core(s) available")
    if top_level:
        reexec_with_passive_pools(args)
    from ..bench.train_step import (
        TrainBenchSettings,
        format_train_report,
        run_train_bench,
        train_json,
    )

    settings = TrainBenchSettings(
        batch=args.batch[0] if args.batch else 64,
        rounds=args.rounds,
        target_s=args.target or 1.0,
        budget_s=args.budget or 5.0,
        tol=args.tol or 1e-4,
        seed=args.seed,
    )
    if not args.no_progress and getattr(err, "isatty", lambda: False)():
        print("timing the training steps ...", file=err, flush=True)
    result = run_train_bench(
        settings,
        threads=threads,
        peers=() if args.no_peers else ("torch",),
        breakdown=args.detail,
    )
    text = out if args.json != "-" else err  # keep stdout pure JSON with --json -
    print(format_train_report(result, detail=args.detail), file=text)
    if args.json:
        _write_json(args.json, train_json(result), out, text)
    return 0


def _print_report(result, summary, args, out) -> None:
    from ..bench import report

    m = result.machine
    peak = m.get("peak_gflops")
    env = m.get("env", {})
    pools = (
        f"thread pools: OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY') or 'default'}, "
        f"OPENBLAS_THREAD_TIMEOUT={env.get('OPENBLAS_THREAD_TIMEOUT') or 'default'}, "
        f"ONNX Runtime spinning {'on' if result.settings.ort_spin else 'off'}"
    )
    rounds = args.rounds or f"adaptive (>= {result.settings.target_s:g} s per engine, 5-200)"
    say = lambda line="": print(line, file=out)  # noqa: E731
    say(
        f"cnnperf bench: {len(result.layers)} layer(s), {m['threads']} thread(s) for every "
        f"engine, {m['cpu']}"
    )
    say(
        f"peak {peak:.0f} GFLOP/s (float32 sgemm 2048^3, best of 5 at start and end); {pools}"
        if peak
        else f"peak not measured; {pools}"
    )
    say(
        f"ms: median of {rounds} interleaved rounds after one warm-up call; "
        "! wrong output, * fewer rounds (time budget)"
    )
    say()
    say(report.format_table(result))
    if args.detail:
        say()
        say(report.format_detail(result))
    say()
    say(report.format_summary(result, summary))
    if result.notes:
        say()
        say("Notes:")
        for note in result.notes:
            say(f"  {note}")
    say(f"({result.wall_s:.1f} s)")
