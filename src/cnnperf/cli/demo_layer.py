"""``cnnperf demo``, last section: one ResNet-18 layer with every algorithm, the naive loop and
PyTorch side by side (GFLOP/s, % of the machine's sgemm peak, speed-up over the naive loop).

Example:
    >>> LAYER["c_in"], LAYER["k"]
    (64, 3)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from .. import ops, reference
from ..ops.conv import conv_params

__all__ = ["LAYER", "layer_section", "naive_layer_seconds"]

# ResNet-18, layer1: 64 -> 64 channels, 3x3, stride 1, padding 1, on 56x56 feature maps.
LAYER = dict(c_in=64, c_out=64, h=56, w=56, k=3, padding=1)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def naive_layer_seconds(
    x: np.ndarray, w: np.ndarray, padding: int, total_outputs: int
) -> tuple[float, int]:
    """Time the float64 reference loop on a slice (one output channel, a few rows) and scale.

    The reference does the same work for every output element (c_in*kh*kw multiply-adds), so
    its time scales with the number of outputs.

    Returns:
        (seconds for the whole layer, outputs actually computed).
    """
    xs = x[:1, :, :6]  # six input rows: six output rows with "same"-style padding
    t0 = time.perf_counter()
    y = reference.conv2d(xs, w[:1], padding=padding)
    t = time.perf_counter() - t0
    return t * total_outputs / y.size, y.size


def layer_section(
    say: Callable[[str], None], *, batch: int, rounds: int, threads: int, peak: float
) -> tuple[int, dict]:
    """Time the ResNet-18 layer1 convolution with every algorithm, ``auto``, PyTorch (when
    importable) and the naive loop; print the table through ``say``.

    Args:
        say: prints one line.
        batch: the layer's batch size.
        rounds: interleaved timed rounds per engine (median reported).
        threads: the thread count (PyTorch is set to it too).
        peak: the machine's float32 peak in GFLOP/s, for the "% peak" column.

    Returns:
        (exit status: 1 if an engine's output differs from im2col's, else 0; a summary dict
        with ``auto_gflops``, ``auto_peak_fraction``, ``auto_algo`` and ``naive_s``).
    """
    rng = np.random.default_rng(0)
    c_in, c_out, h, w, k, pad = (LAYER[key] for key in ("c_in", "c_out", "h", "w", "k", "padding"))
    x = rng.standard_normal((batch, c_in, h, w)).astype(np.float32)
    wt = (rng.standard_normal((c_out, c_in, k, k)) * (2 / (c_in * k * k)) ** 0.5).astype(np.float32)
    bias = rng.standard_normal(c_out).astype(np.float32)
    p = conv_params(x.shape, wt.shape, padding=pad)
    gflop = p.flops / 1e9
    auto_algo = ops.select_conv_algo(p).name
    say(f"ResNet-18 layer1 conv, input {x.shape}, weight {wt.shape}, padding {pad}")
    say(f"{gflop:.3f} GFLOP per call, {threads} thread(s); auto picks '{auto_algo}'")

    engines = {}
    applicable = [name for name, a in ops.CONV_ALGOS.items() if a.why_not(p) is None]
    for algo in [*applicable, "auto"]:
        engines[f"cnnperf {algo}"] = lambda a=algo: ops.conv2d(x, wt, bias, padding=pad, algo=a)
    try:
        import torch
    except ImportError:
        say("(PyTorch not installed: skipping the PyTorch row)")
    else:
        xt, wtt, bt = (torch.from_numpy(a) for a in (x, wt, bias))

        def torch_conv():
            with torch.no_grad():
                return torch.nn.functional.conv2d(xt, wtt, bt, padding=pad)

        engines[f"PyTorch {torch.__version__}"] = torch_conv

    first = {name: _timed(fn) for name, fn in engines.items()}  # JIT compile or cache load
    expected = engines["cnnperf im2col"]()
    for name, fn in engines.items():
        got = np.asarray(fn())
        err = float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))
        if err > 1e-4:
            say(f"ERROR: {name} differs from im2col by {err:.2e} (relative)")
            return 1, {}
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):  # interleaved rounds, so drift in machine load hits every engine
        for name, fn in engines.items():
            times[name].append(_timed(fn))
    total_outputs = batch * c_out * p.oh * p.ow
    naive, computed = naive_layer_seconds(x, wt, pad, total_outputs)

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
        f"(cnnperf.reference.conv2d) was timed on {computed:,} of {total_outputs:,} outputs and "
        "scaled linearly."
    )
    auto_gflops = gflop / statistics.median(times["cnnperf auto"])
    return 0, {
        "auto_algo": auto_algo,
        "auto_gflops": auto_gflops,
        "auto_peak_fraction": auto_gflops / peak,
        "naive_s": naive,
    }
