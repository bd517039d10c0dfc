"""Chains of bound blocked convolutions run in one parallel region (ops.run_chained,
kernels/chain.py): each chain computes bit for bit what its layers' own bound calls compute, in
order (a layer reads what the layer before it wrote, a residual what an earlier layer wrote,
and a layer may overwrite a buffer an earlier layer read), at any thread count, and also when
fewer threads run the region than its work was split for."""

from __future__ import annotations

import numpy as np
import pytest

import cnnperf
from cnnperf.kernels import chain
from cnnperf.ops.conv_blocked import (
    BlockedConv2d,
    ChainLayer,
    bind_global_avg_pool2d_blocked,
    global_avg_pool2d_blocked,
    run_chained,
)


def _layers(batch: int, seed: int = 0):
    """An inverted residual block and a stem, bound on fixed buffers: (bound runs, input, the
    buffers that hold the results)."""
    rng = np.random.default_rng(seed)

    def weight(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.3

    stem = BlockedConv2d(weight(16, 3, 3, 3), weight(16), stride=2, activation="relu6",
                         input_layout="nchw", input_shape=(batch, 3, 11, 9))  # fmt: skip
    expand = BlockedConv2d(weight(48, 16, 1, 1), weight(48), activation="relu6",
                           input_shape=(batch, 16, 5, 4))  # fmt: skip
    dw = BlockedConv2d(weight(48, 1, 3, 3), weight(48), padding=1, groups=48,
                       activation="relu6", input_shape=(batch, 48, 5, 4))  # fmt: skip
    project = BlockedConv2d(weight(16, 48, 1, 1), weight(16), input_shape=(batch, 48, 5, 4))
    x = rng.standard_normal((batch, 3, 11, 9)).astype(np.float32)
    a = np.empty((batch, 2, 5, 4, 8), np.float32)  # stem output, then the residual
    b = np.empty((batch, 6, 5, 4, 8), np.float32)  # expand, and again the projection's output
    c = np.empty((batch, 6, 5, 4, 8), np.float32)
    d = np.empty((batch, 2, 5, 4, 8), np.float32)
    e = np.empty((batch, 48, 1, 1), np.float32)
    runs = [
        stem.bind(x, a),
        expand.bind(a, b),
        dw.bind(b, c),
        project.bind(c, d, residual=a),  # reads the stem's output
        expand.bind(d, b),  # overwrites b, which dw read
        dw.bind(b, c),
        bind_global_avg_pool2d_blocked(c, e),
    ]
    return runs, x, (a, b, c, d, e)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_chain_computes_what_its_layers_compute_one_by_one(batch, threads):
    saved = cnnperf.get_num_threads()
    cnnperf.set_num_threads(threads)
    try:
        runs, _, bufs = _layers(batch)
        assert all(r is not None and r.chain_layer is not None for r in runs)
        for r in runs:
            r()
        expected = [buf.copy() for buf in bufs]
        for buf in bufs:
            buf.fill(np.nan)
        chained = run_chained([r.chain_layer for r in runs])
        for _ in range(3):  # the counters are reset for every run
            chained()
            for got, want in zip(bufs, expected, strict=True):
                np.testing.assert_array_equal(got, want)
            bufs[2].fill(np.nan)
    finally:
        cnnperf.set_num_threads(saved)


def test_a_chain_reads_its_input_arrays_when_it_runs():
    runs, x, bufs = _layers(2)
    chained = run_chained([r.chain_layer for r in runs])
    chained()
    first = bufs[2].copy()
    x *= -1.5
    chained()
    assert not np.array_equal(bufs[2], first)
    for r in runs:
        r()
    again = bufs[2].copy()
    chained()
    np.testing.assert_array_equal(bufs[2], again)


def test_a_chain_split_for_more_threads_than_run_it_completes():
    """Every thread only ever waits for tasks another running thread claimed: with 8 prange
    iterations over the machine's threads (some running several in turn) it finishes."""
    runs, _, bufs = _layers(2)
    for r in runs:
        r()
    expected = bufs[2].copy()
    bufs[2].fill(np.nan)
    layers = [r.chain_layer for r in runs]
    table = np.stack([layer.row for layer in layers])
    clamps = np.array([(layer.lo, layer.hi, layer.lo2, layer.hi2) for layer in layers])
    sync = np.zeros(2 * len(layers), np.int64)
    chain.run_chain(table, clamps, sync, 8)
    np.testing.assert_array_equal(bufs[2], expected)
    tasks = table[:, 1]
    np.testing.assert_array_equal(sync[1::2], tasks)  # every task ran once


def test_run_chained_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="no layers"):
        run_chained([])
    runs, _, _ = _layers(1)
    a, b = runs[1].chain_layer, runs[2].chain_layer
    with pytest.raises(ValueError, match="different thread counts"):
        run_chained([a, ChainLayer(b.row, b.lo, b.hi, b.threads + 1, b.arrays)])
    with pytest.raises(ValueError, match="flat contiguous"):
        chain.depthwise_row(np.zeros((2, 8), np.float32), *([None] * 2), *([1] * 14), 0.0,
                            6.0, np.zeros(8, np.float32), threads=2)  # fmt: skip
    with pytest.raises(KeyError):
        chain.layer_row(np.add, (), 2)  # not a kernel a chain runs


def test_global_average_pool_into_out_and_its_bind_refusals():
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 5, 8)).astype(np.float32)
    out = np.empty((2, 24, 1, 1), np.float32)
    assert global_avg_pool2d_blocked(x, out) is out
    want = x.astype(np.float64).mean(axis=(2, 3)).reshape(2, 24, 1, 1)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="out must be"):
        global_avg_pool2d_blocked(x, np.empty((2, 24), np.float32))
    assert bind_global_avg_pool2d_blocked(x, np.empty((2, 24), np.float32)) is None
    assert bind_global_avg_pool2d_blocked(x[:, :, :, ::2], out) is None
    assert bind_global_avg_pool2d_blocked(x.astype(np.float64), out) is None
    assert bind_global_avg_pool2d_blocked(x, out.astype(np.float64)) is None


def test_claims_are_sized_for_about_sixteen_per_thread():
    assert chain.claim_size(8, 2) == 1
    assert chain.claim_size(840, 2) == 26
    assert chain.claim_size(5, 0) == 1


def test_the_wait_intrinsics_run_and_count():
    from numba import njit

    from cnnperf.kernels.atomics import atomic_add, atomic_load, cpu_pause, os_yield

    @njit
    def step(a):
        cpu_pause()
        os_yield()
        old = atomic_add(a, 1, 5)
        return old, atomic_load(a, 1)

    a = np.array([0, 2], np.int64)
    assert step(a) == (2, 7)
    assert a.tolist() == [0, 7]


def test_a_chain_runs_a_stem_that_reads_its_padded_input_in_place(monkeypatch):
    from cnnperf.ops import conv_blocked

    monkeypatch.setattr(conv_blocked, "DIRECT_MIN_WIDTH", 1)  # this small stem too
    rng = np.random.default_rng(4)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    stem = BlockedConv2d(w, None, stride=2, padding=1, activation="relu", input_layout="nchw",
                         input_shape=(2, 3, 9, 11))  # fmt: skip
    pw = BlockedConv2d(rng.standard_normal((8, 16, 1, 1)).astype(np.float32), None,
                       input_shape=(2, 16, 5, 6))  # fmt: skip
    assert stem.direct
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    a, b = np.empty((2, 2, 5, 6, 8), np.float32), np.empty((2, 1, 5, 6, 8), np.float32)
    runs = [stem.bind(x, a), pw.bind(a, b)]
    for r in runs:
        r()
    want = b.copy()
    b.fill(np.nan)
    run_chained([r.chain_layer for r in runs])()
    np.testing.assert_array_equal(b, want)
