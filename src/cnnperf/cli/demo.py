"""``cnnperf demo``: the whole story on the bundled digits, in one command.

1. Train ``cnnperf train``'s default CNN (``resnet_small``, SGD + onecycle) on the bundled
   digits with cnnperf alone.
2. Compile it for inference (``cnnperf.compile``: batch norm folded, ReLU fused, conv plans),
   check the compiled model's predictions against the eager model's on the test set, and show
   the planned peak activation memory.
3. Profile it: the per-layer table, and images/s of the compiled model, the eager ``nn`` model
   and (when PyTorch is importable) a PyTorch twin with the same weights, at batch 1 and 256.
4. Time the naive float64 loop (``cnnperf.reference.conv2d``) on a slice of every conv layer
   and scale it to the network's convolutions: how much slower than the compiled model.
5. One ResNet-18 layer with every convolution algorithm, the naive loop and PyTorch.

No network access and no PyTorch needed (PyTorch only adds a comparison).

Example:
    >>> DEFAULT_EPOCHS, QUICK_EPOCHS, LARGE_BATCH
    (15, 2, 256)
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Any

import numpy as np

from .. import config
from ..bench.machine import sgemm_peak_gflops

__all__ = [
    "run_demo",
    "threads_arg",
    "sgemm_peak_gflops",
    "DEFAULT_EPOCHS",
    "QUICK_EPOCHS",
    "LARGE_BATCH",
]

DEFAULT_EPOCHS = 15  # cnnperf train's default: 99.4% on the digits
QUICK_EPOCHS = 2  # --quick: about 96-97% on the digits
LARGE_BATCH = 256  # the throughput batch besides 1 (the digits' test split has 359 images)
_LOGIT_TOL = 1e-4  # compiled vs eager logits, over the largest |logit|


def threads_arg(text: str) -> int:
    """``--threads``: an int from 1 to the cores this process may use (argparse type).

    Example:
        >>> threads_arg("1")
        1
    """
    import argparse

    cores = config.available_cores()
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= cores:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 1 to {cores} (the cores available), got {text!r}"
        )
    return n


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _mib(n: int) -> str:
    return f"{n / 2**10:.1f} KiB" if n < 2**20 else f"{n / 2**20:.2f} MiB"


def _eager_logits(model, x: np.ndarray, chunk: int = 500) -> np.ndarray:
    from ..autograd.grad_mode import no_grad

    with no_grad():
        return np.concatenate([model(x[i : i + chunk]).data for i in range(0, len(x), chunk)])


def run_demo(
    *,
    epochs: int | None = None,
    quick: bool = False,
    batch: int = 1,
    rounds: int | None = None,
    threads: int | None = None,
    out=None,
) -> int:
    """Run the demo, printing to ``out`` (default stdout); returns the exit status.

    Args:
        epochs: training epochs (default :data:`DEFAULT_EPOCHS`, or :data:`QUICK_EPOCHS`
            with ``quick``).
        quick: fewest epochs and rounds and a smaller sgemm for the machine's peak.
        batch: the batch size of the ResNet-18 layer in the last section.
        rounds: timed rounds (default 7, 1 with ``quick``): the layer table's interleaved
            rounds, the profile's passes and the throughput's minimum rounds.
        threads: threads for cnnperf, BLAS and PyTorch (default: all cores).

    Returns:
        0; 1 if the compiled model's logits differ from the eager model's, or an engine's
        output from its reference.
    """
    out = out or sys.stdout
    epochs = (QUICK_EPOCHS if quick else DEFAULT_EPOCHS) if epochs is None else epochs
    rounds = (1 if quick else 7) if rounds is None else rounds
    for name, value in (("epochs", epochs), ("rounds", rounds), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"run_demo: {name} must be an int >= 1, got {value!r}")
    saved_threads = config.get_num_threads()
    if threads is not None:
        config.set_num_threads(threads)
    try:
        import torch
    except ImportError:
        torch = None
    torch_threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(config.get_num_threads())
    try:
        return _demo(epochs, quick, batch, rounds, torch, out)
    finally:
        config.set_num_threads(saved_threads)
        if torch is not None:
            torch.set_num_threads(torch_threads)


def _demo(epochs: int, quick: bool, batch: int, rounds: int, torch: Any, out) -> int:
    t_start = time.perf_counter()

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    def head(title: str) -> None:
        say()
        say(f"== {title} ==")

    threads = config.get_num_threads()
    size, reps = (1024, 3) if quick else (2048, 5)
    peak = sgemm_peak_gflops(size, reps)
    say(
        "cnnperf demo: train a CNN on the bundled digits, compile it, profile it, and compare "
        "it with the naive loop"
    )
    say(
        f"{threads} thread(s); machine float32 peak (BLAS sgemm {size}^3, best of {reps}): "
        f"{peak:.0f} GFLOP/s; "
        + (f"PyTorch {torch.__version__}" if torch is not None else "PyTorch not installed")
    )
    summary: dict[str, Any] = {}

    # 1. Train ----------------------------------------------------------------------------
    from ..training import NonFiniteLossError
    from ..training.trainer import TrainConfig, TrainingRun

    with tempfile.TemporaryDirectory(prefix="cnnperf-demo-") as ckpt:
        run = TrainingRun(TrainConfig(epochs=epochs, checkpoint_dir=ckpt))
        c = run.config
        head(
            f"1. Train: {c.model} on the bundled digits, {epochs} epoch(s) (cnnperf train's "
            f"recipe{'' if epochs == DEFAULT_EPOCHS else f', which runs {DEFAULT_EPOCHS}'})"
        )
        n_train, n_test = len(run.train_set), len(run.test_set)
        shape = tuple(run.train_set.images.shape[1:])
        say(
            f"{n_train:,} training and {n_test:,} test images of {shape[1]}x{shape[2]}, "
            f"{len(run.classes)} classes; SGD lr {c.lr:g} momentum {c.momentum:g} weight decay "
            f"{c.weight_decay:g}, {c.scheduler}, batch {c.batch_size}, seed {c.seed}"
        )
        width = len(str(epochs))

        def on_epoch(r: dict) -> None:
            say(
                f"epoch {r['epoch']:>{width}}/{epochs}  loss {r['train_loss']:.4f}  train "
                f"{_pct(r['train_accuracy'])}  test {_pct(r['test_accuracy'])}  "
                f"{r['images_per_s']:,.0f} img/s  {r['time_s']:.1f} s"
            )

        from ..training.prewarm import start_prewarm, stop_prewarm

        helper = start_prewarm()  # a first run: the kernels compile in a second process too
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                result = run.train(on_epoch=on_epoch)
        except NonFiniteLossError as e:
            say(f"ERROR: {e}")
            return 1
        finally:
            stop_prewarm(helper)
    model = result.model.eval()
    last = result.history[-1]
    train_s = sum(r["time_s"] for r in result.history)
    say(
        f"test accuracy {_pct(last['test_accuracy'])} after {epochs} epoch(s), {train_s:.1f} s "
        f"training; {result.parameters:,} parameters"
    )
    summary.update(accuracy=last["test_accuracy"], train_s=train_s)

    # 2. Compile ---------------------------------------------------------------------------
    from ..compile import compile_model, trace

    x_test = np.ascontiguousarray(run.normalize(run.test_set.images), dtype=np.float32)
    labels = run.test_set.labels
    in_shape = (None, *shape)
    head(f"2. Compile: cnnperf.compile(model, input_shape={in_shape})")
    source = trace(model, in_shape)
    t0 = time.perf_counter()
    compiled = compile_model(model, in_shape)  # cnnperf.compile
    compile_s = time.perf_counter() - t0
    nodes = compiled.graph.nodes
    folded = sum(n.op == "batch_norm" for n in source.nodes) - sum(
        n.op == "batch_norm" for n in nodes
    )
    fused = sum(n.attrs.get("activation") is not None for n in nodes)
    residual = sum(bool(n.attrs.get("residual")) for n in nodes)
    say(
        f"{len(source.nodes)} traced nodes -> {len(nodes)}: {folded} batch norm(s) folded into "
        f"convolutions, {residual} residual add(s) and {fused} activation(s) fused into them; "
        f"conv plans and weights prepared in {compile_s * 1e3:.0f} ms"
    )
    eager = _eager_logits(model, x_test)
    logits = compiled(x_test)
    agree = int((eager.argmax(1) == logits.argmax(1)).sum())
    diff = float(np.max(np.abs(eager - logits)))
    scale = float(np.max(np.abs(eager)))
    say(
        f"compiled vs eager on the {n_test} test images: {agree}/{n_test} predictions agree "
        f"({_pct(agree / n_test)}), max |logit difference| {diff:.1e} (largest |logit| "
        f"{scale:.1f}); compiled test accuracy {_pct(float((logits.argmax(1) == labels).mean()))}"
    )
    big = min(LARGE_BATCH, n_test)
    plans = {b: compiled.memory_plan(b) for b in (1, big)}
    say(
        "planned peak activation memory: "
        + ", ".join(
            f"{_mib(p.planned_peak_bytes)} at batch {b} (all activations at once: "
            f"{_mib(p.naive_bytes)})"
            for b, p in plans.items()
        )
    )
    summary.update(agree=agree, n_test=n_test)
    if diff > _LOGIT_TOL * max(scale, 1.0):
        say(f"ERROR: the compiled model's logits differ from the eager model's by {diff:.2e}")
        return 1

    from .demo_perf import perf_sections

    status, perf = perf_sections(
        say, head, model, compiled, x_test, big, rounds, quick, peak, threads, torch
    )
    summary.update(perf)

    # 5. One ResNet-18 layer ----------------------------------------------------------------
    from .demo_layer import layer_section

    head("5. One ResNet-18 layer, every convolution algorithm")
    layer_status, layer = layer_section(say, batch=batch, rounds=rounds, threads=threads, peak=peak)
    status = status or layer_status
    summary.update(layer)

    say()
    say(_summary_line(summary, epochs, big, time.perf_counter() - t_start))
    return status


def _summary_line(s: dict, epochs: int, big: int, wall: float) -> str:
    parts = [
        f"summary: digits test accuracy {_pct(s['accuracy'])} after {epochs} epoch(s) "
        f"({s['train_s']:.1f} s)",
        f"compiled = eager on {s['agree']}/{s['n_test']} test predictions",
    ]
    if s.get("rate_1") and s.get("rate_big"):
        rel = f"compiled {s['rate_1']:,.0f} img/s at batch 1, {s['rate_big']:,.0f} at {big}"
        if s.get("vs_eager_big"):
            rel += f" ({s['vs_eager_big']:.2f}x eager"
            rel += f", {s['vs_torch_big']:.2f}x PyTorch)" if s.get("vs_torch_big") else ")"
        parts.append(rel)
    if s.get("naive_slower"):
        parts.append(f"naive loop ~{s['naive_slower']:,.0f}x slower than compiled at {big}")
    if s.get("auto_gflops"):
        parts.append(
            f"ResNet-18 layer: auto ({s['auto_algo']}) {s['auto_gflops']:.0f} GFLOP/s, "
            f"{100 * s['auto_peak_fraction']:.0f}% of peak"
        )
    parts.append(f"{wall:.0f} s in all")
    return "; ".join(parts)
