"""``cnnperf train``: train a named architecture with a progress bar, validation, checkpoints."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

__all__ = ["add_train_parser", "run_train_command", "EXIT_NON_FINITE"]

# Exit status when the loss became NaN or infinite (argparse's usage errors exit with 2).
EXIT_NON_FINITE = 3

_EPILOG = """\
data:
  digits               the bundled UCI digits (1,797 8x8 images; fixed 80/20 split)
  mnist:PATH           MNIST IDX files in PATH (train-images-idx3-ubyte[.gz], ...)
  fashion-mnist:PATH   Fashion-MNIST, same layout
  cifar10:PATH         CIFAR-10 binary version (data_batch_1.bin ... test_batch.bin)
  folder:PATH          PATH/train + PATH/test (or val) class folders, or PATH's class folders
                       split 80/20; needs Pillow

Defaults (resnet_small, 15 epochs, batch 64, SGD lr 0.1 momentum 0.9 weight decay 5e-3,
onecycle schedule, seed 0) reach about 99% test accuracy on the digits in about 20 s on two
cores (the first run after installing also compiles cnnperf's kernels, once: about 50 s more).
The test split is evaluated after every epoch; the checkpoint DIR/last.safetensors is
replaced (atomically) after every epoch, and --resume continues it (with the same settings)
to the same result as an uninterrupted run. A NaN or infinite loss stops the run with exit
status 3, leaving the last checkpoint as it was. --save-model writes the weights (PyTorch
keys) and the architecture; cnnperf.training.load_model(PATH) reads them back for inference.
"""


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def _number(lo: float, lo_open: bool, hi: float | None = None):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        bad = value != value or value in (float("inf"), float("-inf"))
        bad = bad or (value <= lo if lo_open else value < lo) or (hi is not None and value >= hi)
        if bad:
            bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
            bound += f" and < {hi:g}" if hi is not None else ""
            raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
        return value

    return parse


def add_train_parser(sub) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``sub`` (the subparsers of the ``cnnperf`` parser)."""
    from ..training.models import MODELS
    from ..training.trainer import OPTIMIZERS, SCHEDULERS

    p = sub.add_parser(
        "train",
        help="train a CNN (default: a small ResNet on the bundled digits)",
        description="Train lenet, vgg_small or resnet_small with cnnperf: a progress bar (loss, "
        "accuracy, images/s), a validation pass and a checkpoint every epoch, --resume, and "
        "the trained model saved for inference (cnnperf.training.load_model).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", default="digits", metavar="SPEC", help="digits (default) or KIND:PATH, below"
    )
    p.add_argument(
        "--model", default="resnet_small", choices=list(MODELS), help="default resnet_small"
    )
    p.add_argument("--epochs", type=_int_at_least(1), default=15, help="default 15")
    p.add_argument(
        "--lr",
        type=_number(0.0, True),
        help="learning rate; onecycle's peak (default 0.1 for sgd, 1e-3 for adam/adamw)",
    )
    p.add_argument("--batch-size", type=_int_at_least(1), default=64, help="default 64")
    p.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS, help="default sgd")
    p.add_argument(
        "--momentum", type=_number(0.0, False, 1.0), default=0.9, help="SGD momentum (0.9)"
    )
    p.add_argument(
        "--weight-decay",
        type=_number(0.0, False),
        metavar="WD",
        help="default 5e-3 for sgd, 0 for adam, 0.01 for adamw",
    )
    p.add_argument(
        "--label-smoothing",
        type=_number(0.0, False, 1.0),
        default=0.0,
        metavar="EPS",
        help="label smoothing of the training loss (default 0)",
    )
    p.add_argument(
        "--scheduler",
        default="onecycle",
        choices=SCHEDULERS,
        help="step: x0.1 at 50%% and 75%% of the epochs; cosine: per epoch to 0; onecycle "
        "(default): per batch, peak --lr",
    )
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="default 0")
    p.add_argument(
        "--augment",
        action="store_true",
        help="random crops (padding size/8), plus horizontal flips for 3-channel images",
    )
    p.add_argument(
        "--limit",
        type=_int_at_least(1),
        metavar="N",
        help="use only the first N train and test images",
    )
    p.add_argument(
        "--image-size", type=_int_at_least(8), metavar="N", help="resize folder: images to NxN"
    )
    p.add_argument(
        "--checkpoint-dir",
        default="cnnperf-train",
        metavar="DIR",
        help="where last.safetensors is written each epoch (default ./cnnperf-train)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from DIR/last.safetensors if it exists"
    )
    p.add_argument(
        "--save-model",
        metavar="PATH",
        help="write the trained model (safetensors, PyTorch keys + architecture) for inference",
    )
    p.add_argument("--json", metavar="FILE", help="write a JSON summary ('-': stdout)")
    p.add_argument("--threads", type=_int_at_least(1), help="threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--spin",
        action="store_true",
        help="keep the thread pools' default spin-waiting (by default the command restarts "
        "itself once with OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT=4, as bench "
        "does: measured 7-10%% faster training on 2 cores)",
    )
    p.set_defaults(train_error=p.error)
    return p


def _config(args):
    from ..training.trainer import TrainConfig

    return TrainConfig(
        data=args.data,
        model=args.model,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        scheduler=args.scheduler,
        seed=args.seed,
        augment=args.augment,
        limit=args.limit,
        image_size=args.image_size,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
    )


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def summary_json(result, wall_s: float, saved_model: str | None) -> dict:
    """The ``--json`` document of a finished run."""
    from .._version import __version__
    from ..config import get_num_threads

    h = result.history
    best = max(h, key=lambda r: r["test_accuracy"]) if h else None
    seconds = sum(r["time_s"] for r in h)
    images = sum(r["images_per_s"] * r["time_s"] for r in h)
    return {
        "schema": "cnnperf-train/1",
        "cnnperf_version": __version__,
        "model": result.config.model,
        "data": result.config.data,
        "config": result.config.as_dict(),
        "parameters": result.parameters,
        "num_train": result.num_train,
        "num_test": result.num_test,
        "threads": get_num_threads(),
        "epochs": len(h),
        "resumed_from_epoch": result.resumed_from,
        "final_test_accuracy": h[-1]["test_accuracy"] if h else None,
        "final_test_loss": h[-1]["test_loss"] if h else None,
        "best_test_accuracy": best["test_accuracy"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "images_per_s": images / seconds if seconds > 0 else None,
        "train_time_s": seconds,
        "wall_time_s": wall_s,
        "checkpoint": result.checkpoint,
        "saved_model": saved_model,
        "preprocess": result.preprocess,
        "classes": result.classes,
        "history": h,
    }


def run_train_command(args, *, top_level: bool = False, out=None, err=None) -> int:
    """Run ``cnnperf train`` with parsed ``args``; returns the exit status.

    Args:
        top_level: the process was started as the ``cnnperf`` command (not called from Python
            with an argv list): it may restart itself with passive thread pools.
    """
    t_start = time.perf_counter()
    out = out or sys.stdout
    err = err or sys.stderr
    error = args.train_error
    from ..config import available_cores, get_num_threads, set_num_threads

    cores = available_cores()
    if args.threads is not None and args.threads > cores:
        error(f"--threads {args.threads}: only {cores} core(s) available")
    for flag, path in (("--save-model", args.save_model), ("--json", args.json)):
        folder = os.path.dirname(os.path.abspath(path)) if path and path != "-" else None
        if folder is not None and not os.path.isdir(folder):
            error(f"{flag} {path}: directory {folder} does not exist")
    if top_level:
        from .bench import reexec_with_passive_pools

        reexec_with_passive_pools(args)
    saved_threads = get_num_threads()
    if args.threads is not None:
        set_num_threads(args.threads)
    try:
        return _train(args, t_start, out, err)
    finally:
        set_num_threads(saved_threads)  # for callers in the same process


def _train(args, t_start: float, out, err) -> int:
    from ..training import CheckpointError, NonFiniteLossError, save_model
    from ..training.trainer import TrainingRun

    error = args.train_error
    text = err if args.json == "-" else out  # keep stdout pure JSON with --json -
    say = lambda line="": print(line, file=text, flush=True)  # noqa: E731
    bar = _Bar(err, enabled=False if args.no_progress else None)

    def on_epoch(r: dict) -> None:
        bar.close()
        epochs = run.config.epochs
        say(
            f"epoch {r['epoch']:>{len(str(epochs))}}/{epochs}  lr {r['lr']:.3g}  "
            f"train loss {r['train_loss']:.4f} acc {_pct(r['train_accuracy'])}  "
            f"test loss {r['test_loss']:.4f} acc {_pct(r['test_accuracy'])}  "
            f"{r['images_per_s']:.0f} img/s  {r['time_s']:.1f} s"
        )

    try:  # settings, data, resumed checkpoint: a problem here is a usage error (exit 2)
        run = TrainingRun(_config(args), log=say)
    except (ValueError, OSError, ImportError) as e:  # CheckpointError is a ValueError
        error(f"--resume: {e}" if isinstance(e, CheckpointError) else str(e))
    config = run.config
    bar.epochs, bar.batches = config.epochs, len(run.loader)
    if run.start < config.epochs:
        bar.start(run.start, "starting; the first run compiles cnnperf's kernels (once)")
    from ..training.prewarm import start_prewarm, stop_prewarm

    helper = start_prewarm() if run.start < config.epochs else None  # a first run: compile
    try:  # the kernels in a second process too (cnnperf.training.prewarm)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # NaN is caught below
            result = run.train(on_batch=bar.update, on_epoch=on_epoch)
    except NonFiniteLossError as e:
        bar.close()
        kept = (
            f"the last good checkpoint ({e.last_checkpoint_epoch} epoch(s) done) is kept at "
            f"{e.last_checkpoint}"
            if e.last_checkpoint
            else "no checkpoint was written"
        )
        print(
            f"cnnperf train: error: the loss became {e.loss} in epoch {e.epoch + 1} of "
            f"{config.epochs}, batch {e.batch + 1} of {len(run.loader)}; training stopped "
            f"before applying it, and {kept}. Try a lower --lr (now {config.lr:g}).",
            file=err,
        )
        return EXIT_NON_FINITE
    finally:
        bar.close()
        stop_prewarm(helper)
    if args.save_model:
        summary = {k: v for k, v in summary_json(result, 0.0, None).items() if k != "history"}
        save_model(
            args.save_model,
            result.model,
            preprocess=result.preprocess,
            classes=result.classes,
            extra={"data": config.data, "epochs": len(result.history), "summary": summary},
        )
    wall = time.perf_counter() - t_start
    doc = summary_json(result, wall, args.save_model)
    _print_summary(doc, say)
    if args.json:
        data = json.dumps(doc, indent=1, allow_nan=False)
        if args.json == "-":
            print(data, file=out)
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(data + "\n")
            say(f"wrote {args.json}")
    return 0


def _print_summary(doc: dict, say) -> None:
    if not doc["history"]:
        say("no epochs trained")
        return
    ips = doc["images_per_s"]
    say(
        f"final test accuracy {_pct(doc['final_test_accuracy'])} (best "
        f"{_pct(doc['best_test_accuracy'])} at epoch {doc['best_epoch']}); {doc['model']} "
        f"({doc['parameters']:,} parameters) on {doc['data']}, {doc['epochs']} epochs, "
        f"{ips:.0f} img/s training, {doc['train_time_s']:.1f} s training, "
        f"{doc['wall_time_s']:.1f} s wall, {doc['threads']} thread(s)"
    )
    say(f"checkpoint: {doc['checkpoint']}")
    if doc["saved_model"]:
        say(f"model: {doc['saved_model']} (cnnperf.training.load_model)")


class _Bar:
    """The per-epoch progress bar: ``[####----] 12/23 epoch 3/15 loss 0.1234 acc 96.1% ...``."""

    def __init__(self, stream, enabled: bool | None) -> None:
        from ..bench.progress import ProgressBar

        self._make = lambda: ProgressBar(stream, enabled=enabled)
        self._bar = None
        self._epoch = None
        self.epochs: int | None = None
        self.batches = 0

    def update(self, epoch, batch, batches, loss, acc, ips) -> None:
        if self._bar is None or self._epoch != epoch:
            self.close()
            self._bar, self._epoch = self._make(), epoch
        of = f"/{self.epochs}" if self.epochs else ""
        label = f"epoch {epoch + 1}{of}  loss {loss:.4f}  acc {_pct(acc)}  {ips:.0f} img/s"
        self._bar(batch + 1, batches + 1, label)  # the validation pass is the last step

    def start(self, epoch: int, note: str) -> None:
        """Draw an empty bar for ``epoch`` (the first step may take a while)."""
        self.close()
        self._bar, self._epoch = self._make(), epoch
        of = f"/{self.epochs}" if self.epochs else ""
        self._bar(0, self.batches + 1, f"epoch {epoch + 1}{of}  {note}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
