"""FFT convolution (algo="fft"): the shared case table and large-kernel cases against the
float64 reference and PyTorch, float64 input, fused epilogues, tiling and chunking, NaN/Inf,
errors, and a property test."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F
from cases import CONV_CASES, ConvCase
from conftest import assert_rel_close, rel_err, to_torch
from hypothesis import given
from hypothesis import strategies as st

import cnnperf
from cnnperf import config, ops, reference
from cnnperf.ops import conv_fft
from cnnperf.ops.conv_fft import FFTConv, FFTWeight, fft_plan, fft_wins
from cnnperf.ops.epilogue import FUSABLE_ACTIVATIONS

# float32 against the float64 reference, relative to max |reference|. The FFT error grows with
# the output's global magnitude, not per element; measured 0.7e-7..3.5e-7 on these cases and on
# AlexNet conv2, Inception 5x5, 7x7 and 11x11 layers (batch 1 and 8), about what im2col gets.
FFT_TOL = 2e-6
F64_TOL = 1e-12
TORCH_TOL = 1e-4  # the bar: relative error <= 1e-4 of the output's max-abs

ALGO = ops.CONV_ALGOS["fft"]


def _params(case):
    return ops.conv_params(case.x, case.w, **case.kwargs)


def _stride1(case) -> bool:
    return ALGO.why_not(_params(case)) is None


FFT_CASES = [c for c in CONV_CASES if _stride1(c)] + [
    ConvCase("k5_odd", (2, 3, 13, 11), (4, 3, 5, 5), dict(padding=2)),
    ConvCase("k5_batch1_valid", (1, 6, 17, 19), (5, 6, 5, 5), {}, bias=False),
    ConvCase("k7_odd", (3, 4, 23, 21), (6, 4, 7, 7), dict(padding=3)),
    ConvCase("k7_same", (2, 5, 12, 15), (3, 5, 7, 7), dict(padding="same")),
    ConvCase("k6_same_even", (1, 3, 11, 10), (4, 3, 6, 6), dict(padding="same")),
    ConvCase("k11_p5", (2, 3, 32, 32), (4, 3, 11, 11), dict(padding=5)),
    ConvCase("k11_asym", (1, 2, 19, 25), (3, 2, 11, 11), dict(padding=((2, 5), (0, 7)))),
    ConvCase("k5x9_rect", (2, 4, 14, 22), (4, 4, 5, 9), dict(padding=(2, 4))),
    ConvCase("k5_groups2", (2, 8, 15, 13), (6, 4, 5, 5), dict(padding=2, groups=2)),
    ConvCase("k7_groups4_odd", (1, 12, 17, 17), (8, 3, 7, 7), dict(padding=1, groups=4)),
    ConvCase("k5_depthwise", (2, 6, 14, 14), (6, 1, 5, 5), dict(padding=2, groups=6)),
    ConvCase("k5_depthwise_mult3", (1, 4, 11, 12), (12, 1, 5, 5), dict(groups=4)),
    ConvCase("k5_dilation2", (1, 3, 20, 18), (4, 3, 5, 5), dict(padding=4, dilation=2)),
    ConvCase("k3x5_dilation_2x3", (2, 2, 16, 21), (3, 2, 3, 5), dict(dilation=(2, 3))),
    ConvCase("k5_empty_batch", (0, 3, 9, 9), (4, 3, 5, 5), dict(padding=2)),
    ConvCase("k5_large_image", (1, 2, 150, 140), (3, 2, 5, 5), dict(padding=2)),
]


def _make(case, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x).astype(dtype)
    w = rng.standard_normal(case.w).astype(dtype)
    b = rng.standard_normal(case.w[0]).astype(dtype) if case.bias else None
    return x, w, b


def _torch_conv2d(x, w, b, **kwargs):
    """PyTorch has no asymmetric padding: pad first with F.pad, as a user would."""
    kwargs = dict(kwargs)
    pad = kwargs.get("padding")
    if isinstance(pad, tuple) and isinstance(pad[0], tuple):
        (top, bottom), (left, right) = pad
        kwargs["padding"] = 0
        x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, w, b, **kwargs)


def test_shared_case_table_is_covered():
    # Every stride-1 case of the shared table runs here; the rest are strided.
    covered = {c.id for c in FFT_CASES}
    for case in CONV_CASES:
        assert (case.id in covered) == (_params(case).sh == _params(case).sw == 1), case.id


@pytest.mark.parametrize("case", FFT_CASES, ids=lambda c: c.id)
def test_fft_matches_reference_and_torch(case):
    x, w, b = _make(case)
    x0, w0, b0 = x.copy(), w.copy(), None if b is None else b.copy()
    y = ops.conv2d(x, w, b, **case.kwargs, algo="fft")
    assert y.dtype == np.float32 and y.shape == _params(case).output_shape
    assert_rel_close(y, reference.conv2d(x, w, b, **case.kwargs), FFT_TOL, f"{case.id} vs ref")
    bt = None if b is None else to_torch(b)
    yt = _torch_conv2d(to_torch(x), to_torch(w), bt, **case.kwargs)
    assert_rel_close(y, yt.numpy(), TORCH_TOL, f"{case.id} vs torch")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    if b is not None:
        np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("case", [c for c in FFT_CASES if c.x[0] > 0][::2], ids=lambda c: c.id)
def test_float64_input_is_computed_in_float64(case):
    x, w, b = _make(case, np.float64, seed=1)
    y = ops.conv2d(x, w, b, **case.kwargs, algo="fft")
    assert y.dtype == np.float64
    assert_rel_close(y, reference.conv2d(x, w, b, **case.kwargs), F64_TOL, case.id)


def test_unbatched_input():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 12, 10)).astype(np.float32)
    w = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    y = ops.conv2d(x, w, padding=2, algo="fft")
    assert y.shape == (4, 12, 10)
    assert_rel_close(y, reference.conv2d(x, w, padding=2), FFT_TOL, "unbatched")


UNFUSED = {
    "relu": ops.relu,
    "relu6": ops.relu6,
    "leaky_relu": lambda y: ops.leaky_relu(y, 0.2),
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "silu": ops.silu,
    "hardswish": ops.hardswish,
    "hardsigmoid": ops.hardsigmoid,
    "gelu": ops.gelu,
    "gelu_tanh": lambda y: ops.gelu(y, "tanh"),
    "elu": lambda y: ops.elu(y, 0.2),
}


@pytest.mark.parametrize("name", sorted(FUSABLE_ACTIVATIONS))
def test_fused_epilogue_equals_unfused(name):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 5, 15, 14)) * 2).astype(np.float32)
    w = rng.standard_normal((7, 5, 5, 5)).astype(np.float32) / 5
    b = rng.standard_normal(7).astype(np.float32)
    act = (name, 0.2) if name in ("leaky_relu", "elu") else name
    fused = ops.conv2d(x, w, b, padding=2, algo="fft", activation=act)
    unfused = UNFUSED[name](ops.conv2d(x, w, b, padding=2, algo="fft"))
    assert_rel_close(fused, unfused, 1e-6, f"{name} fused vs unfused")
    expected = F.conv2d(to_torch(x), to_torch(w), to_torch(b), padding=2).numpy()
    assert_rel_close(fused, UNFUSED[name](expected), TORCH_TOL, f"{name} vs torch")


def test_every_fusable_activation_is_tested():
    assert set(UNFUSED) == set(FUSABLE_ACTIVATIONS)


def test_why_not_and_forced_stride_2_raise_naming_the_reason():
    p = ops.conv_params((1, 3, 16, 16), (4, 3, 5, 5), stride=2, padding=2)
    reason = ALGO.why_not(p)
    assert reason is not None and "stride 1" in reason and "(2, 2)" in reason
    x = np.zeros((1, 3, 16, 16), np.float32)
    w = np.zeros((4, 3, 5, 5), np.float32)
    with pytest.raises(NotImplementedError, match=r"algorithm 'fft' does not support .*stride 1"):
        ops.conv2d(x, w, stride=2, padding=2, algo="fft")
    with pytest.raises(NotImplementedError, match=r"got stride \(1, 2\)"):
        ops.conv2d(x, w, stride=(1, 2), algo="fft")
    assert ALGO.why_not(ops.conv_params((1, 3, 9, 9), (4, 3, 1, 1))) is None  # any kernel
    assert ALGO.why_not(ops.conv_params((1, 4, 9, 9), (4, 1, 3, 3), groups=4, dilation=2)) is None


def test_nan_and_inf_land_where_a_direct_convolution_puts_them():
    # The DFTs would spread a NaN over its whole tile: such calls are recomputed directly.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 20, 18)).astype(np.float32)
    w = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    x[0, 1, 3, 4] = np.nan
    x[1, 2, 15, 9] = np.inf
    y = ops.conv2d(x, w, padding=2, algo="fft")
    yt = F.conv2d(to_torch(x), to_torch(w), padding=2).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(yt))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(yt))
    finite = np.isfinite(yt)
    assert rel_err(y[finite], yt[finite]) < TORCH_TOL
    w_inf = w.copy()
    w_inf[2, 0, 1, 1] = np.inf
    x_ok = np.abs(x[:, :, :, :]) + 0.5
    x_ok[~np.isfinite(x_ok)] = 1.0
    y = ops.conv2d(x_ok, w_inf, padding=2, algo="fft")
    np.testing.assert_array_equal(y, ops.conv2d(x_ok, w_inf, padding=2, algo="im2col"))
    big = np.full((1, 2, 9, 9), 3e38, np.float32)  # overflows in any algorithm
    y = ops.conv2d(big, np.ones((1, 2, 5, 5), np.float32), padding=2, algo="fft")
    np.testing.assert_array_equal(y, ops.conv2d(big, np.ones((1, 2, 5, 5), np.float32), padding=2))


def test_tiles_chunks_and_workspace(monkeypatch):
    # A tiny workspace forces one tile per chunk; results must not change.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 6, 40, 37)).astype(np.float32)
    w = rng.standard_normal((8, 6, 7, 7)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    expected = ops.conv2d(x, w, b, padding=3, algo="im2col")
    p = ops.conv_params(x.shape, w.shape, padding=3)
    monkeypatch.setattr(conv_fft, "WORKSPACE_BYTES", 1)
    conv_fft._best_plan.cache_clear()
    try:
        plan = fft_plan(p)
        assert plan.chunk == 1
        y = ops.conv2d(x, w, b, padding=3, algo="fft", activation="relu")
    finally:
        monkeypatch.undo()
        conv_fft._best_plan.cache_clear()
    assert_rel_close(y, np.maximum(expected, 0), FFT_TOL, "one tile per chunk")


@pytest.mark.parametrize(
    "shape",
    [
        ((8, 64, 27, 27), (192, 64, 5, 5), 2),  # AlexNet conv2
        ((32, 64, 56, 56), (64, 64, 7, 7), 3),
        ((1, 3, 224, 224), (64, 3, 11, 11), 5),
        ((64, 256, 14, 14), (256, 256, 5, 5), 2),
    ],
)
def test_plans_keep_the_workspace_bounded(shape):
    xs, ws, pad = shape
    p = ops.conv_params(xs, ws, padding=pad)
    plan = fft_plan(p)
    assert plan.fh == plan.th + p.kh - 1 and plan.fw == plan.tw + p.kw - 1
    assert plan.nth * plan.th >= p.oh and plan.ntw * plan.tw >= p.ow
    per_tile = conv_fft._per_tile_bytes(p, plan.th, plan.tw, plan.fh, plan.fw, 4)
    assert plan.chunk * per_tile <= conv_fft.WORKSPACE_BYTES


def test_prepared_weight_is_reused_and_re_prepared_for_other_shapes():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    p = ops.conv_params(x.shape, w.shape, padding=2)
    prepared = ALGO.prepare_weight(w, p)
    assert isinstance(prepared, FFTWeight) and prepared.plan == fft_plan(p)
    assert prepared.spectrum.shape == (prepared.plan.nf, 2, 4, 3) and prepared.nbytes > 0
    assert "FFTWeight" in repr(prepared) and repr(ALGO) == "<conv algorithm 'fft'>"
    xp = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    expected = reference.conv2d(x, w, padding=2)
    out = np.empty(p.output_shape, np.float32)
    ALGO.run(xp, prepared, None, p, out)
    assert_rel_close(out, expected, FFT_TOL, "prepared")
    ALGO.run(xp, w, None, p, out)  # a plain weight is prepared on the fly
    assert_rel_close(out, expected, FFT_TOL, "plain weight")
    x2 = rng.standard_normal((1, 3, 30, 9)).astype(np.float32)
    p2 = ops.conv_params(x2.shape, w.shape, padding=2)
    out2 = np.empty(p2.output_shape, np.float32)
    ALGO.run(np.pad(x2, ((0, 0), (0, 0), (2, 2), (2, 2))), prepared, None, p2, out2)
    assert_rel_close(out2, reference.conv2d(x2, w, padding=2), FFT_TOL, "other shape")


def test_parallel_and_serial_agree():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 8, 29, 23)).astype(np.float32)
    w = rng.standard_normal((10, 8, 5, 5)).astype(np.float32)
    before = config.get_num_threads()
    try:
        cnnperf.set_num_threads(1)
        serial = ops.conv2d(x, w, padding=2, algo="fft")
        cnnperf.set_num_threads(config.available_cores())
        parallel = ops.conv2d(x, w, padding=2, algo="fft")
    finally:
        cnnperf.set_num_threads(before)
    assert_rel_close(parallel, serial, 1e-6, "parallel vs serial")


def test_fft_class_docstring_example():
    assert isinstance(ALGO, FFTConv) and ALGO.name == "fft"
    x = np.ones((1, 2, 9, 9), np.float32)
    w = np.ones((3, 2, 5, 5), np.float32)
    assert float(ops.conv2d(x, w, padding=2, algo="fft")[0, 0, 4, 4]) == pytest.approx(50.0)


@pytest.mark.parametrize(
    "xs, ws, kwargs, prepared, expected",
    [
        ((8, 64, 27, 27), (192, 64, 5, 5), dict(padding=2), True, True),  # AlexNet conv2
        ((1, 64, 27, 27), (192, 64, 5, 5), dict(padding=2), True, True),
        ((1, 64, 27, 27), (192, 64, 5, 5), dict(padding=2), False, False),  # eager 5x5, n=1
        ((8, 64, 27, 27), (192, 64, 5, 5), dict(padding=2), False, True),  # eager 5x5, n=8
        ((2, 48, 35, 35), (64, 48, 5, 5), dict(padding=2), False, True),  # 2450 outputs
        ((8, 32, 28, 28), (96, 32, 5, 5), dict(padding=2), False, True),  # 6272 outputs
        ((1, 32, 28, 28), (96, 32, 5, 5), dict(padding=2), False, False),  # 784 outputs
        ((1, 64, 56, 56), (64, 64, 7, 7), dict(padding=3), False, True),  # eager 7x7
        ((8, 96, 27, 27), (256, 48, 5, 5), dict(padding=2, groups=2), True, True),
        ((8, 64, 28, 28), (64, 64, 5, 5), dict(padding=4, dilation=2), True, True),
        ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), True, False),  # 3x3
        ((1, 16, 28, 28), (16, 16, 5, 5), dict(padding=2), True, False),  # few channels
        ((8, 3, 32, 32), (64, 3, 11, 11), dict(padding=5), True, False),  # RGB input
        ((1, 64, 7, 7), (64, 64, 5, 5), dict(padding=2), True, False),  # tiny image
        ((8, 96, 28, 28), (96, 1, 5, 5), dict(padding=2, groups=96), True, False),  # depthwise
        ((8, 64, 27, 27), (192, 64, 5, 5), dict(padding=2, stride=2), True, False),
    ],
)
def test_fft_wins_rule(xs, ws, kwargs, prepared, expected):
    assert fft_wins(ops.conv_params(xs, ws, **kwargs), weight_prepared=prepared) == expected


@st.composite
def stride1_convs(draw):
    g = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    c_out = g * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    h = draw(st.integers(max(1, ekh - pads[0] - pads[1]), 24))
    w = draw(st.integers(max(1, ekw - pads[2] - pads[3]), 24))
    n = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    kwargs = dict(padding=((pads[0], pads[1]), (pads[2], pads[3])), dilation=(dh, dw), groups=g)
    return (n, g * cg, h, w), (c_out, cg, kh, kw), kwargs, seed


@given(stride1_convs())
def test_property_fft_matches_torch(conv):
    xs, ws, kwargs, seed = conv
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    x0 = x.copy()
    y = ops.conv2d(x, w, b, **kwargs, algo="fft")
    (top, bottom), (left, right) = kwargs["padding"]
    xt = F.pad(to_torch(x), (left, right, top, bottom))
    yt = F.conv2d(
        xt, to_torch(w), to_torch(b), dilation=kwargs["dilation"], groups=kwargs["groups"]
    )
    assert_rel_close(y, yt.numpy(), TORCH_TOL, f"{xs} {ws} {kwargs}")
    np.testing.assert_array_equal(x, x0)
