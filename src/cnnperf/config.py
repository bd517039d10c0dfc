"""Process-wide settings: thread count and environment knobs.

Environment variables (``CNNPERF_NUM_THREADS`` is read once, at import; the others at each
use):

- ``CNNPERF_NUM_THREADS``: default thread count for Numba kernels and the BLAS pool
  (default: the number of cores this process may run on).
- ``CNNPERF_ALGO``: force a convolution algorithm (``"direct"``, ``"im2col"``) wherever
  ``algo="auto"`` is used.
- ``CNNPERF_TUNE``: ``1`` (also ``true``/``yes``/``on``) turns the autotuner on: the first
  ``algo="auto"`` convolution of each shape times every algorithm that covers it and stores the
  fastest in the tuning cache (see :mod:`cnnperf.ops.autotune`); ``0`` or unset leaves it off.
  ``cnnperf.tune()`` overrides it in code. Tuned choices already in the cache are used either
  way.
- ``CNNPERF_CACHE_DIR``: the directory of the tuning cache (``tune-v1.json``). Default:
  ``$XDG_CACHE_HOME/cnnperf``, else ``~/.cache/cnnperf`` (``cnnperf`` under ``LOCALAPPDATA``
  on Windows). Read when the tuning cache is first used (again after
  ``cnnperf.ops.autotune.reset_autotune_state()``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "get_num_threads",
    "set_num_threads",
    "forced_algo",
    "available_cores",
    "tune_from_env",
    "cache_dir",
]


def available_cores() -> int:
    """Number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _initial_threads() -> int:
    raw = os.environ.get("CNNPERF_NUM_THREADS")
    if raw is None or raw.strip() == "":
        return available_cores()
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"CNNPERF_NUM_THREADS={raw!r} is not an integer") from None
    if n < 1:
        raise ValueError(f"CNNPERF_NUM_THREADS={raw!r} must be >= 1")
    return min(n, available_cores())


_num_threads = _initial_threads()
_blas_limiter = None
# Called with the new thread count; the kernels layer registers itself here so that this
# module never imports Numba (importing cnnperf stays light).
_thread_listeners: list[Callable[[int], None]] = []


def get_num_threads() -> int:
    """Threads used by cnnperf's Numba kernels and by the BLAS library behind NumPy."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the threads used by both Numba kernels and the BLAS pool.

    Both pools get the same count, so a kernel that alternates Numba loops with BLAS calls
    never runs more threads than ``n`` at once.

    Args:
        n: 1 <= n <= the number of cores this process may run on.

    Example:
        >>> import cnnperf
        >>> cnnperf.set_num_threads(1)
        >>> cnnperf.get_num_threads()
        1
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"set_num_threads expects an int, got {n!r}")
    cores = available_cores()
    if not 1 <= n <= cores:
        raise ValueError(
            f"set_num_threads: n={n} must be between 1 and {cores} (the cores available)"
        )
    _num_threads = n
    _apply_blas_threads(n)
    for listener in _thread_listeners:
        listener(n)


def _apply_blas_threads(n: int) -> None:
    global _blas_limiter
    from threadpoolctl import threadpool_limits

    _blas_limiter = threadpool_limits(limits=n, user_api="blas")


def blas_num_threads() -> int | None:
    """Threads the BLAS pool is currently set to (None if no BLAS library was found)."""
    from threadpoolctl import threadpool_info

    counts = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    return max(counts) if counts else None


def forced_algo() -> str | None:
    """The algorithm named by ``CNNPERF_ALGO``, or None."""
    value = os.environ.get("CNNPERF_ALGO", "").strip()
    return value or None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def tune_from_env() -> bool:
    """Whether ``CNNPERF_TUNE`` turns the autotuner on (an unknown value raises ValueError)."""
    raw = os.environ.get("CNNPERF_TUNE", "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"CNNPERF_TUNE={raw!r} must be 1 or 0 (or true/false, yes/no, on/off)")


def cache_dir() -> Path:
    """The directory for cnnperf's on-disk caches (``CNNPERF_CACHE_DIR`` or the user cache)."""
    explicit = os.environ.get("CNNPERF_CACHE_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg:
        return Path(xdg).expanduser() / "cnnperf"
    local = os.environ.get("LOCALAPPDATA", "").strip()
    if sys.platform == "win32" and local:  # pragma: no cover - Windows
        return Path(local) / "cnnperf"
    return Path.home() / ".cache" / "cnnperf"
