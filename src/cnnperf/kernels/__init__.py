"""Numba kernels, one module per algorithm family.

Kernels take contiguous arrays (already padded where needed) and write into ``out`` arrays they
are given; they know nothing of argument forms, Tensors or Modules. Numba is imported only in
this package, and only when a kernel is first needed, so ``import cnnperf`` stays light.
"""

from __future__ import annotations

import os
import threading

import numba

from .. import config

# Threading layer (measured on the 2-core development machine, see DESIGN.md "Known pitfalls"):
# - workqueue: no thread spins, but a parallel region on these short kernels ran no faster on
#   2 threads than on 1 (depthwise 3x3 144x56x56: 0.33 ms either way; im2col 1.6 ms);
# - OpenMP with its default (spinning) wait policy: kernels 2x faster (0.15 / 0.8 ms), but an
#   im2col + sgemm + depthwise sequence took 8.0 ms instead of 3.9: the idle OpenMP threads spin
#   while OpenBLAS runs (the sgemm alone went from 1.5 to 5.9 ms);
# - OpenMP with OMP_WAIT_POLICY=PASSIVE: fast kernels and 3.9 ms for the sequence.
# So: prefer OpenMP, and make its threads wait passively unless the user chose a policy. The
# variable is set only while Numba starts its pool (libgomp reads it once, at start-up) and then
# restored. libgomp is one shared library per process: if PyTorch is loaded, it shares the same
# pool and wait policy (measured effect on PyTorch's conv2d: 0-8% slower, within noise).
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]


def _start_thread_pool() -> None:
    set_policy = "OMP_WAIT_POLICY" not in os.environ
    if set_policy:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from numba.np.ufunc import parallel

        parallel._launch_threads()
    except Exception:  # pragma: no cover - Numba internals moved: it starts lazily instead
        pass
    finally:
        if set_policy:
            os.environ.pop("OMP_WAIT_POLICY", None)


_start_thread_pool()

# fastmath without "nnan"/"ninf": reductions may be reassociated and vectorised, but NaN and Inf
# still propagate exactly as IEEE arithmetic says.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


_synced = threading.local()


def sync_threads() -> None:
    """Make Numba's thread count (thread-local in Numba) match ``config.get_num_threads()``.

    The count last set on this thread is remembered, so the common call costs one comparison
    (0.2 us; asking Numba took 1.5 us, paid by every kernel call of a compiled graph; measured
    over 100,000 calls). cnnperf owns the
    count: a ``numba.set_num_threads`` made elsewhere on the thread is seen only when
    ``config.set_num_threads`` changes.
    """
    want = config.get_num_threads()
    if getattr(_synced, "n", None) == want:
        return
    n = min(want, numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    _synced.n = want


def _on_threads_changed(n: int) -> None:
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    _synced.n = n


config._thread_listeners.append(_on_threads_changed)
