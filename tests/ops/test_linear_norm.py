"""linear, batch_norm, dropout and local_response_norm: PyTorch parity, gradients, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_rel_close, to_torch
from gradcheck import assert_grad_close, numeric_grad
from hypothesis import given
from hypothesis import strategies as st

from cnnperf.ops.linear import linear, linear_backward
from cnnperf.ops.norm import (
    batch_norm,
    batch_norm_backward,
    dropout,
    dropout_backward,
    local_response_norm,
    local_response_norm_backward,
)

# ----------------------------------------------------------------------------------------------
# linear
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("xshape", [(5, 7), (2, 3, 7), (7,), (0, 7)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch(xshape, with_bias, rng):
    x = rng.standard_normal(xshape).astype(np.float32)
    w = rng.standard_normal((4, 7)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32) if with_bias else None
    g = rng.standard_normal(xshape[:-1] + (4,)).astype(np.float32)
    copies = [a.copy() for a in (x, w, g)]
    xt, wt = to_torch(x, True), to_torch(w, True)
    bt = to_torch(b, True) if with_bias else None
    yt = F.linear(xt, wt, bt)
    yt.backward(to_torch(g))
    y = linear(x, w, b)
    gx, gw, gb = linear_backward(g, x, w, bias=with_bias)
    assert y.dtype == gx.dtype == gw.dtype == np.float32
    assert_rel_close(y, yt.detach().numpy(), 1e-4, "linear forward")
    assert_rel_close(gx, xt.grad.numpy(), 1e-4, "linear grad_x")
    assert_rel_close(gw, wt.grad.numpy(), 1e-4, "linear grad_weight")
    if with_bias:
        assert_rel_close(gb, bt.grad.numpy(), 1e-4, "linear grad_bias")
    else:
        assert gb is None
    for a, a0 in zip((x, w, g), copies, strict=True):
        np.testing.assert_array_equal(a, a0)


def test_linear_finite_differences(rng):
    x, w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    up = rng.standard_normal((2, 3, 4))
    gx, gw, gb = linear_backward(up, x, w)
    assert gx.dtype == np.float64
    for i, got in enumerate((gx, gw, gb)):
        assert_grad_close(got, numeric_grad(linear, [x, w, b], i, up), 1e-6, f"linear arg {i}")


def test_linear_nan_and_non_contiguous(rng):
    x = rng.standard_normal((6, 5)).astype(np.float32)[::2]  # (3, 5), strided
    w = rng.standard_normal((5, 4)).astype(np.float32).T  # (4, 5), transposed view
    np.testing.assert_allclose(linear(x, w), x @ w.T, rtol=1e-5)
    x = np.ascontiguousarray(x)
    x[1, 2] = np.nan
    y = linear(x, w)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()


def test_linear_errors():
    x, w = np.zeros((2, 5), np.float32), np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"linear: weight must be 2-D .* got shape \(5,\)"):
        linear(x, np.zeros(5, np.float32))
    msg = r"x of shape \(2, 6\) does not match weight of shape \(4, 5\): .* last dimension to be 5"
    with pytest.raises(ValueError, match=msg):
        linear(np.zeros((2, 6), np.float32), w)
    with pytest.raises(ValueError, match=r"bias of shape \(5,\) does not match .* expected \(4,\)"):
        linear(x, w, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="x is float32, weight is float64"):
        linear(x, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="linear: x must have dtype float32 or float64, got int64"):
        linear(np.zeros((2, 5), np.int64), w)
    with pytest.raises(ValueError, match=r"grad_out of shape \(2, 3\) does not match .* \(2, 4\)"):
        linear_backward(np.zeros((2, 3), np.float32), x, w)


# ----------------------------------------------------------------------------------------------
# batch_norm
# ----------------------------------------------------------------------------------------------

BN_SHAPES = [(6, 3), (4, 3, 5), (2, 3, 4, 5)]


def _bn_params(rng, c, dtype=np.float32):
    return (
        rng.standard_normal(c).astype(dtype),  # running_mean
        rng.uniform(0.5, 2.0, c).astype(dtype),  # running_var
        rng.standard_normal(c).astype(dtype),  # weight
        rng.standard_normal(c).astype(dtype),  # bias
    )


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_batch_norm_matches_torch(shape, training, affine, rng):
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    rm, rv, w, b = _bn_params(rng, shape[1])
    if not affine:
        w = b = None
    copies = [a.copy() for a in (x, g, rm, rv)]
    xt = to_torch(x, True)
    wt, bt = (to_torch(w, True), to_torch(b, True)) if affine else (None, None)
    rmt, rvt = to_torch(rm), to_torch(rv)  # torch updates these in place
    yt = F.batch_norm(xt, rmt, rvt, wt, bt, training=training, momentum=0.2, eps=1e-3)
    yt.backward(to_torch(g))

    out = batch_norm(x, rm, rv, w, b, training=training, momentum=0.2, eps=1e-3)
    if training:
        y, new_rm, new_rv = out
        assert_rel_close(new_rm, rmt.numpy(), 1e-5, "running_mean update")
        assert_rel_close(new_rv, rvt.numpy(), 1e-5, "running_var update (unbiased)")
        assert new_rm.dtype == new_rv.dtype == np.float32
    else:
        y = out
    assert y.dtype == np.float32 and y.shape == shape
    assert_rel_close(y, yt.detach().numpy(), 1e-4, "batch_norm forward")
    gx, gw, gb = batch_norm_backward(g, x, rm, rv, w, b, training=training, eps=1e-3)
    assert_rel_close(gx, xt.grad.numpy(), 1e-4, "batch_norm grad_x")
    if affine:
        assert_rel_close(gw, wt.grad.numpy(), 1e-4, "batch_norm grad_weight")
        assert_rel_close(gb, bt.grad.numpy(), 1e-4, "batch_norm grad_bias")
    else:
        assert gw is None and gb is None
    for a, a0 in zip((x, g, rm, rv), copies, strict=True):
        np.testing.assert_array_equal(a, a0)


def test_batch_norm_training_without_running_stats(rng):
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    y = batch_norm(x, training=True)
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y.mean(axis=(0, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(y.var(axis=(0, 2)), 1, rtol=1e-3)  # biased variance, eps=1e-5
    yt = F.batch_norm(torch.from_numpy(x), None, None, training=True)
    assert_rel_close(y, yt.numpy(), 1e-4, "batch_norm no stats")


@pytest.mark.parametrize("training", [False, True])
def test_batch_norm_finite_differences(training, rng):
    x = rng.standard_normal((3, 2, 2, 2))
    rm, rv, w, b = _bn_params(rng, 2, np.float64)
    up = rng.standard_normal(x.shape)

    def f(x_, w_, b_):
        out = batch_norm(x_, rm, rv, w_, b_, training=training)
        return out[0] if training else out

    gx, gw, gb = batch_norm_backward(up, x, rm, rv, w, b, training=training)
    assert gx.dtype == np.float64
    for i, got in enumerate((gx, gw, gb)):
        assert_grad_close(got, numeric_grad(f, [x, w, b], i, up), 1e-6, f"batch_norm arg {i}")


def test_batch_norm_nan_stays_in_its_channel():
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    x[0, 1, 2] = np.nan
    y = batch_norm(x, training=True)
    assert np.isnan(y[:, 1]).all()
    assert np.isfinite(y[:, [0, 2]]).all()
    rm, rv = np.zeros(3), np.ones(3)
    y = batch_norm(x, rm, rv)
    assert np.isnan(y).sum() == 1


def test_batch_norm_errors(rng):
    x = np.zeros((2, 3, 4), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(
        ValueError, match=r"batch_norm: expected x of shape \(N, C\).* got shape \(3,\)"
    ):
        batch_norm(np.zeros(3, np.float32), rm, rv)
    with pytest.raises(
        ValueError, match=r"running_mean of shape \(4,\) does not match the 3 channels"
    ):
        batch_norm(x, np.zeros(4, np.float32), rv)
    with pytest.raises(
        ValueError, match=r"weight of shape \(2,\) does not match .* expected \(3,\)"
    ):
        batch_norm(x, rm, rv, weight=np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"bias of shape \(3, 1\)"):
        batch_norm(x, rm, rv, bias=np.ones((3, 1), np.float32))
    with pytest.raises(ValueError, match="running_mean and running_var must either both be None"):
        batch_norm(x, rm, None, training=True)
    with pytest.raises(
        ValueError, match="running_mean and running_var are required when training=False"
    ):
        batch_norm(x)
    msg = r"Expected more than 1 value per channel when training, got input of shape \(1, 3, 1\)"
    with pytest.raises(ValueError, match=msg):
        batch_norm(np.zeros((1, 3, 1), np.float32), training=True)
    with pytest.raises(ValueError, match="x is float32, running_mean is float64"):
        batch_norm(x, np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"batch_norm_backward: grad_out of shape \(2, 3\)"):
        batch_norm_backward(np.zeros((2, 3), np.float32), x, rm, rv)
    with pytest.raises(ValueError, match="momentum=None .* is not supported"):
        batch_norm(x, rm, rv, training=True, momentum=None)
    # eval mode accepts a single value per channel
    assert batch_norm(np.ones((1, 3), np.float32), rm, rv).shape == (1, 3)


# ----------------------------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------------------------


def test_dropout_statistics_and_scaling():
    x = np.full((200, 500), 3.0, np.float32)
    y, mask = dropout(x, 0.3, rng=0, return_mask=True)
    assert y.dtype == np.float32 and mask.dtype == np.bool_ and mask.shape == x.shape
    assert abs(mask.mean() - 0.7) < 0.005
    np.testing.assert_allclose(y[mask], np.float32(3.0) / np.float32(0.7), rtol=1e-6)
    assert (y[~mask] == 0).all()
    np.testing.assert_array_equal(x, 3.0)
    assert abs(y.mean() - 3.0) < 0.03  # unbiased in expectation


def test_dropout_rng_forms():
    x = np.ones((10, 10))
    a = dropout(x, 0.5, rng=7)
    np.testing.assert_array_equal(a, dropout(x, 0.5, rng=np.random.default_rng(7)))
    np.testing.assert_array_equal(a, dropout(x, 0.5, rng=np.int64(7)))
    assert a.dtype == np.float64
    assert not np.array_equal(dropout(x, 0.5, rng=8), a)
    assert dropout(x, 0.5).shape == x.shape  # fresh entropy


def test_dropout_trivial_cases():
    x = np.array([1.0, np.nan, np.inf], np.float32)
    for kwargs in ({"p": 0.0}, {"p": 0.7, "training": False}, {"p": 1.0, "training": False}):
        y, mask = dropout(x, rng=0, return_mask=True, **kwargs)
        np.testing.assert_array_equal(y, x)
        assert y is not x and mask.all()
    y, mask = dropout(x, 1.0, rng=0, return_mask=True)
    assert not mask.any()
    # torch computes x * 0: zeros, except that NaN and inf give NaN
    yt = F.dropout(torch.from_numpy(x), 1.0)
    np.testing.assert_array_equal(y, yt.numpy())
    assert y[0] == 0 and np.isnan(y[1:]).all()


@pytest.mark.parametrize("p", [0.0, 0.25, 1.0])
def test_dropout_backward(p, rng):
    x = rng.standard_normal((4, 6))
    up = rng.standard_normal(x.shape)
    _, mask = dropout(x, p, rng=3, return_mask=True)
    gx = dropout_backward(up, mask, p)
    num = numeric_grad(lambda a: dropout(a, p, rng=3), [x], 0, up)
    assert_grad_close(gx, num, 1e-6, "dropout")
    # torch's backward for a fixed mask: x * (mask / (1 - p))
    xt = to_torch(x.astype(np.float32), True)
    noise = torch.from_numpy(mask.astype(np.float32)) / (1 - p) if p < 1 else torch.zeros(x.shape)
    (xt * noise).backward(to_torch(up.astype(np.float32)))
    gx32 = dropout_backward(up.astype(np.float32), mask, p)
    assert gx32.dtype == np.float32
    assert_rel_close(gx32, xt.grad.numpy(), 1e-6, "dropout backward vs torch")


def test_dropout_errors():
    x = np.zeros(4, np.float32)
    with pytest.raises(
        ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"
    ):
        dropout(x, 1.5)
    with pytest.raises(ValueError, match="but got -0.1"):
        dropout(x, -0.1)
    with pytest.raises(ValueError, match="but got nan"):
        dropout(x, float("nan"))
    with pytest.raises(
        ValueError, match="rng must be a numpy.random.Generator, an int seed or None, got str"
    ):
        dropout(x, 0.5, rng="seed")
    with pytest.raises(
        ValueError, match="dropout: x must have dtype float32 or float64, got int64"
    ):
        dropout(np.zeros(3, np.int64))
    with pytest.raises(
        ValueError, match="dropout_backward: mask must be a bool array, got dtype float32"
    ):
        dropout_backward(x, x)
    with pytest.raises(
        ValueError, match=r"mask of shape \(3,\) does not match grad_out of shape \(4,\)"
    ):
        dropout_backward(x, np.ones(3, bool))
    with pytest.raises(ValueError, match="dropout_backward: dropout probability .* got 2.0"):
        dropout_backward(x, np.ones(4, bool), 2.0)


# ----------------------------------------------------------------------------------------------
# local_response_norm
# ----------------------------------------------------------------------------------------------

LRN_CASES = [
    ((2, 7, 4, 5), 5, {}),
    ((2, 7, 4, 5), 2, {"alpha": 0.1, "beta": 0.6, "k": 2.0}),
    ((2, 4, 6), 3, {"alpha": 0.5, "beta": 1.0, "k": 1.0}),
    ((1, 3, 2, 2, 3), 4, {"alpha": 0.3}),
    ((2, 3, 5), 9, {"alpha": 0.4, "beta": 0.8}),  # window wider than all channels
    ((2, 5, 3), 1, {"alpha": 0.2}),
]


@pytest.mark.parametrize("shape, size, kw", LRN_CASES)
def test_lrn_matches_torch(shape, size, kw, rng):
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    x0 = x.copy()
    xt = to_torch(x, True)
    yt = F.local_response_norm(xt, size, **kw)
    yt.backward(to_torch(g))
    y = local_response_norm(x, size, **kw)
    gx = local_response_norm_backward(g, x, size, **kw)
    assert y.dtype == gx.dtype == np.float32
    assert_rel_close(y, yt.detach().numpy(), 1e-4, "lrn forward")
    assert_rel_close(gx, xt.grad.numpy(), 1e-4, "lrn backward")
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_lrn_finite_differences(size, rng):
    x = rng.standard_normal((2, 5, 3))
    up = rng.standard_normal(x.shape)
    kw = {"alpha": 0.5, "beta": 0.75, "k": 1.5}
    gx = local_response_norm_backward(up, x, size, **kw)
    assert gx.dtype == np.float64
    num = numeric_grad(lambda a: local_response_norm(a, size, **kw), [x], 0, up)
    assert_grad_close(gx, num, 1e-6, f"lrn size={size}")


def test_lrn_nan_stays_in_its_window():
    x = np.ones((1, 6, 1))
    x[0, 0, 0] = np.nan
    y = local_response_norm(x, 3)
    np.testing.assert_array_equal(np.isnan(y.ravel()), [True, True, False, False, False, False])


def test_lrn_errors():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"expected x to be 3-D or higher \(N, C, \*\), got 2-D"):
        local_response_norm(np.zeros((2, 3), np.float32), 2)
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        local_response_norm(x, 0)
    with pytest.raises(ValueError, match="size must be a positive integer, got 2.5"):
        local_response_norm(x, 2.5)
    with pytest.raises(
        ValueError, match=r"local_response_norm_backward: grad_out of shape \(2, 3\)"
    ):
        local_response_norm_backward(np.zeros((2, 3), np.float32), x, 2)
    with pytest.raises(ValueError, match="grad_out is float64, x is float32"):
        local_response_norm_backward(np.zeros((2, 3, 4)), x, 2)


@given(
    n=st.integers(1, 3),
    c=st.integers(1, 8),
    l=st.integers(1, 4),
    size=st.integers(1, 10),
    seed=st.integers(0, 2**32 - 1),
)
def test_lrn_property_vs_torch(n, c, l, size, seed):
    x = np.random.default_rng(seed).standard_normal((n, c, l)) * 3
    y = local_response_norm(x, size, alpha=0.5)
    yt = F.local_response_norm(torch.from_numpy(x), size, alpha=0.5).numpy()
    assert_rel_close(y, yt, 1e-10, "lrn float64")
