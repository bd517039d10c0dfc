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

The cache is one JSON file, ``tune-v1.json`` in ``config.cache_dir()``, loaded lazily once per
process and kept in memory; each store re-reads the file under a lock and merges (the newer
entry wins a conflict), then writes a temporary file in the same directory and renames it over
the old one. A file that cannot be parsed, or has another schema, is ignored with a
:class:`TuneCacheWarning` and rewritten by the next store; an unwritable directory warns once and
keeps results in memory. Layout::

    {"schema": 1, "entries": {"<key>": {"algo": "im2col", "median_s": {"direct": 0.041,
     "im2col": 0.0027}, "failed": {}, "rounds": 5, "timestamp": "2025-...+00:00", "op": "conv2d",
     "params": {"n": 1, "c_in": 64, ...}, "dtype": "float32", "threads": 2,
     "cpu": "AMD EPYC#1f2e...", "cnnperf": "0.1.0"}}}

A key (:func:`cache_key`) names the op, every ConvParams field, the dtype, the thread count, the
CPU (model name and a hash of its feature flags) and the cnnperf version, so a choice is only
reused where it was measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import platform
import statistics
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import config
from .._version import __version__
from ..shapes import ConvParams
from .conv_algos import CONV_ALGOS, ConvAlgorithm

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

CACHE_FILENAME = "tune-v1.json"
SCHEMA = 1
DEFAULT_ROUNDS = 5
# Norm-relative output error above which a tuned algorithm counts as wrong. DESIGN.md's measured
# fp32 errors (Winograd F(6x6,3x3) <= 2e-5 max-abs relative, FFT norm-relative) sit far below it;
# a broken kernel sits far above.
MAX_REL_ERR = 1e-3


class TuneCacheWarning(UserWarning):
    """The tuning cache could not be read or written; cnnperf carries on without it."""


# --- keys ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def cpu_fingerprint() -> str:
    """``"<model name>#<hash of the feature flags>"`` (from /proc/cpuinfo on Linux)."""
    model = flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if not model and name in ("model name", "hardware", "cpu model"):
                    model = value.strip()
                elif not flags and name in ("flags", "features"):
                    flags = value.strip()
                if model and flags:
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown cpu"
    digest = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:12]
    return f"{model}#{digest}"


@functools.lru_cache(maxsize=4096)
def _key(op: str, p: ConvParams, dtype: str, threads: int) -> str:
    fields = ",".join(f"{f.name}={getattr(p, f.name)}" for f in dataclasses.fields(p))
    return f"{op}|{fields}|{dtype}|threads={threads}|cpu={cpu_fingerprint()}|cnnperf={__version__}"


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype) -> str:
    return np.dtype(dtype).name  # np.dtype("float32") alone costs microseconds


def cache_key(p: ConvParams, dtype="float32", op: str = "conv2d") -> str:
    """The cache key of ``p`` at the current thread count, on this CPU and cnnperf version.

    Example:
        >>> key = cache_key(ConvParams(1, 3, 8, 8, 4, 3, 3))
        >>> key.split("|")[0], key.split("|")[2]
        ('conv2d', 'float32')
        >>> key.split("|")[1]
        'n=1,c_in=3,h=8,w=8,c_out=4,kh=3,kw=3,sh=1,sw=1,pt=0,pb=0,pl=0,pr=0,dh=1,dw=1,g=1'
    """
    return _key(op, p, _dtype_name(dtype), config.get_num_threads())


# --- the cache file ----------------------------------------------------------------------------


def _valid_entry(entry) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("algo"), str)
        and isinstance(entry.get("median_s", {}), dict)
    )


def _read(path: Path) -> tuple[dict, str | None]:
    """``(valid entries, problem or None)``; a missing file is no problem."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return {}, None
    except OSError as e:
        return {}, f"cannot be read ({e})"
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError
        return {}, f"is not valid JSON ({e})"
    if not isinstance(data, dict):
        return {}, f"is not a JSON object (found a {type(data).__name__})"
    schema = data.get("schema")
    if type(schema) is not int or schema != SCHEMA:
        return {}, f"has schema {schema!r}; this cnnperf reads schema {SCHEMA}"
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return {}, "has no 'entries' object"
    good = {k: v for k, v in entries.items() if _valid_entry(v)}
    bad = len(entries) - len(good)
    return good, (f"has {bad} malformed entries (dropped)" if bad else None)


@contextlib.contextmanager
def _dir_lock(directory: Path):
    """Hold an exclusive flock on ``directory`` where the OS offers one (best effort)."""
    fd = None
    try:
        import fcntl

        fd = os.open(directory, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError):
        pass
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _atomic_write_json(path: Path, data) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class TuneCache:
    """The tuned choices stored in one JSON file, loaded lazily once and kept in memory."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._entries: dict[str, dict] | None = None
        self._own: dict[str, dict] = {}  # stored by this process: merged into every write
        self._lock = threading.RLock()
        self._warned_unwritable = False

    def _loaded(self) -> dict[str, dict]:
        if self._entries is None:
            with self._lock:
                if self._entries is None:
                    entries, problem = _read(self.path)
                    if problem is not None:
                        what = "dropping part of" if entries else "ignoring"
                        warnings.warn(
                            f"cnnperf: {what} the tuning cache {self.path}: it {problem}; "
                            "it will be rewritten on the next store",
                            TuneCacheWarning,
                            stacklevel=4,
                        )
                    self._entries = entries
        return self._entries

    def get(self, key: str) -> dict | None:
        """The entry stored under ``key``, or None."""
        return self._loaded().get(key)

    def entries(self) -> dict[str, dict]:
        """A copy of every entry (loading the file on first use)."""
        with self._lock:
            return dict(self._loaded())

    def put(self, key: str, entry: dict) -> bool:
        """Store ``entry`` in memory and in the file; False if the file could not be written.

        The file is re-read under a lock and merged first, so entries another process wrote
        since this one loaded are kept (for the same key, the newer timestamp wins).
        """
        if not _valid_entry(entry):
            raise ValueError(f"a tuning cache entry needs a str 'algo', got {entry!r}")
        with self._lock:
            self._loaded()[key] = entry
            self._own[key] = entry
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with _dir_lock(self.path.parent):
                    merged, _ = _read(self.path)  # a corrupt file is simply replaced
                    for k, v in self._own.items():
                        old = merged.get(k)
                        if old is None or str(v.get("timestamp", "")) >= str(
                            old.get("timestamp", "")
                        ):
                            merged[k] = v
                    _atomic_write_json(self.path, {"schema": SCHEMA, "entries": merged})
            except OSError as e:
                if not self._warned_unwritable:
                    self._warned_unwritable = True
                    warnings.warn(
                        f"cnnperf: cannot write the tuning cache {self.path} ({e}); tuned "
                        "choices are kept in memory for this process only",
                        TuneCacheWarning,
                        stacklevel=3,
                    )
                return False
            self._entries = merged
            return True

    def clear(self) -> bool:
        """Forget every entry and delete the file; True if a file was removed."""
        with self._lock:
            self._entries = {}
            self._own = {}
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
            return True


_cache: TuneCache | None = None
_state_lock = threading.Lock()


def cache_path() -> Path:
    """Where the tuning cache lives: ``config.cache_dir() / "tune-v1.json"``."""
    return config.cache_dir() / CACHE_FILENAME


def get_cache() -> TuneCache:
    """The process's :class:`TuneCache`, at the :func:`cache_path` of its first use.

    The path is resolved once (building it costs ~40 us, too much for every convolution):
    after changing ``CNNPERF_CACHE_DIR`` in a running process, call
    :func:`reset_autotune_state`.
    """
    global _cache
    cache = _cache
    if cache is None:
        with _state_lock:
            if _cache is None:
                _cache = TuneCache(cache_path())
            cache = _cache
    return cache


def clear_cache() -> bool:
    """Delete the tuning cache file and forget its entries; True if a file was removed."""
    return get_cache().clear()


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
    global _cache, _override
    with _state_lock:
        _cache = None
        _override = None
        _untunable.clear()
        _key.cache_clear()
        cpu_fingerprint.cache_clear()


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
