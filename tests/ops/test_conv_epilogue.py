"""Fused epilogues: conv2d(..., activation=...) equals the activation op applied afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_rel_close, to_torch
from unfused import UNFUSED

from cnnperf import ops, reference
from cnnperf.ops.epilogue import FUSABLE_ACTIVATIONS


def test_every_fusable_activation_is_tested():
    assert set(UNFUSED) == set(FUSABLE_ACTIVATIONS)


@pytest.mark.parametrize("algo", sorted(ops.CONV_ALGOS))
@pytest.mark.parametrize("name", sorted(FUSABLE_ACTIVATIONS))
def test_fused_activation_equals_unfused(name, algo):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 4, 9, 8)) * 2).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    op_fn, torch_fn = UNFUSED[name]
    if ops.CONV_ALGOS[algo].why_not(ops.conv_params(x.shape, w.shape, padding=1)) is not None:
        pytest.skip(f"{algo} does not cover this case")
    fused = ops.conv2d(x, w, b, padding=1, algo=algo, activation=name)
    unfused = op_fn(ops.conv2d(x, w, b, padding=1, algo=algo))
    assert_rel_close(fused, unfused, 1e-6, f"{name}/{algo} fused vs unfused")
    expected = torch_fn(F.conv2d(to_torch(x), to_torch(w), to_torch(b), padding=1)).numpy()
    assert_rel_close(fused, expected, 1e-4, f"{name}/{algo} vs torch")


@pytest.mark.parametrize("algo", sorted(ops.CONV_ALGOS))
def test_activation_parameters_and_nan(algo):
    x = np.full((1, 1, 3, 3), -1.0, np.float32)
    x[0, 0, 1, 1] = np.nan
    w = np.ones((1, 1, 1, 1), np.float32)
    if ops.CONV_ALGOS[algo].why_not(ops.conv_params(x.shape, w.shape)) is not None:
        pytest.skip(f"{algo} does not cover 1x1 kernels")
    y = ops.conv2d(x, w, algo=algo, activation=("leaky_relu", 0.25))
    assert np.isnan(y[0, 0, 1, 1])
    assert y[0, 0, 0, 0] == np.float32(-0.25)
    y = ops.conv2d(x, w, algo=algo, activation=("elu", 2.0))
    np.testing.assert_allclose(y[0, 0, 0, 0], 2.0 * np.expm1(-1.0), rtol=1e-6)


@pytest.mark.parametrize(
    "activation, message",
    [
        (
            "swish",
            r"activation must be None, one of \[.*'relu'.*\] or \(name, alpha\), got 'swish'",
        ),
        (("leaky_relu", float("nan")), r"activation parameter must be a finite number, got nan"),
        (3, r"activation must be None"),
    ],
)
def test_bad_activation(activation, message):
    x = np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=message):
        ops.conv2d(x, x[0:1], activation=activation)


@pytest.mark.parametrize("algo", sorted(ops.CONV_ALGOS))
def test_nan_and_inf_land_where_a_direct_convolution_puts_them(algo):
    # Transform-based algorithms (Winograd, FFT) would spread a NaN over a whole tile; they must
    # detect it and give PyTorch's answer.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 12, 12)).astype(np.float32)
    x[0, 1, 5, 6] = np.nan
    x[0, 2, 0, 0] = np.inf
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    if ops.CONV_ALGOS[algo].why_not(ops.conv_params(x.shape, w.shape, padding=1)) is not None:
        pytest.skip(f"{algo} does not cover 3x3 stride-1 kernels")
    for act in (None, "relu", "sigmoid"):
        y = ops.conv2d(x, w, padding=1, algo=algo, activation=act)
        expected = ops.conv2d(x, w, padding=1, algo="direct", activation=act)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(y), np.isinf(expected))
        finite = np.isfinite(expected)
        assert_rel_close(y[finite], expected[finite], 1e-4, f"{algo}/{act} finite part")


@pytest.mark.parametrize(
    "k,stride,width", [(3, 1, 7), (5, 1, 7), (3, 2, 15), (3, 2, 41), (3, 2, 16), (3, 2, 40)]
)
@pytest.mark.parametrize("act", [None, "relu6"])
def test_same_padding_depthwise_keeps_nan_and_inf_local(k, stride, width, act):
    # The flat-run depthwise kernels run across row ends: a row's end columns must read zeros
    # (masked copies), never the neighbouring row, where an Inf would turn a finite output into
    # Inf or NaN. Inf at row ends and NaN at row starts, against the float64 reference; stride-2
    # rows of even width (the even-width kernel) and of odd width, both narrower and wider than
    # S2K3_INDEXED_MAX_WIDTH.
    from cnnperf.ops.conv_algos import use_s2k3_depthwise, use_same_depthwise

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 9 if stride == 1 else 19, width)).astype(np.float32)
    x[0, 0, 2, -1] = np.inf
    x[1, 1, 4, 0] = -np.inf
    x[1, 2, 6, 0] = np.nan
    x[0, 1, 3, -2] = np.inf  # with stride 2: in the last odd column, read across the row end
    w = rng.standard_normal((3, 1, k, k)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    kw = dict(padding=k // 2, groups=3, stride=stride)
    uses = use_same_depthwise if stride == 1 else use_s2k3_depthwise
    assert uses(ops.conv_params(x.shape, w.shape, **kw))
    y = ops.conv2d(x, w, b, **kw, algo="direct", activation=act)
    expected = reference.conv2d(x, w, b, **kw)
    if act == "relu6":
        expected = np.where(np.isnan(expected), expected, np.clip(expected, 0, 6))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(y[np.isinf(expected)], expected[np.isinf(expected)])
    finite = np.isfinite(expected)
    assert finite.sum() > 0.8 * finite.size  # the non-finite values stayed local
    assert_rel_close(y[finite], expected[finite], 1e-5, f"k{k}/{act} finite part")


@pytest.mark.parametrize("activation", ["hardswish", "hardsigmoid", "relu", "relu6", "silu", "elu"])
def test_fused_activation_special_values_match_torch(activation):
    # +-inf, the kinks at +-3 / 0 / 6, NaN: the fused value (and the sign of a zero) is PyTorch's
    # (no -0.0 input: the sign of a zero convolution sum is the summation's, not the epilogue's)
    v = np.array([-np.inf, -5.0, -3.0, 0.0, 3.0, 6.0, 7.0, np.inf, np.nan], np.float32)
    x = v.reshape(1, 1, 1, -1)
    y = ops.conv2d(x, np.ones((1, 1, 1, 1), np.float32), activation=activation)
    fn = getattr(F, activation)
    expected = fn(torch.from_numpy(v)).numpy()
    # float32 values within an ulp (cnnperf rounds the float64 activation once), the rest exact
    np.testing.assert_allclose(y.ravel(), expected, rtol=2e-7, atol=0)
    np.testing.assert_array_equal(np.signbit(y.ravel()), np.signbit(expected))


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("name", ["relu6", "silu", "leaky_relu"])
def test_epilogue_on_the_calling_thread_and_on_the_pool_agree(monkeypatch, name, threaded):
    # Outputs up to SERIAL_EPILOGUE_MAX_ELEMENTS run the bias/activation and the residual
    # epilogues on the calling thread, larger ones in the parallel kernels: both against the
    # unfused ops, with the threshold moved so that this small case takes each path.
    from cnnperf.ops import epilogue

    monkeypatch.setattr(epilogue, "SERIAL_EPILOGUE_MAX_ELEMENTS", 0 if threaded else 1 << 30)
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((2, 5, 7, 6)) * 2).astype(np.float32)
    w = rng.standard_normal((6, 5, 1, 1)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    r = rng.standard_normal((2, 6, 7, 6)).astype(np.float32)
    op_fn, _ = UNFUSED[name]
    plain = ops.conv2d(x, w, b, algo="im2col")
    fused = ops.conv2d(x, w, b, algo="im2col", activation=name)
    assert_rel_close(fused, op_fn(plain), 1e-6, f"{name} bias epilogue, threaded={threaded}")
    plan = ops.plan_conv2d(w, b, input_shape=x.shape, algo="im2col", activation=name)
    with_res = plan(x, residual=r)
    assert_rel_close(with_res, op_fn(plain + r), 1e-6, f"{name} residual, threaded={threaded}")
