"""Pooling ops: PyTorch parity (float32), finite-difference gradients (float64), NaN/-inf rules,
batching, thread-count independence, Hypothesis draws and the error messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cases import ADAPTIVE_CASES, AVG_POOL_CASES, MAX_POOL_CASES
from conftest import assert_rel_close, to_torch
from gradcheck import assert_grad_close, numeric_grad
from hypothesis import assume, given
from hypothesis import strategies as st

from cnnperf import config, ops
from cnnperf.ops.pool import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_max_pool2d,
    adaptive_max_pool2d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)
from cnnperf.shapes import PoolParams

TOL = 1e-4  # float32 vs PyTorch float32, relative to the output's max |value|


def _ids(cases):
    return [c.id for c in cases]


def _adaptive_id(case):
    shape, size = case
    return f"{'x'.join(map(str, shape))}->{size}"


def _torch_max(x, kwargs, g, adaptive=False):
    """PyTorch's (y, indices, grad_x) for a max pool with upstream gradient ``g``.

    A window that holds only padding (large dilation + padding) outputs -inf, a constant, and
    so passes no gradient. PyTorch reports an index outside such a window, and its CPU
    backward credits that element or writes out of bounds (heap corruption seen with torch
    2.13). For those inputs the expected gradient is the scatter of ``g`` over the other
    windows to PyTorch's indices, computed here with NumPy.
    """
    xt = to_torch(x, requires_grad=True)
    if adaptive:
        yt, it = F.adaptive_max_pool2d(xt, kwargs, return_indices=True)
        padding_only = np.zeros(tuple(yt.shape), bool)
    else:
        yt, it = F.max_pool2d(xt, return_indices=True, **kwargs)
        with torch.no_grad():  # implicit padding is -inf: a window of it alone stays -inf
            padding_only = F.max_pool2d(torch.ones_like(xt), **kwargs).numpy() == -np.inf
    idx = it.numpy()
    h, w = x.shape[-2:]
    if not padding_only.any():
        yt.backward(to_torch(g))
        gx = xt.grad.numpy()
    else:
        gx = np.zeros((int(np.prod(x.shape[:-2])), h * w), np.float64)
        planes = idx.reshape(gx.shape[0], -1)
        keep = ~padding_only.reshape(gx.shape[0], -1)
        for p_ in range(gx.shape[0]):
            ok = keep[p_]
            np.add.at(gx[p_], planes[p_][ok], g.reshape(gx.shape[0], -1)[p_][ok])
        gx = gx.reshape(x.shape)
    return yt.detach().numpy(), idx, gx


def _torch_avg(x, kwargs, g, adaptive=False):
    xt = to_torch(x, requires_grad=True)
    yt = F.adaptive_avg_pool2d(xt, kwargs) if adaptive else F.avg_pool2d(xt, **kwargs)
    yt.backward(to_torch(g))
    return yt.detach().numpy(), xt.grad.numpy()


def _grad_like(shape, rng, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def _distinct(shape, rng):
    """float64 values at least 0.01 apart: no ties, so max pooling is differentiable."""
    size = int(np.prod(shape))
    return (rng.permutation(size).astype(np.float64) * 0.01 - size * 0.005).reshape(shape)


# --------------------------------------------------------------------------------------------
# PyTorch parity on the shared case tables (float32)


@pytest.mark.parametrize("case", MAX_POOL_CASES, ids=_ids(MAX_POOL_CASES))
def test_max_pool2d_matches_torch(case, rng):
    x = rng.standard_normal(case.x).astype(np.float32)
    y, idx = max_pool2d(x, return_indices=True, **case.kwargs)
    g = _grad_like(y.shape, rng)
    ty, tidx, tgx = _torch_max(x, case.kwargs, g)
    assert y.dtype == np.float32 and idx.dtype == np.int64
    assert_rel_close(y, ty, TOL, "forward")
    np.testing.assert_array_equal(idx, tidx)
    np.testing.assert_array_equal(max_pool2d(x, **case.kwargs), y)
    gx = max_pool2d_backward(g, x, **case.kwargs)
    assert gx.dtype == np.float32
    assert_rel_close(gx, tgx, TOL, "backward")
    np.testing.assert_array_equal(max_pool2d_backward(g, x, **case.kwargs, indices=idx), gx)


@pytest.mark.parametrize("case", AVG_POOL_CASES, ids=_ids(AVG_POOL_CASES))
def test_avg_pool2d_matches_torch(case, rng):
    x = rng.standard_normal(case.x).astype(np.float32)
    y = avg_pool2d(x, **case.kwargs)
    g = _grad_like(y.shape, rng)
    ty, tgx = _torch_avg(x, case.kwargs, g)
    assert y.dtype == np.float32
    assert_rel_close(y, ty, TOL, "forward")
    gx = avg_pool2d_backward(g, x, **case.kwargs)
    assert gx.dtype == np.float32
    assert_rel_close(gx, tgx, TOL, "backward")


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=[_adaptive_id(c) for c in ADAPTIVE_CASES])
def test_adaptive_pools_match_torch(case, rng):
    shape, size = case
    x = rng.standard_normal(shape).astype(np.float32)

    y, idx = adaptive_max_pool2d(x, size, return_indices=True)
    g = _grad_like(y.shape, rng)
    ty, tidx, tgx = _torch_max(x, size, g, adaptive=True)
    assert_rel_close(y, ty, TOL, "adaptive max forward")
    np.testing.assert_array_equal(idx, tidx)
    gx = adaptive_max_pool2d_backward(g, x, size)
    assert_rel_close(gx, tgx, TOL, "adaptive max backward")
    np.testing.assert_array_equal(adaptive_max_pool2d_backward(g, x, size, indices=idx), gx)

    y = adaptive_avg_pool2d(x, size)
    ty, tgx = _torch_avg(x, size, g, adaptive=True)
    assert_rel_close(y, ty, TOL, "adaptive avg forward")
    assert_rel_close(adaptive_avg_pool2d_backward(g, x, size), tgx, TOL, "adaptive avg backward")


def test_avg_pool2d_negative_divisor_matches_torch(rng):
    x = rng.standard_normal((1, 2, 6, 7)).astype(np.float32)
    kwargs = dict(kernel_size=3, stride=2, padding=1, divisor_override=-4)
    g = _grad_like((1, 2, 3, 4), rng)
    ty, tgx = _torch_avg(x, kwargs, g)
    assert_rel_close(avg_pool2d(x, **kwargs), ty, TOL, "forward")
    assert_rel_close(avg_pool2d_backward(g, x, **kwargs), tgx, TOL, "backward")


def test_float64_stays_float64(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    for y in (
        max_pool2d(x, 2),
        avg_pool2d(x, 2),
        adaptive_avg_pool2d(x, 3),
        adaptive_max_pool2d(x, 3),
        max_pool2d_backward(np.ones((1, 2, 3, 3)), x, 2),
        avg_pool2d_backward(np.ones((1, 2, 3, 3)), x, 2),
    ):
        assert y.dtype == np.float64
    np.testing.assert_allclose(
        avg_pool2d(x, 3, 1, 1, count_include_pad=False),
        F.avg_pool2d(torch.from_numpy(x), 3, 1, 1, count_include_pad=False).numpy(),
        rtol=1e-12,
        atol=1e-14,
    )


# --------------------------------------------------------------------------------------------
# finite-difference gradients (float64)

_GRAD_MAX = [c for c in MAX_POOL_CASES if c.x[0] > 0]
_GRAD_AVG = [c for c in AVG_POOL_CASES if c.x[0] > 0]


def _small(shape):
    """Gradient checks cost two forward passes per input element: one image, two channels."""
    return (1, min(shape[1], 2), shape[2], shape[3])


@pytest.mark.parametrize("case", _GRAD_AVG, ids=_ids(_GRAD_AVG))
def test_avg_pool2d_gradcheck(case, rng):
    x = rng.standard_normal(_small(case.x))
    y = avg_pool2d(x, **case.kwargs)
    g = rng.standard_normal(y.shape)
    num = numeric_grad(lambda a: avg_pool2d(a, **case.kwargs), [x], 0, g)
    assert_grad_close(avg_pool2d_backward(g, x, **case.kwargs), num, what=case.id)


@pytest.mark.parametrize("case", _GRAD_MAX, ids=_ids(_GRAD_MAX))
def test_max_pool2d_gradcheck(case, rng):
    x = _distinct(_small(case.x), rng)
    y = max_pool2d(x, **case.kwargs)
    g = rng.standard_normal(y.shape)
    num = numeric_grad(lambda a: max_pool2d(a, **case.kwargs), [x], 0, g)
    assert_grad_close(max_pool2d_backward(g, x, **case.kwargs), num, what=case.id)


@pytest.mark.parametrize("size", [(3, 4), (7, 6), 1])
def test_adaptive_pools_gradcheck(size, rng):
    x = _distinct((1, 2, 5, 5), rng)
    g = rng.standard_normal(adaptive_avg_pool2d(x, size).shape)
    num = numeric_grad(lambda a: adaptive_avg_pool2d(a, size), [x], 0, g)
    assert_grad_close(adaptive_avg_pool2d_backward(g, x, size), num, what="adaptive avg")
    num = numeric_grad(lambda a: adaptive_max_pool2d(a, size), [x], 0, g)
    assert_grad_close(adaptive_max_pool2d_backward(g, x, size), num, what="adaptive max")


# --------------------------------------------------------------------------------------------
# NaN and -inf follow PyTorch's rule: ``v > max or isnan(v)``


def _nan_input(rng):
    x = rng.standard_normal((2, 2, 7, 8)).astype(np.float32)
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 3, 4] = np.nan  # two NaNs in one window: the later one's index wins
    x[0, 1, 4, 5] = np.nan
    x[1, 0, 6, 7] = np.nan  # a corner, reached only through padding / ceil_mode
    return x


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=2, stride=2, ceil_mode=True),
        dict(kernel_size=3, stride=1, padding=1, dilation=2),
    ],
)
def test_max_pool2d_nan_propagates_like_torch(kwargs, rng):
    x = _nan_input(rng)
    y, idx = max_pool2d(x, return_indices=True, **kwargs)
    g = _grad_like(y.shape, rng)
    ty, tidx, tgx = _torch_max(x, kwargs, g)
    assert np.isnan(y).any()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ty))
    np.testing.assert_array_equal(y, ty)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(idx, tidx)
    flat = x.reshape(2, 2, -1)
    picked = np.take_along_axis(flat, idx.reshape(2, 2, -1), axis=2).reshape(y.shape)
    np.testing.assert_array_equal(np.isnan(picked), np.isnan(y))
    gx = max_pool2d_backward(g, x, **kwargs)
    assert_rel_close(gx, tgx, TOL, "backward")


def test_adaptive_max_pool2d_nan_propagates_like_torch(rng):
    x = _nan_input(rng)
    y, idx = adaptive_max_pool2d(x, (3, 5), return_indices=True)
    g = _grad_like(y.shape, rng)
    ty, tidx, tgx = _torch_max(x, (3, 5), g, adaptive=True)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, tidx)
    assert_rel_close(adaptive_max_pool2d_backward(g, x, (3, 5)), tgx, TOL, "backward")


def test_max_pool2d_routes_grad_to_nan():
    x = np.array([[[[1.0, np.nan], [5.0, 2.0]]]], np.float32)
    gx = max_pool2d_backward(np.full((1, 1, 1, 1), 3.0, np.float32), x, 2)
    np.testing.assert_array_equal(gx, [[[[0.0, 3.0], [0.0, 0.0]]]])


def test_max_pools_all_neg_inf_windows_match_torch(rng):
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    x[0, 0, :3, :3] = -np.inf  # one whole window
    x[0, 1] = -np.inf  # a whole plane
    for kwargs in (dict(kernel_size=3), dict(kernel_size=3, stride=2, padding=1)):
        y, idx = max_pool2d(x, return_indices=True, **kwargs)
        g = _grad_like(y.shape, rng)
        ty, tidx, tgx = _torch_max(x, kwargs, g)
        assert np.isneginf(y).any()
        np.testing.assert_array_equal(y, ty)
        np.testing.assert_array_equal(idx, tidx)
        assert np.all((idx >= 0) & (idx < 36))
        assert_rel_close(max_pool2d_backward(g, x, **kwargs), tgx, TOL, "backward")
    y, idx = adaptive_max_pool2d(x, 4, return_indices=True)
    ty, tidx, _ = _torch_max(x, 4, np.ones(y.shape, np.float32), adaptive=True)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, tidx)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(2, 3), stride=1, dilation=(2, 1), ceil_mode=True),
    ],
)
def test_max_pools_ties_and_signed_zeros_match_torch(kwargs, rng):
    """On ties PyTorch keeps the first tap (it replaces only on ``v > max``); same for ±0."""
    values = np.array([0.0, -0.0, 1.0, -1.0], np.float32)
    x = rng.choice(values, size=(2, 3, 9, 10))
    y, idx = max_pool2d(x, return_indices=True, **kwargs)
    ty, tidx, _ = _torch_max(x, kwargs, np.zeros(y.shape, np.float32))
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(ty))
    np.testing.assert_array_equal(idx, tidx)
    y, idx = adaptive_max_pool2d(x, (4, 3), return_indices=True)
    ty, tidx, _ = _torch_max(x, (4, 3), np.zeros(y.shape, np.float32), adaptive=True)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(ty))
    np.testing.assert_array_equal(idx, tidx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 9, 12), (1, 2, 8, 8), (3, 1, 2, 2), (1, 4, 3, 6)])
def test_max_pool2d_3x3_stride2_separable_matches_torch_on_special_values(shape, dtype, rng):
    """3x3 stride-2 pools with padding 1 on even widths take the separable kernel (without
    indices): values bit for bit as PyTorch (ties, ±0, NaN, ±inf; odd and even heights), and
    the same values as the general kernel, which runs when indices are asked for."""
    from cnnperf.ops.pool import _pool_params, _separable_3x3s2

    values = np.array([0.0, -0.0, 1.0, -1.0, np.nan, -np.inf, np.inf, 2.5], dtype)
    x = rng.choice(values, size=shape, p=[0.2, 0.2, 0.15, 0.15, 0.05, 0.1, 0.05, 0.1])
    x.reshape(-1)[:8] = values[: x.size]
    kwargs = dict(kernel_size=3, stride=2, padding=1)
    assert _separable_3x3s2(_pool_params("max_pool2d", x, False, 3, 2, 1, 1, False))
    y = max_pool2d(x, **kwargs)
    yt = F.max_pool2d(to_torch(x), **kwargs).numpy()
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, yt)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(yt))
    y_general, _ = max_pool2d(x, return_indices=True, **kwargs)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(y_general))
    np.testing.assert_array_equal(y, y_general)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (1, 2, 8, 8), (3, 1, 2, 5)])
def test_max_pool2d_2x2_stride2_matches_torch_on_special_values(shape, dtype, rng):
    """2x2 stride-2 pools inside the input take their own loop: values, indices (ties, ±0,
    NaN, -inf) and gradients exactly as PyTorch, with odd sizes leaving a row/column out."""
    values = np.array([0.0, -0.0, 1.0, -1.0, np.nan, -np.inf, np.inf, 2.5], dtype)
    x = rng.choice(values, size=shape, p=[0.2, 0.2, 0.15, 0.15, 0.05, 0.1, 0.05, 0.1])
    x.reshape(-1)[:8] = values  # every special value at least once
    for kwargs in (dict(kernel_size=2), dict(kernel_size=2, stride=2, padding=0, dilation=1)):
        y, idx = max_pool2d(x, return_indices=True, **kwargs)
        g = _grad_like(y.shape, rng).astype(dtype)
        xt = to_torch(x, requires_grad=True)
        yt, it = F.max_pool2d(xt, return_indices=True, **kwargs)
        yt.backward(torch.from_numpy(g))
        assert y.dtype == dtype
        np.testing.assert_array_equal(y, yt.detach().numpy())
        np.testing.assert_array_equal(np.signbit(y), np.signbit(yt.detach().numpy()))
        np.testing.assert_array_equal(idx, it.numpy())
        np.testing.assert_array_equal(max_pool2d(x, **kwargs), y)  # the path without indices
        gx = max_pool2d_backward(g, x, **kwargs)
        np.testing.assert_array_equal(gx, xt.grad.numpy())
        np.testing.assert_array_equal(max_pool2d_backward(g, x, indices=idx, **kwargs), gx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_average_pool_backward_matches_torch(dtype, rng):
    """Global average pools (adaptive to 1x1, or a kernel the size of the input) broadcast
    each plane's share instead of running the window kernel: same values as PyTorch, and the
    share rounded once from grad / (h*w)."""
    x = rng.standard_normal((3, 4, 5, 7)).astype(dtype)
    g = rng.standard_normal((3, 4, 1, 1)).astype(dtype)
    g[0, 0] = -0.0
    xt = to_torch(x, requires_grad=True)
    F.adaptive_avg_pool2d(xt, 1).backward(torch.from_numpy(g))
    expected = np.broadcast_to((g.astype(np.float64) / 35).astype(dtype), x.shape)
    for gx in (
        adaptive_avg_pool2d_backward(g, x, 1),
        adaptive_avg_pool2d_backward(g, x, (1, 1)),
        avg_pool2d_backward(g, x, (5, 7)),
    ):
        assert gx.dtype == dtype and gx.shape == x.shape and gx.flags.writeable
        np.testing.assert_array_equal(gx, expected)
        assert_rel_close(gx, xt.grad.numpy(), TOL, "global average pool backward")
    np.testing.assert_array_equal(avg_pool2d_backward(g[1], x[1], (5, 7)), expected[1])
    # not global (a window per row): the window kernel, same per-element shares
    gx = adaptive_avg_pool2d_backward(np.repeat(g, 5, axis=2), x, (5, 1))
    np.testing.assert_allclose(gx * 7, np.broadcast_to(g, x.shape), rtol=1e-6)


def test_max_pool2d_window_without_taps_matches_torch(rng):
    # kernel 2, dilation 5, padding 1 on 4 rows: the only window's taps are rows -1 and 4, both
    # outside; PyTorch returns -inf with the out-of-plane index 20 (and its backward writes out
    # of bounds, see _torch_max); we give the same forward and a zero gradient.
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    kwargs = dict(kernel_size=2, padding=1, dilation=5)
    y, idx = max_pool2d(x, return_indices=True, **kwargs)
    ty, tidx, _ = _torch_max(x, kwargs, np.ones((1, 1, 1, 1), np.float32))
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, tidx)
    assert idx.item() == 20 and np.isneginf(y.item())
    np.testing.assert_array_equal(max_pool2d_backward(np.ones_like(y), x, **kwargs), 0.0)
    np.testing.assert_array_equal(
        max_pool2d_backward(np.ones_like(y), x, **kwargs, indices=idx), 0.0
    )


# --------------------------------------------------------------------------------------------
# batching, immutability, threads


def _all_ops(x, g_max, g_avg, g_ad):
    """Every public pooling function on input ``x`` with the given upstream gradients."""
    kw_max = dict(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)
    kw_avg = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    return [
        *max_pool2d(x, return_indices=True, **kw_max),
        max_pool2d_backward(g_max, x, **kw_max),
        avg_pool2d(x, **kw_avg),
        avg_pool2d_backward(g_avg, x, **kw_avg),
        *adaptive_max_pool2d(x, (3, 4), return_indices=True),
        adaptive_max_pool2d_backward(g_ad, x, (3, 4)),
        adaptive_avg_pool2d(x, (3, 4)),
        adaptive_avg_pool2d_backward(g_ad, x, (3, 4)),
    ]


def _op_inputs(rng, n=3):
    x = rng.standard_normal((n, 4, 9, 10)).astype(np.float32)
    g_pool = _grad_like((n, 4, 5, 6), rng)  # ceil_mode: (9, 10) -> (5, 6) for both pools
    return x, g_pool, g_pool * 0.5, _grad_like((n, 4, 3, 4), rng)


def test_unbatched_input_gives_unbatched_output(rng):
    x, gm, ga, gad = _op_inputs(rng, n=1)
    batched = _all_ops(x, gm, ga, gad)
    unbatched = _all_ops(x[0], gm[0], ga[0], gad[0])
    for b, u in zip(batched, unbatched, strict=True):
        assert u.shape == b.shape[1:]
        np.testing.assert_array_equal(u, b[0])
    ty, tidx = F.max_pool2d(torch.from_numpy(x[0]), 3, 2, 1, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(unbatched[0], ty.numpy())
    np.testing.assert_array_equal(unbatched[1], tidx.numpy())


def test_empty_batch_and_adaptive_empty_channels_match_torch():
    x = np.zeros((0, 3, 6, 6), np.float32)
    assert max_pool2d(x, 2, return_indices=True)[1].shape == (0, 3, 3, 3)
    assert max_pool2d_backward(np.zeros((0, 3, 3, 3), np.float32), x, 2).shape == x.shape
    assert avg_pool2d_backward(np.zeros((0, 3, 3, 3), np.float32), x, 2).shape == x.shape
    # PyTorch's adaptive pools (unlike max/avg_pool2d) accept zero channels
    x = np.zeros((1, 0, 4, 4), np.float32)
    expected = tuple(F.adaptive_avg_pool2d(torch.from_numpy(x), 2).shape)
    assert adaptive_avg_pool2d(x, 2).shape == expected == (1, 0, 2, 2)
    assert adaptive_max_pool2d(x, 2).shape == expected


def test_inputs_are_not_modified(rng):
    arrays = _op_inputs(rng)
    copies = [a.copy() for a in arrays]
    _all_ops(*arrays)
    for a, c in zip(arrays, copies, strict=True):
        np.testing.assert_array_equal(a, c)


def test_non_contiguous_input(rng):
    x = rng.standard_normal((2, 9, 10, 3)).astype(np.float32).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(max_pool2d(x, 3, 2), max_pool2d(np.ascontiguousarray(x), 3, 2))
    ty = F.avg_pool2d(torch.from_numpy(np.ascontiguousarray(x)), 3, 2, 1)
    assert_rel_close(avg_pool2d(x, 3, 2, 1), ty.numpy(), TOL, "avg")


def test_parallel_and_serial_agree_bit_exactly(rng):
    if config.available_cores() < 2:
        pytest.skip("needs 2 cores")
    arrays = _op_inputs(rng, n=4)
    before = config.get_num_threads()
    try:
        config.set_num_threads(1)
        serial = _all_ops(*arrays)
        config.set_num_threads(2)
        parallel = _all_ops(*arrays)
    finally:
        config.set_num_threads(before)
    for s, p in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(s, p)


# --------------------------------------------------------------------------------------------
# Hypothesis: random valid parameters against PyTorch


@st.composite
def _pool_draw(draw, with_dilation: bool):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    dh, dw = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if with_dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    shape = (draw(st.integers(0, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 11)),
             draw(st.integers(1, 11)))  # fmt: skip
    sh, sw = stride if stride is not None else (kh, kw)
    p = PoolParams(*shape, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode)
    assume(p.oh >= 1 and p.ow >= 1)
    kwargs = dict(kernel_size=(kh, kw), stride=stride, padding=(ph, pw), ceil_mode=ceil_mode)
    if with_dilation:
        kwargs["dilation"] = (dh, dw)
    return shape, kwargs, draw(st.integers(0, 2**32 - 1))


@given(_pool_draw(with_dilation=True))
def test_max_pool2d_hypothesis(draw):
    shape, kwargs, seed = draw
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    y, idx = max_pool2d(x, return_indices=True, **kwargs)
    g = _grad_like(y.shape, rng)
    ty, tidx, tgx = _torch_max(x, kwargs, g)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, tidx)
    np.testing.assert_array_equal(max_pool2d(x, **kwargs), y)  # the path without indices
    assert_rel_close(max_pool2d_backward(g, x, **kwargs), tgx, TOL, "backward")


@given(
    _pool_draw(with_dilation=False),
    st.booleans(),
    st.sampled_from([None, 1, 3, -2]),
)
def test_avg_pool2d_hypothesis(draw, count_include_pad, divisor_override):
    shape, kwargs, seed = draw
    kwargs = dict(kwargs, count_include_pad=count_include_pad, divisor_override=divisor_override)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    y = avg_pool2d(x, **kwargs)
    g = _grad_like(y.shape, rng)
    ty, tgx = _torch_avg(x, kwargs, g)
    assert_rel_close(y, ty, TOL, "forward")
    assert_rel_close(avg_pool2d_backward(g, x, **kwargs), tgx, TOL, "backward")


@pytest.mark.parametrize("op", ["max", "avg"])
def test_padding_limit_matches_torch(op):
    """We reject exactly the (kernel, padding, dilation) triples PyTorch rejects."""
    x = np.zeros((1, 1, 12, 12), np.float32)
    for k in range(1, 6):
        for p in range(0, 4):
            for d in (1, 2, 3) if op == "max" else (1,):
                kwargs = dict(kernel_size=k, padding=p)
                if op == "max":
                    kwargs["dilation"] = d
                tf = F.max_pool2d if op == "max" else F.avg_pool2d
                ours = max_pool2d if op == "max" else avg_pool2d
                try:
                    tf(torch.from_numpy(x), **kwargs)
                    torch_ok = True
                except RuntimeError:
                    torch_ok = False
                try:
                    ours(x, **kwargs)
                    ours_ok = True
                except ValueError:
                    ours_ok = False
                assert ours_ok == torch_ok, kwargs


# --------------------------------------------------------------------------------------------
# reference (float64 loops), when present


def _reference(name):
    import cnnperf.reference as ref

    fn = getattr(ref, name, None)
    if fn is None:
        pytest.skip(f"cnnperf.reference.{name} does not exist yet")
    return fn


REF_TOL = 1e-5  # float32 kernels vs the float64 reference


@pytest.mark.parametrize("case", MAX_POOL_CASES, ids=_ids(MAX_POOL_CASES))
def test_max_pool2d_matches_reference(case, rng):
    ref, ref_bwd = _reference("max_pool2d"), _reference("max_pool2d_backward")
    x = rng.standard_normal(case.x).astype(np.float32)
    y, idx = max_pool2d(x, return_indices=True, **case.kwargs)
    ry, ridx = ref(x, return_indices=True, **case.kwargs)
    assert_rel_close(y, ry, REF_TOL, case.id)
    np.testing.assert_array_equal(idx, ridx)
    g = _grad_like(y.shape, rng)
    gx = max_pool2d_backward(g, x, **case.kwargs)
    assert_rel_close(gx, ref_bwd(g, x, **case.kwargs), REF_TOL, case.id)


@pytest.mark.parametrize("case", AVG_POOL_CASES, ids=_ids(AVG_POOL_CASES))
def test_avg_pool2d_matches_reference(case, rng):
    ref, ref_bwd = _reference("avg_pool2d"), _reference("avg_pool2d_backward")
    x = rng.standard_normal(case.x).astype(np.float32)
    y = avg_pool2d(x, **case.kwargs)
    assert_rel_close(y, ref(x, **case.kwargs), REF_TOL, case.id)
    g = _grad_like(y.shape, rng)
    gx = avg_pool2d_backward(g, x, **case.kwargs)
    assert_rel_close(gx, ref_bwd(g, x, **case.kwargs), REF_TOL, case.id)


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=[_adaptive_id(c) for c in ADAPTIVE_CASES])
def test_adaptive_pools_match_reference(case, rng):
    shape, size = case
    x = rng.standard_normal(shape).astype(np.float32)
    y = adaptive_avg_pool2d(x, size)
    g = _grad_like(y.shape, rng)
    assert_rel_close(y, _reference("adaptive_avg_pool2d")(x, size), REF_TOL, "avg")
    assert_rel_close(
        adaptive_avg_pool2d_backward(g, x, size),
        _reference("adaptive_avg_pool2d_backward")(g, x, size),
        REF_TOL,
        "avg backward",
    )
    y, idx = adaptive_max_pool2d(x, size, return_indices=True)
    ry, ridx = _reference("adaptive_max_pool2d")(x, size, return_indices=True)
    assert_rel_close(y, ry, REF_TOL, "max")
    np.testing.assert_array_equal(idx, ridx)
    assert_rel_close(
        adaptive_max_pool2d_backward(g, x, size),
        _reference("adaptive_max_pool2d_backward")(g, x, size),
        REF_TOL,
        "max backward",
    )


# --------------------------------------------------------------------------------------------
# errors: one test per validation branch, message asserted

X = np.zeros((1, 2, 6, 6), np.float32)
G3 = np.zeros((1, 2, 3, 3), np.float32)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: max_pool2d(np.zeros((6, 6), np.float32), 2),
         r"max_pool2d: expected input to be 3-D \(c, h, w\) or 4-D .* got 2-D with shape \(6, 6\)"),
        (lambda: avg_pool2d(np.zeros((1, 1, 1, 6, 6), np.float32), 2), r"got 5-D"),
        (lambda: max_pool2d(np.zeros((1, 1, 4, 4), np.int32), 2),
         r"must have dtype float32 or float64, got int32 with shape \(1, 1, 4, 4\)"),
        (lambda: avg_pool2d(np.zeros((1, 1, 4, 4), np.float16), 2), r"got float16"),
        (lambda: max_pool2d(np.zeros((1, 1, 0, 4), np.float32), 2),
         r"non-zero channel and spatial sizes .* got shape \(1, 1, 0, 4\)"),
        (lambda: avg_pool2d(np.zeros((1, 0, 4, 4), np.float32), 2), r"got shape \(1, 0, 4, 4\)"),
        (lambda: adaptive_avg_pool2d(np.zeros((1, 1, 4, 0), np.float32), 2),
         r"non-zero spatial sizes .* got shape \(1, 1, 4, 0\)"),
        (lambda: max_pool2d(X, 0), r"kernel_size must be positive, got 0"),
        (lambda: avg_pool2d(X, (2, -1)), r"kernel_size must be positive, got \(2, -1\)"),
        (lambda: max_pool2d(X, "3"), r"kernel_size must be an int or a pair of ints, got '3'"),
        (lambda: max_pool2d(X, 2, stride=0), r"stride must be positive, got 0"),
        (lambda: avg_pool2d(X, 2, stride=(1, 0)), r"stride must be positive, got \(1, 0\)"),
        (lambda: max_pool2d(X, 2, dilation=0), r"dilation must be positive, got 0"),
        (lambda: max_pool2d(X, 2, padding=-1), r"padding must be non-negative, got -1"),
        (lambda: avg_pool2d(X, 3, padding=(0, -1)), r"padding must be non-negative"),
        (lambda: max_pool2d(X, 3, padding=2),
         r"pad should be at most half of kernel size, but got padding=\(2, 2\) "
         r"for kernel_size=\(3, 3\)"),
        (lambda: max_pool2d(X, 3, padding=2, dilation=2), r"pad should be at most half"),
        (lambda: avg_pool2d(X, (2, 4), padding=(1, 3)), r"pad should be at most half"),
        (lambda: max_pool2d(X, 7),
         r"Given input size \(2, 6, 6\), calculated output size \(2, 0, 0\) is too small"),
        (lambda: max_pool2d(X, 3, dilation=3),
         r"calculated output size \(2, 0, 0\) is too small"),
        (lambda: avg_pool2d(np.zeros((2, 5, 6), np.float32), (1, 7)),
         r"Given input size \(2, 5, 6\), calculated output size \(2, 5, 0\) is too small"),
        (lambda: avg_pool2d(X, 2, divisor_override=0), r"divisor_override must be non-zero, got 0"),
        (lambda: avg_pool2d_backward(G3, X, 2, divisor_override=0), r"must be non-zero"),
        (lambda: avg_pool2d(X, 2, divisor_override=1.5),
         r"divisor_override must be an int or None, got 1.5"),
        (lambda: adaptive_avg_pool2d(X, 0), r"output_size must be positive, got 0"),
        (lambda: adaptive_max_pool2d(X, (2, -1)), r"output_size must be positive, got \(2, -1\)"),
        (lambda: adaptive_max_pool2d(X, (1, 2, 3)), r"output_size must be an int or a pair"),
        (lambda: adaptive_avg_pool2d(X, 2.5), r"output_size must be an int or a pair"),
        (lambda: max_pool2d_backward(np.zeros((1, 2, 2, 2), np.float32), X, 2),
         r"grad_out of shape \(1, 2, 2, 2\) does not match the output shape \(1, 2, 3, 3\) "
         r"for input of shape \(1, 2, 6, 6\)"),
        (lambda: avg_pool2d_backward(G3[0, :1], X[0], 2),
         r"grad_out of shape \(1, 3, 3\) does not match the output shape \(2, 3, 3\) "
         r"for input of shape \(2, 6, 6\)"),
        (lambda: adaptive_avg_pool2d_backward(G3, X, 2), r"output shape \(1, 2, 2, 2\)"),
        (lambda: adaptive_max_pool2d_backward(G3, X, (3, 2)), r"output shape \(1, 2, 3, 2\)"),
        (lambda: max_pool2d_backward(G3.astype(np.float64), X, 2),
         r"same dtype, but grad_out is float64, input is float32"),
        (lambda: max_pool2d_backward(G3, X, 2, indices=np.zeros((1, 2, 3, 3), np.float32)),
         r"indices must be an integer array, got dtype float32"),
        (lambda: adaptive_max_pool2d_backward(G3, X, 3, indices=np.zeros((2, 3, 3), np.int64)),
         r"indices of shape \(2, 3, 3\) do not match the output shape \(1, 2, 3, 3\)"),
    ],
)  # fmt: skip
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_error_cases_are_errors_in_torch_too():
    """The forward errors above are PyTorch errors as well (spot checks)."""
    xt = torch.zeros(1, 2, 6, 6)
    for call in (
        lambda: F.max_pool2d(xt, 3, padding=2),
        lambda: F.max_pool2d(xt, 7),
        lambda: F.max_pool2d(xt, 3, dilation=3),
        lambda: F.avg_pool2d(xt, 2, divisor_override=0),
        lambda: F.max_pool2d(torch.zeros(1, 1, 0, 4), 2),
    ):
        with pytest.raises(RuntimeError):
            call()


def test_stride_forms():
    x = np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8)
    expected = max_pool2d(x, 2, 2)
    for stride in (None, (), [], (2, 2), [2], 2):
        np.testing.assert_array_equal(max_pool2d(x, 2, stride), expected)


def test_padding_only_window_matches_torch_forward_and_passes_no_gradient():
    x = np.array([[[[5.0], [7.0]]]], np.float32)  # (1, 1, 2, 1)
    kw = dict(kernel_size=(1, 2), stride=1, padding=(0, 1), dilation=(1, 2))
    y, idx = ops.max_pool2d(x, return_indices=True, **kw)
    y_t, idx_t = F.max_pool2d(to_torch(x), return_indices=True, **kw)
    np.testing.assert_array_equal(y, y_t.numpy())  # -inf, -inf
    np.testing.assert_array_equal(idx, idx_t.numpy())  # PyTorch's out-of-window indices
    g = np.array([[[[10.0], [100.0]]]], np.float32)
    expected = np.zeros_like(x)
    np.testing.assert_array_equal(ops.max_pool2d_backward(g, x, **kw), expected)
    np.testing.assert_array_equal(ops.max_pool2d_backward(g, x, **kw, indices=idx), expected)
