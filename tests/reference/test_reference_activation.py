"""cnnperf.reference activations and softmax against PyTorch in float64, forward and backward.

Includes the derivative conventions at kinks (relu at 0, relu6 / hardtanh at the bounds,
hardswish / hardsigmoid at +-3, leaky_relu / elu / selu / prelu at 0), which are where a fast
kernel most easily disagrees.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_rel_close, to_torch

from cnnperf import reference as ref

TOL = 1e-10
# PyTorch's hardsigmoid backward multiplies by float32(1/6) even in float64 (rel. error 3e-8).
HARDSIGMOID_GRAD_TOL = 1e-7

# name -> (reference kwargs, torch function of (x, **kwargs)); the reference call is
# ref.<name>(x, **kwargs) and ref.<name>_backward(grad, x, **kwargs).
ACTIVATIONS = {
    "relu": ({}, F.relu),
    "leaky_relu": ({}, F.leaky_relu),
    "leaky_relu_0.2": (dict(negative_slope=0.2), F.leaky_relu),
    "leaky_relu_neg": (dict(negative_slope=-0.5), F.leaky_relu),
    "elu": ({}, F.elu),
    "elu_alpha2": (dict(alpha=2.0), F.elu),
    "selu": ({}, F.selu),
    "sigmoid": ({}, torch.sigmoid),
    "tanh": ({}, torch.tanh),
    "gelu": ({}, F.gelu),
    "gelu_tanh": (dict(approximate="tanh"), F.gelu),
    "silu": ({}, F.silu),
    "hardswish": ({}, F.hardswish),
    "hardsigmoid": ({}, F.hardsigmoid),
    "relu6": ({}, F.relu6),
    "clip": ({}, lambda x: F.hardtanh(x)),
    "clip_0_2": (
        dict(min_val=0.0, max_val=2.0),
        lambda x, min_val, max_val: F.hardtanh(x, min_val, max_val),
    ),
}

# Kinks and boundary points, checked in torch 2.13 (autograd derivative at exactly these x).
KINKS = np.array([0.0, -0.0, 1.0, -1.0, 2.0, 3.0, -3.0, 6.0, -6.0, 1e-300, -1e-300])


def _ref_fns(key):
    name = key.split("_")[0] if key not in ("leaky_relu", "gelu_tanh") else key
    name = {"leaky": "leaky_relu", "gelu_tanh": "gelu"}.get(name, name)
    return getattr(ref, name), getattr(ref, name + "_backward")


def _torch_check(key, x, g):
    kwargs, tfn = ACTIVATIONS[key]
    xt = to_torch(x, True)
    y = tfn(xt, **kwargs)
    y.backward(to_torch(g))
    return y.detach().numpy(), xt.grad.numpy()


def _inputs(rng):
    x = np.concatenate([rng.standard_normal(40) * 3, [-50.0, -20.0, 20.0, 50.0, 700.0, -700.0]])
    return x.reshape(2, 23)


@pytest.mark.parametrize("key", list(ACTIVATIONS))
def test_activation_matches_torch(key, rng):
    fwd, bwd = _ref_fns(key)
    kwargs = ACTIVATIONS[key][0]
    x = _inputs(rng)
    g = rng.standard_normal(x.shape)
    x0 = x.copy()
    y_t, gx_t = _torch_check(key, x, g)
    y = fwd(x, **kwargs)
    assert y.dtype == np.float64 and y.shape == x.shape
    assert_rel_close(y, y_t, TOL, f"{key} forward")
    tol = HARDSIGMOID_GRAD_TOL if key == "hardsigmoid" else TOL
    assert_rel_close(bwd(g, x, **kwargs), gx_t, tol, f"{key} backward")
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("key", list(ACTIVATIONS))
def test_activation_kinks_match_torch(key):
    fwd, bwd = _ref_fns(key)
    kwargs = ACTIVATIONS[key][0]
    g = np.linspace(0.5, 1.5, KINKS.size)
    y_t, gx_t = _torch_check(key, KINKS, g)
    assert_rel_close(fwd(KINKS, **kwargs), y_t, TOL, f"{key} forward")
    tol = HARDSIGMOID_GRAD_TOL if key == "hardsigmoid" else TOL
    assert_rel_close(bwd(g, KINKS, **kwargs), gx_t, tol, f"{key} backward at kinks")


@pytest.mark.parametrize("key", list(ACTIVATIONS))
def test_activation_nan_propagates(key):
    """Forward: NaN in -> NaN out, +-inf as torch. Backward: NaN where x is NaN (torch varies)."""
    fwd, bwd = _ref_fns(key)
    kwargs = ACTIVATIONS[key][0]
    x = np.array([np.nan, 1.0, -np.inf, np.inf, -1.0])
    g = np.array([1.0, 0.5, 2.0, 1.5, -1.0])
    y_t, gx_t = _torch_check(key, x, g)
    np.testing.assert_allclose(fwd(x, **kwargs), y_t, rtol=1e-15, atol=0, err_msg=key)
    gx = bwd(g, x, **kwargs)
    assert np.isnan(gx[0]), key
    tol = HARDSIGMOID_GRAD_TOL if key == "hardsigmoid" else 1e-15
    np.testing.assert_allclose(gx[1:], gx_t[1:], rtol=tol, atol=0, err_msg=key)


def test_hardswish_zero_branch_ignores_grad_nan():
    """A hard-zero derivative selects 0 even for a NaN / inf upstream gradient (like torch)."""
    x = np.array([-5.0, -1.0, 7.0])
    g = np.array([np.nan, np.inf, 1.0])
    np.testing.assert_array_equal(ref.relu_backward(g, x), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(ref.hardswish_backward(g, x)[0], 0.0)


@pytest.mark.parametrize(
    "shape, wsize", [((2, 3, 4, 5), 3), ((2, 3, 4, 5), 1), ((4, 6), 6), ((7,), 1)]
)
def test_prelu_matches_torch(shape, wsize, rng):
    x = rng.standard_normal(shape)
    x.flat[:3] = 0.0  # the kink: slope at 0
    w = rng.standard_normal(wsize)
    g = rng.standard_normal(shape)
    xt, wt = to_torch(x, True), to_torch(w, True)
    y_t = F.prelu(xt, wt)
    y_t.backward(to_torch(g))
    assert_rel_close(ref.prelu(x, w), y_t.detach().numpy(), TOL, "forward")
    gx, gw = ref.prelu_backward(g, x, w)
    assert_rel_close(gx, xt.grad.numpy(), TOL, "grad_x")
    assert_rel_close(gw, wt.grad.numpy(), TOL, "grad_w")
    with pytest.raises(ValueError):
        ref.prelu(x, np.ones(wsize + 1))


@pytest.mark.parametrize("axis", [-1, 0, 1, 2])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_matches_torch(name, axis, rng):
    x = rng.standard_normal((3, 4, 5)) * 5
    x[0, 0, 0] = 800.0  # overflows without the max shift
    x[1, 1, 1] = -800.0
    g = rng.standard_normal(x.shape)
    xt = to_torch(x, True)
    y_t = getattr(F, name)(xt, dim=axis)
    y_t.backward(to_torch(g))
    y = getattr(ref, name)(x, axis=axis)
    assert_rel_close(y, y_t.detach().numpy(), TOL, f"{name} forward")
    gx = getattr(ref, name + "_backward")(g, x, axis=axis)
    assert_rel_close(gx, xt.grad.numpy(), TOL, f"{name} backward")


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_special_values(name):
    x = np.array([[np.nan, 1.0, 2.0], [-np.inf, -np.inf, -np.inf], [-np.inf, 0.0, 1.0]])
    y_t = getattr(F, name)(to_torch(x), dim=-1).numpy()
    np.testing.assert_allclose(getattr(ref, name)(x), y_t, rtol=1e-14, atol=0, err_msg=name)
    assert getattr(ref, name)(np.zeros((3, 0))).shape == (3, 0)
    assert getattr(ref, name)(np.zeros((0, 4)), axis=0).shape == (0, 4)


def test_activation_rejects_bad_arguments():
    with pytest.raises(ValueError, match="approximate"):
        ref.gelu(np.zeros(3), approximate="erf")
    with pytest.raises(ValueError, match="shape"):
        ref.relu_backward(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="out of range"):
        ref.softmax(np.zeros((2, 3)), axis=2)
