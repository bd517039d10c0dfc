"""Convolution on the channel-blocked layout (ops.conv_blocked, kernels/blocked.py).

Against the float64 reference and PyTorch: the pointwise micro-kernel's edges (pixel counts
that leave 1-3 pixels of a 4-pixel tile, output blocks that leave 1-2 of a 3-block group), its
fused residual and clamps; the depthwise kernel's border and interior paths for every stride,
padding, dilation and kernel size; the reorders; and the errors for what it does not cover.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_rel_close, to_torch
from test_conv import torch_conv2d

from cnnperf import ops, reference
from cnnperf.kernels.blocked import PW_BLOCKS, PW_PIXELS
from cnnperf.ops.conv_blocked import (
    BlockedConv2d,
    from_blocked,
    global_avg_pool2d_blocked,
    to_blocked,
)

TOL = 1e-5  # float32 accumulation, relative to max |reference|
CLAMP = {None: (-np.inf, np.inf), "relu": (0, np.inf), "relu6": (0, 6)}


def _data(x_shape, w_shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    return x, w, b


def _torch(x, w, b, lo, hi, **kwargs) -> np.ndarray:
    """PyTorch's clamp(conv2d(x)) (asymmetric padding applied with F.pad, as test_conv's)."""
    yt = torch_conv2d(to_torch(x), to_torch(w), to_torch(b), **kwargs)
    return torch.clamp(yt, lo, hi).numpy()


def _run(x, w, b, residual=None, **kwargs):
    conv = BlockedConv2d(w, b, input_shape=x.shape, **kwargs)
    r = None if residual is None else to_blocked(residual)
    return from_blocked(conv(to_blocked(x), residual=r))


def test_reorders_round_trip_and_place_channels_in_lanes():
    x = np.arange(2 * 16 * 3 * 5, dtype=np.float32).reshape(2, 16, 3, 5)
    xb = to_blocked(x)
    assert xb.shape == (2, 2, 3, 5, 8)
    assert xb[1, 1, 2, 4, 3] == x[1, 8 + 3, 2, 4]
    np.testing.assert_array_equal(xb, x.reshape(2, 2, 8, 3, 5).transpose(0, 1, 3, 4, 2))
    np.testing.assert_array_equal(from_blocked(xb), x)
    out = np.empty_like(x)
    assert from_blocked(xb, out) is out


@pytest.mark.parametrize("pixels", [(1, 1), (1, 2), (3, 1), (2, 2), (1, 5), (3, 3), (7, 7)])
@pytest.mark.parametrize("c_out", [8, 16, 24, 32, 40, 56])
def test_pointwise_every_tile_edge(pixels, c_out):
    # pixels % 4 in 0..3 (the last tile's missing pixels are computed, never stored); c_out/8
    # blocks % 3 in 0..2 (the weight's zero blocks are computed, never stored)
    assert {p[0] * p[1] % PW_PIXELS for p in [(1, 1), (1, 2), (3, 1), (2, 2)]} == {0, 1, 2, 3}
    assert {c // 8 % PW_BLOCKS for c in (8, 16, 24)} == {0, 1, 2}
    x, w, b = _data((2, 24, *pixels), (c_out, 24, 1, 1), seed=c_out)
    y = _run(x, w, b)
    assert_rel_close(y, reference.conv2d(x, w, b), TOL, f"{pixels} c_out={c_out}")


def test_pointwise_quad_tiles_across_task_chunks():
    """Output channels a multiple of 32 but not of 24 run tiles of 3 pixels x 4 blocks; with
    512 inputs a task sweeps 32 pixels, so the tiles of 3 meet every chunk boundary."""
    from cnnperf.kernels.blocked import QUAD_BLOCKS, QUAD_PIXELS

    x, w, b = _data((2, 512, 20, 19), (64, 512, 1, 1), seed=5)
    conv = BlockedConv2d(w, b, input_shape=x.shape)
    chunk, _ = conv._launch(2)
    assert chunk * PW_PIXELS % QUAD_PIXELS and (64 // 8) % QUAD_BLOCKS == 0
    assert conv.quad
    xb = to_blocked(x)
    got = conv(xb)
    assert_rel_close(from_blocked(got), reference.conv2d(x, w, b), TOL, "quad tiles")
    conv.quad = False  # the same sums in the same order on tiles of 4 pixels x 3 blocks
    np.testing.assert_array_equal(got, conv(xb))


@pytest.mark.parametrize("act", [None, "relu", "relu6"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("c_out", [48, 64])  # 3-block groups; 4-block quads
def test_pointwise_residual_and_activation_against_torch(act, bias, c_out):
    x, w, b = _data((3, 40, 6, 9), (c_out, 40, 1, 1), seed=1)
    b = b if bias else None
    r = np.random.default_rng(2).standard_normal((3, c_out, 6, 9)).astype(np.float32) * 3
    y = _run(x, w, b, residual=r, activation=act)
    lo, hi = CLAMP[act]
    expected = np.clip(reference.conv2d(x, w, b) + r, lo, hi)
    assert_rel_close(y, expected, TOL, "vs reference")
    yt = F.conv2d(to_torch(x), to_torch(w), None if b is None else to_torch(b)) + to_torch(r)
    yt = torch.clamp(yt, lo, hi) if act else yt
    assert_rel_close(y, yt.numpy(), 1e-4, "vs torch")


@pytest.mark.parametrize(
    "hw, k, kwargs",
    [
        ((9, 11), 3, dict(padding=1)),  # "same": border columns and interior runs of 4
        ((10, 13), 3, dict(stride=2, padding=1)),
        ((8, 8), 3, dict(stride=2, padding=((0, 1), (0, 1)))),  # TF-style asymmetric
        ((12, 15), 5, dict(padding=2)),
        ((12, 12), 3, dict(dilation=2, padding=2)),
        ((7, 9), 3, {}),  # no padding: every column interior
        ((3, 2), 3, dict(padding=1)),  # narrower than 4 pixels: border path only
        ((6, 7), 1, {}),
        ((5, 19), (3, 1), dict(stride=(1, 3), padding=((1, 1), (0, 0)))),
        ((4, 4), 3, dict(padding=3)),  # output columns with no tap inside at all
    ],
)
@pytest.mark.parametrize("act", [None, "relu6"])
def test_depthwise_against_reference_and_torch(hw, k, kwargs, act):
    kh, kw = (k, k) if isinstance(k, int) else k
    x, w, b = _data((2, 16, *hw), (16, 1, kh, kw), seed=kh * 10 + hw[1])
    y = _run(x, w, b, groups=16, activation=act, **kwargs)
    lo, hi = CLAMP[act]
    expected = np.clip(reference.conv2d(x, w, b, groups=16, **kwargs), lo, hi)
    assert y.shape == expected.shape
    assert_rel_close(y, expected, TOL, "vs reference")
    assert_rel_close(y, _torch(x, w, b, lo, hi, groups=16, **kwargs), 1e-4, "vs torch")


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((1, 3, 20, 21), (32, 3, 3, 3), dict(stride=2, padding=1)),  # MobileNet's stem
        ((2, 3, 17, 15), (16, 3, 7, 7), dict(stride=2, padding=3)),  # ResNet's, odd sizes
        ((1, 5, 9, 9), (24, 5, 3, 3), dict(dilation=2)),  # unpadded: read in place
        ((1, 3, 5, 3), (40, 3, 1, 1), {}),  # 15 pixels: a tile of 3; 5 blocks: a group of 2
        ((1, 16, 5, 6), (8, 16, 3, 3), dict(padding=((0, 2), (1, 0)))),
        ((3, 2, 4, 4), (8, 2, 2, 3), dict(stride=(1, 2), padding=1)),
    ],
)
@pytest.mark.parametrize("act", [None, "relu6"])
def test_nchw_input_any_conv_against_reference_and_torch(x_shape, w_shape, kwargs, act):
    x, w, b = _data(x_shape, w_shape, seed=w_shape[2])
    y = _run_nchw(x, w, b, activation=act, **kwargs)
    lo, hi = CLAMP[act]
    expected = np.clip(reference.conv2d(x, w, b, **kwargs), lo, hi)
    assert y.shape == expected.shape
    assert_rel_close(y, expected, TOL, "vs reference")
    assert_rel_close(y, _torch(x, w, b, lo, hi, **kwargs), 1e-4, "vs torch")


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((1, 3, 2, 2), (8, 3, 3, 3), dict(padding=3)),  # outputs whose every tap is padding
        ((2, 2, 5, 3), (16, 2, 5, 5), dict(padding=2)),  # no output with all taps inside
        ((2, 4, 11, 13), (24, 4, 3, 3), dict(stride=3, padding=2, dilation=2)),
        ((1, 3, 9, 10), (56, 3, 3, 3), dict(padding=((2, 0), (0, 3)))),  # 7 blocks: 3 + 2 + 2
        ((1, 3, 24, 23), (64, 3, 7, 7), dict(stride=2, padding=3)),  # ResNet's stem
    ],
)
def test_a_padded_nchw_input_is_read_in_place_with_the_padded_gemms_sums(
    x_shape, w_shape, kwargs, monkeypatch
):
    """direct_conv_blocked skips the taps in the padding: every output is the padded GEMM's
    sum in the same order without its zero products, so the two agree bit for bit (random
    data: no exact zeros), and both agree with the reference and PyTorch."""
    from cnnperf.ops import conv_blocked
    from cnnperf.ops.conv_blocked import _KERNELS

    monkeypatch.setattr(conv_blocked, "DIRECT_MIN_WIDTH", 1)  # these narrow outputs too
    x, w, b = _data(x_shape, w_shape, seed=w_shape[0] + w_shape[2])
    conv = BlockedConv2d(w, b, input_shape=x.shape, input_layout="nchw", activation="relu6",
                         **kwargs)  # fmt: skip
    assert conv.direct
    got = conv(x)
    via_padded = np.empty_like(got)
    xp = conv._padded(x)
    args = conv._gemm_args(xp.reshape(-1), xp[0].size, conv.offs, via_padded.reshape(-1),
                           conv.bias, conv.lo, conv.hi, x.shape[0], None, False)  # fmt: skip
    _KERNELS.gemm_conv_blocked(*args)
    np.testing.assert_array_equal(got, via_padded)
    expected = np.clip(reference.conv2d(x, w, b, **kwargs), 0, 6)
    assert_rel_close(from_blocked(got), expected, TOL, "vs reference")
    assert_rel_close(from_blocked(got), _torch(x, w, b, 0, 6, **kwargs), 1e-4, "vs torch")
    # the blocked_gemm algorithm's NCHW stores read it the same way
    y = ops.conv2d(x, w, b, algo="blocked_gemm", activation="relu6", **kwargs)
    np.testing.assert_array_equal(y, from_blocked(got))


def test_nchw_input_with_a_residual():
    x, w, b = _data((2, 3, 9, 10), (16, 3, 3, 3), seed=4)
    r = np.random.default_rng(5).standard_normal((2, 16, 9, 10)).astype(np.float32)
    conv = BlockedConv2d(w, b, padding=1, activation="relu", input_shape=x.shape,
                         input_layout="nchw")  # fmt: skip
    y = from_blocked(conv(x, residual=to_blocked(r)))
    assert_rel_close(y, np.maximum(reference.conv2d(x, w, b, padding=1) + r, 0), TOL, "res")


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((2, 3, 9, 11), (8, 3, 3, 3), dict(stride=2, padding=1)),  # 30 pixels: a tile of 2
        ((1, 5, 7, 7), (16, 5, 3, 3), dict(padding=1)),  # 49 pixels: a tile of 1; 2 + 0 blocks
        ((2, 6, 6, 9), (40, 6, 1, 1), dict(stride=(1, 2))),  # 30 pixels; 5 blocks: 3 + 2
        ((1, 4, 8, 8), (24, 4, 3, 3), dict(padding=1, dilation=2)),  # 36 pixels: full tiles
    ],
)
@pytest.mark.parametrize("act", [None, "relu", "relu6", "sigmoid"])
def test_blocked_gemm_writes_nchw_with_a_fused_residual(x_shape, w_shape, kwargs, act):
    """The "blocked_gemm" algorithm stores each tile transposed into the NCHW output (no
    blocked buffer): every tail of a 4-pixel tile and of a 3-block group, a residual with
    NaN and Inf added before the activation, exactly the blocked path's arithmetic."""
    x, w, b = _data(x_shape, w_shape, seed=w_shape[0])
    plan = ops.plan_conv2d(w, b, input_shape=x.shape, algo="blocked_gemm", activation=act,
                           **kwargs)  # fmt: skip
    y0 = plan(x)
    r = np.random.default_rng(1).standard_normal(y0.shape).astype(np.float32)
    r[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    r[-1, -1, -1, -1] = np.nan  # the last element: the last tile's stores reach it
    fused = plan(x, residual=r)
    with np.errstate(invalid="ignore"):
        unfused = ops.conv2d(x, w, b, algo="blocked_gemm", **kwargs) + r
        lo, hi = CLAMP.get(act, (-np.inf, np.inf))
        expected = np.clip(unfused, lo, hi) if act != "sigmoid" else 1 / (1 + np.exp(-unfused))
    np.testing.assert_array_equal(np.isnan(fused), np.isnan(expected))
    if act == "sigmoid":
        assert_rel_close(fused, expected, 1e-6, "sigmoid after the residual")
    else:  # bias, residual, clamp: the same float32 operations as conv + add + clamp
        np.testing.assert_array_equal(fused, expected)
    # the NCHW stores against the blocked kernel's own layout, and the reference
    conv = BlockedConv2d(w, b, input_shape=x.shape, input_layout="nchw", activation=None,
                         **kwargs)  # fmt: skip
    np.testing.assert_array_equal(ops.conv2d(x, w, b, algo="blocked_gemm", **kwargs),
                                  from_blocked(conv(x)))  # fmt: skip
    assert_rel_close(ops.conv2d(x, w, b, algo="blocked_gemm", **kwargs),
                     reference.conv2d(x, w, b, **kwargs), TOL, "vs reference")  # fmt: skip


def test_blocked_gemm_grouped_residual_is_added_before_the_activation():
    """Grouped layers go through per-group blocked buffers; the residual then follows them,
    before the activation (a clamp fused into the groups would come too early)."""
    x, w, b = _data((1, 4, 6, 6), (12, 2, 3, 3), seed=3)
    r = np.full((1, 12, 6, 6), 5.0, np.float32)
    plan = ops.plan_conv2d(w, b, padding=1, groups=2, input_shape=x.shape, algo="blocked_gemm",
                           activation="relu")  # fmt: skip
    expected = np.maximum(reference.conv2d(x, w, b, padding=1, groups=2) + 5.0, 0)
    assert_rel_close(plan(x, residual=r), expected, TOL, "grouped + residual")


def _run_nchw(x, w, b, **kwargs):
    conv = BlockedConv2d(w, b, input_shape=x.shape, input_layout="nchw", **kwargs)
    assert conv.name == "blocked_gemm"
    return from_blocked(conv(x))


def test_global_average_pool_of_a_blocked_array():
    x = np.random.default_rng(0).standard_normal((3, 24, 7, 5)).astype(np.float32)
    y = global_avg_pool2d_blocked(to_blocked(x))
    assert y.shape == (3, 24, 1, 1) and y.dtype == np.float32
    assert_rel_close(y, reference.adaptive_avg_pool2d(x, 1), 1e-6, "mean")
    with pytest.raises(ValueError, match="float32 5-D"):
        global_avg_pool2d_blocked(x)


def test_nan_and_inf_pass_through_the_clamp():
    x, w, b = _data((1, 8, 4, 5), (16, 8, 1, 1))
    x[0, 3, 1, 2] = np.nan
    x[0, 0, 0, 0] = np.inf
    y = _run(x, np.abs(w), b, activation="relu6")
    assert np.isnan(y[0, :, 1, 2]).all() and (y[0, :, 0, 0] == 6).all()
    xd, wd, bd = _data((1, 8, 5, 5), (8, 1, 3, 3))
    xd[0, 2, 2, 2] = np.nan
    yd = _run(xd, wd, bd, groups=8, padding=1, activation="relu")
    assert np.isnan(yd[0, 2, 1:4, 1:4]).all() and not np.isnan(np.delete(yd, 2, axis=1)).any()


def test_batch_differs_from_the_planned_one_and_out_is_written():
    x, w, b = _data((3, 16, 5, 6), (24, 16, 1, 1))
    conv = BlockedConv2d(w, b, input_shape=(None, 16, 5, 6), activation="relu")
    out = np.full(conv.output_shape(3), np.nan, np.float32)
    assert conv(to_blocked(x), out=out) is out
    assert_rel_close(from_blocked(out), ops.relu(reference.conv2d(x, w, b)), TOL, "batch 3")


@pytest.mark.parametrize(
    "w_shape, kwargs, message",
    [
        ((8, 12, 1, 1), {}, "channels in multiples of 8"),
        ((16, 8, 3, 3), {}, "1x1 stride-1 unpadded ungrouped and depthwise"),
        ((16, 8, 1, 1), dict(stride=2), "1x1 stride-1 unpadded ungrouped and depthwise"),
        ((16, 4, 1, 1), dict(groups=2), "1x1 stride-1 unpadded ungrouped and depthwise"),
        ((16, 8, 1, 1), dict(activation="silu"), "activations None, 'relu' and 'relu6'"),
    ],
)
def test_unsupported_convolutions_are_refused(w_shape, kwargs, message):
    c_in = w_shape[1] * kwargs.get("groups", 1)
    with pytest.raises(ValueError, match=message):
        BlockedConv2d(np.ones(w_shape, np.float32), input_shape=(1, c_in, 4, 4), **kwargs)


def test_nchw_input_refusals():
    with pytest.raises(ValueError, match="ungrouped convolutions only"):
        BlockedConv2d(np.ones((8, 2, 3, 3), np.float32), groups=2, input_shape=(1, 4, 5, 5),
                      input_layout="nchw")  # fmt: skip
    with pytest.raises(ValueError, match="output channels in multiples of 8"):
        BlockedConv2d(np.ones((12, 3, 3, 3), np.float32), input_shape=(1, 3, 5, 5),
                      input_layout="nchw")  # fmt: skip
    with pytest.raises(ValueError, match="input_layout must be"):
        BlockedConv2d(np.ones((8, 8, 1, 1), np.float32), input_shape=(1, 8, 5, 5),
                      input_layout="nhwc")  # fmt: skip
    conv = BlockedConv2d(np.ones((8, 3, 3, 3), np.float32), input_shape=(1, 3, 5, 5),
                         input_layout="nchw")  # fmt: skip
    with pytest.raises(ValueError, match=r"expected an input \(n, 3, 5, 5\)"):
        conv(np.ones((1, 3, 5, 6), np.float32))
    with pytest.raises(ValueError, match="expected a float32 4-D array"):
        conv(np.ones((1, 3, 5, 5)))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="needs a float32 weight"):
        BlockedConv2d(np.ones((8, 8, 1, 1)), input_shape=(1, 8, 4, 4))
    conv = BlockedConv2d(np.ones((8, 8, 1, 1), np.float32), input_shape=(1, 8, 4, 4))
    with pytest.raises(ValueError, match=r"expected a blocked input \(n, 1, 4, 4, 8\)"):
        conv(np.ones((1, 1, 4, 5, 8), np.float32))
    with pytest.raises(ValueError, match="expected a float32 5-D array"):
        conv(np.ones((1, 8, 4, 4), np.float32))
    with pytest.raises(ValueError, match="residual must have shape"):
        conv(np.ones((1, 1, 4, 4, 8), np.float32), residual=np.ones((1, 1, 4, 3, 8), np.float32))
    dw = BlockedConv2d(np.ones((8, 1, 3, 3), np.float32), groups=8, input_shape=(1, 8, 4, 4))
    with pytest.raises(ValueError, match="residual is fused into 1x1"):
        dw(np.ones((1, 1, 4, 4, 8), np.float32), residual=np.ones((1, 1, 2, 2, 8), np.float32))
    with pytest.raises(ValueError, match="channels must be a multiple of 8"):
        to_blocked(np.ones((1, 6, 2, 2), np.float32))
    with pytest.raises(ValueError, match="last dimension must be 8"):
        from_blocked(np.ones((1, 1, 2, 2, 4), np.float32))


@pytest.mark.parametrize(
    "kind, w_shape, kwargs, layout",
    [
        ("pointwise", (24, 16, 1, 1), {}, "nchw8c"),
        ("pointwise+residual", (16, 16, 1, 1), dict(activation="relu6"), "nchw8c"),
        ("depthwise", (16, 1, 3, 3), dict(groups=16, padding=1, stride=2), "nchw8c"),
        ("gemm", (32, 5, 3, 3), dict(stride=2, activation="relu"), "nchw"),  # unpadded
        ("direct", (16, 3, 3, 3), dict(padding=1, activation="relu6"), "wide nchw"),
    ],
)
def test_bind_reruns_the_call_on_the_arrays_current_contents(kind, w_shape, kwargs, layout):
    c_in = w_shape[1] * kwargs.get("groups", 1)
    width = 9 if layout != "wide nchw" else 60  # wide padded outputs: direct_conv_blocked
    layout = layout.split()[-1]
    x, w, b = _data((2, c_in, 7, width), w_shape, seed=len(kind))
    conv = BlockedConv2d(w, b, input_shape=x.shape, input_layout=layout, **kwargs)
    xin = to_blocked(x) if layout == "nchw8c" else x.copy()
    residual = None
    if kind.endswith("residual"):
        residual = to_blocked(_data((2, w_shape[0], 7, 9), w_shape, seed=9)[0])
    out = np.full(conv.output_shape(2), np.nan, np.float32)
    run = conv.bind(xin, out, residual)
    assert run is not None
    assert (kind == "direct") == getattr(conv, "direct", False)
    for seed in (3, 4):  # new contents in the same arrays: the bound call reads them
        xin[...] = np.random.default_rng(seed).standard_normal(xin.shape)
        assert run() is None
        np.testing.assert_array_equal(out, conv(xin, residual=residual))


def test_bind_refuses_arrays_it_cannot_run_on():
    conv = BlockedConv2d(np.ones((8, 8, 1, 1), np.float32), input_shape=(1, 8, 4, 4))
    x, out = np.ones((2, 1, 4, 4, 8), np.float32), np.empty((2, 1, 4, 4, 8), np.float32)
    assert conv.bind(x, out) is not None
    assert conv.bind(x, out[:1]) is None  # another batch than the input's
    assert conv.bind(x[:, :, :, :3], out) is None  # wrong shape
    assert conv.bind(x.astype(np.float64), out) is None
    assert conv.bind(np.ones((2, 1, 4, 8, 8), np.float32)[:, :, :, ::2], out) is None  # strided
    assert conv.bind(x, out, residual=np.ones((2, 1, 4, 3, 8), np.float32)) is None
    assert conv.bind(x[:0], out[:0]) is None  # empty batch: nothing to prepare
    dw = BlockedConv2d(np.ones((8, 1, 3, 3), np.float32), groups=8, input_shape=(1, 8, 4, 4))
    dw_out = np.empty((2, 1, 2, 2, 8), np.float32)
    assert dw.bind(x, dw_out) is not None
    assert dw.bind(x, dw_out, residual=dw_out.copy()) is None  # no residual in depthwise
    # a padded NCHW input is read as it is (direct_conv_blocked): bound like the others
    padded = BlockedConv2d(np.ones((8, 3, 3, 3), np.float32), padding=1,
                           input_shape=(1, 3, 4, 60), input_layout="nchw")  # fmt: skip
    x3, out3 = np.ones((1, 3, 4, 60), np.float32), np.empty((1, 1, 4, 60, 8), np.float32)
    assert padded.direct and padded.bind(x3, out3) is not None
    assert padded.bind(x3, out3[:, :, :3]) is None
    # narrower padded outputs run the GEMM on a padded copy made per call: left to __call__
    narrow = BlockedConv2d(np.ones((8, 3, 3, 3), np.float32), padding=1,
                           input_shape=(1, 3, 4, 4), input_layout="nchw")  # fmt: skip
    assert not narrow.direct
    assert narrow.bind(x3[..., :4], out3[..., :4, :]) is None


@pytest.mark.parametrize(
    "w_shape, kwargs, layout",
    [
        ((16, 8, 1, 1), {}, "nchw8c"),
        ((8, 1, 3, 3), dict(groups=8, padding=1), "nchw8c"),
        ((16, 8, 3, 3), dict(stride=2, padding=1), "nchw"),
    ],
)
def test_an_empty_batch_gives_an_empty_output(w_shape, kwargs, layout):
    x, w, b = _data((2, 8, 6, 6), w_shape)
    conv = BlockedConv2d(w, b, input_shape=x.shape, input_layout=layout, **kwargs)
    x0 = x[:0] if layout == "nchw" else to_blocked(x)[:0]
    y = conv(x0)
    assert y.shape == conv.output_shape(0) and y.shape[0] == 0


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((2, 16, 12, 14), dict(kernel_size=3, stride=2, padding=1)),  # ResNet's
        ((1, 8, 9, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        ((1, 8, 10, 11), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(2, 1))),
        ((1, 24, 5, 9), dict(kernel_size=2)),  # stride = kernel, unpadded, tails of 1
        ((1, 8, 3, 3), dict(kernel_size=3, padding=1)),  # every window at a border
    ],
)
def test_max_pool_of_a_blocked_input_is_pytorchs_bit_for_bit(shape, kwargs):
    """NaN wins, equal values keep the first tap (the sign of a zero), -inf padding; the
    NCHW output is transposed from the blocked lanes as it is stored."""
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    x.flat[::23] = np.nan
    x.flat[3::11] = -0.0
    x.flat[4::11] = 0.0
    x.flat[5::29] = -np.inf
    y = ops.max_pool2d_blocked(to_blocked(x), **kwargs)
    want = F.max_pool2d(torch.from_numpy(x), **kwargs).numpy()
    assert y.shape == want.shape and y.dtype == np.float32
    np.testing.assert_array_equal(y, want)  # NaN where torch has NaN
    np.testing.assert_array_equal(np.signbit(y[~np.isnan(y)]), np.signbit(want[~np.isnan(want)]))
    np.testing.assert_array_equal(y, ops.max_pool2d(x, **kwargs))


def test_max_pool_of_a_blocked_input_checks_its_arguments():
    xb = to_blocked(np.zeros((1, 8, 4, 4), np.float32))
    with pytest.raises(ValueError, match="float32 5-D"):
        ops.max_pool2d_blocked(np.zeros((1, 8, 4, 4), np.float32), 2)
    with pytest.raises(ValueError, match="pad should be at most half"):
        ops.max_pool2d_blocked(xb, 2, padding=2)
    with pytest.raises(ValueError, match="too small"):
        ops.max_pool2d_blocked(xb, 5)
    assert ops.max_pool2d_blocked(xb[:0], 2).shape == (0, 8, 2, 2)


def test_max_pool_of_a_blocked_input_into_out_and_bound():
    x = np.random.default_rng(8).standard_normal((2, 16, 9, 10)).astype(np.float32)
    xb = to_blocked(x)
    want = ops.max_pool2d_blocked(xb, 3, 2, 1)
    out = np.full(want.shape, np.nan, np.float32)
    assert ops.max_pool2d_blocked(xb, 3, 2, 1, out=out) is out
    np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match="out must be"):
        ops.max_pool2d_blocked(xb, 3, 2, 1, out=out[:1])
    out.fill(np.nan)
    run = ops.bind_max_pool2d_blocked(xb, out, 3, 2, 1)
    xb *= -1  # the bound call reads the array's contents when it runs
    assert run() is None
    np.testing.assert_array_equal(out, ops.max_pool2d_blocked(xb, 3, 2, 1))
    assert ops.bind_max_pool2d_blocked(xb, out[:, :8], 3, 2, 1) is None
    assert ops.bind_max_pool2d_blocked(xb, out.astype(np.float64), 3, 2, 1) is None
    assert ops.bind_max_pool2d_blocked(xb[:, :, ::2], out, 3, 2, 1) is None
    assert ops.bind_max_pool2d_blocked(xb, out, 3, 2, 2) is None  # bad arguments: no call
