"""Process-wide settings: thread count and environment knobs.

Environment variables (read once, at import):

- ``CNNPERF_NUM_THREADS``: default thread count for Numba kernels and the BLAS pool
  (default: the number of cores this process may run on).
- ``CNNPERF_ALGO``: force a convolution algorithm (``"direct"``, ``"im2col"``) wherever
  ``algo="auto"`` is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["get_num_threads", "set_num_threads", "forced_algo", "available_cores"]


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
