"""The convolution autotuner: time every algorithm that covers a shape, remember the fastest.

``select_conv_algo(p)`` goes: explicit ``algo=``, ``CNNPERF_ALGO``, the tuned choice stored for
this shape (:func:`tuned_conv_algo`), the heuristic. When tuning is on (``CNNPERF_TUNE=1``,
``cnnperf.tune(enabled=True)`` or inside ``with cnnperf.tune():``), a shape with no stored choice
is tuned on the spot: every algorithm whose ``why_not(p)`` is None runs once as a warm-up (the
first call may compile) and its output is checked against im2col's, then all of them run in
``rounds`` interleaved rounds; the lowest median wins. Tuning uses synthetic data of the real
shape (standard normal input, He-scaled weight, no bias, no activation), so it needs no arrays
and never touches the caller's. An algorithm that raises, or whose output disagrees with
im2col's, is skipped and recorded in ``failed``.

Results persist in the tuning cache (:mod:`cnnperf.ops.tune_cache`: one versioned JSON file,
keyed by op, shape, dtype, threads, CPU and version, written atomically); its public names are
re-exported here.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from .. import config
from .._version import __version__
from ..shapes import ConvParams
from .conv_algos import CONV_ALGOS, ConvAlgorithm
from .tune_cache import (
    CACHE_FILENAME,
    SCHEMA,
    TuneCache,
    TuneCacheWarning,
    cache_key,
    cache_path,
    clear_cache,
    cpu_fingerprint,
    get_cache,
    reset_cache_state,
)

__all__ = [
    "CACHE_FILENAME",
    "SCHEMA",
    "TuneCache",
    "TuneCacheWarning",
    "TuneResult",
    "TuneSwitch",
    "cache_key",
    "cache_path",
    "clear_cache",
    "cpu_fingerprint",
    "get_cache",
    "reset_autotune_state",
    "tune",
    "tune_conv2d",
    "tune_conv_params",
    "tuned_conv_algo",
    "tuning_enabled",
]

DEFAULT_ROUNDS = 5
# Norm-relative output error above which a tuned algorithm counts as wrong. DESIGN.md's measured
# fp32 errors (Winograd F(6x6,3x3) <= 2e-5 max-abs relative, FFT norm-relative) sit far below it;
# a broken kernel sits far above.
MAX_REL_ERR = 1e-3


# --- switching tuning on and off ---------------------------------------------------------------

_override: bool | None = None
_untunable: set[str] = set()  # keys where no algorithm ran: not retried in this process


class TuneSwitch:
    """What :func:`tune` returns: leaving its ``with`` block restores the previous setting."""

    def __init__(self, previous: bool | None):
        self._previous = previous

    def __enter__(self) -> TuneSwitch:
        return self

    def __exit__(self, *exc) -> None:
        global _override
        _override = self._previous


def tune(enabled: bool = True) -> TuneSwitch:
    """Turn autotuning on (or off) for this process; as a context manager, for a block.

    Overrides ``CNNPERF_TUNE``. While on, the first ``algo="auto"`` convolution of each new
    shape times every algorithm that covers it and stores the fastest (see the module notes).

    Example:
        >>> import cnnperf
        >>> with cnnperf.tune():
        ...     cnnperf.ops.autotune.tuning_enabled()
        True
        >>> with cnnperf.tune(enabled=False):
        ...     cnnperf.ops.autotune.tuning_enabled()
        False
    """
    global _override
    previous = _override
    _override = bool(enabled)
    return TuneSwitch(previous)


def tuning_enabled() -> bool:
    """Whether a cache miss is tuned now: :func:`tune`'s setting, else ``CNNPERF_TUNE``."""
    return _override if _override is not None else config.tune_from_env()


def reset_autotune_state() -> None:
    """Forget the in-memory cache, its path and the :func:`tune` setting, as in a fresh
    process (tests call this after pointing ``CNNPERF_CACHE_DIR`` somewhere else)."""
    global _override
    reset_cache_state()
    _override = None
    _untunable.clear()


# --- tuning ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneResult:
    """One tuning run. ``times`` are median seconds per algorithm that ran to the end;
    ``failed`` says why an algorithm was dropped (it raised, or its output was wrong);
    ``skipped`` gives ``why_not(p)`` for algorithms that do not cover the shape."""

    params: ConvParams
    dtype: str
    threads: int
    chosen: str | None
    times: dict[str, float]
    failed: dict[str, str]
    skipped: dict[str, str]
    rounds: int
    key: str

    def to_entry(self) -> dict:
        """This result as a cache entry (see the module notes)."""
        return {
            "algo": self.chosen,
            "median_s": dict(self.times),
            "failed": dict(self.failed),
            "rounds": self.rounds,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "op": "conv2d",
            "params": dataclasses.asdict(self.params),
            "dtype": self.dtype,
            "threads": self.threads,
            "cpu": cpu_fingerprint(),
            "cnnperf": __version__,
        }


def _synthetic(p: ConvParams, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((p.n, p.c_in, p.h, p.w), dtype=np.float32).astype(dtype)
    fan_in = (p.c_in // p.g) * p.kh * p.kw
    w = rng.standard_normal((p.c_out, p.c_in // p.g, p.kh, p.kw), dtype=np.float32)
    return x, (w * np.float32((2.0 / fan_in) ** 0.5)).astype(dtype)


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def tune_conv_params(
    p: ConvParams, dtype="float32", rounds: int = DEFAULT_ROUNDS, algos=None
) -> TuneResult:
    """Time the algorithms in ``algos`` (default: all registered) on ``p``; store nothing."""
    from .conv import conv2d

    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"tune: rounds must be a positive int, got {rounds!r}")
    dtype = np.dtype(dtype)
    names = list(CONV_ALGOS) if algos is None else list(algos)
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    candidates = []
    for name in names:
        if name not in CONV_ALGOS:
            raise ValueError(f"tune: unknown algorithm {name!r}; choose from {sorted(CONV_ALGOS)}")
        try:
            reason = CONV_ALGOS[name].why_not(p)
        except Exception as e:
            failed[name] = f"why_not raised {_describe(e)}"
            continue
        if reason is None:
            candidates.append(name)
        else:
            skipped[name] = reason
    x, w = _synthetic(p, dtype)
    kwargs = dict(
        stride=(p.sh, p.sw),
        padding=((p.pt, p.pb), (p.pl, p.pr)),
        dilation=(p.dh, p.dw),
        groups=p.g,
    )
    # Warm-up, im2col first: its output is the reference the others must match.
    candidates.sort(key=lambda name: name != "im2col")
    ref = None
    alive = []
    for name in candidates:
        try:
            y = conv2d(x, w, algo=name, **kwargs).astype(np.float64)
        except Exception as e:
            failed[name] = _describe(e)
            continue
        if ref is None:
            ref_name, ref, scale = name, y, float(np.linalg.norm(y)) or 1.0
        else:
            err = float(np.linalg.norm(y - ref)) / scale
            if not err <= MAX_REL_ERR:  # also catches NaN
                failed[name] = f"output differs from {ref_name!r} by {err:.1e} (norm-relative)"
                continue
        alive.append(name)
    del ref
    samples: dict[str, list[float]] = {name: [] for name in alive}
    for r in range(rounds):
        # Interleaved, rotating the order, so drift in machine load hits every algorithm.
        k = r % len(alive) if alive else 0
        for name in alive[k:] + alive[:k]:
            if name not in samples:
                continue
            t0 = time.perf_counter()
            try:
                conv2d(x, w, algo=name, **kwargs)
            except Exception as e:
                failed[name] = _describe(e)
                del samples[name]
                continue
            samples[name].append(time.perf_counter() - t0)
    times = {name: statistics.median(s) for name, s in samples.items()}
    chosen = min(times, key=times.__getitem__) if times else None
    return TuneResult(
        params=p,
        dtype=dtype.name,
        threads=config.get_num_threads(),
        chosen=chosen,
        times=times,
        failed=failed,
        skipped=skipped,
        rounds=rounds,
        key=cache_key(p, dtype),
    )


def tune_conv2d(
    x_shape,
    w_shape,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    *,
    rounds: int = DEFAULT_ROUNDS,
    dtype="float32",
    algos=None,
    store: bool = True,
) -> TuneResult:
    """Time every algorithm that covers a convolution and (``store=True``) cache the fastest.

    Always measures, even when the cache already has an entry, which it then replaces.

    Args:
        x_shape: input shape (n, c_in, h, w).
        w_shape: weight shape (c_out, c_in/groups, kh, kw).
        stride, padding, dilation, groups: as for :func:`cnnperf.ops.conv2d`.
        rounds: interleaved timed rounds after one warm-up call per algorithm.
        dtype: of the synthetic data (float32, the native type, by default).
        algos: names to time (default: every registered algorithm).
        store: write the choice to the tuning cache.

    Example:
        >>> r = tune_conv2d((1, 4, 8, 8), (4, 4, 3, 3), padding=1, rounds=1, store=False)
        >>> r.chosen in r.times
        True
    """
    from .conv import conv_params

    if len(x_shape) != 4:
        raise ValueError(f"tune_conv2d: x_shape must be (n, c_in, h, w), got {tuple(x_shape)}")
    p = conv_params(
        tuple(x_shape), tuple(w_shape), stride, padding, dilation, groups, "tune_conv2d"
    )
    result = tune_conv_params(p, dtype, rounds, algos)
    if store and result.chosen is not None:
        get_cache().put(result.key, result.to_entry())
    return result


def _covers(algo: ConvAlgorithm, p: ConvParams) -> bool:
    try:
        return algo.why_not(p) is None
    except Exception:
        return False


def tuned_conv_algo(p: ConvParams, dtype="float32") -> ConvAlgorithm | None:
    """The cached choice for ``p``; on a miss, tune it if tuning is on; otherwise None.

    A cached name that is no longer registered, or no longer covers ``p``, counts as a miss.
    """
    if p.n == 0:
        return None
    key = cache_key(p, dtype)
    cache = get_cache()
    entry = cache.get(key)
    if entry is not None:
        algo = CONV_ALGOS.get(entry["algo"])
        if algo is not None and _covers(algo, p):
            return algo
    if key in _untunable or not tuning_enabled():
        return None
    result = tune_conv_params(p, dtype)
    if result.chosen is None:
        _untunable.add(key)
        return None
    cache.put(key, result.to_entry())
    return CONV_ALGOS[result.chosen]
