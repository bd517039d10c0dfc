"""cnnperf.reference conv / pooling against PyTorch in float64, forward and backward.

Driven by the shared case tables in tests/cases.py, plus the max-pool corner cases the fast
kernels must reproduce: NaN propagation (last NaN's index), all -inf windows, ties, and the
ceil_mode output-size rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cases import (
    ADAPTIVE_CASES,
    AVG_POOL_CASES,
    CONV_CASES,
    CONV_TRANSPOSE_CASES,
    MAX_POOL_CASES,
)
from conftest import assert_rel_close, to_torch

from cnnperf import reference as ref

TOL = 1e-10  # float64 against float64: only the summation order differs


def torch_run(fn, arrays, rng):
    """y = fn(*tensors) with autograd; returns (y, grad_out, [grad per array or None])."""
    ts = [None if a is None else to_torch(np.asarray(a, np.float64), True) for a in arrays]
    y = fn(*ts)
    y = y[0] if isinstance(y, tuple) else y
    g = rng.standard_normal(tuple(y.shape))
    if y.numel():
        y.backward(to_torch(g))
    grads = [
        None if t is None else (np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy())
        for t in ts
    ]
    return y.detach().numpy(), g, grads


# ----------------------------------------------------------------------------- convolution


def _torch_conv(kwargs):
    kw = dict(kwargs)
    pad = kw.pop("padding", 0)
    if isinstance(pad, tuple) and isinstance(pad[0], tuple):  # asymmetric: pad explicitly
        (t, b), (l, r) = pad

        def fn(x, w, bias):
            return F.conv2d(F.pad(x, (l, r, t, b)), w, bias, **kw)

        return fn
    return lambda x, w, bias: F.conv2d(x, w, bias, padding=pad, **kw)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
def test_conv2d_matches_torch(case, rng):
    x = rng.standard_normal(case.x)
    w = rng.standard_normal(case.w)
    b = rng.standard_normal(case.w[0]) if case.bias else None
    y_t, g, (gx_t, gw_t, gb_t) = torch_run(_torch_conv(case.kwargs), [x, w, b], rng)
    x0, w0 = x.copy(), w.copy()
    y = ref.conv2d(x, w, b, **case.kwargs)
    assert y.dtype == np.float64
    assert_rel_close(y, y_t, TOL, f"{case.id} forward")
    gx, gw, gb = ref.conv2d_backward(g, x, w, bias=case.bias, **case.kwargs)
    assert_rel_close(gx, gx_t, TOL, f"{case.id} grad_x")
    assert_rel_close(gw, gw_t, TOL, f"{case.id} grad_w")
    if case.bias:
        assert_rel_close(gb, gb_t, TOL, f"{case.id} grad_b")
    else:
        assert gb is None
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("case", CONV_TRANSPOSE_CASES, ids=lambda c: c.id)
def test_conv_transpose2d_matches_torch(case, rng):
    x = rng.standard_normal(case.x)
    w = rng.standard_normal(case.w)
    b = rng.standard_normal(case.w[1] * case.kwargs.get("groups", 1)) if case.bias else None
    kw = case.kwargs

    def fn(x, w, b):
        return F.conv_transpose2d(x, w, b, **kw)

    y_t, g, (gx_t, gw_t, gb_t) = torch_run(fn, [x, w, b], rng)
    y = ref.conv_transpose2d(x, w, b, **kw)
    assert_rel_close(y, y_t, TOL, f"{case.id} forward")
    gx, gw, gb = ref.conv_transpose2d_backward(g, x, w, bias=case.bias, **kw)
    assert_rel_close(gx, gx_t, TOL, f"{case.id} grad_x")
    assert_rel_close(gw, gw_t, TOL, f"{case.id} grad_w")
    if case.bias:
        assert_rel_close(gb, gb_t, TOL, f"{case.id} grad_b")
    else:
        assert gb is None


def test_conv_unbatched_and_int_input(rng):
    x = rng.integers(-3, 4, size=(3, 6, 7))  # ints are converted to float64
    w = rng.standard_normal((4, 3, 3, 3))
    y = ref.conv2d(x, w, stride=2, padding=1)
    assert y.shape == (4, 3, 4) and y.dtype == np.float64
    np.testing.assert_array_equal(y, ref.conv2d(x[None], w, stride=2, padding=1)[0])
    g = rng.standard_normal(y.shape)
    gx, gw, gb = ref.conv2d_backward(g, x, w, stride=2, padding=1)
    gx4, gw4, gb4 = ref.conv2d_backward(g[None], x[None], w, stride=2, padding=1)
    np.testing.assert_array_equal(gx, gx4[0])
    np.testing.assert_array_equal(gw, gw4)
    yt = ref.conv_transpose2d(x, w.transpose(1, 0, 2, 3), stride=2)
    np.testing.assert_array_equal(
        yt, ref.conv_transpose2d(x[None], w.transpose(1, 0, 2, 3), stride=2)[0]
    )


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, match",
    [
        ((3, 5), (2, 3, 1, 1), {}, "rank 3"),
        ((1, 2, 3, 5, 5), (2, 2, 1, 1), {}, "rank 3"),
        ((1, 4, 5, 5), (2, 3, 1, 1), {}, "channels"),
        ((1, 4, 5, 5), (3, 2, 1, 1), dict(groups=2), "divisible"),
        ((1, 3, 5, 5), (2, 3, 3, 3), dict(padding="same", stride=2), "same"),
        ((1, 3, 2, 2), (2, 3, 3, 3), {}, "larger than the padded input"),
        ((1, 3, 5, 5), (2, 3, 3, 3), dict(padding="full"), "padding"),
    ],
)
def test_conv2d_rejects_bad_arguments(x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ref.conv2d(np.zeros(x_shape), np.zeros(w_shape), **kwargs)


# ----------------------------------------------------------------------------- max pooling


def _max_pool_check(x, kwargs, rng, what):
    y_t, g, (gx_t,) = torch_run(lambda t: F.max_pool2d(t, **kwargs), [x], rng)
    idx_t = F.max_pool2d(to_torch(x), return_indices=True, **kwargs)[1].numpy()
    y, idx = ref.max_pool2d(x, return_indices=True, **kwargs)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, idx_t, err_msg=f"{what} indices")
    np.testing.assert_array_equal(y, y_t, err_msg=f"{what} forward")  # max is exact
    np.testing.assert_array_equal(ref.max_pool2d(x, **kwargs), y)
    gx = ref.max_pool2d_backward(g, x, **kwargs)
    assert_rel_close(gx, gx_t, TOL, f"{what} grad_x")


@pytest.mark.parametrize("case", MAX_POOL_CASES, ids=lambda c: c.id)
def test_max_pool2d_matches_torch(case, rng):
    _max_pool_check(rng.standard_normal(case.x), case.kwargs, rng, case.id)


@pytest.mark.parametrize("case", MAX_POOL_CASES, ids=lambda c: c.id)
def test_max_pool2d_nan_inf_and_ties(case, rng):
    """NaN wins and the LAST NaN's index is kept; ties keep the first; -inf windows are valid."""
    x = rng.integers(0, 3, size=case.x).astype(np.float64)  # many ties
    _max_pool_check(x, case.kwargs, rng, f"{case.id} ties")
    x[rng.random(case.x) < 0.15] = np.nan
    x[rng.random(case.x) < 0.3] = -np.inf
    _max_pool_check(x, case.kwargs, rng, f"{case.id} nan/-inf")
    _max_pool_check(np.full(case.x, -np.inf), case.kwargs, rng, f"{case.id} all -inf")
    _max_pool_check(np.full(case.x, np.nan), case.kwargs, rng, f"{case.id} all nan")


def test_max_pool2d_nan_semantics_by_hand():
    nan, inf = np.nan, np.inf
    x = np.array([[1.0, nan, 2.0, nan], [nan, 0.0, -inf, -inf], [3.0, 3.0, -inf, -inf]])
    y, idx = ref.max_pool2d(x[None], (3, 2), stride=(1, 2), return_indices=True)
    np.testing.assert_array_equal(y[0], [[nan, nan]])
    np.testing.assert_array_equal(idx[0], [[4, 3]])  # the last NaN in row-major order
    y, idx = ref.max_pool2d(x[None, 1:, 2:], 2, return_indices=True)
    assert y[0, 0, 0] == -inf and idx[0, 0, 0] == 0  # all -inf: the first in-bounds tap
    # all -inf with padding and dilation: the first in-bounds tap, not a padded position
    y, idx = ref.max_pool2d(np.full((1, 5, 5), -inf), 3, stride=2, padding=1, dilation=2,
                            return_indices=True)  # fmt: skip
    np.testing.assert_array_equal(idx, np.full((1, 2, 2), 6))


def test_pool_output_sizes_match_torch():
    """Window counting (floor and ceil mode) against torch's shapes over a parameter grid."""
    for h in range(1, 10):
        x = np.zeros((1, 1, h, 1))
        x_t = torch.zeros(1, 1, h, 1, dtype=torch.float64)
        for k in range(1, 5):
            for s in range(1, 5):
                for p in range(0, k // 2 + 1):
                    for d in (1, 2, 3):
                        for ceil in (False, True):
                            kw = dict(kernel_size=(k, 1), stride=(s, 1), padding=(p, 0),
                                      dilation=(d, 1), ceil_mode=ceil)  # fmt: skip
                            try:
                                want = tuple(F.max_pool2d(x_t, **kw).shape)
                            except RuntimeError:
                                with pytest.raises(ValueError):
                                    ref.max_pool2d(x, **kw)
                                continue
                            assert ref.max_pool2d(x, **kw).shape == want, kw
                            if d == 1:
                                kw.pop("dilation")
                                assert ref.avg_pool2d(x, **kw).shape == want, kw


def test_max_pool2d_unbatched_and_errors(rng):
    x = rng.standard_normal((2, 7, 6))
    y, idx = ref.max_pool2d(x, 3, 2, 1, return_indices=True)
    y4, idx4 = ref.max_pool2d(x[None], 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y, y4[0])
    np.testing.assert_array_equal(idx, idx4[0])
    g = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(
        ref.max_pool2d_backward(g, x, 3, 2, 1),
        ref.max_pool2d_backward(g[None], x[None], 3, 2, 1)[0],
    )
    with pytest.raises(ValueError, match="half of kernel_size"):
        ref.max_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="rank 3"):
        ref.max_pool2d(x[0], 2)


# ----------------------------------------------------------------------------- average pooling


@pytest.mark.parametrize("case", AVG_POOL_CASES, ids=lambda c: c.id)
def test_avg_pool2d_matches_torch(case, rng):
    x = rng.standard_normal(case.x)
    y_t, g, (gx_t,) = torch_run(lambda t: F.avg_pool2d(t, **case.kwargs), [x], rng)
    y = ref.avg_pool2d(x, **case.kwargs)
    assert_rel_close(y, y_t, TOL, f"{case.id} forward")
    gx = ref.avg_pool2d_backward(g, x, **case.kwargs)
    assert_rel_close(gx, gx_t, TOL, f"{case.id} grad_x")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor_override", [None, 2])
def test_avg_pool2d_ceil_windows_past_the_padding(count_include_pad, divisor_override, rng):
    """A ceil_mode window running past h + p: pool_size is taken before clipping (PyTorch)."""
    x = rng.standard_normal((1, 2, 6, 7))
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
              count_include_pad=count_include_pad, divisor_override=divisor_override)  # fmt: skip
    y_t, g, (gx_t,) = torch_run(lambda t: F.avg_pool2d(t, **kw), [x], rng)
    assert_rel_close(ref.avg_pool2d(x, **kw), y_t, TOL, "forward")
    assert_rel_close(ref.avg_pool2d_backward(g, x, **kw), gx_t, TOL, "grad_x")
    y3 = ref.avg_pool2d(x[0], **kw)
    np.testing.assert_array_equal(y3, ref.avg_pool2d(x, **kw)[0])


# ----------------------------------------------------------------------------- adaptive pooling


@pytest.mark.parametrize("shape, out_size", ADAPTIVE_CASES, ids=str)
def test_adaptive_avg_pool2d_matches_torch(shape, out_size, rng):
    x = rng.standard_normal(shape)
    y_t, g, (gx_t,) = torch_run(lambda t: F.adaptive_avg_pool2d(t, out_size), [x], rng)
    assert_rel_close(ref.adaptive_avg_pool2d(x, out_size), y_t, TOL, "forward")
    gx = ref.adaptive_avg_pool2d_backward(g, x, out_size)
    assert_rel_close(gx, gx_t, TOL, "grad_x")


@pytest.mark.parametrize("fill", ["normal", "ties", "nan_inf", "all_-inf"])
@pytest.mark.parametrize("shape, out_size", ADAPTIVE_CASES, ids=str)
def test_adaptive_max_pool2d_matches_torch(shape, out_size, fill, rng):
    if fill == "normal":
        x = rng.standard_normal(shape)
    elif fill == "ties":
        x = rng.integers(0, 3, size=shape).astype(np.float64)
    elif fill == "nan_inf":
        x = rng.standard_normal(shape)
        x[rng.random(shape) < 0.2] = np.nan
        x[rng.random(shape) < 0.3] = -np.inf
    else:
        x = np.full(shape, -np.inf)
    y_t, g, (gx_t,) = torch_run(lambda t: F.adaptive_max_pool2d(t, out_size), [x], rng)
    idx_t = F.adaptive_max_pool2d(to_torch(x), out_size, return_indices=True)[1].numpy()
    y, idx = ref.adaptive_max_pool2d(x, out_size, return_indices=True)
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_array_equal(idx, idx_t)
    np.testing.assert_array_equal(ref.adaptive_max_pool2d(x, out_size), y)
    gx = ref.adaptive_max_pool2d_backward(g, x, out_size)
    assert_rel_close(gx, gx_t, TOL, "grad_x")


def test_adaptive_unbatched(rng):
    x = rng.standard_normal((3, 7, 5))
    np.testing.assert_array_equal(
        ref.adaptive_avg_pool2d(x, (3, None)), ref.adaptive_avg_pool2d(x[None], (3, None))[0]
    )
    y, idx = ref.adaptive_max_pool2d(x, 4, return_indices=True)
    assert y.shape == idx.shape == (3, 4, 4)


def test_max_pool2d_window_without_in_bounds_taps():
    """Dilation can leave a window with no in-bounds tap: -inf and PyTorch's (odd) index."""
    x = np.array([[[[5.0], [7.0]]]])  # (1, 1, 2, 1)
    kw = dict(kernel_size=(1, 2), stride=1, padding=(0, 1), dilation=(1, 2))
    y, idx = ref.max_pool2d(x, return_indices=True, **kw)
    y_t, idx_t = F.max_pool2d(to_torch(x), return_indices=True, **kw)
    np.testing.assert_array_equal(y, y_t.numpy())
    np.testing.assert_array_equal(idx, idx_t.numpy())  # [[1], [2]]: an alias and past the plane
    # Both windows hold padding only: their output is the constant -inf and passes no gradient
    # (PyTorch's backward credits the alias 1 and writes past the plane for 2; not called here).
    g = np.array([[[[10.0], [100.0]]]])
    np.testing.assert_array_equal(ref.max_pool2d_backward(g, x, **kw), [[[[0.0], [0.0]]]])


def test_reference_is_independent_of_the_fast_paths():
    """The oracle must not share output-size formulas or code with ops / kernels / shapes."""
    import ast
    import pathlib

    pkg = pathlib.Path(ref.__file__).parent
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = ("." * node.level) + (node.module or "")
                assert not mod.startswith(".."), f"{path.name} imports {mod}"
                assert not mod.startswith("cnnperf") or mod.startswith("cnnperf.reference"), mod
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name in ("numpy", "math", "numbers", "itertools"), alias.name
