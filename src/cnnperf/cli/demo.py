"""``cnnperf demo``: one ResNet layer, every algorithm, the naive loop and PyTorch side by side."""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from .. import config, ops, reference
from ..bench.machine import sgemm_peak_gflops
from ..ops.conv import conv_params

__all__ = ["run_demo", "sgemm_peak_gflops"]

# ResNet-18, layer1: 64 -> 64 channels, 3x3, stride 1, padding 1, on 56x56 feature maps.
LAYER = dict(c_in=64, c_out=64, h=56, w=56, k=3, padding=1)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _naive_seconds(x: np.ndarray, w: np.ndarray, padding: int, total_outputs: int):
    """Time the float64 reference loop on a slice (one output channel, a few rows) and scale.

    The reference does the same work for every output element (c_in*kh*kw multiply-adds), so
    its time scales with the number of outputs. Returns (seconds for the whole layer, outputs
    actually computed).
    """
    xs = x[:1, :, :6]  # six input rows: six output rows with "same"-style padding
    t0 = time.perf_counter()
    y = reference.conv2d(xs, w[:1], padding=padding)
    t = time.perf_counter() - t0
    done = y.size
    return t * total_outputs / done, done


def run_demo(batch: int = 1, rounds: int = 7, threads: int | None = None, out=None) -> int:
    out = out or sys.stdout
    if threads is not None:
        config.set_num_threads(threads)
    threads = config.get_num_threads()
    rng = np.random.default_rng(0)
    c_in, c_out, h, w, k, pad = (LAYER[key] for key in ("c_in", "c_out", "h", "w", "k", "padding"))
    x = rng.standard_normal((batch, c_in, h, w)).astype(np.float32)
    wt = (rng.standard_normal((c_out, c_in, k, k)) * (2 / (c_in * k * k)) ** 0.5).astype(np.float32)
    bias = rng.standard_normal(c_out).astype(np.float32)
    p = conv_params(x.shape, wt.shape, padding=pad)
    gflop = p.flops / 1e9

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    say(f"cnnperf demo: ResNet-18 layer1 conv, input {x.shape}, weight {wt.shape}, padding {pad}")
    say(
        f"{gflop:.3f} GFLOP per call, {threads} thread(s); auto picks "
        f"'{ops.select_conv_algo(p).name}'"
    )
    peak = sgemm_peak_gflops()
    say(f"machine float32 peak (BLAS sgemm 2048^3, best of 5): {peak:.0f} GFLOP/s")

    engines = {}
    applicable = [name for name, a in ops.CONV_ALGOS.items() if a.why_not(p) is None]
    for algo in [*applicable, "auto"]:
        engines[f"cnnperf {algo}"] = lambda a=algo: ops.conv2d(x, wt, bias, padding=pad, algo=a)
    try:
        import torch

        torch.set_num_threads(threads)
        xt, wtt, bt = (torch.from_numpy(a) for a in (x, wt, bias))

        def torch_conv():
            with torch.no_grad():
                return torch.nn.functional.conv2d(xt, wtt, bt, padding=pad)

        engines[f"PyTorch {torch.__version__}"] = torch_conv
    except ImportError:
        say("(PyTorch not installed: skipping the PyTorch column)")

    first = {}
    for name, fn in engines.items():  # first call: JIT compile or on-disk cache load
        first[name] = _timed(fn)
    expected = engines["cnnperf im2col"]()
    for name, fn in engines.items():
        got = np.asarray(fn())
        err = float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))
        if err > 1e-4:
            say(f"ERROR: {name} differs from im2col by {err:.2e} (relative)")
            return 1
    times = {name: [] for name in engines}
    for _ in range(rounds):  # interleaved rounds, so drift in machine load hits every engine
        for name, fn in engines.items():
            times[name].append(_timed(fn))
    naive, computed = _naive_seconds(x, wt, pad, batch * c_out * p.oh * p.ow)

    say()
    say(
        f"{'engine':<22}{'first call':>12}{'median':>12}{'GFLOP/s':>10}{'% peak':>8}"
        f"{'vs naive':>12}"
    )
    for name in engines:
        med = statistics.median(times[name])
        rate = gflop / med
        say(
            f"{name:<22}{first[name] * 1e3:>10.1f}ms{med * 1e3:>10.2f}ms{rate:>10.1f}"
            f"{100 * rate / peak:>7.0f}%{naive / med:>11,.0f}x"
        )
    say(f"{'naive float64 loop':<22}{'':>12}{naive:>11.1f}s{gflop / naive:>10.4f}{'':>8}{1:>11}x")
    say()
    say(
        f"median of {rounds} interleaved rounds after one warm-up call each; the naive loop "
        f"(cnnperf.reference.conv2d) was timed on {computed:,} of "
        f"{batch * c_out * p.oh * p.ow:,} outputs and scaled linearly. The first cnnperf call "
        "also loads Numba and starts its thread pool (compiled kernels are cached on disk)."
    )
    return 0
