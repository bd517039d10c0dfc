"""Numba kernels, one module per algorithm family.

Kernels take contiguous arrays (already padded where needed) and write into ``out`` arrays they
are given; they know nothing of argument forms, Tensors or Modules. Numba is imported only in
this package, and only when a kernel is first needed, so ``import cnnperf`` stays light.
"""

from __future__ import annotations

import os

import numba

from .. import config

# Numba's OpenMP layer spin-waits after a parallel region while OpenBLAS's pthreads spin for the
# next GEMM; on 2 cores the two pools then fight (see DESIGN.md, "Known pitfalls"). The
# workqueue layer parks its threads. A user's explicit NUMBA_THREADING_LAYER wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

# fastmath without "nnan"/"ninf": reductions may be reassociated and vectorised, but NaN and Inf
# still propagate exactly as IEEE arithmetic says.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def sync_threads() -> None:
    """Make Numba's thread count (thread-local in Numba) match ``config.get_num_threads()``."""
    n = min(config.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)


def _on_threads_changed(n: int) -> None:
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


config._thread_listeners.append(_on_threads_changed)
