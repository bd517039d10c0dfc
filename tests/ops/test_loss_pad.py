"""cross_entropy, mse_loss and pad: PyTorch parity (float32), finite differences, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_rel_close as _assert_rel_close
from conftest import to_torch
from gradcheck import assert_grad_close, numeric_grad
from hypothesis import given
from hypothesis import strategies as st

from cnnperf.ops.loss import cross_entropy, cross_entropy_backward, mse_loss, mse_loss_backward
from cnnperf.ops.pad import pad, pad_backward


def assert_rel_close(actual, expected, tol, what=""):
    # conftest.rel_err cannot index 0-d arrays (the reduced losses)
    _assert_rel_close(np.atleast_1d(actual), np.atleast_1d(expected), tol, what)


# ----------------------------------------------------------------------------------------------
# cross_entropy
# ----------------------------------------------------------------------------------------------

C = 5


def _targets(rng, logits_shape, kind, ignore):
    """An integer or probability target for logits of the given shape."""
    axis = 0 if len(logits_shape) == 1 else 1
    if kind == "probs":
        t = rng.uniform(0, 1, logits_shape)
        return (t / t.sum(axis=axis, keepdims=True)).astype(np.float32)
    sample = logits_shape[:axis] + logits_shape[axis + 1 :]
    t = rng.integers(0, C, sample)
    if ignore and t.size > 1:
        t.reshape(-1)[::3] = ignore
    return t


CE_CASES = [
    # (logits shape, target kind, use weight, ignore_index or None, label_smoothing)
    ((6, C), "index", False, None, 0.0),
    ((6, C), "index", True, None, 0.0),
    ((6, C), "index", True, -100, 0.0),
    ((6, C), "index", False, 2, 0.0),  # an ignore_index inside the class range
    ((6, C), "index", False, -100, 0.2),
    ((6, C), "index", True, -100, 0.3),
    ((2, C, 3, 4), "index", True, -100, 0.1),
    ((2, C, 3), "index", False, None, 0.0),
    ((C,), "index", True, None, 0.1),  # unbatched
    ((6, C), "probs", False, None, 0.0),
    ((6, C), "probs", True, None, 0.25),
    ((2, C, 3, 2), "probs", True, None, 0.0),
    ((C,), "probs", False, None, 0.1),
]


@pytest.mark.parametrize("case", CE_CASES, ids=[str(i) for i in range(len(CE_CASES))])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(case, reduction, rng):
    shape, kind, use_w, ignore, ls = case
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    target = _targets(rng, shape, kind, ignore)
    weight = rng.uniform(0.2, 2.0, C).astype(np.float32) if use_w else None
    kw = dict(reduction=reduction, label_smoothing=ls)
    if ignore is not None:
        kw["ignore_index"] = ignore
    copies = [logits.copy(), target.copy()]

    lt = to_torch(logits, True)
    tt = torch.from_numpy(target.astype(np.int64) if kind == "index" else target)
    wt = None if weight is None else torch.from_numpy(weight)
    loss_t = F.cross_entropy(lt, tt, weight=wt, **kw)
    up = rng.standard_normal(loss_t.shape).astype(np.float32)
    loss_t.backward(torch.from_numpy(up))

    loss = cross_entropy(logits, target, weight, **kw)
    assert loss.dtype == np.float32 and loss.shape == tuple(loss_t.shape)
    assert_rel_close(loss, loss_t.detach().numpy(), 1e-4, "cross_entropy forward")
    grad_out = up if reduction == "none" else float(up)
    grad = cross_entropy_backward(grad_out, logits, target, weight, **kw)
    assert grad.dtype == np.float32 and grad.shape == shape
    assert_rel_close(grad, lt.grad.numpy(), 1e-4, "cross_entropy backward")
    np.testing.assert_array_equal(logits, copies[0])
    np.testing.assert_array_equal(target, copies[1])


@pytest.mark.parametrize("tdtype", [np.int8, np.uint8, np.int32, np.int64])
def test_cross_entropy_any_integer_target(tdtype, rng):
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    target = np.array([0, 2, 1, 2], tdtype)
    expected = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(target.astype(np.int64)))
    assert_rel_close(cross_entropy(logits, target), expected.numpy(), 1e-5, str(tdtype))


@pytest.mark.parametrize(
    "kind, use_w, ls, reduction",
    [
        ("index", True, 0.0, "mean"),
        ("index", True, 0.3, "mean"),
        ("index", False, 0.2, "none"),
        ("probs", True, 0.2, "mean"),
        ("probs", False, 0.0, "sum"),
    ],
)
def test_cross_entropy_finite_differences(kind, use_w, ls, reduction, rng):
    shape = (4, C, 2)
    logits = rng.standard_normal(shape)
    target = _targets(rng, shape, kind, -100)
    target = target.astype(np.float64) if kind == "probs" else target
    weight = rng.uniform(0.2, 2.0, C) if use_w else None
    kw = dict(weight=weight, reduction=reduction, label_smoothing=ls)
    loss = cross_entropy(logits, target, **kw)
    assert loss.dtype == np.float64
    up = rng.standard_normal(loss.shape) if reduction == "none" else np.array(1.7)
    grad = cross_entropy_backward(up, logits, target, **kw)
    num = numeric_grad(lambda z: cross_entropy(z, target, **kw), [logits], 0, up)
    assert_grad_close(grad, num, 1e-6, "cross_entropy")


def test_cross_entropy_all_ignored_and_empty():
    logits = np.zeros((3, 4), np.float32)
    target = np.full(3, -100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = cross_entropy(logits, target)
        grad = cross_entropy_backward(1.0, logits, target)
    assert np.isnan(loss) and loss.shape == ()
    np.testing.assert_array_equal(grad, 0.0)  # torch: ignored samples get exactly 0
    assert np.isnan(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(target)).item())
    assert float(cross_entropy(logits, target, reduction="sum")) == 0.0
    np.testing.assert_array_equal(cross_entropy(logits, target, reduction="none"), 0.0)
    assert grad.shape == logits.shape
    # ignored samples are exactly 0 even with non-finite logits
    bad = np.array([[np.nan, 0.0], [1.0, 2.0]], np.float32)
    losses = cross_entropy(bad, np.array([-100, 1]), reduction="none")
    assert losses[0] == 0.0 and np.isfinite(losses[1])


def test_cross_entropy_stable_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-3e38, 3e38, 0.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = cross_entropy(logits, np.array([0, 1]), reduction="none")
        grad = cross_entropy_backward(
            np.ones(2, np.float32), logits, np.array([0, 1]), reduction="none"
        )
    np.testing.assert_array_equal(loss, [0.0, 0.0])
    assert np.isfinite(grad).all()


def test_cross_entropy_nan_logits_propagate():
    logits = np.array([[np.nan, 0.0], [1.0, 2.0]])
    losses = cross_entropy(logits, np.array([1, 0]), reduction="none")
    assert np.isnan(losses[0]) and np.isfinite(losses[1])
    assert np.isnan(cross_entropy(logits, np.array([1, 0])))


def test_cross_entropy_errors():
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"target class index 5 out of range for 4 classes"):
        cross_entropy(logits, np.array([0, 5, 1]))
    with pytest.raises(ValueError, match=r"target class index -1, 7 out of range"):
        cross_entropy(logits, np.array([-1, 7, -100]))
    with pytest.raises(
        ValueError, match=r"class-index target of shape \(2,\) does not match logits"
    ):
        cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(
        ValueError, match=r"probability target of shape \(3, 3\) must have the shape"
    ):
        cross_entropy(logits, np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="logits is float32, target is float64"):
        cross_entropy(logits, np.zeros((3, 4)))
    with pytest.raises(
        ValueError, match=r"target must hold integer class indices .* got dtype bool"
    ):
        cross_entropy(logits, np.zeros(3, bool))
    with pytest.raises(ValueError, match=r"weight of shape \(3,\) does not match the 4 classes"):
        cross_entropy(logits, np.zeros(3, int), weight=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0, got 1.5"):
        cross_entropy(logits, np.zeros(3, int), label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        cross_entropy(logits, np.zeros(3, int), reduction="avg")
    with pytest.raises(ValueError, match="logits must have a class dimension"):
        cross_entropy(np.array(1.0), np.array(0))
    with pytest.raises(ValueError, match="logits must have dtype float32 or float64, got int64"):
        cross_entropy(np.zeros((3, 4), int), np.zeros(3, int))
    with pytest.raises(ValueError, match=r"grad_out must be a scalar for reduction='mean'"):
        cross_entropy_backward(np.ones(3), logits, np.zeros(3, int))
    with pytest.raises(ValueError, match=r"grad_out of shape \(2,\) does not match the loss shape"):
        cross_entropy_backward(np.ones(2, np.float32), logits, np.zeros(3, int), reduction="none")
    with pytest.raises(ValueError, match="cross_entropy_backward: target class index 9"):
        cross_entropy_backward(1.0, logits, np.array([9, 0, 0]))


# ----------------------------------------------------------------------------------------------
# mse_loss
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), ()])
def test_mse_matches_torch(reduction, shape, rng):
    x = np.asarray(rng.standard_normal(shape), np.float32)
    t = np.asarray(rng.standard_normal(shape), np.float32)
    x0, t0 = x.copy(), t.copy()
    xt = torch.tensor(x, requires_grad=True)
    lt = F.mse_loss(xt, torch.tensor(t), reduction=reduction)
    up = rng.standard_normal(lt.shape).astype(np.float32)
    lt.backward(torch.from_numpy(up))
    loss = mse_loss(x, t, reduction)
    assert loss.dtype == np.float32 and loss.shape == tuple(lt.shape)
    assert_rel_close(loss, lt.detach().numpy(), 1e-5, "mse forward")
    grad_out = up if reduction == "none" else np.asarray(up)
    grad = mse_loss_backward(grad_out, x, t, reduction)
    assert grad.dtype == np.float32
    assert_rel_close(grad, xt.grad.numpy(), 1e-5, "mse backward")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(t, t0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_finite_differences(reduction, rng):
    x, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    up = rng.standard_normal((3, 4)) if reduction == "none" else np.array(0.7)
    grad = mse_loss_backward(up, x, t, reduction)
    num = numeric_grad(lambda a: mse_loss(a, t, reduction), [x], 0, up)
    assert_grad_close(grad, num, 1e-6, "mse")
    assert mse_loss(x, t, reduction).dtype == np.float64


def test_mse_nan_and_empty():
    x = np.array([1.0, np.nan])
    assert np.isnan(mse_loss(x, np.zeros(2)))
    assert np.isnan(mse_loss(x, np.zeros(2), "none")[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(mse_loss(np.zeros(0), np.zeros(0)))


def test_mse_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(
        ValueError, match=r"target of shape \(3,\) does not match input of shape \(2, 3\)"
    ):
        mse_loss(x, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'max'"):
        mse_loss(x, x, "max")
    with pytest.raises(ValueError, match="input is float32, target is float64"):
        mse_loss(x, np.zeros((2, 3)))
    with pytest.raises(
        ValueError, match=r"mse_loss_backward: grad_out must be a scalar .* \(2, 3\)"
    ):
        mse_loss_backward(x, x, x)
    with pytest.raises(ValueError, match=r"grad_out of shape \(3,\) does not match input"):
        mse_loss_backward(np.zeros(3, np.float32), x, x, "none")


# ----------------------------------------------------------------------------------------------
# pad
# ----------------------------------------------------------------------------------------------

PAD_CASES = [
    # (shape, pad, mode) -- shapes torch supports for each non-constant mode
    ((2, 3, 5), (2, 1), "reflect"),
    ((2, 3, 5), (4, 0), "reflect"),
    ((3, 5), (1, 3), "reflect"),
    ((1, 2, 4, 5), (1, 2, 3, 0), "reflect"),
    ((2, 3, 4), (0, 1, 1, 2), "reflect"),
    ((1, 2, 3, 4, 5), (1, 2, 2, 1, 1, 1), "reflect"),
    ((2, 3, 5), (2, 3), "replicate"),
    ((1, 2, 4, 5), (3, 1, 0, 4), "replicate"),
    ((1, 2, 3, 4, 5), (2, 0, 1, 1, 3, 1), "replicate"),
    ((2, 3, 4, 5), (1, 2, 0, 3), "constant"),
    ((2, 3, 4), (1, 1, 2, 0, 1, 1), "constant"),
    ((4,), (2, 5), "constant"),
    ((2, 3), (), "constant"),
]


@pytest.mark.parametrize("shape, pads, mode", PAD_CASES)
def test_pad_matches_torch(shape, pads, mode, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    x0 = x.copy()
    value = 1.5 if mode == "constant" else 0.0
    xt = to_torch(x, True)
    yt = F.pad(xt, pads, mode=mode, value=value) if mode == "constant" else F.pad(xt, pads, mode)
    g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    y = pad(x, pads, mode, value)
    assert y.dtype == np.float32 and y.shape == tuple(yt.shape)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    gx = pad_backward(g, x, pads, mode)
    assert gx.dtype == np.float32
    assert_rel_close(gx, xt.grad.numpy(), 1e-5, f"pad {mode} backward")
    np.testing.assert_array_equal(x, x0)
    assert not np.shares_memory(pad(x, (), mode), x)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_pad_finite_differences(mode, rng):
    x = rng.standard_normal((2, 3, 4))
    pads = (3, 1, 2, 2)
    up = rng.standard_normal(pad(x, pads, mode).shape)
    gx = pad_backward(up, x, pads, mode)
    assert gx.dtype == np.float64
    num = numeric_grad(lambda a: pad(a, pads, mode), [x], 0, up)
    assert_grad_close(gx, num, 1e-6, f"pad {mode}")


@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    data=st.data(),
)
def test_pad_property(shape, data):
    mode = data.draw(st.sampled_from(["constant", "reflect", "replicate"]), label="mode")
    k = data.draw(st.integers(0, len(shape)), label="padded dims")
    pads = []
    for i in range(k):
        size = shape[len(shape) - 1 - i]
        hi = size - 1 if mode == "reflect" else 4
        pads += [data.draw(st.integers(0, hi)), data.draw(st.integers(0, hi))]
    x = np.random.default_rng(len(pads)).standard_normal(shape)
    y = pad(x, tuple(pads), mode, value=-2.0)
    # compare with NumPy's pad: its "reflect" is torch's reflect, "edge" is replicate
    widths = [(0, 0)] * (len(shape) - k) + [(pads[2 * i], pads[2 * i + 1]) for i in range(k)][::-1]
    if mode == "constant":
        expected = np.pad(x, widths, constant_values=-2.0)
    else:
        expected = np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")
    np.testing.assert_array_equal(y, expected)
    # the backward is the adjoint: <pad(x), g> == <x, pad_backward(g)>
    g = np.random.default_rng(1).standard_normal(y.shape)
    zero_fill = pad(x, tuple(pads), mode) if mode == "constant" else y
    lhs = float(np.sum(zero_fill * g))
    rhs = float(np.sum(x * pad_backward(g, x, tuple(pads), mode)))
    assert abs(lhs - rhs) <= 1e-9 * max(1.0, abs(lhs))


def test_pad_nan_and_float64():
    x = np.array([[np.nan, 1.0, 2.0]])
    y = pad(x, (2, 2), "reflect")
    assert y.dtype == np.float64
    # [x2, x1, x0, x1, x2, x1, x0]: the NaN is mirrored into the right border
    np.testing.assert_array_equal(np.isnan(y[0]), [False, False, True, False, False, False, True])
    assert np.isnan(pad(x, (1, 1), value=np.nan)[0, [0, 1, 4]]).all()


def test_pad_errors():
    x = np.zeros((1, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"pad: pad length must be even, got 3 in \(1, 1, 1\)"):
        pad(x, (1, 1, 1))
    with pytest.raises(
        ValueError, match=r"pads 4 dimensions but x of shape \(1, 2, 3\) has only 3"
    ):
        pad(x, (1,) * 8)
    with pytest.raises(ValueError, match=r"negative padding is not supported, got pad \(-1, 0\)"):
        pad(x, (-1, 0))
    msg = (
        r"reflect padding must be less than the dimension it pads, got padding \(3, 0\) for "
        r"dimension 2 of size 3"
    )
    with pytest.raises(ValueError, match=msg):
        pad(x, (3, 0), "reflect")
    with pytest.raises(ValueError, match=r"padding \(0, 2\) for dimension 1 of size 2"):
        pad(x, (0, 0, 0, 2), "reflect")
    with pytest.raises(ValueError, match="mode must be one of .* got 'circular'"):
        pad(x, (1, 1), "circular")
    with pytest.raises(ValueError, match=r"pad must be a tuple of ints, got \(1.5, 1\)"):
        pad(x, (1.5, 1))
    with pytest.raises(ValueError, match="pad must be a tuple of ints, got 2"):
        pad(x, 2)
    with pytest.raises(ValueError, match=r"cannot replicate-pad dimension 2 of size 0"):
        pad(np.zeros((1, 2, 0), np.float32), (1, 1), "replicate")
    with pytest.raises(
        ValueError,
        match=r"pad_backward: grad_out of shape \(1, 2, 3\) does not match the padded shape "
        r"\(1, 2, 5\)",
    ):
        pad_backward(x, x, (1, 1))
    with pytest.raises(ValueError, match="pad: x must have dtype float32 or float64, got int32"):
        pad(np.zeros(3, np.int32), (1, 1))
