"""The tuning cache: one versioned JSON file of the fastest algorithm per convolution shape.

The file is ``tune-v1.json`` in ``config.cache_dir()`` (``CNNPERF_CACHE_DIR`` overrides it),
loaded lazily once per process and kept in memory; each store re-reads the file under a lock and
merges (the newer entry wins a conflict), then writes a temporary file in the same directory and
renames it over the old one. A file that cannot be parsed, or has another schema, is ignored
with a :class:`TuneCacheWarning` and rewritten by the next store; an unwritable directory warns
once and keeps results in memory. Layout::

    {"schema": 1, "entries": {"<key>": {"algo": "im2col", "median_s": {"direct": 0.041,
     "im2col": 0.0027}, "failed": {}, "rounds": 5, "timestamp": "2025-...+00:00", "op": "conv2d",
     "params": {"n": 1, "c_in": 64, ...}, "dtype": "float32", "threads": 2,
     "cpu": "AMD EPYC#1f2e...", "cnnperf": "0.1.0"}}}

A key (:func:`cache_key`) names the op, every ConvParams field, the dtype, the thread count, the
CPU (model name and a hash of its feature flags) and the cnnperf version, so a choice is only
reused where it was measured. :mod:`cnnperf.ops.autotune` fills the cache and reads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import platform
import threading
import warnings
from pathlib import Path

import numpy as np

from .. import config
from .._atomic import atomic_write_bytes
from .._version import __version__
from ..shapes import ConvParams

__all__ = [
    "CACHE_FILENAME",
    "SCHEMA",
    "TuneCache",
    "TuneCacheWarning",
    "cache_key",
    "cache_path",
    "clear_cache",
    "cpu_fingerprint",
    "get_cache",
    "reset_cache_state",
]

CACHE_FILENAME = "tune-v1.json"
SCHEMA = 1


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
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


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


def reset_cache_state() -> None:
    """Forget the in-memory cache, its path and the memoised keys, as in a fresh process."""
    global _cache
    with _state_lock:
        _cache = None
        _key.cache_clear()
        cpu_fingerprint.cache_clear()
