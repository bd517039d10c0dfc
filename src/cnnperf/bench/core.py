"""Run the benchmark: per layer, every cnnperf algorithm that covers it, ``auto`` and the peers.

Every engine runs at the same thread count, in this process, on the same input arrays; see
:mod:`cnnperf.bench.runner` for how one layer is timed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import config, ops
from ..ops.conv_algos import CONV_ALGOS
from .machine import machine_info, sgemm_peak_gflops
from .peers import available_peers
from .runner import Engine, EngineResult, engine_notes, run_interleaved
from .suite import BenchLayer

__all__ = ["BenchSettings", "LayerResult", "BenchRun", "layer_inputs", "cnnperf_engines", "run"]


@dataclass
class BenchSettings:
    """How to time: see :func:`cnnperf.bench.runner.run_interleaved` for the meaning of each."""

    rounds: int | None = None
    target_s: float = 0.3
    min_rounds: int = 5
    max_rounds: int = 200
    budget_s: float = 2.0
    tol: float = 1e-4
    seed: int = 0
    engines: tuple[str, ...] | None = None  # None: every engine
    peers: tuple[str, ...] = ("torch", "ort")
    ort_spin: bool = False

    def as_dict(self) -> dict:
        return {
            "rounds": self.rounds if self.rounds is not None else "adaptive",
            "target_s": self.target_s,
            "min_rounds": self.min_rounds,
            "max_rounds": self.max_rounds,
            "budget_s": self.budget_s,
            "tol": self.tol,
            "tol_measure": "||y - y_ref||_2 / ||y_ref||_2",
            "statistic": "median of interleaved rounds (rotating order) after one warm-up call",
            "seed": self.seed,
            "engines": list(self.engines) if self.engines else "all",
            "peers": list(self.peers),
            "ort_spin": self.ort_spin,
        }


@dataclass
class LayerResult:
    """One layer's results: every engine's raw numbers plus what auto picked."""

    layer: BenchLayer
    flops: int
    auto_algo: str | None
    reference: str | None
    engines: dict[str, EngineResult]
    unsupported: dict[str, str] = field(default_factory=dict)  # algorithm -> why_not reason

    @property
    def gflop(self) -> float:
        return self.flops / 1e9

    def median(self, name: str) -> float | None:
        res = self.engines.get(name)
        return res.median_s if res is not None and res.timed else None

    def gflops(self, name: str) -> float | None:
        """GFLOP/s of engine ``name`` at its median time (None when it has none)."""
        t = self.median(name)
        return self.flops / t / 1e9 if t else None

    def best_cnnperf(self) -> str | None:
        """The fastest explicit cnnperf algorithm whose output matched the reference."""
        cands = [
            (res.median_s, name)
            for name, res in self.engines.items()
            if res.kind == "cnnperf" and name not in SELECTING_ENGINES and res.timed and res.ok
        ]
        return min(cands)[1] if cands else None

    def ratio(self, peer: str, engine: str = "auto") -> float | None:
        """time(engine) / time(peer): below 1 means cnnperf is faster."""
        a, b = self.median(engine), self.median(peer)
        if a is None or b is None or b <= 0:
            return None
        return a / b


@dataclass
class BenchRun:
    """Everything one ``cnnperf bench`` measured."""

    machine: dict
    settings: BenchSettings
    layers: list[LayerResult]
    notes: list[str]
    peers: dict[str, str]  # peer name -> label ("torch" -> "PyTorch 2.13.0")
    wall_s: float = 0.0

    @property
    def peak_gflops(self) -> float | None:
        return self.machine.get("peak_gflops")


def layer_inputs(layer: BenchLayer, seed: int = 0):
    """Standard-normal input, He-scaled weight and a small bias, float32, reproducible."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(layer.x_shape, dtype=np.float32)
    fan_in = layer.w_shape[1] * layer.k * layer.k
    w = rng.standard_normal(layer.w_shape, dtype=np.float32) * np.float32(math.sqrt(2 / fan_in))
    b = (rng.standard_normal(layer.c_out, dtype=np.float32) * np.float32(0.1)).astype(np.float32)
    return x, w, b


# Engines that choose their algorithm: ``auto`` is eager ``conv2d(algo="auto")``, which
# prepares the weight on every call (as a training step must: its weight changes); ``plan`` is
# ``plan_conv2d`` (algorithm chosen and weight transformed once, as an inference graph runs it,
# and as ONNX Runtime's session pre-packs its weights).
SELECTING_ENGINES = ("auto", "plan")


def cnnperf_engines(x, w, b, layer: BenchLayer) -> tuple[list[Engine], dict[str, str]]:
    """One engine per registered algorithm that covers the layer, then ``auto`` and ``plan``.

    Returns (engines, {algorithm: why it does not cover the layer}).
    """
    p = layer.params()
    engines, unsupported = [], {}
    kwargs = dict(stride=layer.stride, padding=layer.padding, groups=layer.groups)
    for name, algo in list(CONV_ALGOS.items()):
        reason = algo.why_not(p)
        if reason is not None:
            unsupported[name] = reason
            continue
        engines.append(
            Engine(
                name,
                lambda a=name: ops.conv2d(x, w, b, **kwargs, algo=a),
                label=f"cnnperf {name}",
                algo=name,
            )
        )
    engines.append(
        Engine("auto", lambda: ops.conv2d(x, w, b, **kwargs, algo="auto"), label="cnnperf auto")
    )
    plan = ops.plan_conv2d(w, b, **kwargs, input_shape=x.shape)
    engines.append(Engine("plan", lambda: plan(x), label="cnnperf plan", algo=plan.algorithm.name))
    return engines, unsupported


def run(
    layers: list[BenchLayer],
    settings: BenchSettings | None = None,
    *,
    threads: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    measure_peak: bool = True,
) -> BenchRun:
    """Benchmark ``layers``; return every number measured.

    Args:
        threads: for every engine (default ``cnnperf.get_num_threads()``); restored afterwards.
        progress: called as ``progress(done, total, layer_name)`` before each layer and once
            at the end.
        measure_peak: time the sgemm peak at start-up and at the end and keep the higher
            (tests switch it off).
    """
    settings = settings or BenchSettings()
    t_start = time.perf_counter()
    saved_threads = config.get_num_threads()
    threads = saved_threads if threads is None else threads
    config.set_num_threads(threads)
    wanted = set(settings.engines) if settings.engines else None
    peer_names = tuple(n for n in settings.peers if wanted is None or n in wanted)
    peers, notes = available_peers(threads, peer_names, ort_spin=settings.ort_spin)
    try:
        if progress and measure_peak:
            progress(0, len(layers), "measuring the sgemm peak")
        peak_start = sgemm_peak_gflops() if measure_peak else None
        results = []
        for i, layer in enumerate(layers):
            if progress:
                progress(i, len(layers), layer.name)
            results.append(_run_layer(layer, settings, peers, wanted))
        # Measured again at the end: on a shared machine a neighbour's burst at start-up would
        # otherwise understate the peak for the whole report.
        peak_end = sgemm_peak_gflops() if measure_peak else None
        if progress:
            progress(len(layers), len(layers), "")
        peak = max(peak_start, peak_end) if measure_peak else None
        machine = machine_info(peak)
        machine["peak_gflops_start_end"] = [peak_start, peak_end]
    finally:
        for peer in peers:
            peer.teardown()
        config.set_num_threads(saved_threads)
    for r in results:
        notes += engine_notes(r.layer.name, r.engines, r.reference, settings.tol)
    return BenchRun(
        machine=machine,
        settings=settings,
        layers=results,
        notes=notes,
        peers={peer.name: peer.label for peer in peers},
        wall_s=time.perf_counter() - t_start,
    )


def _run_layer(layer, settings: BenchSettings, peers, wanted) -> LayerResult:
    p = layer.params()
    x, w, b = layer_inputs(layer, settings.seed)
    engines, unsupported = cnnperf_engines(x, w, b, layer)
    engines += [peer.engine(x, w, b, layer) for peer in peers]
    if wanted is not None:
        engines = [e for e in engines if e.name in wanted]
    names = [e.name for e in engines]
    # PyTorch is the oracle of the test suite; ONNX Runtime, then auto, stand in without it.
    reference = next((n for n in ("torch", "ort", "auto") if n in names), None)
    results, ref_used = run_interleaved(
        engines,
        rounds=settings.rounds,
        target_s=settings.target_s,
        min_rounds=settings.min_rounds,
        max_rounds=settings.max_rounds,
        budget_s=settings.budget_s,
        reference=reference,
        tol=settings.tol,
    )
    auto_algo = ops.select_conv_algo(p).name  # after the runs: a tuner may have filled its cache
    if "auto" in results:
        results["auto"].algo = auto_algo
    return LayerResult(layer, p.flops, auto_algo, ref_used, results, unsupported)
