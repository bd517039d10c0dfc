"""Whole networks with branches (residual add, concat, reuse, shared weights) against PyTorch."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from autograd_parity import DTYPES, TOL, randn
from conftest import assert_rel_close, to_torch

import cnnperf
from cnnperf.autograd import functional as F

OURS = F
THEIRS = SimpleNamespace(
    conv2d=TF.conv2d,
    batch_norm=TF.batch_norm,
    relu=TF.relu,
    silu=TF.silu,
    gelu=TF.gelu,
    hardswish=TF.hardswish,
    max_pool2d=TF.max_pool2d,
    avg_pool2d=TF.avg_pool2d,
    adaptive_avg_pool2d=TF.adaptive_avg_pool2d,
    cat=lambda ts, dim: torch.cat(ts, dim),
    flatten=torch.flatten,
    linear=TF.linear,
    cross_entropy=TF.cross_entropy,
    mse_loss=TF.mse_loss,
    softmax=torch.softmax,
)

C = 4  # stem width


def _params(rng, dtype) -> dict[str, np.ndarray]:
    def w(*shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(dtype)

    return {
        "stem_w": w(C, 3, 3, 3),
        "bn0_g": (1 + 0.1 * rng.standard_normal(C)).astype(dtype),
        "bn0_b": w(C),
        "res1_w": w(C, C, 3, 3),
        "bn1_g": (1 + 0.1 * rng.standard_normal(C)).astype(dtype),
        "bn1_b": w(C),
        "res2_w": w(C, C, 3, 3),
        "inc_a": w(2, C, 1, 1),
        "inc_b": w(3, C, 3, 3),
        "inc_bb": w(3),
        "shared": w(2 + 3 + C, 2 + 3 + C, 3, 3),  # applied twice
        "down": w(8, 2 + 3 + C, 3, 3),
        "fc_w": w(5, 8),
        "fc_b": w(5),
    }


def _network(ns, x, p, stats, target, reg_target):
    """Stem, a residual block, an inception-style concat, a twice-applied conv, a head."""
    h = ns.conv2d(x, p["stem_w"], None, padding=1)  # a bias before BN has zero gradient
    h = ns.relu(ns.batch_norm(h, *stats[0], p["bn0_g"], p["bn0_b"], True, 0.1, 1e-5))
    # residual block: h feeds the branch and the skip connection
    r = ns.conv2d(h, p["res1_w"], None, padding=1)
    r = ns.silu(ns.batch_norm(r, *stats[1], p["bn1_g"], p["bn1_b"], True, 0.1, 1e-5))
    r = ns.conv2d(r, p["res2_w"], None, padding=1)
    h = ns.relu(h + r)
    # inception: three branches of h, concatenated on channels
    a = ns.conv2d(h, p["inc_a"])
    b = ns.gelu(ns.conv2d(h, p["inc_b"], p["inc_bb"], padding=1))
    c = ns.max_pool2d(h, 3, stride=1, padding=1)
    h = ns.cat([a, b, c], 1)
    # one weight used by two layers
    h = ns.hardswish(
        ns.conv2d(ns.relu(ns.conv2d(h, p["shared"], None, padding=1)), p["shared"], None, padding=1)
    )
    h = ns.conv2d(h, p["down"], None, stride=2, padding=1)
    h = ns.avg_pool2d(h, 2, stride=1, padding=1, count_include_pad=False)
    feat = ns.flatten(ns.adaptive_avg_pool2d(h, 1), 1)
    logits = ns.linear(feat, p["fc_w"], p["fc_b"])
    # two losses from one output: a reused tensor at the very end
    probs = ns.softmax(logits, 1)
    return ns.cross_entropy(logits, target) + ns.mse_loss(probs, reg_target) * 0.5


@pytest.mark.parametrize("dtype", DTYPES)
def test_branchy_network_matches_torch(dtype, rng):
    n = 3
    x0 = randn(rng, (n, 3, 9, 8), dtype)
    p0 = _params(rng, dtype)
    target = rng.integers(0, 5, n)
    reg = rng.random((n, 5)).astype(dtype)

    def stats():
        return [(np.zeros(k, dtype), np.ones(k, dtype)) for k in (C, C)]

    ours_stats, torch_stats = stats(), stats()
    torch_stats = [tuple(torch.from_numpy(a) for a in s) for s in torch_stats]

    x = cnnperf.tensor(x0, requires_grad=True)
    p = {k: cnnperf.tensor(v, requires_grad=True) for k, v in p0.items()}
    loss = _network(OURS, x, p, ours_stats, target, reg)

    xt = to_torch(x0, True)
    pt = {k: to_torch(v, True) for k, v in p0.items()}
    loss_t = _network(THEIRS, xt, pt, torch_stats, torch.from_numpy(target), torch.from_numpy(reg))

    tol = TOL[dtype]
    assert_rel_close(loss.data, loss_t.detach().numpy(), tol, "loss")
    loss.backward()
    loss_t.backward()
    assert_rel_close(x.grad, xt.grad.numpy(), tol, "input grad")
    for k in p0:
        assert_rel_close(p[k].grad, pt[k].grad.numpy(), tol, f"grad of {k}")
    for (rm, rv), (rmt, rvt) in zip(ours_stats, torch_stats, strict=True):
        assert_rel_close(rm, rmt.numpy(), tol, "running_mean")
        assert_rel_close(rv, rvt.numpy(), tol, "running_var")


def test_sgd_steps_follow_torch(rng):
    """Three plain SGD steps: gradients accumulate per step and are cleared in between."""
    dtype = np.float64
    x0 = randn(rng, (4, 3, 6, 6), dtype)
    target = rng.integers(0, 5, 4)
    w0, fc0 = randn(rng, (5, 3, 3, 3), dtype) * 0.3, randn(rng, (5, 5), dtype) * 0.3
    w, fc = cnnperf.tensor(w0, requires_grad=True), cnnperf.tensor(fc0, requires_grad=True)
    wt, fct = to_torch(w0, True), to_torch(fc0, True)
    for _ in range(3):
        h = F.adaptive_avg_pool2d(F.relu(F.conv2d(x0, w, padding=1)), 1)
        loss = F.cross_entropy(F.linear(F.flatten(h, 1), fc), target)
        ht = TF.adaptive_avg_pool2d(TF.relu(TF.conv2d(torch.from_numpy(x0), wt, padding=1)), 1)
        loss_t = TF.cross_entropy(TF.linear(torch.flatten(ht, 1), fct), torch.from_numpy(target))
        assert_rel_close(loss.data, loss_t.detach().numpy(), TOL[dtype], "loss")
        loss.backward()
        loss_t.backward()
        with cnnperf.no_grad(), torch.no_grad():
            for ours, theirs in ((w, wt), (fc, fct)):
                ours.data -= 0.5 * ours.grad
                ours.zero_grad()
                theirs -= 0.5 * theirs.grad
                theirs.grad = None
    assert_rel_close(w.data, wt.detach().numpy(), TOL[dtype], "weights after 3 steps")
    assert_rel_close(fc.data, fct.detach().numpy(), TOL[dtype], "fc after 3 steps")
