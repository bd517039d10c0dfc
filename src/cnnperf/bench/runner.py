"""Timing: every engine of one layer in one process, interleaved, after a warm-up call each.

Each round runs every engine once, starting one engine later than the round before (rotating
order), so a drift in machine load or a slow neighbour hits every engine alike. The first call
(JIT compilation, weight preparation, allocator warm-up) is timed separately and kept out of
the rounds; its output is checked against the reference engine's.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "engine_notes",
    "Engine",
    "EngineResult",
    "run_interleaved",
    "rotated",
    "norm_rel_err",
]


@dataclass
class Engine:
    """Something that computes the layer's output: a cnnperf algorithm, ``auto`` or a peer.

    Args:
        name: short column name ("im2col", "auto", "torch", "ort").
        fn: computes the whole layer and returns the output as an array.
        kind: "cnnperf" or "peer".
        label: long name for reports ("cnnperf im2col", "PyTorch 2.13.0").
        algo: the cnnperf algorithm that runs (for ``auto``: the one it picked).
    """

    name: str
    fn: Callable[[], np.ndarray]
    kind: str = "cnnperf"
    label: str = ""
    algo: str | None = None


@dataclass
class EngineResult:
    """Raw numbers of one engine on one layer (seconds)."""

    name: str
    kind: str
    label: str
    algo: str | None = None
    first_call_s: float | None = None
    times_s: list[float] = field(default_factory=list)
    rel_err: float | None = None
    ok: bool | None = None
    error: str | None = None
    note: str | None = None

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.times_s) if self.times_s else None

    @property
    def min_s(self) -> float | None:
        return min(self.times_s) if self.times_s else None

    @property
    def timed(self) -> bool:
        """Whether the engine has a median (it ran without raising)."""
        return bool(self.times_s) and self.error is None


def rotated(items: list, r: int) -> list:
    """``items`` starting at index ``r mod len``: the order of round ``r``.

    Example:
        >>> rotated(["a", "b", "c"], 1)
        ['b', 'c', 'a']
    """
    if not items:
        return []
    k = r % len(items)
    return items[k:] + items[:k]


def norm_rel_err(actual, expected) -> float:
    """``||actual - expected||_2 / ||expected||_2`` in float64 (inf on a shape mismatch or NaN).

    Norm-relative, not element-wise: FFT and Winograd errors spread over the output.
    """
    a = np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape:
        return math.inf
    diff = np.linalg.norm((a.astype(np.float64) - e.astype(np.float64)).ravel())
    scale = np.linalg.norm(e.astype(np.float64).ravel())
    if not np.isfinite(diff):
        return math.inf
    return float(diff / scale) if scale > 0 else float(diff)


def _call(clock, fn):
    t0 = clock()
    y = fn()
    return clock() - t0, y


def run_interleaved(
    engines: list[Engine],
    *,
    rounds: int | None = None,
    target_s: float = 0.3,
    min_rounds: int = 5,
    max_rounds: int = 200,
    budget_s: float = 2.0,
    reference: str | None = None,
    tol: float = 1e-4,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, EngineResult], str | None]:
    """Warm up, check and time ``engines`` in interleaved rounds.

    Each round runs, in rotating order, every engine that still needs samples. An engine is
    done after ``rounds`` calls when given; otherwise (adaptive) once its timed calls add up to
    ``target_s`` and it has ``min_rounds`` of them, or after ``max_rounds``. An engine whose
    timed calls add up to ``budget_s`` stops early (it always gets one); ``note`` says so.

    Args:
        engines: in column order; names must be unique.
        reference: the engine every output is compared with (falls back to the first engine
            that ran when it is missing or fails).
        tol: largest accepted :func:`norm_rel_err` against the reference.
        clock: the timer (tests inject a fake one).

    Returns:
        ``({name: EngineResult} in engine order, name of the reference engine used)``.
    """
    names = [e.name for e in engines]
    if len(set(names)) != len(names):
        raise ValueError(f"engine names must be unique, got {names}")
    results = {e.name: EngineResult(e.name, e.kind, e.label or e.name, e.algo) for e in engines}
    # First calls, reference first: its output is the one every other output is checked against.
    order = sorted(engines, key=lambda e: e.name != reference)
    ref_name: str | None = None
    ref_out = None
    for e in order:
        res = results[e.name]
        try:
            res.first_call_s, y = _call(clock, e.fn)
        except Exception as exc:  # an engine failing must not stop the others
            res.error = f"{type(exc).__name__}: {exc}"
            continue
        if ref_out is None:
            ref_name, ref_out = e.name, np.asarray(y)
        res.rel_err = norm_rel_err(y, ref_out)
        res.ok = res.rel_err <= tol
        del y
    del ref_out

    wanted = rounds if rounds is not None else min_rounds
    spent = {e.name: 0.0 for e in engines}

    def done(name: str) -> bool:
        n, t = len(results[name].times_s), spent[name]
        if results[name].error is not None or (n >= 1 and t >= budget_s):
            return True
        if rounds is not None:
            return n >= rounds
        return n >= max_rounds or (n >= min_rounds and t >= target_s)

    r = 0
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        while True:
            active = [e for e in engines if not done(e.name)]
            if not active:
                break
            for e in rotated(active, r):
                res = results[e.name]
                try:
                    t, _ = _call(clock, e.fn)
                except Exception as exc:
                    res.error = f"{type(exc).__name__}: {exc}"
                    continue
                res.times_s.append(t)
                spent[e.name] += t
            r += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    for name, res in results.items():
        n = len(res.times_s)
        if res.error is None and 0 < n < wanted:
            res.note = (
                f"{n} of {wanted} rounds: over its {budget_s:g} s budget "
                f"({spent[name]:.2f} s timed)"
            )
    return results, ref_name


def engine_notes(name: str, engines, reference: str | None, tol: float) -> list[str]:
    """One line per engine of the benchmark entry ``name`` that failed, whose output differs
    from ``reference``'s by more than ``tol`` (norm-relative), or that carries a note."""
    notes = []
    for res in engines.values():
        if res.error:
            notes.append(f"{name}: {res.label} failed: {res.error}")
        elif res.ok is False:
            notes.append(
                f"{name}: {res.label} output differs from {reference}'s by "
                f"{res.rel_err:.2e} (norm-relative, tolerance {tol:g})"
            )
        if res.note:
            notes.append(f"{name}: {res.label}: {res.note}")
    return notes
