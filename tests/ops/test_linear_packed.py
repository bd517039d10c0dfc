"""ops.PackedLinear (kernels/dense.py): the classifier's small-batch linear layer on a weight
packed once, against the float64 reference and PyTorch: every row count around its 4-row
tiles, output counts around its 16-feature tiles (masked last blocks), no bias, NaN, and the
errors for what it does not take."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_rel_close

from cnnperf import ops

TOL = 1e-5


def _data(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, k)).astype(np.float32),
            rng.standard_normal((n, k)).astype(np.float32),
            rng.standard_normal(n).astype(np.float32))  # fmt: skip


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 13])
@pytest.mark.parametrize(("k", "n"), [(1, 1), (3, 7), (64, 8), (17, 15), (40, 16), (9, 17),
                                      (1280, 1000)])  # fmt: skip
def test_packed_linear_against_reference_and_torch(m, k, n):
    x, w, b = _data(m, k, n)
    got = ops.PackedLinear(w, b)(x)
    assert got.shape == (m, n) and got.dtype == np.float32
    want = x.astype(np.float64) @ w.T.astype(np.float64) + b
    assert_rel_close(got, want, TOL, "reference")
    assert_rel_close(got, F.linear(*map(torch.from_numpy, (x, w, b))).numpy(), TOL, "torch")


def test_packed_linear_without_bias_into_out_and_empty():
    x, w, _ = _data(3, 20, 11)
    lin = ops.PackedLinear(w)
    out = np.full((3, 11), np.nan, np.float32)
    assert lin(x, out=out) is out
    assert_rel_close(out, x.astype(np.float64) @ w.T, TOL, "no bias")
    assert lin(np.zeros((0, 20), np.float32)).shape == (0, 11)


def test_packed_linear_propagates_nan_and_inf_to_their_rows():
    x, w, b = _data(6, 10, 9)
    x[1, 3] = np.nan
    x[4, 0] = np.inf
    w[:, 0] = np.abs(w[:, 0]) + 1
    got = ops.PackedLinear(w, b)(x)
    assert np.isnan(got[1]).all()
    assert np.isposinf(got[4]).all()
    finite = [0, 2, 3, 5]
    assert_rel_close(got[finite], x[finite].astype(np.float64) @ w.T + b, TOL, "others")


def test_packed_linear_refuses_what_it_does_not_take():
    x, w, b = _data(2, 5, 4)
    with pytest.raises(ValueError, match="float32"):
        ops.PackedLinear(w.astype(np.float64))
    with pytest.raises(ValueError, match="2-D"):
        ops.PackedLinear(w[None])
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        ops.PackedLinear(w, b[:3])
    lin = ops.PackedLinear(w, b)
    with pytest.raises(ValueError, match="2-D float32"):
        lin(x.astype(np.float64))
    with pytest.raises(ValueError, match="has 4 features"):
        lin(x[:, :4])
    with pytest.raises(ValueError, match="out must be"):
        lin(x, out=np.empty((2, 5), np.float32))
