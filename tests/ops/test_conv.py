"""conv2d / conv_transpose2d: every algorithm on the shared case table against the float64
reference and PyTorch, backward by finite differences and PyTorch, property tests, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cases import CONV_CASES, CONV_TRANSPOSE_CASES
from conftest import assert_rel_close, to_torch
from gradcheck import assert_grad_close, numeric_grad
from hypothesis import assume, given
from hypothesis import strategies as st

import cnnperf
from cnnperf import ops, reference

ALGOS = ["auto", "direct", "im2col", "implicit_gemm", "blocked_gemm"]
# Float32 result against the float64 reference, relative to max |reference|: these algorithms
# accumulate in float32 along c_in*kh*kw (at most a few hundred terms here).
REFERENCE_TOL = dict.fromkeys(ALGOS, 1e-5)
TORCH_TOL = 1e-4  # the bar: relative error <= 1e-4 of the output's max-abs


def _torch_padding(kwargs):
    """PyTorch's conv2d has no asymmetric padding: pad first with F.pad, like a user would."""
    kwargs = dict(kwargs)
    pad = kwargs.get("padding")
    if isinstance(pad, tuple) and isinstance(pad[0], tuple):
        (top, bottom), (left, right) = pad
        kwargs["padding"] = 0
        return kwargs, (left, right, top, bottom)
    return kwargs, None


def torch_conv2d(x, w, b, **kwargs):
    kwargs, pre = _torch_padding(kwargs)
    if pre is not None:
        x = F.pad(x, pre)
    return F.conv2d(x, w, b, **kwargs)


def make_case(case, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x).astype(dtype)
    w = rng.standard_normal(case.w).astype(dtype)
    b = rng.standard_normal(case.w[0]).astype(dtype) if case.bias else None
    return x, w, b


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
def test_conv2d_matches_reference_and_torch(case, algo):
    x, w, b = make_case(case)
    x0, w0 = x.copy(), w.copy()
    y = ops.conv2d(x, w, b, **case.kwargs, algo=algo)
    assert y.dtype == np.float32
    expected = reference.conv2d(x, w, b, **case.kwargs)
    assert_rel_close(y, expected, REFERENCE_TOL[algo], f"{case.id}/{algo} vs reference")
    yt = torch_conv2d(to_torch(x), to_torch(w), None if b is None else to_torch(b), **case.kwargs)
    assert_rel_close(y, yt.numpy(), TORCH_TOL, f"{case.id}/{algo} vs torch")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
def test_conv2d_backward_matches_torch_and_reference(case):
    x, w, b = make_case(case, seed=1)
    xt, wt = to_torch(x, True), to_torch(w, True)
    bt = None if b is None else to_torch(b, True)
    yt = torch_conv2d(xt, wt, bt, **case.kwargs)
    gy = np.random.default_rng(2).standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(gy))
    gx, gw, gb = ops.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    assert_rel_close(gx, xt.grad.numpy(), TORCH_TOL, f"{case.id} grad_x vs torch")
    assert_rel_close(gw, wt.grad.numpy(), TORCH_TOL, f"{case.id} grad_w vs torch")
    if case.bias:
        assert_rel_close(gb, bt.grad.numpy(), TORCH_TOL, f"{case.id} grad_b vs torch")
    else:
        assert gb is None
    rx, rw, rb = reference.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    assert_rel_close(gx, rx, 1e-5, f"{case.id} grad_x vs reference")
    assert_rel_close(gw, rw, 1e-5, f"{case.id} grad_w vs reference")


NONEMPTY_CONV_CASES = [c for c in CONV_CASES if c.x[0] > 0]
NONEMPTY_TRANSPOSE_CASES = [c for c in CONV_TRANSPOSE_CASES if c.x[0] > 0]


@pytest.mark.parametrize("case", NONEMPTY_CONV_CASES, ids=lambda c: c.id)
def test_conv2d_backward_finite_differences(case):
    x, w, b = make_case(case, dtype=np.float64, seed=3)
    y = ops.conv2d(x, w, b, **case.kwargs)
    gy = np.random.default_rng(4).standard_normal(y.shape)
    gx, gw, gb = ops.conv2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    assert gx.dtype == np.float64 and gw.dtype == np.float64

    def f(x_, w_, b_):
        return ops.conv2d(x_, w_, b_, **case.kwargs)

    assert_grad_close(gx, numeric_grad(f, [x, w, b], 0, gy), 1e-6, "grad_x")
    assert_grad_close(gw, numeric_grad(f, [x, w, b], 1, gy), 1e-6, "grad_w")
    if case.bias:
        assert_grad_close(gb, numeric_grad(f, [x, w, b], 2, gy), 1e-6, "grad_b")


def _transpose_case(case, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x).astype(dtype)
    w = rng.standard_normal(case.w).astype(dtype)
    c_out = case.w[1] * case.kwargs.get("groups", 1)
    b = rng.standard_normal(c_out).astype(dtype) if case.bias else None
    return x, w, b


@pytest.mark.parametrize("case", CONV_TRANSPOSE_CASES, ids=lambda c: c.id)
def test_conv_transpose2d_matches_torch_and_reference(case):
    x, w, b = _transpose_case(case)
    xt, wt = to_torch(x, True), to_torch(w, True)
    bt = None if b is None else to_torch(b, True)
    yt = F.conv_transpose2d(xt, wt, bt, **case.kwargs)
    y = ops.conv_transpose2d(x, w, b, **case.kwargs)
    assert_rel_close(y, yt.detach().numpy(), TORCH_TOL, f"{case.id} forward vs torch")
    assert_rel_close(y, reference.conv_transpose2d(x, w, b, **case.kwargs), 1e-5, "vs reference")
    gy = np.random.default_rng(5).standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(gy))
    gx, gw, gb = ops.conv_transpose2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    assert_rel_close(gx, xt.grad.numpy(), TORCH_TOL, f"{case.id} grad_x vs torch")
    assert_rel_close(gw, wt.grad.numpy(), TORCH_TOL, f"{case.id} grad_w vs torch")
    if case.bias:
        assert_rel_close(gb, bt.grad.numpy(), TORCH_TOL, f"{case.id} grad_b vs torch")
    rx, rw, _ = reference.conv_transpose2d_backward(gy, x, w, bias=case.bias, **case.kwargs)
    assert_rel_close(gx, rx, 1e-5, f"{case.id} grad_x vs reference")
    assert_rel_close(gw, rw, 1e-5, f"{case.id} grad_w vs reference")


@pytest.mark.parametrize("case", NONEMPTY_TRANSPOSE_CASES, ids=lambda c: c.id)
def test_conv_transpose2d_backward_finite_differences(case):
    x, w, b = _transpose_case(case, np.float64, seed=6)
    y = ops.conv_transpose2d(x, w, b, **case.kwargs)
    gy = np.random.default_rng(7).standard_normal(y.shape)
    gx, gw, gb = ops.conv_transpose2d_backward(gy, x, w, bias=case.bias, **case.kwargs)

    def f(x_, w_, b_):
        return ops.conv_transpose2d(x_, w_, b_, **case.kwargs)

    assert_grad_close(gx, numeric_grad(f, [x, w, b], 0, gy), 1e-6, "grad_x")
    assert_grad_close(gw, numeric_grad(f, [x, w, b], 1, gy), 1e-6, "grad_w")
    if case.bias:
        assert_grad_close(gb, numeric_grad(f, [x, w, b], 2, gy), 1e-6, "grad_b")


def test_empty_batch_backward_gives_zero_weight_gradients():
    x = np.zeros((0, 3, 7, 7), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    gx, gw, gb = ops.conv2d_backward(np.zeros((0, 4, 7, 7), np.float32), x, w, padding=1)
    assert gx.shape == (0, 3, 7, 7) and gw.shape == w.shape and gb.shape == (4,)
    assert not gw.any() and not gb.any()
    y = ops.conv_transpose2d(np.zeros((0, 4, 3, 3), np.float32), w, stride=2)
    assert y.shape == (0, 3, 7, 7)


def test_output_padding_beyond_stride_when_smaller_than_dilation():
    # PyTorch allows output_padding >= stride when it is smaller than the dilation.
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    kw = dict(stride=1, dilation=3, output_padding=2, padding=1)
    xt, wt = to_torch(x, True), to_torch(w, True)
    yt = F.conv_transpose2d(xt, wt, **kw)
    y = ops.conv_transpose2d(x, w, **kw)
    assert_rel_close(y, yt.detach().numpy(), TORCH_TOL, "forward")
    gy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(gy))
    gx, gw, _ = ops.conv_transpose2d_backward(gy, x, w, bias=False, **kw)
    assert_rel_close(gx, xt.grad.numpy(), TORCH_TOL, "grad_x")
    assert_rel_close(gw, wt.grad.numpy(), TORCH_TOL, "grad_w")


@pytest.mark.parametrize("algo", ["direct", "im2col"])
def test_unbatched_float64_and_noncontiguous_inputs(algo):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 9, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    y = ops.conv2d(x, w, padding=1, algo=algo)
    assert y.shape == (4, 9, 8) and y.dtype == np.float64
    np.testing.assert_allclose(y, reference.conv2d(x, w, padding=1), rtol=0, atol=1e-12)
    xt = np.ascontiguousarray(np.swapaxes(x, 1, 2)).swapaxes(1, 2)[None]  # non-contiguous view
    assert not xt.flags.c_contiguous
    np.testing.assert_allclose(ops.conv2d(xt, w, padding=1, algo=algo)[0], y, atol=1e-12)
    gx, gw, gb = ops.conv2d_backward(np.ones_like(y), x, w, padding=1)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (4,)


@pytest.mark.parametrize("algo", ["direct", "im2col"])
def test_parallel_and_serial_agree(algo):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 8, 17, 15)).astype(np.float32)
    w = rng.standard_normal((12, 4, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((3, 12, 9, 8)).astype(np.float32)
    kw = dict(stride=2, padding=1, groups=2)
    before = cnnperf.get_num_threads()
    try:
        cnnperf.set_num_threads(1)
        y1 = ops.conv2d(x, w, **kw, algo=algo)
        g1 = ops.conv2d_backward(gy, x, w, **kw)
        cnnperf.set_num_threads(cnnperf.config.available_cores())
        y2 = ops.conv2d(x, w, **kw, algo=algo)
        g2 = ops.conv2d_backward(gy, x, w, **kw)
    finally:
        cnnperf.set_num_threads(before)
    # Every output element is computed by one thread in a fixed order: identical bits.
    np.testing.assert_array_equal(y1, y2)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_array_equal(a, b)


@st.composite
def conv_configs(draw):
    g = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    cog = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    form = draw(st.sampled_from(["int", "pair", "asym", "same", "valid"]))
    if form == "int":
        padding = draw(st.integers(0, 3))
    elif form == "pair":
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    elif form == "asym":
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    else:
        padding = form
        if form == "same":
            sh = sw = 1
    n = draw(st.integers(0, 2))
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    bias = draw(st.booleans())
    return dict(
        x=(n, g * cg, h, w),
        w=(g * cog, cg, kh, kw),
        bias=bias,
        kwargs=dict(stride=(sh, sw), padding=padding, dilation=(dh, dw), groups=g),
    )


@given(cfg=conv_configs(), algo=st.sampled_from(ALGOS), seed=st.integers(0, 2**16))
def test_conv2d_property_against_torch(cfg, algo, seed):
    kw = cfg["kwargs"]
    try:
        p = ops.conv_params(cfg["x"], cfg["w"], **kw)
    except ValueError:
        assume(False)
    assume(p.oh >= 1 and p.ow >= 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x"]).astype(np.float32)
    w = rng.standard_normal(cfg["w"]).astype(np.float32)
    b = rng.standard_normal(cfg["w"][0]).astype(np.float32) if cfg["bias"] else None
    xt, wt = to_torch(x, True), to_torch(w, True)
    bt = None if b is None else to_torch(b, True)
    yt = torch_conv2d(xt, wt, bt, **kw)
    y = ops.conv2d(x, w, b, **kw, algo=algo)
    assert_rel_close(y, yt.detach().numpy(), TORCH_TOL, "forward")
    gy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(gy))
    gx, gw, gb = ops.conv2d_backward(gy, x, w, bias=b is not None, **kw)
    assert_rel_close(gx, xt.grad.numpy(), TORCH_TOL, "grad_x")
    assert_rel_close(gw, wt.grad.numpy(), TORCH_TOL, "grad_w")
    if b is not None:
        assert_rel_close(gb, bt.grad.numpy(), TORCH_TOL, "grad_b")


@given(
    g=st.integers(1, 2),
    cg=st.integers(1, 3),
    cog=st.integers(1, 3),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    d=st.integers(1, 2),
    p=st.integers(0, 2),
    op=st.integers(0, 2),
    h=st.integers(1, 6),
    n=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_conv_transpose2d_property_against_torch(g, cg, cog, k, s, d, p, op, h, n, seed):
    assume(op < s or op < d)
    out = (h - 1) * s - 2 * p + d * (k - 1) + op + 1
    assume(out >= 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, g * cg, h, h + 1)).astype(np.float32)
    w = rng.standard_normal((g * cg, cog, k, k)).astype(np.float32)
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    xt, wt = to_torch(x, True), to_torch(w, True)
    yt = F.conv_transpose2d(xt, wt, **kw)
    assert_rel_close(ops.conv_transpose2d(x, w, **kw), yt.detach().numpy(), TORCH_TOL, "fwd")
    gy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(gy))
    gx, gw, _ = ops.conv_transpose2d_backward(gy, x, w, bias=False, **kw)
    assert_rel_close(gx, xt.grad.numpy(), TORCH_TOL, "grad_x")
    assert_rel_close(gw, wt.grad.numpy(), TORCH_TOL, "grad_w")


@pytest.mark.parametrize("case", NONEMPTY_CONV_CASES, ids=lambda c: c.id)
def test_im2col_in_bands_of_output_rows(case, monkeypatch):
    # A workspace bound of a few hundred bytes lowers one output row (or a few) at a time.
    from cnnperf.ops import conv_algos

    monkeypatch.setattr(conv_algos, "IM2COL_WORKSPACE_BYTES", 300)
    x, w, b = make_case(case, seed=11)
    y = ops.conv2d(x, w, b, **case.kwargs, algo="im2col", activation="relu")
    expected = np.maximum(reference.conv2d(x, w, b, **case.kwargs), 0)
    assert_rel_close(y, expected, REFERENCE_TOL["im2col"], f"{case.id} banded im2col")


@pytest.mark.parametrize("case", NONEMPTY_CONV_CASES, ids=lambda c: c.id)
def test_im2col_one_image_per_gemm(case, monkeypatch):
    # Small output planes are lowered several images at a time for one GEMM; with that off,
    # every case runs the per-image path.
    from cnnperf.ops import conv_algos

    monkeypatch.setattr(conv_algos, "GEMM_BATCH_MAX_PIXELS", 0)
    x, w, b = make_case(case, seed=12)
    y = ops.conv2d(x, w, b, **case.kwargs, algo="im2col", activation="relu")
    expected = np.maximum(reference.conv2d(x, w, b, **case.kwargs), 0)
    assert_rel_close(y, expected, REFERENCE_TOL["im2col"], f"{case.id} per-image im2col")


@pytest.mark.parametrize(
    "xs,ws,kw",
    [
        ((5, 6, 5, 4), (4, 6, 3, 3), dict(padding=1, stride=(1, 2))),
        ((5, 6, 5, 4), (8, 6, 1, 1), {}),  # pointwise: planes copied side by side
        ((5, 6, 6, 6), (4, 3, 1, 1), dict(groups=2, stride=2)),
        ((5, 4, 7, 5), (6, 2, 3, 3), dict(groups=2, padding=1)),
    ],
)
def test_im2col_images_side_by_side_with_a_partial_last_chunk(xs, ws, kw, monkeypatch):
    # A workspace for two images: chunks of 2, 2 and 1 image(s) out of 5.
    from cnnperf.ops import conv_algos

    p = ops.conv_params(xs, ws, **kw)
    k = p.c_in * p.kh * p.kw
    monkeypatch.setattr(conv_algos, "IM2COL_WORKSPACE_BYTES", 2 * (k + p.c_out) * p.oh * p.ow * 4)
    rng = np.random.default_rng(13)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    y = ops.conv2d(x, w, b, **kw, algo="im2col", activation="relu6")
    expected = np.clip(reference.conv2d(x, w, b, **kw), 0, 6)
    assert_rel_close(y, expected, REFERENCE_TOL["im2col"], "images side by side")
    yt = F.conv2d(to_torch(x), to_torch(w), to_torch(b), **kw).clamp(0, 6)
    assert_rel_close(y, yt.numpy(), TORCH_TOL, "images side by side vs torch")
