"""The implicit-GEMM algorithm: its tile edges, source layouts, fused residual, and fallbacks.

The shared case table runs it in test_conv.py; these tests aim at what is specific to it: every
tile width the micro-kernel has (1..24 pixels, masked tails), output channels that do not fill
a panel of 4, the flattened-rows layouts (1x1 and phase-split planes as wide as the output),
and the residual it adds as it writes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F
from conftest import assert_rel_close, to_torch
from unfused import UNFUSED

from cnnperf import ops, reference
from cnnperf.kernels.implicit_gemm import MR, pack_weight, pad_phase_split
from cnnperf.ops.conv_implicit import implicit_geometry

ALGO = "implicit_gemm"
TOL = 1e-5  # float32 accumulation over c_in*kh*kw terms, relative to max |reference|


def _data(x_shape, w_shape, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("width", [1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 48, 50])
@pytest.mark.parametrize("c_out", [1, 3, MR, 5, 9])
def test_every_tile_width_and_partial_panel(width, c_out):
    # 3x3 stride 1: rows of `width` pixels (tiles of NR, then a masked tail); 1x1 on a plane
    # of 2 x width: one flattened row of 2*width pixels
    x, w, b = _data((2, 3, 4, width), (c_out, 3, 3, 3), seed=width)
    y = ops.conv2d(x, w, b, padding=1, algo=ALGO)
    assert_rel_close(y, reference.conv2d(x, w, b, padding=1), TOL, f"3x3 w={width}")
    x, w, b = _data((2, 5, 2, width), (c_out, 5, 1, 1), seed=width + 1)
    y = ops.conv2d(x, w, b, algo=ALGO)
    assert_rel_close(y, reference.conv2d(x, w, b), TOL, f"1x1 w={width}")


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((1, 3, 30, 30), (8, 3, 7, 7), dict(stride=2, padding=3)),  # a ResNet-style stem
        ((2, 3, 35, 33), (5, 3, 11, 11), dict(stride=4, padding=2)),  # AlexNet-style, odd
        ((1, 4, 12, 12), (6, 4, 1, 1), dict(stride=2)),  # phase planes as wide as the output
        ((2, 4, 9, 10), (6, 2, 3, 3), dict(stride=(2, 1), padding=(0, 1), groups=2)),
        ((1, 3, 11, 12), (4, 3, 3, 2), dict(dilation=(2, 3), padding=((2, 1), (0, 3)))),
        ((1, 2, 5, 5), (3, 2, 5, 5), {}),  # one output pixel
    ],
)
def test_strides_dilations_groups_against_torch(x_shape, w_shape, kwargs):
    x, w, b = _data(x_shape, w_shape)
    y = ops.conv2d(x, w, b, **kwargs, algo=ALGO, activation="relu6")
    expected = reference.conv2d(x, w, b, **kwargs)
    assert_rel_close(y, np.clip(expected, 0, 6), TOL, "vs reference")
    pad = kwargs.get("padding", 0)
    xt = to_torch(x)
    if isinstance(pad, tuple) and isinstance(pad[0], tuple):
        (top, bottom), (left, right) = pad
        xt = F.pad(xt, (left, right, top, bottom))
        kwargs = {**kwargs, "padding": 0}
    yt = F.relu6(F.conv2d(xt, to_torch(w), to_torch(b), **kwargs))
    assert_rel_close(y, yt.numpy(), 1e-4, "vs torch")


@pytest.mark.parametrize("act", [None, "relu", "relu6", "silu"])
@pytest.mark.parametrize(
    "k, stride, hw",
    [(1, 1, (9, 11)), (3, 1, (9, 11)), (3, 2, (9, 11)), (3, 1, (3, 45)), (3, 2, (4, 90))],
)
def test_fused_residual_equals_add_then_activation(act, k, stride, hw):
    # 1x1: the residual added by the micro-kernel; 3x3 on 11 columns: flat runs, added when
    # compacting; 45 columns (and 45 at stride 2): row tiles, added by the micro-kernel
    x, w, b = _data((2, 6, *hw), (10, 6, k, k), seed=3)
    geo = implicit_geometry(ops.conv_params(x.shape, w.shape, stride=stride, padding=k // 2))
    assert geo.flat == (k == 3 and hw[1] < 45)
    kw = dict(stride=stride, padding=k // 2)
    plan = ops.plan_conv2d(w, b, **kw, input_shape=x.shape, algo=ALGO, activation=act)
    r = np.random.default_rng(4).standard_normal(plan(x).shape).astype(np.float32)
    y = plan(x, residual=r)
    unfused = ops.conv2d(x, w, b, **kw, algo="im2col") + r
    if act is not None:
        unfused = UNFUSED[act][0](unfused)
    assert_rel_close(y, unfused, 1e-6, f"residual/{act}")
    out = np.full_like(y, np.nan)
    assert plan(x, residual=r, out=out) is out
    np.testing.assert_array_equal(out, y)


def test_residual_nan_and_inf_propagate_as_unfused():
    x, w, b = _data((1, 4, 6, 8), (5, 4, 1, 1), seed=5)
    plan = ops.plan_conv2d(w, b, input_shape=x.shape, algo=ALGO, activation="relu")
    r = np.zeros((1, 5, 6, 8), np.float32)
    r[0, 1, 2, 3] = np.nan
    r[0, 2, 0, 0] = np.inf
    r[0, 3, 5, 7] = -np.inf
    y = plan(x, residual=r)
    assert np.isnan(y[0, 1, 2, 3])
    assert y[0, 2, 0, 0] == np.inf
    assert y[0, 3, 5, 7] == 0.0  # relu(-inf)
    finite = np.isfinite(r)
    expected = np.maximum(ops.conv2d(x, w, b, algo="im2col") + r, 0)
    assert_rel_close(y[finite], expected[finite], 1e-6, "finite part")


def test_float64_runs_in_float64():
    x, w, b = _data((1, 3, 9, 9), (4, 3, 3, 3), dtype=np.float64)
    y = ops.conv2d(x, w, b, stride=2, padding=1, algo=ALGO, activation="relu")
    assert y.dtype == np.float64
    expected = np.maximum(reference.conv2d(x, w, b, stride=2, padding=1), 0)
    assert_rel_close(y, expected, 1e-12, "float64")


def test_pad_phase_split_layout():
    x = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)
    pt, pl, sh, sw = 2, 1, 2, 3
    hp, wp = 5 + pt + 1, 7 + pl + 2
    hq, wq = -(-hp // sh), -(-wp // sw)
    out = np.full((2, 3, sh, sw, hq, wq), np.nan, np.float32)
    used = np.ones(sh * sw, np.bool_)
    used[4] = False  # phase (1, 1): left untouched
    pad_phase_split(x, pt, pl, sh, sw, hq, wq, used, out)
    padded = np.zeros((2, 3, hq * sh, wq * sw), np.float32)
    padded[:, :, pt : pt + 5, pl : pl + 7] = x
    for a in range(sh):
        for e in range(sw):
            if (a, e) == (1, 1):
                assert np.isnan(out[:, :, a, e]).all()
            else:
                np.testing.assert_array_equal(out[:, :, a, e], padded[:, :, a::sh, e::sw])


def test_pack_weight_layout():
    w2 = np.arange(6 * 5, dtype=np.float32).reshape(6, 5) + 1
    packed = pack_weight(w2)
    assert packed.shape == (2 * 5 * MR,)
    for co in range(8):
        for t in range(5):
            value = packed[((co // MR) * 5 + t) * MR + co % MR]
            assert value == (w2[co, t] if co < 6 else 0.0)


def test_geometry_reads_stay_inside_the_source():
    # the largest index the kernel forms, for the last pixel of the last image, must be inside
    # the source: masked tails never read past it, full tiles hold only real pixels
    for shape, kw in [
        (((3, 4, 13, 17), (5, 4, 3, 3)), dict(stride=2, padding=1)),
        (((1, 3, 224, 224), (64, 3, 7, 7)), dict(stride=2, padding=3)),
        (((1, 8, 7, 7), (4, 8, 3, 3)), dict(padding=1)),  # flat: a run at the pitch wq = 9
        (((2, 4, 14, 14), (4, 4, 3, 3)), dict(stride=2, padding=1)),
        (((2, 6, 7, 7), (4, 6, 1, 1)), {}),
        (((1, 2, 9, 11), (3, 2, 2, 3)), dict(dilation=2, padding=((1, 0), (2, 2)))),
    ]:
        p = ops.conv_params(*shape, **kw)
        geo = implicit_geometry(p)
        size = p.n * geo.img_stride
        last = (p.n - 1) * geo.img_stride + (p.g - 1) * geo.group_stride + int(geo.offs.max())
        last += (geo.rows - 1) * geo.pitch + geo.cols - 1
        assert last < size, (shape, kw)
        if geo.flat:  # one run at the source's pitch, the last row's extra columns left out
            assert geo.rows == 1 and geo.cols == (p.oh - 1) * geo.wq + p.ow
        else:
            assert geo.rows * geo.cols == p.oh * p.ow


def test_resnet_stem_against_torch():
    x, w, b = _data((1, 3, 224, 224), (64, 3, 7, 7), seed=9)
    y = ops.conv2d(x, w, b, stride=2, padding=3, algo=ALGO, activation="relu")
    yt = F.relu(F.conv2d(to_torch(x), to_torch(w), to_torch(b), stride=2, padding=3))
    assert_rel_close(y, yt.numpy(), 1e-5, "ResNet stem vs torch")


def test_simd_masked_loads_stores_and_clamp():
    from numba import njit

    from cnnperf.kernels.simd import vbcast, vclamp, vfma, vload, vload_n, vstore, vstore_n

    @njit
    def run(a, out, count, lo, hi):
        v = vload_n(a, 0, count)  # lanes past count read as 0, memory past them untouched
        vstore_n(out, 0, vclamp(v, vbcast(lo), vbcast(hi)), count)
        two = vbcast(np.float32(2.0))
        vstore(out, 8, vfma(vload(a, 0), two, vload_n(a, 8, 2)))

    a = np.array([-3, -0.0, 0.5, 7, np.nan, np.inf, -np.inf, 1, 10, 20], np.float32)
    out = np.full(16, 99, np.float32)
    run(a, out, 6, np.float32(0), np.float32(6))
    np.testing.assert_array_equal(out[:6], [0, -0.0, 0.5, 6, np.nan, 6])
    assert np.signbit(out[1])  # relu6(-0.0) stays -0.0, as act_scalar leaves it
    np.testing.assert_array_equal(out[6:8], [99, 99])
    np.testing.assert_array_equal(out[8:], [4, 20, 1, 14, np.nan, np.inf, -np.inf, 2])
    np.testing.assert_array_equal(out[8:], a[:8] * 2 + np.r_[a[8:], np.zeros(6, np.float32)])
