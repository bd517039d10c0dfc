"""A chain of blocked convolutions run in one parallel region: :func:`run_chain`.

MobileNetV2 at batch 1 is 52 blocked convolutions of 0.03-0.15 ms each. Run one parallel
region per layer, each layer paid for waking the sleeping OpenMP threads (about 8 us with
``OMP_WAIT_POLICY=PASSIVE``), for the join at its end, and for the imbalance of a static
split: on the 2-core development machine 50 layers of eight ~2 us tasks took 1.5 ms as
separate regions and 0.44 ms as one chain (an isolated test, interleaved medians of 500).

In the chain every thread walks the same list of layers. It claims a layer's tasks from an
atomic counter (``claim`` at a time) and runs them; a layer starts only when every task of
the layer before it is done (a second counter), so a layer sees all of its inputs written and
may overwrite any buffer the layers before it read (the memory plan's reuse). A thread that
wakes late joins wherever the others are; no thread waits for another's wake-up except at the
region's end. A waiting thread spins SPIN_PAUSES pauses, then yields its core at every poll.
Waiting is only ever for tasks that a running thread has claimed, so a region with fewer
threads than ``threads`` (one thread running every prange iteration in turn) completes too.

A layer is one row of an int64 table (:func:`pointwise_row`, :func:`gemm_row`,
:func:`depthwise_row`, :func:`direct_row`, :func:`global_avg_pool_row`,
:func:`expand_depthwise_row` build them) holding its arrays' addresses: the caller keeps the
arrays alive while the table is used.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .atomics import atomic_add, atomic_load, cpu_pause, f32_view, i64_view, os_yield
from .blocked import (
    depthwise_task,
    direct_conv_task,
    direct_tasks,
    gemm_conv_task,
    global_avg_pool_task,
    pointwise_task,
    pointwise_tasks,
)
from .fused import expand_depthwise_task, expand_depthwise_tasks

__all__ = [
    "run_chain",
    "pointwise_row",
    "gemm_row",
    "depthwise_row",
    "global_avg_pool_row",
    "direct_row",
    "expand_depthwise_row",
    "layer_row",
    "ROW",
    "claim_size",
]

POINTWISE, GEMM, DEPTHWISE, GLOBAL_AVG_POOL, DIRECT, EXPAND_DEPTHWISE = 0, 1, 2, 3, 4, 5
# Pauses a waiting thread spins (tens of microseconds) before it polls with sched_yield()
# instead. Spinning alone made a chain 1.4-2x slower than one region per layer when another
# process kept a core busy (MobileNetV2, batch 8 and 1: a thread waited out its partner's whole
# time slice off the core); with the yield it ran 0.96x (batch 1) and 0.995x (batch 8) of the
# per-layer regions' time under that load, and 0.91x / 1.00x on an idle machine (three compiled
# models in one process, rotating order, medians of 40-80 and 10-15 runs).
SPIN_PAUSES = 1000
# Columns: kind, tasks, claim, then (address, size) of x, w, bias, res, out, offs, w2, bias2,
# scratch, then has_res, then the kind's integer arguments.
_X, _W, _B, _R, _O, _OFFS, _W2, _B2, _S = 3, 5, 7, 9, 11, 13, 15, 17, 19
_HAS_RES, _ARGS = 21, 22
ROW = _ARGS + 19  # direct has the most integer arguments


def claim_size(tasks: int, threads: int) -> int:
    """Tasks a thread claims at a time: about 16 claims per thread per layer (a claim is one
    contended atomic add, ~0.1 us; a depthwise task can be a row of 7 pixels)."""
    return max(1, tasks // (16 * max(1, threads)))


def _row(kind: int, tasks: int, threads: int, arrays: dict, has_res: bool, args) -> np.ndarray:
    row = np.zeros(ROW, np.int64)
    row[0], row[1], row[2] = kind, tasks, claim_size(tasks, threads)
    for col, name in ((_X, "x"), (_W, "w"), (_B, "bias"), (_R, "res"), (_O, "out"),
                      (_OFFS, "offs"), (_W2, "w2"), (_B2, "bias2"), (_S, "scratch")):  # fmt: skip
        a = arrays.get(name)
        if a is None:
            continue
        if not (a.ndim == 1 and a.flags.c_contiguous):
            raise ValueError(f"chain: {name} must be a flat contiguous array")
        row[col], row[col + 1] = a.ctypes.data, a.size
    row[_HAS_RES] = int(has_res)
    row[_ARGS : _ARGS + len(args)] = args
    return row


def pointwise_row(x, w, bias, res, has_res, n, c_in, c_out_blocks, pixels, tile_chunk, splits,
                  offs, lo, hi, out, quad=False, *, threads) -> np.ndarray:  # fmt: skip
    """A chain row for ``blocked.pointwise_blocked(*args)`` (its arguments, in its order)."""
    arrays = dict(x=x, w=w, bias=bias, res=res if has_res else None, out=out, offs=offs)
    tasks = pointwise_tasks(n, pixels, tile_chunk, splits)
    return _row(POINTWISE, tasks, threads, arrays, has_res,
                (n, c_in, c_out_blocks, pixels, tile_chunk, splits, int(quad)))  # fmt: skip


def gemm_row(x, img_stride, offs, row_pitch, col_pitch, ow, w, bias, res, has_res, n,
             c_out_blocks, pixels, tile_chunk, splits, lo, hi, out, w_img_stride=0,
             nchw_out=False, *, threads) -> np.ndarray:  # fmt: skip
    """A chain row for ``blocked.gemm_conv_blocked(*args)`` (its arguments, in its order)."""
    arrays = dict(x=x, w=w, bias=bias, res=res if has_res else None, out=out, offs=offs)
    return _row(GEMM, pointwise_tasks(n, pixels, tile_chunk, splits), threads, arrays, has_res,
                (img_stride, row_pitch, col_pitch, ow, n, c_out_blocks, pixels, tile_chunk,
                 splits, w_img_stride, int(nchw_out)))  # fmt: skip


def depthwise_row(x, w, bias, n, cb, h, wi, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, lo, hi, out,
                  *, threads) -> np.ndarray:  # fmt: skip
    """A chain row for ``blocked.depthwise_blocked(*args)`` (its arguments, in its order)."""
    return _row(DEPTHWISE, n * cb * oh, threads, dict(x=x, w=w, bias=bias, out=out), False,
                (n, cb, h, wi, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow))  # fmt: skip


def global_avg_pool_row(x, n, cb, pixels, out, *, threads) -> np.ndarray:
    """A chain row for ``blocked.global_avg_pool_blocked(*args)`` (its arguments)."""
    return _row(GLOBAL_AVG_POOL, n * cb, threads, dict(x=x, out=out), False, (pixels,))


def direct_row(x, img_stride, c_in, h, w, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, wt, bias, res,
               has_res, n, c_out_blocks, rows, splits, lo, hi, out, nchw_out, *,
               threads) -> np.ndarray:  # fmt: skip
    """A chain row for ``blocked.direct_conv_blocked(*args)`` (its arguments, in its order)."""
    arrays = dict(x=x, w=wt, bias=bias, res=res if has_res else None, out=out)
    return _row(DIRECT, direct_tasks(n, oh, rows, splits), threads, arrays, has_res,
                (img_stride, c_in, h, w, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, n, c_out_blocks,
                 rows, splits, int(nchw_out)))  # fmt: skip


def expand_depthwise_row(x, wp, biasp, offs, n, c_in, cb, h, wi, wd, biasd, kh, kw, sh, sw, pt,
                         pl, dh, dw, oh, ow, band_rows, lo1, hi1, lo2, hi2, scratch, slot_size,
                         out, *, threads) -> np.ndarray:  # fmt: skip
    """A chain row for ``fused.expand_depthwise_blocked(*args)`` (its arguments, in its order;
    the clamps go to :func:`run_chain`'s ``clamps``)."""
    arrays = dict(x=x, w=wp, bias=biasp, offs=offs, w2=wd, bias2=biasd, scratch=scratch, out=out)
    return _row(EXPAND_DEPTHWISE, expand_depthwise_tasks(n, cb, oh, band_rows), threads, arrays,
                False, (n, c_in, cb, h, wi, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, band_rows,
                        slot_size))  # fmt: skip


# kernel name -> the row builder taking that kernel's arguments
_BUILDERS = {
    "pointwise_blocked": pointwise_row,
    "gemm_conv_blocked": gemm_row,
    "depthwise_blocked": depthwise_row,
    "global_avg_pool_blocked": global_avg_pool_row,
    "direct_conv_blocked": direct_row,
    "expand_depthwise_blocked": expand_depthwise_row,
}


def layer_row(kernel, args: tuple, threads: int) -> np.ndarray:
    """The chain row of the call ``kernel(*args)`` (one of ``kernels.blocked``'s kernels)."""
    return _BUILDERS[kernel.__name__](*args, threads=threads)


@njit(parallel=True, cache=True, error_model="numpy")
def run_chain(table, clamps, sync, threads):  # pragma: no cover - compiled
    """Run the layers of ``table`` (rows from the ``*_row`` builders) in order, in one
    parallel region of ``threads`` prange iterations.

    Args:
        table: (layers, ROW) int64.
        clamps: (layers, 4) float64, each layer's (lo, hi) and, for a fused expansion and
            depthwise conv, the depthwise conv's (lo, hi); (lo, hi) of the expansion.
        sync: (2 * layers,) int64, zeros: per layer, the next task to claim and the tasks
            done. Left at (tasks + claims, tasks) per layer: zero it before the next run.
        threads: prange iterations (the threads expected to share the work).
    """
    layers = table.shape[0]
    for _ in prange(threads):
        for i in range(layers):
            if i > 0:
                before = table[i - 1, 1]
                spins = 0
                while atomic_load(sync, 2 * i - 1) < before:
                    if spins < SPIN_PAUSES:
                        cpu_pause()
                        spins += 1
                    else:  # the partner may be off its core: let the OS run something else
                        os_yield()
            _run_layer(table[i], clamps[i], sync, 2 * i)


@njit(cache=True, error_model="numpy")
def _run_layer(row, clamp, sync, at):  # pragma: no cover - compiled
    """Claim and run tasks of one layer until none are left (sync[at]: next task,
    sync[at + 1]: tasks done)."""
    kind, tasks, claim = row[0], row[1], row[2]
    lo, hi = clamp[0], clamp[1]
    x = f32_view(row[_X], row[_X + 1])
    w = f32_view(row[_W], row[_W + 1])
    bias = f32_view(row[_B], row[_B + 1])
    out = f32_view(row[_O], row[_O + 1])
    has_res = row[_HAS_RES] != 0
    res = f32_view(row[_R], row[_R + 1]) if has_res else out
    offs = i64_view(row[_OFFS], row[_OFFS + 1])
    a = row[_ARGS:]
    while True:
        t0 = atomic_add(sync, at, claim)
        if t0 >= tasks:
            return
        t1 = min(tasks, t0 + claim)
        for task in range(t0, t1):
            if kind == POINTWISE:
                pointwise_task(task, x, w, bias, res, has_res, a[0], a[1], a[2], a[3], a[4],
                               a[5], offs, lo, hi, out, a[6] != 0)  # fmt: skip
            elif kind == GEMM:
                gemm_conv_task(task, x, a[0], offs, a[1], a[2], a[3], w, bias, res, has_res,
                               a[4], a[5], a[6], a[7], a[8], lo, hi, out, a[9],
                               a[10] != 0)  # fmt: skip
            elif kind == DIRECT:
                direct_conv_task(task, x, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8],
                                 a[9], a[10], a[11], a[12], a[13], w, bias, res, has_res, a[14],
                                 a[15], a[16], a[17], lo, hi, out, a[18] != 0)  # fmt: skip
            elif kind == EXPAND_DEPTHWISE:
                expand_depthwise_task(task, x, w, bias, offs, a[0], a[1], a[2], a[3], a[4],
                                      f32_view(row[_W2], row[_W2 + 1]),
                                      f32_view(row[_B2], row[_B2 + 1]), a[5], a[6], a[7], a[8],
                                      a[9], a[10], a[11], a[12], a[13], a[14], a[15], lo, hi,
                                      clamp[2], clamp[3], f32_view(row[_S], row[_S + 1]), a[16],
                                      out)  # fmt: skip
            elif kind == GLOBAL_AVG_POOL:
                global_avg_pool_task(task, x, a[0], out)
            else:
                depthwise_task(task, x, w, bias, a[0], a[1], a[2], a[3], a[4], a[5], a[6],
                               a[7], a[8], a[9], a[10], a[11], a[12], a[13], lo, hi,
                               out)  # fmt: skip
        atomic_add(sync, at + 1, t1 - t0)
