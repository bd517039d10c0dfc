"""cnnperf.nn.functional names and signatures, nn.init formulas and gradient clipping vs torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from conftest import assert_rel_close

import cnnperf
from cnnperf import nn
from cnnperf.nn import functional as F
from cnnperf.nn import init


def test_functional_names_are_torchs():
    for name in F.__all__:
        if name == "flatten":  # torch.flatten, not in torch.nn.functional
            assert hasattr(torch, name)
            continue
        assert hasattr(TF, name), name


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("relu", dict(inplace=True)),
        ("relu6", dict(inplace=True)),
        ("leaky_relu", dict(negative_slope=0.3, inplace=True)),
        ("elu", dict(alpha=0.5)),
        ("hardtanh", dict(min_val=-0.2, max_val=0.4)),
        ("hardswish", dict()),
        ("hardsigmoid", dict()),
        ("silu", dict()),
        ("gelu", dict(approximate="tanh")),
        ("selu", dict()),
        ("softmax", dict(dim=0)),
        ("log_softmax", dict(dim=1)),
    ],
)
def test_functional_keyword_signatures_match_torch(name, kwargs):
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    ours = getattr(F, name)(x, **kwargs)
    theirs = getattr(TF, name)(torch.from_numpy(x.copy()), **kwargs)
    assert_rel_close(ours.data, theirs.numpy(), 1e-6, name)


def test_softmax_without_dim_warns_and_picks_torchs_dim():
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        ours = F.softmax(x)
    with pytest.warns(UserWarning):
        theirs = TF.softmax(torch.from_numpy(x))
    assert_rel_close(ours.data, theirs.numpy(), 1e-6, "softmax dim=None")
    as64 = F.softmax(x, dim=2, dtype=np.float64)
    assert as64.dtype == np.float64


def test_cross_entropy_targets_int_array_or_tensor():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 3)).astype(np.float32)
    idx = rng.integers(0, 3, 5)
    expected = TF.cross_entropy(torch.from_numpy(logits), torch.from_numpy(idx)).item()
    by_array = F.cross_entropy(logits, idx).item()
    by_tensor = F.cross_entropy(logits, cnnperf.tensor(idx.astype(np.float32))).item()
    assert by_array == by_tensor
    assert abs(by_array - expected) <= 1e-6 * abs(expected)
    probs = np.full((5, 3), 1 / 3, np.float32)
    soft = F.cross_entropy(logits, cnnperf.tensor(probs)).item()
    soft_t = TF.cross_entropy(torch.from_numpy(logits), torch.from_numpy(probs)).item()
    assert abs(soft - soft_t) <= 1e-6 * abs(soft_t)
    with pytest.raises(ValueError, match="must be whole numbers"):
        F.cross_entropy(logits, cnnperf.tensor(np.full(5, 0.5, np.float32)))
    with pytest.raises(ValueError, match="size_average and reduce are deprecated"):
        F.cross_entropy(logits, idx, None, True)
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.CrossEntropyLoss(reduction="avg")


# ----------------------------------------------------------------------------------------------
# init


@pytest.mark.parametrize("shape", [(8, 3, 3, 3), (5, 7), (4, 6, 1, 2)])
def test_fan_in_fan_out_and_gain_are_torchs(shape):
    from torch.nn.init import _calculate_fan_in_and_fan_out

    assert init.calculate_fan_in_and_fan_out(np.empty(shape, np.float32)) == (
        _calculate_fan_in_and_fan_out(torch.empty(shape))
    )
    for nl, param in [("relu", None), ("tanh", None), ("leaky_relu", 0.2), ("leaky_relu", None),
                      ("selu", None), ("conv2d", None), ("sigmoid", None)]:  # fmt: skip
        assert init.calculate_gain(nl, param) == torch.nn.init.calculate_gain(nl, param)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.calculate_fan_in_and_fan_out(np.empty(3, np.float32))
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


@pytest.mark.parametrize(
    "fn, kwargs, bound",
    [
        (init.kaiming_uniform_, dict(a=math.sqrt(5)), 1 / math.sqrt(64 * 9)),
        (init.kaiming_uniform_, dict(mode="fan_out", nonlinearity="relu"),
         math.sqrt(2) * math.sqrt(3 / (32 * 9))),
        (init.xavier_uniform_, dict(gain=2.0), 2.0 * math.sqrt(6 / (64 * 9 + 32 * 9))),
        (init.uniform_, dict(a=-0.3, b=0.3), 0.3),
    ],
    ids=["kaiming_sqrt5", "kaiming_fan_out_relu", "xavier", "uniform"],
)  # fmt: skip
def test_uniform_inits_fill_torchs_bound(fn, kwargs, bound):
    w = np.empty((32, 64, 3, 3), np.float32)
    wt = torch.empty(32, 64, 3, 3)
    fn(w, generator=0, **kwargs)
    getattr(torch.nn.init, fn.__name__)(wt, generator=torch.Generator().manual_seed(0), **kwargs)
    for values in (w, wt.numpy()):  # the same support, filled
        assert np.abs(values).max() <= bound * (1 + 1e-6)
        assert np.abs(values).max() > 0.99 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.02


@pytest.mark.parametrize(
    "fn, kwargs, std",
    [
        (init.kaiming_normal_, dict(mode="fan_in", nonlinearity="relu"), math.sqrt(2 / (64 * 9))),
        (init.xavier_normal_, dict(), math.sqrt(2 / (64 * 9 + 32 * 9))),
        (init.normal_, dict(mean=0.0, std=0.02), 0.02),
    ],
    ids=["kaiming_normal", "xavier_normal", "normal"],
)
def test_normal_inits_have_torchs_std(fn, kwargs, std):
    w = fn(nn.Parameter(np.empty((32, 64, 3, 3), np.float32)), generator=1, **kwargs)
    # both draws seeded: the bounds sit ~3 standard errors out, so unseeded runs fail ~1 in 200
    g = torch.Generator().manual_seed(1)
    wt = getattr(torch.nn.init, fn.__name__)(torch.empty(32, 64, 3, 3), generator=g, **kwargs)
    for values in (w.data, wt.numpy()):
        assert abs(values.std() / std - 1) < 0.02
        assert abs(values.mean()) < 0.02 * std


def test_constant_inits_and_errors():
    w = np.empty((2, 2), np.float32)
    assert init.ones_(w).tolist() == [[1, 1], [1, 1]]
    assert init.zeros_(w).tolist() == [[0, 0], [0, 0]]
    assert init.constant_(nn.Parameter(w), 0.25).data.tolist() == [[0.25, 0.25], [0.25, 0.25]]
    with pytest.raises(ValueError, match="expects a <= b, got a=1 and b=0"):
        init.uniform_(w, 1, 0)
    with pytest.raises(TypeError, match="generator must be a numpy.random.Generator"):
        init.uniform_(w, generator="seed")
    with pytest.raises(ValueError, match="expected a floating-point tensor, got dtype int64"):
        init.zeros_(np.zeros(2, np.int64))


# ----------------------------------------------------------------------------------------------
# gradient clipping


def _param_pairs(seed: int, scale: float):
    rng = np.random.default_rng(seed)
    ours, theirs = [], []
    for shape in [(4, 3, 3, 3), (4,), (10, 36)]:
        g = (rng.standard_normal(shape) * scale).astype(np.float32)
        p = nn.Parameter(np.zeros(shape, np.float32))
        p.grad = g.copy()
        t = torch.zeros(shape, requires_grad=True)
        t.grad = torch.from_numpy(g.copy())
        ours.append(p)
        theirs.append(t)
    no_grad = nn.Parameter(np.zeros(2, np.float32))  # skipped, as torch
    return ours + [no_grad], theirs + [torch.zeros(2, requires_grad=True)]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_like_torch(norm_type, max_norm):
    ours, theirs = _param_pairs(0, 2.0)
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert isinstance(total, np.float32)
    assert abs(float(total) - total_t.item()) <= 1e-6 * total_t.item()
    for p, t in zip(ours[:-1], theirs[:-1], strict=True):
        assert_rel_close(p.grad, t.grad.numpy(), 1e-6, f"clipped grad {p.shape}")
    if max_norm > total:  # nothing to clip: the gradients are unchanged
        ref, _ = _param_pairs(0, 2.0)
        for p, r in zip(ours[:-1], ref[:-1], strict=True):
            np.testing.assert_array_equal(p.grad, r.grad)
    assert ours[-1].grad is None


def test_clip_grad_norm_nonfinite_and_value():
    p = nn.Parameter(np.zeros(2, np.float32))
    p.grad = np.array([np.nan, 1.0], np.float32)
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    p.grad = np.array([-3.0, 0.5], np.float32)
    t = torch.zeros(2, requires_grad=True)
    t.grad = torch.tensor([-3.0, 0.5])
    nn.utils.clip_grad_value_([p], 1.0)
    torch.nn.utils.clip_grad_value_([t], 1.0)
    np.testing.assert_array_equal(p.grad, t.grad.numpy())
    assert float(nn.utils.clip_grad_norm_([nn.Parameter(np.zeros(1, np.float32))], 1.0)) == 0.0
    with pytest.raises(TypeError, match="expected Tensors"):
        nn.utils.clip_grad_norm_([np.zeros(2)], 1.0)
