"""Differentiable conv, pooling, linear, batch norm, dropout and pad against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from autograd_parity import DTYPES, TOL, check_parity, randn
from conftest import assert_rel_close, to_torch

import cnnperf
from cnnperf import ops
from cnnperf.autograd import functional as F
from cnnperf.autograd import manual_seed, no_grad, tensor

# ----------------------------------------------------------------------------------------------
# convolution and linear

# (id, x shape, w shape, bias, kwargs)
CONV_CASES = [
    ("3x3_pad1", (2, 3, 7, 6), (4, 3, 3, 3), True, dict(padding=1)),
    ("stride2_groups2", (2, 4, 9, 8), (6, 2, 3, 3), True, dict(stride=2, padding=(1, 2), groups=2)),
    ("dilation2", (1, 3, 8, 8), (2, 3, 3, 3), False, dict(padding=2, dilation=2)),
    ("depthwise", (2, 4, 6, 6), (4, 1, 3, 3), False, dict(padding=1, groups=4)),
    ("1x1", (2, 5, 4, 4), (3, 5, 1, 1), True, dict()),
    ("asym_pad", (1, 2, 5, 6), (3, 2, 2, 3), True, dict(padding=((1, 0), (2, 1)))),
    ("same_5x5", (1, 2, 6, 5), (2, 2, 5, 5), True, dict(padding="same")),
    ("stem_7x7", (1, 3, 12, 12), (4, 3, 7, 7), True, dict(stride=2, padding=3)),
    ("unbatched", (3, 6, 6), (2, 3, 3, 3), True, dict(stride=(1, 2))),
]


def _torch_conv_kwargs(kw: dict):
    """torch has no per-side padding: pad explicitly instead."""
    pad = kw.get("padding", 0)
    if isinstance(pad, tuple) and isinstance(pad[0], tuple):
        (top, bottom), (left, right) = pad
        rest = {k: v for k, v in kw.items() if k != "padding"}
        return lambda x: TF.pad(x, (left, right, top, bottom)), rest
    return lambda x: x, kw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv2d_like_torch(case, dtype, rng):
    name, xs, ws, with_bias, kw = case
    arrays = [randn(rng, xs, dtype), randn(rng, ws, dtype)]
    if with_bias:
        arrays.append(randn(rng, (ws[0],), dtype))
    pre, tkw = _torch_conv_kwargs(kw)
    check_parity(
        lambda x, w, b=None: F.conv2d(x, w, b, **kw),
        lambda x, w, b=None: TF.conv2d(pre(x), w, b, **tkw),
        arrays,
        TOL[dtype],
        what=name,
    )


def test_conv2d_gradients_only_where_asked(rng):
    x, w, b = randn(rng, (1, 2, 5, 5), np.float32), randn(rng, (3, 2, 3, 3), np.float32), None
    # the input is data (no grad); the weight a Tensor; the bias a plain array (a constant)
    b = randn(rng, (3,), np.float32)
    bt = torch.from_numpy(b)
    check_parity(
        lambda x, w: F.conv2d(x, w, b),
        lambda x, w: TF.conv2d(x, w, bt),
        [x, w],
        TOL[np.float32],
        requires_grad=[False, True],
    )


def test_conv2d_skips_the_input_gradient_when_the_input_needs_none(rng, monkeypatch):
    # A first layer's input is data: the backward pass is asked for the weight's and bias's
    # gradients only (need_input_grad=False), and they still match PyTorch's.
    asked = []
    real = ops.conv2d_backward

    def spy(*args, **kwargs):
        asked.append(kwargs["need_input_grad"])
        gx, gw, gb = real(*args, **kwargs)
        assert (gx is None) == (not kwargs["need_input_grad"])
        return gx, gw, gb

    monkeypatch.setattr(ops, "conv2d_backward", spy)
    x, w1 = randn(rng, (3, 2, 9, 8), np.float32), randn(rng, (4, 2, 3, 3), np.float32)
    b, w2 = randn(rng, (4,), np.float32), randn(rng, (3, 4, 3, 3), np.float32)
    for flags in ([False, True, True, True], [True, True, False, True]):
        check_parity(
            lambda x, w1, b, w2: F.conv2d(F.relu(F.conv2d(x, w1, b, padding=1)), w2, stride=2),
            lambda x, w1, b, w2: TF.conv2d(TF.relu(TF.conv2d(x, w1, b, padding=1)), w2, stride=2),
            [x, w1, b, w2],
            TOL[np.float32],
            requires_grad=flags,
        )
    # the second convolution's input (the first one's output) always needs its gradient
    assert asked == [True, False, True, True]


CONV_T_CASES = [
    (
        "stride2_outpad",
        (2, 4, 5, 5),
        (4, 3, 3, 3),
        True,
        dict(stride=2, padding=1, output_padding=1),
    ),
    ("groups_dilation", (2, 4, 4, 4), (4, 2, 3, 3), False, dict(groups=2, dilation=2)),
    ("unbatched", (2, 3, 4), (2, 3, 2, 2), True, dict(stride=(2, 1))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_T_CASES, ids=[c[0] for c in CONV_T_CASES])
def test_conv_transpose2d_like_torch(case, dtype, rng):
    name, xs, ws, with_bias, kw = case
    arrays = [randn(rng, xs, dtype), randn(rng, ws, dtype)]
    if with_bias:
        arrays.append(randn(rng, (ws[1] * kw.get("groups", 1),), dtype))
    check_parity(
        lambda x, w, b=None: F.conv_transpose2d(x, w, b, **kw),
        lambda x, w, b=None: TF.conv_transpose2d(x, w, b, **kw),
        arrays,
        TOL[dtype],
        what=name,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,with_bias", [((5, 7), True), ((2, 3, 7), False), ((7,), True)])
def test_linear_like_torch(xs, with_bias, dtype, rng):
    arrays = [randn(rng, xs, dtype), randn(rng, (4, 7), dtype)]
    if with_bias:
        arrays.append(randn(rng, (4,), dtype))
    check_parity(F.linear, TF.linear, arrays, TOL[dtype], what=f"linear {xs}")


# ----------------------------------------------------------------------------------------------
# pooling

MAX_POOL = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", MAX_POOL, ids=str)
def test_max_pool2d_like_torch(kw, dtype, rng):
    a = randn(rng, (2, 3, 9, 8), dtype)
    check_parity(lambda x: F.max_pool2d(x, **kw), lambda x: TF.max_pool2d(x, **kw), [a], TOL[dtype])
    _, idx = F.max_pool2d(tensor(a), return_indices=True, **kw)
    _, tidx = TF.max_pool2d(torch.from_numpy(a), return_indices=True, **kw)
    np.testing.assert_array_equal(idx, tidx.numpy())


AVG_POOL = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=2, stride=1, divisor_override=3),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), ceil_mode=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", AVG_POOL, ids=str)
def test_avg_pool2d_like_torch(kw, dtype, rng):
    a = randn(rng, (2, 3, 9, 8), dtype)
    check_parity(lambda x: F.avg_pool2d(x, **kw), lambda x: TF.avg_pool2d(x, **kw), [a], TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, (3, 2), (None, 4), 5])
def test_adaptive_avg_pool2d_like_torch(size, dtype, rng):
    a = randn(rng, (2, 3, 7, 6), dtype)
    check_parity(
        lambda x: F.adaptive_avg_pool2d(x, size),
        lambda x: TF.adaptive_avg_pool2d(x, size),
        [a],
        TOL[dtype],
    )


# ----------------------------------------------------------------------------------------------
# batch norm


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 3), (4, 3, 7)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_like_torch(shape, training, affine, dtype, rng):
    c = shape[1]
    rm0 = randn(rng, (c,), dtype)
    rv0 = (rng.random(c) + 0.5).astype(dtype)
    rm, rv = rm0.copy(), rv0.copy()
    rmt, rvt = torch.from_numpy(rm0.copy()), torch.from_numpy(rv0.copy())
    arrays = [randn(rng, shape, dtype)]
    if affine:
        arrays += [randn(rng, (c,), dtype), randn(rng, (c,), dtype)]
    check_parity(
        lambda x, w=None, b=None: F.batch_norm(x, rm, rv, w, b, training, 0.2, 1e-3),
        lambda x, w=None, b=None: TF.batch_norm(x, rmt, rvt, w, b, training, 0.2, 1e-3),
        arrays,
        TOL[dtype],
        what=f"batch_norm {shape} training={training}",
    )
    # the running statistics were updated in place exactly as torch updates its own
    assert_rel_close(rm, rmt.numpy(), TOL[dtype], "running_mean")
    assert_rel_close(rv, rvt.numpy(), TOL[dtype], "running_var")
    if not training:
        np.testing.assert_array_equal(rm, rm0)


def test_batch_norm_training_without_running_stats_and_with_tensor_stats(rng):
    a, w = randn(rng, (4, 3, 2, 2), np.float64), randn(rng, (3,), np.float64)
    check_parity(
        lambda x, w: F.batch_norm(x, None, None, w, None, training=True),
        lambda x, w: TF.batch_norm(x, None, None, w, None, training=True),
        [a, w],
        TOL[np.float64],
    )
    rm, rv = tensor(np.zeros(3)), tensor(np.ones(3))
    rmt, rvt = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    with no_grad():  # running statistics still update, as in torch
        for _ in range(2):
            F.batch_norm(tensor(a), rm, rv, training=True)
            TF.batch_norm(torch.from_numpy(a), rmt, rvt, training=True)
    assert_rel_close(rm.data, rmt.numpy(), TOL[np.float64], "running_mean")
    assert_rel_close(rv.data, rvt.numpy(), TOL[np.float64], "running_var")


def test_batch_norm_eval_backward_uses_the_statistics_of_its_forward(rng):
    a = randn(rng, (2, 3, 4), np.float64)
    rm, rv = np.zeros(3), np.ones(3) * 4
    x = tensor(a, requires_grad=True)
    y = F.batch_norm(x, rm, rv, training=False)
    rv[:] = 100.0  # a later training step of the module changes its buffers
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(a.shape, 1 / np.sqrt(4 + 1e-5)), rtol=1e-14)


def test_batch_norm_errors(rng):
    x = tensor(randn(rng, (4, 3), np.float32))
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="batch_norm: running_mean must be writable"):
        F.batch_norm(x, ro, np.ones(3, np.float32), training=True)
    with pytest.raises(ValueError, match="running_var is a statistic, not a parameter"):
        F.batch_norm(x, np.zeros(3, np.float32), tensor(np.ones(3), requires_grad=True))
    with pytest.raises(ValueError, match=r"running_mean of shape \(2,\) does not match the 3"):
        F.batch_norm(x, np.zeros(2, np.float32), np.ones(2, np.float32), training=True)


# ----------------------------------------------------------------------------------------------
# dropout and pad


def test_dropout_mask_and_gradient_match_ops(rng):
    a = randn(rng, (4, 5), np.float32)
    x = tensor(a, requires_grad=True)
    y = F.dropout(x, 0.3, rng=np.random.default_rng(7))
    expected, mask = ops.dropout(a, 0.3, rng=np.random.default_rng(7), return_mask=True)
    np.testing.assert_array_equal(y.data, expected)
    g = randn(rng, a.shape, np.float32)
    y.backward(g)
    np.testing.assert_array_equal(x.grad, ops.dropout_backward(g, mask, 0.3))
    # the same as torch's gradient for that mask: grad * mask / (1 - p)
    xt = to_torch(a, True)
    (xt * torch.from_numpy(mask.astype(np.float32)) / (1 - 0.3)).backward(torch.from_numpy(g))
    assert_rel_close(x.grad, xt.grad.numpy(), TOL[np.float32], "dropout grad")


def test_dropout_global_generator_and_trivial_cases(rng):
    a = randn(rng, (50,), np.float64)
    x = tensor(a, requires_grad=True)
    manual_seed(3)
    y1 = F.dropout(x, 0.5)
    manual_seed(3)
    y2 = F.dropout(x, 0.5)
    np.testing.assert_array_equal(y1.data, y2.data)
    assert 0 < np.count_nonzero(y1.data) < 50
    assert F.dropout(x, 0.5, training=False) is x and F.dropout(x, 0.0) is x
    z = F.dropout(x, 1.0)
    z.sum().backward()
    assert not z.data.any() and not x.grad.any()
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got"):
        F.dropout(x, 1.5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_pad_like_torch(mode, dtype, rng):
    a = randn(rng, (2, 3, 5, 6), dtype)
    kw = dict(value=0.5) if mode == "constant" else {}
    check_parity(
        lambda x: F.pad(x, (1, 2, 2, 1), mode=mode, **kw),
        lambda x: TF.pad(x, (1, 2, 2, 1), mode=mode, **kw),
        [a],
        TOL[dtype],
    )


def test_non_contiguous_inputs(rng):
    """A permuted (non-contiguous) tensor flows through conv, pooling, activations, linear."""
    a = randn(rng, (2, 6, 5, 3), np.float32)  # permuted to (2, 3, 6, 5)
    w = randn(rng, (4, 3, 3, 3), np.float32)
    fc = randn(rng, (2, 4), np.float32)

    def net(ns, x, w, fc):
        h = ns.conv2d(x.permute(0, 3, 1, 2), w, padding=1)
        h = ns.gelu(ns.max_pool2d(h, 2).permute(0, 2, 3, 1))  # (n, oh, ow, c): channels last
        return ns.linear(h, fc)

    check_parity(
        lambda x, w, fc: net(F, x, w, fc),
        lambda x, w, fc: net(TF, x, w, fc),
        [a, w, fc],
        TOL[np.float32],
    )


def test_ops_errors_pass_through_with_their_messages(rng):
    x = tensor(randn(rng, (1, 4, 5, 5), np.float32), requires_grad=True)
    with pytest.raises(ValueError, match=r"Given groups=1, weight of shape \(2, 3, 3, 3\)"):
        F.conv2d(x, np.ones((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="all arrays must have the same dtype"):
        F.linear(tensor(np.ones((2, 3))), np.ones((4, 3), np.float32))
    assert isinstance(F.max_pool2d(x, 2), cnnperf.Tensor)
