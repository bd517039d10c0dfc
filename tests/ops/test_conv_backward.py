"""The batched conv2d backward pass: every case of the shared table (batch 1 and several
images, split into blocks or not) against the float64 reference and PyTorch,
``need_input_grad=False``, non-finite values, and the lowering kernels themselves."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cases import CONV_CASES
from conftest import assert_rel_close, to_torch

import cnnperf
from cnnperf import ops, reference
from cnnperf.ops import conv_backward as conv_ops

TORCH_TOL = 1e-4  # relative to max |torch|, as in test_conv.py
REFERENCE_TOL = 1e-5  # float32 against the float64 reference, relative to max |reference|

NONEMPTY = [c for c in CONV_CASES if c.x[0] > 0]


def _with_batch(case, n: int):
    return dataclasses.replace(case, id=f"{case.id}_n{n}", x=(n, *case.x[1:]))


# every case as given (batch 1 or 2), and again with 5 images
BATCHED = CONV_CASES + [_with_batch(c, 5) for c in NONEMPTY]


def _torch_grads(x, w, b, gy, kwargs):
    kwargs = dict(kwargs)
    pad = kwargs.get("padding")
    xt, wt = to_torch(x, True), to_torch(w, True)
    bt = None if b is None else to_torch(b, True)
    xin = xt
    if isinstance(pad, tuple) and isinstance(pad[0], tuple):
        (top, bottom), (left, right) = pad
        kwargs["padding"] = 0
        xin = F.pad(xt, (left, right, top, bottom))
    F.conv2d(xin, wt, bt, **kwargs).backward(torch.from_numpy(gy))
    return xt.grad.numpy(), wt.grad.numpy(), None if bt is None else bt.grad.numpy()


def _inputs(case, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x).astype(dtype)
    w = rng.standard_normal(case.w).astype(dtype)
    b = rng.standard_normal(case.w[0]).astype(dtype) if case.bias else None
    y_shape = reference.conv2d(x, w, b, **case.kwargs).shape
    gy = rng.standard_normal(y_shape).astype(dtype)
    return x, w, b, gy


@pytest.mark.parametrize("case", BATCHED, ids=lambda c: c.id)
def test_backward_matches_reference_and_torch(case):
    x, w, b, gy = _inputs(case, seed=1)
    x0, w0, gy0 = x.copy(), w.copy(), gy.copy()
    gx, gw, gb = ops.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    assert gx.dtype == gw.dtype == np.float32
    assert gx.shape == x.shape and gw.shape == w.shape
    rx, rw, rb = reference.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    assert_rel_close(gx, rx, REFERENCE_TOL, f"{case.id} grad_x vs reference")
    assert_rel_close(gw, rw, REFERENCE_TOL, f"{case.id} grad_w vs reference")
    tx, tw, tb = _torch_grads(x, w, b, gy, case.kwargs)
    assert_rel_close(gx, tx, TORCH_TOL, f"{case.id} grad_x vs torch")
    assert_rel_close(gw, tw, TORCH_TOL, f"{case.id} grad_w vs torch")
    if case.bias:
        assert_rel_close(gb, rb, REFERENCE_TOL, f"{case.id} grad_b vs reference")
        assert_rel_close(gb, tb, TORCH_TOL, f"{case.id} grad_b vs torch")
    else:
        assert gb is None
    for a, a0 in ((x, x0), (w, w0), (gy, gy0)):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("case", BATCHED, ids=lambda c: c.id)
def test_without_input_grad_gives_the_same_weight_and_bias_gradients(case):
    x, w, b, gy = _inputs(case, seed=2)
    gx, gw, gb = ops.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    nx, nw, nb = ops.conv2d_backward(gy, x, w, bias=case.bias, need_input_grad=False, **case.kwargs)
    assert nx is None
    np.testing.assert_array_equal(nw, gw)
    if case.bias:
        np.testing.assert_array_equal(nb, gb)
    else:
        assert nb is None
    rw = reference.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)[1]
    assert_rel_close(nw, rw, REFERENCE_TOL, f"{case.id} grad_w vs reference")


@pytest.mark.parametrize("case", NONEMPTY, ids=lambda c: c.id)
@pytest.mark.parametrize("budget_images", [1, 2])
def test_blocks_of_images_give_the_whole_batch_result(case, budget_images, monkeypatch):
    # A workspace bound of one or two images' columns: 5 images in blocks of 1 or 2 (the last
    # block shorter), each lowered and multiplied separately and the weight gradient summed.
    case = _with_batch(case, 5)
    x, w, b, gy = _inputs(case, seed=3)
    whole = ops.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    p = ops.conv_params(x.shape, w.shape, **case.kwargs)
    per_image = p.c_in * p.kh * p.kw * p.oh * p.ow * x.dtype.itemsize
    monkeypatch.setattr(conv_ops, "BACKWARD_WORKSPACE_BYTES", budget_images * per_image)
    assert conv_ops._backward_block(p, x.dtype.itemsize) == budget_images
    gx, gw, _ = ops.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    rx, rw, _ = reference.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    assert_rel_close(gx, rx, REFERENCE_TOL, f"{case.id} blocked grad_x vs reference")
    assert_rel_close(gw, rw, REFERENCE_TOL, f"{case.id} blocked grad_w vs reference")
    # (not bit for bit: BLAS may order a sum differently for a narrower product)
    assert_rel_close(gx, whole[0], REFERENCE_TOL, f"{case.id} blocked vs whole batch grad_x")
    assert_rel_close(gw, whole[1], REFERENCE_TOL, f"{case.id} blocked vs whole batch grad_w")


@pytest.mark.parametrize("case", NONEMPTY, ids=lambda c: c.id)
def test_float64_matches_reference_closely(case):
    x, w, b, gy = _inputs(case, dtype=np.float64, seed=4)
    gx, gw, _ = ops.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    assert gx.dtype == gw.dtype == np.float64
    rx, rw, _ = reference.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    assert_rel_close(gx, rx, 1e-12, f"{case.id} float64 grad_x")
    assert_rel_close(gw, rw, 1e-12, f"{case.id} float64 grad_w")


def test_unbatched_and_empty_batch_without_input_grad():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((4, 5, 4)).astype(np.float32)
    gx, gw, gb = ops.conv2d_backward(gy, x, w, stride=2, padding=1, need_input_grad=False)
    assert gx is None and gw.shape == w.shape and gb.shape == (4,)
    rw = reference.conv2d_backward(gy[None], x[None], w, stride=2, padding=1)[1]
    assert_rel_close(gw, rw, REFERENCE_TOL, "unbatched grad_w")
    full = ops.conv2d_backward(gy, x, w, stride=2, padding=1)
    assert full[0].shape == x.shape
    x0 = np.zeros((0, 3, 9, 8), np.float32)
    gy0 = np.zeros((0, 4, 5, 4), np.float32)
    gx, gw, gb = ops.conv2d_backward(gy0, x0, w, stride=2, padding=1, need_input_grad=False)
    assert gx is None and not gw.any() and not gb.any()


@pytest.mark.parametrize("padding", [0, 1])
def test_non_finite_values_land_where_the_reference_puts_them(padding):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 7, 8)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    kw = dict(padding=padding, stride=(1, 2))
    y_shape = reference.conv2d(x, w, **kw).shape
    gy = rng.standard_normal(y_shape).astype(np.float32)
    x[1, 0, 3, 4] = np.nan
    gy[2, 1, 1, 1] = np.inf
    with np.errstate(all="ignore"):
        gx, gw, gb = ops.conv2d_backward(gy, x, w, **kw)
        rx, rw, rb = reference.conv2d_backward(gy, x, w, **kw)
    for got, want, name in ((gx, rx, "grad_x"), (gw, rw, "grad_w"), (gb, rb, "grad_b")):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=name)
        assert_rel_close(got, want, REFERENCE_TOL, name)


PARALLEL_CASES = [
    ((6, 6, 12, 12), (16, 6, 5, 5), dict()),
    ((5, 8, 11, 13), (8, 1, 3, 3), dict(stride=2, padding=1, groups=8)),
    ((4, 4, 9, 9), (6, 2, 3, 3), dict(padding=((1, 0), (2, 1)), dilation=2, groups=2)),
]


@pytest.mark.parametrize("xs, ws, kw", PARALLEL_CASES)
def test_parallel_and_serial_agree(xs, ws, kw):
    # The lowering kernels write each element from one thread in a fixed order: identical bits
    # on 1 and 2 threads. OpenBLAS's sgemm is not bit-reproducible across thread counts (it
    # splits these thin products differently), so the whole backward agrees to rounding.
    from cnnperf.kernels.conv_backward import col2im_batch, im2col_batch

    if cnnperf.config.available_cores() < 2:
        pytest.skip("needs 2 cores")
    rng = np.random.default_rng(7)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    gy = rng.standard_normal(reference.conv2d(x, w, **kw).shape).astype(np.float32)
    p = ops.conv_params(x.shape, w.shape, **kw)
    geo = (p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.dh, p.dw, p.oh, p.ow)
    cols = [np.empty((p.c_in * p.kh * p.kw, p.n, p.oh * p.ow), np.float32) for _ in range(2)]
    gxs = [np.empty_like(x) for _ in range(2)]
    results = []
    before = cnnperf.get_num_threads()
    try:
        for i, n in enumerate((1, 2)):
            cnnperf.set_num_threads(n)
            im2col_batch(x, *geo, cols[i])
            col2im_batch(cols[i], *geo, gxs[i])
            results.append(ops.conv2d_backward(gy, x, w, **kw))
    finally:
        cnnperf.set_num_threads(before)
    np.testing.assert_array_equal(cols[0], cols[1])
    np.testing.assert_array_equal(gxs[0], gxs[1])
    for s, q in zip(*results, strict=True):
        assert_rel_close(q, s, REFERENCE_TOL, "2 threads vs 1")


# ----------------------------------------------------------------------------------------------
# the lowering kernels


@pytest.mark.parametrize("case", NONEMPTY, ids=lambda c: c.id)
def test_im2col_batch_matches_per_image_lowering_and_col2im_is_its_adjoint(case):
    from cnnperf.kernels.conv_backward import col2im_batch, im2col_batch
    from cnnperf.kernels.im2col import im2col

    case = _with_batch(case, 3)
    rng = np.random.default_rng(8)
    x = rng.standard_normal(case.x)
    p = ops.conv_params(x.shape, case.w, **case.kwargs)
    geo = (p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.dh, p.dw, p.oh, p.ow)
    k = p.c_in * p.kh * p.kw
    cols = np.full((k, p.n, p.oh * p.ow), np.nan)
    im2col_batch(x, *geo, cols)
    for b in range(p.n):
        one = np.empty((k, p.oh * p.ow))
        im2col(x[b], p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.dh, p.dw, 0, p.oh, p.ow, one)
        np.testing.assert_array_equal(cols[:, b], one)
    # <im2col(x), d> == <x, col2im(d)> for any d: col2im is the adjoint, padding dropped
    d = rng.standard_normal(cols.shape)
    gx = np.full(x.shape, np.nan)
    col2im_batch(d, *geo, gx)
    assert np.isclose(np.sum(cols * d), np.sum(x * gx), rtol=1e-12, atol=1e-9)
