"""Hypothesis draws of conv / pool parameters: cnnperf.reference agrees with PyTorch (float64),
including which argument combinations are rejected."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from conftest import assert_rel_close, to_torch
from hypothesis import given
from hypothesis import strategies as st

from cnnperf import reference as ref

TOL = 1e-10


@given(
    n=st.integers(0, 2),
    c_in_g=st.integers(1, 2),
    c_out_g=st.integers(1, 2),
    groups=st.integers(1, 3),
    hw=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    seed=st.integers(0, 2**16),
)
def test_conv2d_random_params(n, c_in_g, c_out_g, groups, hw, k, s, p, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in_g * groups) + hw)
    w = rng.standard_normal((c_out_g * groups, c_in_g) + k)
    b = rng.standard_normal(c_out_g * groups)
    kw = dict(stride=s, padding=p, dilation=d, groups=groups)
    xt, wt, bt = to_torch(x, True), to_torch(w, True), to_torch(b, True)
    try:
        y_t = F.conv2d(xt, wt, bt, **kw)
    except RuntimeError:
        try:
            ref.conv2d(x, w, b, **kw)
        except ValueError:
            return
        raise AssertionError(f"torch rejects {kw} for x {x.shape}, w {w.shape}") from None
    g = rng.standard_normal(tuple(y_t.shape))
    y_t.backward(to_torch(g))
    assert_rel_close(ref.conv2d(x, w, b, **kw), y_t.detach().numpy(), TOL, "forward")
    gx, gw, gb = ref.conv2d_backward(g, x, w, **kw)
    assert_rel_close(gx, xt.grad.numpy(), TOL, "grad_x")
    assert_rel_close(gw, wt.grad.numpy(), TOL, "grad_w")
    assert_rel_close(gb, bt.grad.numpy(), TOL, "grad_b")


@given(
    hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    ceil_mode=st.booleans(),
    count_include_pad=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_pools_random_params(hw, k, s, p, d, ceil_mode, count_include_pad, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(1, 2) + hw).astype(np.float64)  # ties exercise the argmax
    x[rng.random(x.shape) < 0.1] = np.nan
    mkw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode)
    akw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil_mode,
               count_include_pad=count_include_pad)  # fmt: skip
    for name, kw in (("max_pool2d", mkw), ("avg_pool2d", akw)):
        xt = to_torch(x, True)
        try:
            y_t = getattr(F, name)(xt, **kw)
        except RuntimeError:
            try:
                getattr(ref, name)(x, **kw)
            except ValueError:
                continue
            raise AssertionError(f"torch rejects {name} {kw} for x {x.shape}") from None
        np.testing.assert_allclose(getattr(ref, name)(x, **kw), y_t.detach().numpy(), rtol=1e-14)
        if name == "max_pool2d":
            idx_t = F.max_pool2d(to_torch(x), return_indices=True, **kw)[1].numpy()
            np.testing.assert_array_equal(ref.max_pool2d(x, return_indices=True, **kw)[1], idx_t)
            with torch.no_grad():  # implicit padding is -inf: a padding-only window stays -inf
                padding_only = F.max_pool2d(torch.ones_like(xt), **kw).numpy() == -np.inf
            if padding_only.any():
                # Such a window passes no gradient (tested in test_reference_oracle); torch's
                # backward credits an aliased element or writes out of bounds: not called.
                continue
        g = rng.standard_normal(tuple(y_t.shape))
        y_t.backward(to_torch(g))
        gx = getattr(ref, name + "_backward")(g, x, **kw)
        assert_rel_close(gx, xt.grad.numpy(), TOL, f"{name} grad_x")


@given(
    n=st.integers(0, 2),
    c_in_g=st.integers(1, 2),
    c_out_g=st.integers(1, 2),
    groups=st.integers(1, 2),
    hw=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    op=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    seed=st.integers(0, 2**16),
)
def test_conv_transpose2d_random_params(n, c_in_g, c_out_g, groups, hw, k, s, p, op, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in_g * groups) + hw)
    w = rng.standard_normal((c_in_g * groups, c_out_g) + k)
    b = rng.standard_normal(c_out_g * groups)
    kw = dict(stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
    xt, wt, bt = to_torch(x, True), to_torch(w, True), to_torch(b, True)
    try:
        y_t = F.conv_transpose2d(xt, wt, bt, **kw)
    except RuntimeError:
        try:
            ref.conv_transpose2d(x, w, b, **kw)
        except ValueError:
            return
        raise AssertionError(f"torch rejects {kw} for x {x.shape}, w {w.shape}") from None
    try:
        y = ref.conv_transpose2d(x, w, b, **kw)
    except ValueError:
        # On an empty batch torch skips its argument checks (output_padding, output size >= 1)
        if n == 0:
            return
        raise
    g = rng.standard_normal(tuple(y_t.shape))
    y_t.backward(to_torch(g))
    assert_rel_close(y, y_t.detach().numpy(), TOL, "forward")
    gx, gw, gb = ref.conv_transpose2d_backward(g, x, w, **kw)
    assert_rel_close(gx, xt.grad.numpy(), TOL, "grad_x")
    assert_rel_close(gw, wt.grad.numpy(), TOL, "grad_w")
    assert_rel_close(gb, bt.grad.numpy(), TOL, "grad_b")
