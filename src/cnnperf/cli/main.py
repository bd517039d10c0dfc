"""The ``cnnperf`` command."""

from __future__ import annotations

import argparse
import sys

from .._version import __version__

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnperf",
        description="Fast convolutional neural networks on the CPU, from plain NumPy arrays.",
    )
    parser.add_argument("--version", action="version", version=f"cnnperf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="train a CNN on the bundled digits, compile, profile, race it against the naive loop",
        description="The whole story on the bundled digits, in one command: train cnnperf "
        "train's default CNN (resnet_small, SGD + onecycle), compile it for inference and check "
        "it against the eager model, profile it layer by layer, time its throughput against the "
        "eager model and PyTorch (when installed, same weights), estimate the naive float64 "
        "loop's time, and time a ResNet-18 3x3 layer (64->64 channels, 56x56) with every "
        "convolution algorithm. No network access needed.",
    )
    from .train import _int_at_least

    demo.add_argument(
        "--epochs",
        type=_int_at_least(1),
        default=None,
        help="training epochs (default 15, cnnperf train's; 2 with --quick)",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="fewest epochs and rounds (2 epochs, 1 round), a smaller sgemm for the peak",
    )
    demo.add_argument(
        "--batch", type=_int_at_least(1), default=1, help="ResNet-18 layer batch size (default 1)"
    )
    demo.add_argument(
        "--rounds",
        type=_int_at_least(1),
        default=None,
        help="timed rounds per engine, profile passes (default 7; 1 with --quick)",
    )
    from .demo import threads_arg

    demo.add_argument(
        "--threads", type=threads_arg, default=None, help="threads (default: all cores)"
    )
    demo.add_argument(
        "--spin",
        action="store_true",
        help="keep the thread pools' default spin-waiting (by default the command restarts "
        "itself once with OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT=4, as bench does)",
    )
    from .tune import add_tune_parser

    add_tune_parser(sub)
    from .bench import add_bench_parser

    add_bench_parser(sub)
    from .train import add_train_parser

    add_train_parser(sub)
    from .run import add_run_parser

    add_run_parser(sub)
    from .profile import add_profile_parser

    add_profile_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        from .demo import run_demo

        if argv is None:  # started as the command: PyTorch and cnnperf share one process
            from .bench import reexec_with_passive_pools

            reexec_with_passive_pools(args)

        return run_demo(
            epochs=args.epochs,
            quick=args.quick,
            batch=args.batch,
            rounds=args.rounds,
            threads=args.threads,
        )
    if args.command == "tune":
        from .tune import run_tune_command

        return run_tune_command(args)
    if args.command == "bench":
        from .bench import run_bench_command

        return run_bench_command(args, top_level=argv is None)
    if args.command == "train":
        from .train import run_train_command

        return run_train_command(args, top_level=argv is None)
    if args.command == "run":
        from .run import run_run_command

        return run_run_command(args)
    if args.command == "profile":
        from .profile import run_profile_command

        return run_profile_command(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse rejects first
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
