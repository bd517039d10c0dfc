"""Winograd convolution: every registered variant (F(2x2,3x3), F(4x4,3x3), the adaptive
"winograd") on the shared case table and extra 3x3 cases against the float64 reference and
PyTorch; the unregistered F(6x6,3x3) through ``conv2d_winograd``; the transform matrices and
kernels against direct float64 computations; fused epilogues, coverage reasons, chunking,
thread-count determinism, the backward path and a property test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cases import CONV_CASES, ConvCase
from conftest import assert_rel_close, rel_err, to_torch
from hypothesis import given
from hypothesis import strategies as st
from test_conv import make_case, torch_conv2d

import cnnperf
from cnnperf import ops, reference
from cnnperf.kernels.winograd import (
    winograd_input_transform,
    winograd_matrices,
    winograd_output_transform,
)
from cnnperf.ops import conv_winograd
from cnnperf.ops.epilogue import FUSABLE_ACTIVATIONS, parse_activation

VARIANTS = ["winograd_f23", "winograd_f43", "winograd"]
# Float32 result against the float64 reference, max abs error / max |reference|. Measured on
# ResNet-like data (standard-normal input, He weights, c_in 64..512, 24 layer/seed draws):
# F(2x2) <= 7e-7 (PyTorch itself: <= 3.6e-6), F(4x4) <= 1.5e-5, F(6x6) <= 2.3e-5; the error is
# the float32 accumulation in the per-point GEMMs, amplified by the output transform. On the
# small test cases it is far lower; the bounds leave room for other data.
REFERENCE_TOL = {"winograd_f23": 2e-6, "winograd_f43": 5e-5, "winograd": 5e-5, "f63": 1e-4}
TORCH_TOL = 1e-4  # every shipped variant: <= 1e-4 of the output's max-abs against PyTorch
FLOAT64_TOL = 1e-12


def _covered(algo, x_shape, w_shape, kwargs):
    p = ops.conv_params(x_shape, w_shape, **kwargs)
    return ops.CONV_ALGOS[algo].why_not(p) is None


SHARED = [
    pytest.param(algo, case, id=f"{case.id}-{algo}")
    for algo in VARIANTS
    for case in CONV_CASES
    if _covered(algo, case.x, case.w, case.kwargs)
]

EXTRA_CASES = [
    ConvCase("odd_13x17", (2, 5, 13, 17), (7, 5, 3, 3), dict(padding=1)),
    ConvCase("batch1_nopad", (1, 4, 11, 10), (3, 4, 3, 3), {}),
    ConvCase("wide_cin256", (2, 256, 9, 11), (16, 256, 3, 3), dict(padding=1)),
    ConvCase("tiny_1x1", (3, 4, 1, 1), (5, 4, 3, 3), dict(padding=1)),
    ConvCase("tiny_2x2", (2, 3, 2, 2), (4, 3, 3, 3), dict(padding=1), bias=False),
    ConvCase("exact_3x3_valid", (2, 3, 3, 3), (2, 3, 3, 3), {}),
    ConvCase("groups4", (2, 8, 10, 9), (12, 2, 3, 3), dict(padding=1, groups=4)),
    ConvCase("asym_pad", (1, 3, 7, 8), (4, 3, 3, 3), dict(padding=((0, 2), (2, 1)))),
    ConvCase("same", (2, 6, 12, 12), (6, 6, 3, 3), dict(padding="same"), bias=False),
    ConvCase("multi_tile_rows", (3, 2, 25, 26), (3, 2, 3, 3), dict(padding=1)),
    # c_out a multiple of 8: the per-point GEMMs on the blocked micro-kernel
    ConvCase("blocked_c8_odd", (2, 5, 13, 17), (8, 5, 3, 3), dict(padding=1)),
    ConvCase("blocked_c24_nopad", (1, 16, 11, 10), (24, 16, 3, 3), {}),
    ConvCase("blocked_c32_1x1", (3, 4, 1, 1), (32, 4, 3, 3), dict(padding=1)),
    ConvCase("blocked_c16_rows", (3, 2, 25, 26), (16, 2, 3, 3), dict(padding=1), bias=False),
]


def _check(algo, case, dtype=np.float32, seed=0):
    x, w, b = make_case(case, dtype, seed)
    x0, w0 = x.copy(), w.copy()
    y = ops.conv2d(x, w, b, **case.kwargs, algo=algo)
    assert y.dtype == dtype
    expected = reference.conv2d(x, w, b, **case.kwargs)
    tol = REFERENCE_TOL[algo] if dtype == np.float32 else FLOAT64_TOL
    assert_rel_close(y, expected, tol, f"{case.id}/{algo} vs reference")
    if dtype == np.float32:
        yt = torch_conv2d(
            to_torch(x), to_torch(w), None if b is None else to_torch(b), **case.kwargs
        )
        assert_rel_close(y, yt.numpy(), TORCH_TOL, f"{case.id}/{algo} vs torch")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


def _conv_m(x, w, b, m, activation=None, **kwargs):
    """conv2d through conv2d_winograd with tile size m (F(6x6) is not registered)."""
    p = ops.conv_params(x.shape, w.shape, **kwargs)
    xp = np.zeros((p.n, p.c_in, p.h + p.pt + p.pb, p.w + p.pl + p.pr), x.dtype)
    xp[:, :, p.pt : p.pt + p.h, p.pl : p.pl + p.w] = x
    out = np.empty(p.output_shape, x.dtype)
    epi = parse_activation(activation)
    u = conv_winograd.winograd_weight_transform(w, m)
    conv_winograd.conv2d_winograd(xp, u, b, p, out, m, epi)
    return out


@pytest.mark.parametrize("algo, case", SHARED)
def test_shared_cases_match_reference_and_torch(algo, case):
    _check(algo, case)


def test_shared_table_has_covered_cases_for_every_variant():
    for algo in VARIANTS:
        assert sum(1 for a, _ in (p.values for p in SHARED) if a == algo) >= 5


@pytest.mark.parametrize("algo", VARIANTS)
@pytest.mark.parametrize("case", EXTRA_CASES, ids=lambda c: c.id)
def test_extra_3x3_cases(case, algo):
    _check(algo, case)


@pytest.mark.parametrize("algo", VARIANTS)
@pytest.mark.parametrize("case", EXTRA_CASES[:5], ids=lambda c: c.id)
def test_float64(case, algo):
    _check(algo, case, np.float64)


@pytest.mark.parametrize("m, bound", [(2, 2e-6), (4, 3e-5), (6, 5e-5)])
def test_resnet_like_accuracy(m, bound):
    # He-initialised weights, standard-normal input, wide c_in: the realistic error regime.
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 256, 14, 14))
    w = rng.standard_normal((32, 256, 3, 3)) * np.sqrt(2 / (9 * 256))
    y = _conv_m(x.astype(np.float32), w.astype(np.float32), None, m, padding=1)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    err = rel_err(y, expected)
    assert err <= bound, f"F({m}x{m},3x3): {err:.2e}"


@pytest.mark.parametrize(
    "case",
    EXTRA_CASES + [c for c in CONV_CASES if _covered("winograd", c.x, c.w, c.kwargs)],
    ids=lambda c: c.id,
)
def test_f63_unregistered_kernels(case):
    x, w, b = make_case(case, np.float32, 0)
    y = _conv_m(x, w, b, 6, **case.kwargs)
    assert_rel_close(y, reference.conv2d(x, w, b, **case.kwargs), REFERENCE_TOL["f63"], case.id)
    yt = torch_conv2d(to_torch(x), to_torch(w), None if b is None else to_torch(b), **case.kwargs)
    assert_rel_close(y, yt.numpy(), TORCH_TOL, f"{case.id} vs torch")
    x, w, b = make_case(case, np.float64, 0)
    y = _conv_m(x, w, b, 6, activation="relu", **case.kwargs)
    expected = np.maximum(reference.conv2d(x, w, b, **case.kwargs), 0)
    assert_rel_close(y, expected, FLOAT64_TOL, f"{case.id} float64")


def test_f63_is_not_registered():
    assert "winograd_f63" not in ops.CONV_ALGOS


def test_default_tile_is_f2_only_for_few_tiles():
    def p(n, c, s):
        return ops.conv_params((n, c, s, s), (c, c, 3, 3), padding=1)

    assert conv_winograd.default_tile(p(1, 64, 56)) == 4
    assert conv_winograd.default_tile(p(8, 512, 7)) == 4  # 8 * 2 * 2 = 32 tiles
    assert conv_winograd.default_tile(p(1, 256, 14)) == 2  # 16 tiles
    assert conv_winograd.default_tile(p(1, 512, 7)) == 2
    algo = ops.CONV_ALGOS["winograd"]
    assert algo.prepare_weight(np.zeros((4, 4, 3, 3)), p(1, 4, 7)).u.shape == (16, 4, 4)
    assert algo.prepare_weight(np.zeros((4, 4, 3, 3)), p(8, 4, 7)).u.shape == (36, 4, 4)


@pytest.mark.parametrize("algo", VARIANTS)
@pytest.mark.parametrize("name", sorted(FUSABLE_ACTIVATIONS))
def test_fused_epilogue(name, algo):
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((2, 5, 11, 9)) * 2).astype(np.float32)
    w = rng.standard_normal((6, 5, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    fused = ops.conv2d(x, w, b, padding=1, algo=algo, activation=name)
    plain = ops.conv2d(x, w, b, padding=1, algo=algo)
    unfused = reference_activation(name, plain)
    assert_rel_close(fused, unfused, 1e-6, f"{name}/{algo} fused vs unfused")


def reference_activation(name, y):
    t = torch.from_numpy(y.astype(np.float64))
    fn = {
        "relu": F.relu,
        "relu6": F.relu6,
        "leaky_relu": lambda v: F.leaky_relu(v, 0.01),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "silu": F.silu,
        "hardswish": F.hardswish,
        "hardsigmoid": F.hardsigmoid,
        "gelu": F.gelu,
        "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"),
        "elu": F.elu,
        "identity": lambda v: v,
    }[name]
    return fn(t).numpy()


@pytest.mark.parametrize("algo", VARIANTS)
@pytest.mark.parametrize(
    "w_shape, kwargs, reason",
    [
        ((4, 3, 5, 5), dict(padding=2), r"needs a 3x3 kernel, got 5x5"),
        ((4, 3, 1, 3), dict(padding=(0, 1)), r"needs a 3x3 kernel, got 1x3"),
        ((4, 3, 3, 3), dict(stride=2, padding=1), r"needs stride 1, got stride \(2, 2\)"),
        ((4, 3, 3, 3), dict(stride=(1, 2)), r"needs stride 1, got stride \(1, 2\)"),
        ((4, 3, 3, 3), dict(dilation=2, padding=2), r"needs dilation 1, got dilation \(2, 2\)"),
    ],
)
def test_why_not_and_forced_algorithm_raises(algo, w_shape, kwargs, reason):
    x = np.zeros((1, 3, 9, 9), np.float32)
    p = ops.conv_params(x.shape, w_shape, **kwargs)
    assert ops.CONV_ALGOS[algo].why_not(p) is not None
    with pytest.raises(
        NotImplementedError, match=rf"algorithm '{algo}' does not support .*{reason}"
    ):
        ops.conv2d(x, np.zeros(w_shape, np.float32), **kwargs, algo=algo)


def test_depthwise_is_declined():
    p = ops.conv_params((1, 6, 9, 9), (6, 1, 3, 3), padding=1, groups=6)
    assert "depthwise" in ops.CONV_ALGOS["winograd"].why_not(p)
    p = ops.conv_params((1, 6, 9, 9), (6, 2, 3, 3), padding=1, groups=3)
    assert ops.CONV_ALGOS["winograd"].why_not(p) is None


@pytest.mark.parametrize("m", [2, 4, 6])
def test_transform_matrices_are_a_minimal_filtering_algorithm(m):
    # y_i = sum_k g_k d_{i+k} = A^T [(G g) * (B^T d)] exactly, in float64, for every i, k, l.
    at, g, bt = winograd_matrices(m)
    a = m + 2
    assert at.shape == (m, a) and g.shape == (a, 3) and bt.shape == (a, a)
    tensor = np.einsum("ij,jk,jl->ikl", at, g, bt)  # coefficient of g_k d_l in y_i
    expected = np.zeros((m, 3, a))
    for i in range(m):
        for k in range(3):
            expected[i, k, i + k] = 1
    np.testing.assert_allclose(tensor, expected, atol=1e-13)


@pytest.mark.parametrize("m", [2, 4, 6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_transform_is_g_g_gt(m, dtype):
    rng = np.random.default_rng(13)
    w = rng.standard_normal((5, 3, 3, 3)).astype(dtype)
    _, g, _ = winograd_matrices(m)
    a = m + 2
    u = conv_winograd.winograd_weight_transform(w, m)
    assert u.shape == (a * a, 5, 3) and u.dtype == dtype and u.flags.c_contiguous
    direct = np.empty((a * a, 5, 3))
    for co in range(5):
        for ci in range(3):
            direct[:, co, ci] = (g @ w[co, ci].astype(np.float64) @ g.T).reshape(-1)  # (a*a,)
    assert_rel_close(u, direct, 5e-7 if dtype == np.float32 else 1e-15, f"F({m},3) U")


def _tiles(xp, m, th, tw):
    """Every (m+2)^2 input tile, zero beyond xp: (n, c, th, tw, a, a) in float64."""
    n, c, hp, wp = xp.shape
    a = m + 2
    big = np.zeros((n, c, th * m + 2, tw * m + 2))
    big[:, :, :hp, :wp] = xp
    out = np.empty((n, c, th, tw, a, a))
    for i in range(th):
        for j in range(tw):
            out[:, :, i, j] = big[:, :, i * m : i * m + a, j * m : j * m + a]
    return out


@pytest.mark.parametrize("m", [2, 4, 6])
def test_input_and_output_transform_kernels(m):
    rng = np.random.default_rng(14)
    n, c, oh, ow = 2, 3, 2 * m + 1, 3 * m - 1  # partial tiles at the bottom and right
    a = m + 2
    th, tw = -(-oh // m), -(-ow // m)
    xp = rng.standard_normal((n, c, oh + 2, ow + 2))
    at, _, bt = winograd_matrices(m)
    tiles = _tiles(xp, m, th, tw)
    # V[r*a + s, channel, tile] = (B^T d B)[r, s]; tile = (image*th + i)*tw + j.
    v_expected = np.einsum("rk,nqhwkl,sl->rsqnhw", bt, tiles, bt).reshape(a * a, c, -1)
    # Two chunks: global tile rows [0, 3) and [3, n*th), crossing the image boundary.
    for r0, nr in ((0, 3), (3, n * th - 3)):
        v = np.empty((a * a, c, nr * tw))
        winograd_input_transform(m, xp, th, tw, r0, nr, v)
        np.testing.assert_allclose(v, v_expected[:, :, r0 * tw : (r0 + nr) * tw], atol=1e-12)
    mm = rng.standard_normal((a * a, 4, n * th * tw))
    bias = rng.standard_normal(4)
    out = np.full((n, 4, oh, ow), np.nan)
    winograd_output_transform(m, mm, bias, 0, 0.0, 0, th, tw, out)
    mt = mm.reshape(a, a, 4, n, th, tw)
    y = np.einsum("ir,rconhw,jc->onhiwj", at, mt, at).reshape(4, n, th * m, tw * m)
    expected = y[:, :, :oh, :ow].transpose(1, 0, 2, 3) + bias.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_small_chunks_cross_image_boundaries(m, monkeypatch):
    # Chunks of a few tile rows each, so chunks start and end inside and between images.
    rng = np.random.default_rng(15)
    x = rng.standard_normal((3, 4, 17, 19)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    whole = _conv_m(x, w, b, m, padding=1)
    p = ops.conv_params(x.shape, w.shape, padding=1)
    th, tw = -(-p.oh // m), -(-p.ow // m)
    monkeypatch.setattr(conv_winograd, "CHUNK_BYTES", 1)
    monkeypatch.setattr(conv_winograd, "MIN_CHUNK_TILES", 2 * tw)
    # Two tile rows per chunk and an odd number of tile rows per image: chunks straddle
    # images, and the last chunk is a single row.
    assert conv_winograd._chunk_rows(p, m, tw, 4) == 2 and th % 2 == 1
    chunked = _conv_m(x, w, b, m, padding=1)
    np.testing.assert_array_equal(chunked, whole)
    assert_rel_close(chunked, reference.conv2d(x, w, b, padding=1), 1e-4, f"F({m}x{m})")


def test_the_blocked_gemm_path_is_prepared_where_it_applies():
    def prepared(w_shape, dtype=np.float32, algo="winograd_f43", **kw):
        w = np.ones(w_shape, dtype)
        p = ops.conv_params((1, w_shape[1] * kw.get("groups", 1), 9, 9), w_shape, padding=1, **kw)
        return ops.CONV_ALGOS[algo].prepare_weight(w, p)

    blocked = prepared((16, 4, 3, 3))
    assert blocked.packed.shape == (36, 3, 4, 8) and blocked.u is None  # 3: a multiple of 3
    assert prepared((24, 4, 3, 3), algo="winograd_f23").packed.shape == (16, 3, 4, 8)
    for w_prep in (prepared((16, 4, 3, 3), np.float64), prepared((12, 4, 3, 3)),
                   prepared((16, 2, 3, 3), groups=2)):  # fmt: skip
        assert w_prep.packed is None and w_prep.u.shape[0] == 36
    p = ops.conv_params((1, 4, 9, 9), (16, 4, 3, 3))
    assert conv_winograd.pack_winograd_weight(np.ones((16, 4, 3, 3), np.float32), 6, p) is None


@pytest.mark.parametrize("m", [2, 4])
def test_packed_weight_is_the_transform_in_blocked_order(m):
    w = np.random.default_rng(19).standard_normal((24, 5, 3, 3)).astype(np.float32)
    p = ops.conv_params((1, 5, 9, 9), w.shape)
    packed = conv_winograd.pack_winograd_weight(w, m, p)
    u = conv_winograd.winograd_weight_transform(w, m)  # (a*a, c_out, c_in)
    # packed[point, ob, c, j] = U[point, ob*8 + j, c]
    np.testing.assert_allclose(packed.transpose(0, 1, 3, 2).reshape(len(u), 24, 5), u,
                               rtol=0, atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("activation", [None, "relu", "relu6", "silu"])
def test_blocked_gemm_path_against_blas_path_across_chunks(m, activation, monkeypatch):
    rng = np.random.default_rng(17)
    x = (rng.standard_normal((3, 12, 17, 19)) * 2).astype(np.float32)
    w = rng.standard_normal((16, 12, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    p = ops.conv_params(x.shape, w.shape, padding=1)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    u = conv_winograd.winograd_weight_transform(w, m)
    packed = conv_winograd.pack_winograd_weight(w, m, p)
    epi = parse_activation(activation)
    tw = -(-p.ow // m)
    results = []
    for chunk_bytes, min_tiles in ((conv_winograd.CHUNK_BYTES, 64), (1, 2 * tw)):
        monkeypatch.setattr(conv_winograd, "CHUNK_BYTES", chunk_bytes)
        monkeypatch.setattr(conv_winograd, "MIN_CHUNK_TILES", min_tiles)
        for pk in (packed, None):
            out = np.full(p.output_shape, np.nan, np.float32)
            conv_winograd.conv2d_winograd(xp, u, b, p, out, m, epi, pk)
            results.append(out)
    expected = reference_activation(activation or "identity", reference.conv2d(x, w, b, padding=1))
    for out in results:
        assert_rel_close(out, expected, REFERENCE_TOL[f"winograd_f{m}3"], f"F({m}x{m})")
    # the blocked kernels give the same result whatever the chunks (here straddling images)
    # bit for bit (silu: applied in a pass after them); the BLAS GEMMs sum in another order:
    # the paths differ by rounding (F(4x4) 3.2e-6 of max |y| here, both within 4.7e-6 of the
    # reference), the blocked one as exact
    np.testing.assert_array_equal(results[0], results[2])
    assert rel_err(results[0], expected) <= 1.5 * rel_err(results[1], expected) + 1e-7


@pytest.mark.parametrize("algo", VARIANTS)
@pytest.mark.parametrize("c_out", [6, 16])  # the BLAS path and the blocked one
def test_a_nan_input_with_a_fused_residual_is_recomputed_directly(algo, c_out):
    rng = np.random.default_rng(18)
    x = rng.standard_normal((2, 8, 10, 11)).astype(np.float32)
    x[1, 3, 4, 5] = np.nan
    x[0, 2, 0, 0] = np.inf
    w = rng.standard_normal((c_out, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    r = rng.standard_normal((2, c_out, 10, 11)).astype(np.float32)
    kw = dict(padding=1, input_shape=x.shape, activation="relu")
    got = ops.plan_conv2d(w, b, algo=algo, **kw)(x, residual=r)
    want = ops.plan_conv2d(w, b, algo="im2col", **kw)(x, residual=r)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # only where direct puts them
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert np.isnan(got).any() and np.isfinite(got).sum() > got.size // 2
    assert_rel_close(np.nan_to_num(got), np.nan_to_num(want), 1e-5, algo)


@pytest.mark.parametrize("algo", VARIANTS)
def test_one_and_two_threads_agree_bit_for_bit(algo):
    rng = np.random.default_rng(16)
    x = rng.standard_normal((3, 16, 23, 21)).astype(np.float32)
    w = rng.standard_normal((24, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    w16 = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    # BLAS GEMMs (groups, silu) and the blocked micro-kernel's (ungrouped, relu)
    for weight, kw in ((w, dict(groups=2, activation="silu")), (w16, dict(activation="relu"))):
        before = cnnperf.get_num_threads()
        try:
            cnnperf.set_num_threads(1)
            y1 = ops.conv2d(x, weight, b, padding=1, **kw, algo=algo)
            cnnperf.set_num_threads(cnnperf.config.available_cores())
            y2 = ops.conv2d(x, weight, b, padding=1, **kw, algo=algo)
        finally:
            cnnperf.set_num_threads(before)
        np.testing.assert_array_equal(y1, y2)


def test_backward_grad_input_uses_winograd(monkeypatch):
    calls = []
    algo = ops.CONV_ALGOS["winograd"]
    original = algo.run

    def spy(*args, **kwargs):
        calls.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(algo, "run", spy)
    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 6, 10, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    kw = dict(padding=((1, 0), (2, 1)), groups=2)
    xt, wt = to_torch(x, True), to_torch(w, True)
    yt = torch_conv2d(xt, wt, None, **kw)
    gy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(gy))
    gx, gw, _ = ops.conv2d_backward(gy, x, w, bias=False, **kw)
    assert any(p.pt == 2 and p.c_in == 4 and p.g == 2 for p in calls)  # the full convolution
    assert_rel_close(gx, xt.grad.numpy(), TORCH_TOL, "grad_x")
    assert_rel_close(gw, wt.grad.numpy(), TORCH_TOL, "grad_w")
    rx, _, _ = reference.conv2d_backward(gy, x, w, bias=False, **kw)
    assert_rel_close(gx, rx, 1e-5, "grad_x vs reference")


@st.composite
def winograd_configs(draw):
    g = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 5))
    if g > 1 and cg == 1:
        cg = 2  # depthwise is declined
    cog = draw(st.integers(1, 5))
    form = draw(st.sampled_from(["int", "pair", "asym", "same", "valid"]))
    if form == "int":
        padding = draw(st.integers(0, 2))
    elif form == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    elif form == "asym":
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    else:
        padding = form
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    return dict(
        x=(n, g * cg, h, w),
        w=(g * cog, cg, 3, 3),
        bias=draw(st.booleans()),
        kwargs=dict(padding=padding, groups=g),
    )


@given(cfg=winograd_configs(), algo=st.sampled_from(VARIANTS), seed=st.integers(0, 2**16))
def test_property_against_torch(cfg, algo, seed):
    kw = cfg["kwargs"]
    try:
        p = ops.conv_params(cfg["x"], cfg["w"], **kw)
    except ValueError:
        return  # the padded input is smaller than the kernel
    assert ops.CONV_ALGOS[algo].why_not(p) is None
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x"]).astype(np.float32)
    w = rng.standard_normal(cfg["w"]).astype(np.float32)
    b = rng.standard_normal(cfg["w"][0]).astype(np.float32) if cfg["bias"] else None
    y = ops.conv2d(x, w, b, **kw, algo=algo)
    yt = torch_conv2d(to_torch(x), to_torch(w), None if b is None else to_torch(b), **kw)
    assert_rel_close(y, yt.numpy(), TORCH_TOL, f"{algo} {cfg}")
