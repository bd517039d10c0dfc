"""cnnperf.reference linear, batch_norm, dropout, local_response_norm, pad and the losses
against PyTorch in float64, forward and backward."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_rel_close, to_torch

from cnnperf import reference as ref

TOL = 1e-10


def close(actual, expected, tol, what):
    """assert_rel_close that also takes 0-d results (the shared helper needs rank >= 1)."""
    assert np.shape(actual) == np.shape(expected), f"{what}: shape {np.shape(actual)}"
    assert_rel_close(np.atleast_1d(actual), np.atleast_1d(expected), tol, what)


def grad_tensor(g) -> torch.Tensor:
    """An upstream gradient as a float64 tensor; 0-d stays 0-d (to_torch makes it 1-d)."""
    return torch.from_numpy(np.array(g, dtype=np.float64))


def torch_run(fn, arrays, rng):
    """y = fn(*tensors) with autograd; returns (y, grad_out, [grad per array or None])."""
    ts = [None if a is None else to_torch(np.asarray(a, np.float64), True) for a in arrays]
    y = fn(*ts)
    g = rng.standard_normal(tuple(y.shape))
    if y.numel():
        y.backward(to_torch(g))
    grads = [
        None if t is None else (np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy())
        for t in ts
    ]
    return y.detach().numpy(), g, grads


# ----------------------------------------------------------------------------- linear


@pytest.mark.parametrize("x_shape", [(3, 5), (2, 3, 5), (5,), (0, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(x_shape, bias, rng):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(4) if bias else None
    y_t, g, (gx_t, gw_t, gb_t) = torch_run(F.linear, [x, w, b], rng)
    assert_rel_close(ref.linear(x, w, b), y_t, TOL, "forward")
    gx, gw, gb = ref.linear_backward(g, x, w, bias=bias)
    assert_rel_close(gx, gx_t, TOL, "grad_x")
    assert_rel_close(gw, gw_t, TOL, "grad_w")
    if bias:
        assert_rel_close(gb, gb_t, TOL, "grad_b")
    else:
        assert gb is None
    with pytest.raises(ValueError, match="last dim"):
        ref.linear(x, w[:, :4])


# ----------------------------------------------------------------------------- batch norm


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 4), (2, 3, 4, 5)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("mode", ["eval", "train", "train_no_stats"])
def test_batch_norm_matches_torch(shape, affine, mode, rng):
    c = shape[1]
    x = rng.standard_normal(shape) * 2 + 0.5
    rm, rv = rng.standard_normal(c), rng.random(c) + 0.5
    w = rng.standard_normal(c) if affine else None
    b = rng.standard_normal(c) if affine else None
    training = mode != "eval"
    stats = mode != "train_no_stats"
    rm_t, rv_t = to_torch(rm), to_torch(rv)  # torch updates these in place

    def fn(x, w, b):
        return F.batch_norm(x, rm_t if stats else None, rv_t if stats else None, w, b,
                            training=training, momentum=0.3, eps=1e-4)  # fmt: skip

    y_t, g, (gx_t, gw_t, gb_t) = torch_run(fn, [x, w, b], rng)
    rm0, rv0 = rm.copy(), rv.copy()
    args = (rm if stats else None, rv if stats else None, w, b)
    out = ref.batch_norm(x, *args, training=training, momentum=0.3, eps=1e-4)
    if training and stats:
        y, new_rm, new_rv = out
        assert_rel_close(new_rm, rm_t.numpy(), TOL, "running_mean")
        assert_rel_close(new_rv, rv_t.numpy(), TOL, "running_var (unbiased)")
    else:
        y = out
    assert_rel_close(y, y_t, TOL, "forward")
    np.testing.assert_array_equal(rm, rm0)  # inputs are never modified
    np.testing.assert_array_equal(rv, rv0)
    gx, gw, gb = ref.batch_norm_backward(g, x, *args, training=training, eps=1e-4)
    assert_rel_close(gx, gx_t, 1e-9, "grad_x")
    if affine:
        assert_rel_close(gw, gw_t, TOL, "grad_w")
        assert_rel_close(gb, gb_t, TOL, "grad_b")
    else:
        assert gw is None and gb is None


def test_batch_norm_edge_cases(rng):
    with pytest.raises(ValueError, match="more than 1 value"):
        ref.batch_norm(np.ones((1, 3)), training=True)
    with pytest.raises(ValueError, match="eval mode"):
        ref.batch_norm(np.ones((2, 3)))
    # an empty batch leaves the running stats untouched, like torch
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    y, new_rm, new_rv = ref.batch_norm(np.zeros((0, 3, 2)), rm, rv, training=True)
    assert y.shape == (0, 3, 2)
    np.testing.assert_array_equal(new_rm, rm)
    np.testing.assert_array_equal(new_rv, rv)


# ----------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("p", [0.0, 0.3, 0.8, 1.0])
def test_dropout_matches_torch(p, rng):
    x = rng.standard_normal((4, 5, 6))
    x[x == 0] = 1.0
    torch.manual_seed(7)
    y_t, g, (gx_t,) = torch_run(lambda t: F.dropout(t, p, training=True), [x], rng)
    mask = y_t != 0  # x has no zeros, so torch's mask is where the output survived
    assert_rel_close(ref.dropout(x, mask, p), y_t, TOL, "forward")
    assert_rel_close(ref.dropout_backward(g, mask, p), gx_t, TOL, "backward")
    with pytest.raises(ValueError):
        ref.dropout(x, mask[0], p)


# ----------------------------------------------------------------------------- LRN


@pytest.mark.parametrize("shape", [(2, 7, 3, 4), (2, 5, 6), (1, 3, 2, 2, 2)])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 9])
@pytest.mark.parametrize("alpha, beta, k", [(1e-4, 0.75, 1.0), (0.5, 0.6, 2.0)])
def test_local_response_norm_matches_torch(shape, size, alpha, beta, k, rng):
    x = rng.standard_normal(shape) * 2

    def fn(t):
        return F.local_response_norm(t, size, alpha, beta, k)

    y_t, g, (gx_t,) = torch_run(fn, [x], rng)
    assert_rel_close(ref.local_response_norm(x, size, alpha, beta, k), y_t, TOL, "forward")
    gx = ref.local_response_norm_backward(g, x, size, alpha, beta, k)
    assert_rel_close(gx, gx_t, TOL, "grad_x")


def test_local_response_norm_needs_3d():
    with pytest.raises(ValueError, match="rank >= 3"):
        ref.local_response_norm(np.ones((2, 5)), 3)


# ----------------------------------------------------------------------------- pad

PAD_CASES = [
    ((2, 3, 5), (2, 1), ["constant", "reflect", "replicate"]),
    ((2, 3, 5, 6), (1, 2, 3, 0), ["constant", "reflect", "replicate"]),
    ((1, 2, 3, 4, 5), (1, 0, 2, 1, 1, 2), ["constant", "reflect", "replicate"]),
    ((2, 3, 5, 6), (4, 5, 4, 4), ["reflect"]),  # the largest reflect pads (< size)
    ((2, 3, 5, 6), (-1, 2, 0, -2), ["constant"]),  # negative pads crop
    ((3, 4), (1, 1, 2, 0), ["constant"]),
    ((4,), (0, 3), ["constant"]),
]


@pytest.mark.parametrize(
    "shape, pads, mode",
    [(s, p, m) for s, p, modes in PAD_CASES for m in modes],
    ids=str,
)
def test_pad_matches_torch(shape, pads, mode, rng):
    x = rng.standard_normal(shape)
    kw = dict(value=1.5) if mode == "constant" else {}
    y_t, g, (gx_t,) = torch_run(lambda t: F.pad(t, pads, mode=mode, **kw), [x], rng)
    np.testing.assert_array_equal(ref.pad(x, pads, mode=mode, **kw), y_t)
    assert_rel_close(ref.pad_backward(g, x, pads, mode=mode), gx_t, TOL, "grad_x")


def test_pad_rejects_bad_arguments():
    with pytest.raises(ValueError, match="reflect"):
        ref.pad(np.ones((1, 3)), (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="even length"):
        ref.pad(np.ones((1, 3)), (1,))
    with pytest.raises(ValueError, match="mode"):
        ref.pad(np.ones((1, 3)), (1, 1), mode="circular")


# ----------------------------------------------------------------------------- losses

REDUCTIONS = ["mean", "sum", "none"]


def _ce_check(logits, target, rng, **kw):
    target_t = torch.from_numpy(np.asarray(target).copy())
    xt = to_torch(logits, True)
    kw_t = dict(kw)
    if kw.get("weight") is not None:
        kw_t["weight"] = to_torch(kw["weight"])
    loss_t = F.cross_entropy(xt, target_t, **kw_t)
    g = rng.standard_normal(tuple(loss_t.shape))
    if xt.numel():
        loss_t.backward(grad_tensor(g))
    loss = ref.cross_entropy(logits, target, **kw)
    assert np.shape(loss) == tuple(loss_t.shape)
    close(loss, loss_t.detach().numpy(), TOL, f"cross_entropy {kw}")
    grad = ref.cross_entropy_backward(g, logits, target, **kw)
    grad_t = np.zeros(logits.shape) if xt.grad is None else xt.grad.numpy()
    close(grad, grad_t, TOL, f"cross_entropy grad {kw}")


CE_OPTIONS = list(
    itertools.product(REDUCTIONS, [False, True], [0.0, 0.2], [-100, 1])
)  # reduction, weighted, label_smoothing, ignore_index


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 2, 3)], ids=str)
@pytest.mark.parametrize("reduction, weighted, smoothing, ignore", CE_OPTIONS, ids=str)
def test_cross_entropy_class_indices(shape, reduction, weighted, smoothing, ignore, rng):
    logits = rng.standard_normal(shape) * 3
    n, c = shape[0], shape[1]
    target = rng.integers(0, c, size=(n,) + shape[2:])
    target.flat[::4] = ignore  # some samples ignored (-100, or the valid class 1)
    weight = rng.random(c) + 0.2 if weighted else None
    _ce_check(logits, target, rng, weight=weight, ignore_index=ignore, reduction=reduction,
              label_smoothing=smoothing)  # fmt: skip


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 2, 3)], ids=str)
@pytest.mark.parametrize(
    "reduction, weighted, smoothing", list(itertools.product(REDUCTIONS, [False, True], [0.0, 0.3]))
)
def test_cross_entropy_probabilities(shape, reduction, weighted, smoothing, rng):
    logits = rng.standard_normal(shape) * 3
    target = np.moveaxis(ref.softmax(np.moveaxis(rng.standard_normal(shape), 1, -1)), -1, 1)
    weight = rng.random(shape[1]) + 0.2 if weighted else None
    _ce_check(logits, np.ascontiguousarray(target), rng, weight=weight, reduction=reduction,
              label_smoothing=smoothing)  # fmt: skip


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_unbatched_and_empty(reduction, rng):
    logits = rng.standard_normal(5)
    _ce_check(logits, np.array(3), rng, reduction=reduction, label_smoothing=0.1)
    _ce_check(logits, ref.softmax(rng.standard_normal(5)), rng, reduction=reduction)
    _ce_check(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), rng, reduction=reduction)
    _ce_check(np.zeros((0, 4)), np.zeros((0, 4)), rng, reduction=reduction)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_all_ignored_is_nan_with_zero_grad(smoothing, rng):
    logits = rng.standard_normal((3, 4))
    target = np.full(3, -100)
    w = rng.random(4)
    assert np.isnan(ref.cross_entropy(logits, target, label_smoothing=smoothing, weight=w))
    _ce_check(logits, target, rng, label_smoothing=smoothing, weight=w)


def test_cross_entropy_large_logits_and_bad_targets(rng):
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 800.0, 801.0]])
    _ce_check(logits, np.array([2, 0]), rng)
    with pytest.raises(ValueError, match="out of range"):
        ref.cross_entropy(logits, np.array([3, 0]))
    with pytest.raises(ValueError, match="shape"):
        ref.cross_entropy(logits, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="reduction"):
        ref.cross_entropy(logits, np.array([0, 0]), reduction="avg")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2, 2), (0, 3)], ids=str)
def test_mse_loss_matches_torch(shape, reduction, rng):
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    at, bt = to_torch(a, True), to_torch(b)
    loss_t = F.mse_loss(at, bt, reduction=reduction)
    g = rng.standard_normal(tuple(loss_t.shape))
    if at.numel():
        loss_t.backward(grad_tensor(g))
    close(ref.mse_loss(a, b, reduction), loss_t.detach().numpy(), TOL, "forward")
    grad_t = np.zeros(shape) if at.grad is None else at.grad.numpy()
    close(ref.mse_loss_backward(g, a, b, reduction), grad_t, TOL, "backward")
