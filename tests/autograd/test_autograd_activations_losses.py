"""Differentiable activations, softmax and losses against PyTorch, forward and backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from autograd_parity import DTYPES, TOL, check_parity, randn

from cnnperf.autograd import functional as F
from cnnperf.autograd import tensor


def _torch_hardsigmoid_exact(x):
    """torch's hardsigmoid, with a gradient of exactly g / 6 in float64.

    torch's CPU backward kernel multiplies by the float literal ``1.0f / 6.0f`` in every dtype,
    so its float64 gradient is off by 3e-8 relative; the piecewise form below is exact.
    """
    inside = (x > -3) & (x < 3)
    return torch.where(inside, (x + 3) / 6, TF.hardsigmoid(x.detach()))


# name: (ours, torch)
ACTIVATIONS = {
    "relu": (F.relu, TF.relu),
    "leaky_relu": (F.leaky_relu, TF.leaky_relu),
    "leaky_relu_0.2": (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    "relu6": (F.relu6, TF.relu6),
    "elu": (lambda x: F.elu(x, 0.7), lambda x: TF.elu(x, 0.7)),
    "selu": (F.selu, TF.selu),
    "hardtanh": (lambda x: F.hardtanh(x, -0.5, 2.0), lambda x: TF.hardtanh(x, -0.5, 2.0)),
    "sigmoid": (F.sigmoid, torch.sigmoid),
    "hardsigmoid": (F.hardsigmoid, _torch_hardsigmoid_exact),
    "tanh": (F.tanh, torch.tanh),
    "gelu": (F.gelu, TF.gelu),
    "gelu_tanh": (lambda x: F.gelu(x, "tanh"), lambda x: TF.gelu(x, approximate="tanh")),
    "silu": (F.silu, TF.silu),
    "hardswish": (F.hardswish, TF.hardswish),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_like_torch(name, dtype, rng):
    # spread over the kinks of relu6 (0, 6) and hardswish/hardsigmoid (+-3), and exact kinks
    a = (randn(rng, (2, 3, 4, 5), dtype) * 4).astype(dtype)
    a.flat[:6] = [0.0, 6.0, 3.0, -3.0, -0.5, 2.0]
    ours, theirs = ACTIVATIONS[name]
    check_parity(ours, theirs, [a], TOL[dtype], what=name)


def test_torch_hardsigmoid_float64_gradient_is_float32_precise():
    # why the test above uses _torch_hardsigmoid_exact: torch's own float64 gradient
    x = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    TF.hardsigmoid(x).backward()
    assert x.grad.item() == float(np.float32(1.0 / 6.0)) != 1.0 / 6.0
    y = tensor(np.array([0.5]), requires_grad=True)
    F.hardsigmoid(y).backward()
    assert y.grad.item() == 1.0 / 6.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wshape", [(1,), (3,)])
def test_prelu_like_torch(wshape, dtype, rng):
    a, w = randn(rng, (2, 3, 4), dtype), (rng.random(wshape) * 0.5).astype(dtype)
    check_parity(F.prelu, TF.prelu, [a, w], TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_like_torch(name, dim, dtype, rng):
    a = (randn(rng, (3, 4, 5), dtype) * 3).astype(dtype)
    ours, theirs = getattr(F, name), getattr(torch, name)
    check_parity(lambda x: ours(x, dim), lambda x: theirs(x, dim), [a], TOL[dtype])


# ----------------------------------------------------------------------------------------------
# losses

CE_CASES = [
    ("mean", dict()),
    ("sum", dict(reduction="sum")),
    ("none", dict(reduction="none")),
    ("weight_ignore", dict(ignore_index=1)),
    ("smoothing", dict(label_smoothing=0.1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CE_CASES, ids=[c[0] for c in CE_CASES])
@pytest.mark.parametrize("shape", [(6, 4), (2, 4, 3, 3)])
def test_cross_entropy_class_indices_like_torch(shape, case, dtype, rng):
    name, kw = case
    a = randn(rng, shape, dtype)
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    target.flat[0] = 1  # one ignored sample in "weight_ignore"
    kw = dict(kw)
    tkw = dict(kw)
    if name == "weight_ignore":
        weight = (rng.random(shape[1]) + 0.5).astype(dtype)
        kw["weight"], tkw["weight"] = weight, torch.from_numpy(weight)
    tt = torch.from_numpy(target)
    check_parity(
        lambda x: F.cross_entropy(x, target, **kw),
        lambda x: TF.cross_entropy(x, tt, **tkw),
        [a],
        TOL[dtype],
        what=f"cross_entropy {name}",
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_plain_cross_entropy_equals_the_general_path_bit_for_bit(reduction, dtype, rng):
    # Class indices without weights or smoothing take a short path; class weights of exactly
    # 1 take the general one through the same arithmetic: identical bits, non-finite logits
    # included, and both match torch.
    from cnnperf import ops

    x = randn(rng, (9, 5), dtype) * 4
    x[2, 1], x[4, 3], x[6] = np.inf, -np.inf, np.nan
    t = rng.integers(0, 5, 9)
    ones = np.ones(5, dtype)
    with np.errstate(all="ignore"):
        for up in (1.0, np.asarray(0.5, dtype)):
            fast = ops.cross_entropy(x, t, reduction=reduction)
            general = ops.cross_entropy(x, t, ones, reduction=reduction)
            np.testing.assert_array_equal(fast, general)
            g_fast = ops.cross_entropy_backward(up, x, t, reduction=reduction)
            g_general = ops.cross_entropy_backward(up, x, t, ones, reduction=reduction)
            np.testing.assert_array_equal(g_fast, g_general)
            assert fast.dtype == g_fast.dtype == dtype
    x = randn(rng, (9, 5), dtype)
    check_parity(
        lambda z: F.cross_entropy(z, t, reduction=reduction),
        lambda z: TF.cross_entropy(z, torch.from_numpy(t), reduction=reduction),
        [x],
        TOL[dtype],
    )
    # an ignored target inside the class range takes the general path: its sample drops out
    t[3] = 2
    kept = np.arange(9) != 3
    np.testing.assert_allclose(
        ops.cross_entropy(x, t, ignore_index=2, reduction="sum"),
        ops.cross_entropy(x[kept & (t != 2)], t[kept & (t != 2)], reduction="sum"),
        rtol=1e-6,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_probability_targets_like_torch(dtype, rng):
    a = randn(rng, (5, 4), dtype)
    p = np.exp(randn(rng, (5, 4), dtype))
    p = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
    pt = torch.from_numpy(p)
    for target in (p, tensor(p)):  # an array or a Tensor without grad
        check_parity(
            lambda x, target=target: F.cross_entropy(x, target, label_smoothing=0.2),
            lambda x: TF.cross_entropy(x, pt, label_smoothing=0.2),
            [a],
            TOL[dtype],
        )


def test_cross_entropy_target_errors(rng):
    x = tensor(randn(rng, (3, 4), np.float32), requires_grad=True)
    with pytest.raises(ValueError, match=r"gradient with respect to target is not supported"):
        F.cross_entropy(x, tensor(np.full((3, 4), 0.25, np.float32), requires_grad=True))
    with pytest.raises(ValueError, match=r"target class index 7 out of range for 4 classes"):
        F.cross_entropy(x, np.array([0, 7, 1]))
    with pytest.raises(ValueError, match=r"class-index target of shape \(2,\) does not match"):
        F.cross_entropy(x, np.array([0, 1]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_like_torch(reduction, dtype, rng):
    a, t = randn(rng, (3, 4, 2), dtype), randn(rng, (3, 4, 2), dtype)
    check_parity(
        lambda x, y: F.mse_loss(x, y, reduction),
        lambda x, y: TF.mse_loss(x, y, reduction=reduction),
        [a, t],
        TOL[dtype],
    )
    tt = torch.from_numpy(t)
    check_parity(
        lambda x: F.mse_loss(x, t, reduction),
        lambda x: TF.mse_loss(x, tt, reduction=reduction),
        [a],
        TOL[dtype],
    )


def test_loss_is_a_scalar_that_backpropagates_without_an_argument(rng):
    x = tensor(randn(rng, (4, 3), np.float32), requires_grad=True)
    loss = F.cross_entropy(x, np.array([0, 1, 2, 1], dtype=np.int32))
    assert loss.shape == () and loss.dtype == np.float32
    loss.backward()
    assert x.grad.shape == (4, 3)
    np.testing.assert_allclose(x.grad.sum(axis=1), 0, atol=1e-7)
