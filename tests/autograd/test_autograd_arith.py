"""Tensor arithmetic, reductions and shape functions against PyTorch, forward and backward."""

from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
from autograd_parity import DTYPES, TOL, check_parity, randn
from conftest import assert_rel_close

import cnnperf
from cnnperf.autograd import functional as F

BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
}

# (shape a, shape b): equal, stretched 1s on both sides, added leading dims, 0-d.
BROADCAST = [
    ((3, 4), (3, 4)),
    ((2, 3, 4), (4,)),
    ((3, 1), (1, 4)),
    ((1,), (2, 3)),
    ((2, 1, 4), (3, 1)),
    ((), (2, 3)),
    ((2, 3), ()),
]


def _away_from_zero(a: np.ndarray) -> np.ndarray:
    """Divisors bounded away from 0, so that the division's gradient stays well conditioned."""
    return np.where(a >= 0, a + 0.5, a - 0.5).astype(a.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", BROADCAST, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_ops_broadcast_like_torch(name, shapes, dtype, rng):
    fn = BINARY[name]
    a, b = randn(rng, shapes[0], dtype), _away_from_zero(randn(rng, shapes[1], dtype))
    check_parity(fn, fn, [a, b], TOL[dtype], what=f"{name}{shapes}")


@pytest.mark.parametrize("name", BINARY)
def test_binary_ops_with_constants_on_either_side(name, rng):
    fn = BINARY[name]
    a = _away_from_zero(randn(rng, (2, 3), np.float32))
    c = _away_from_zero(randn(rng, (3,), np.float32))
    ct = torch.from_numpy(c)
    for ours, theirs in [
        (lambda x: fn(x, c), lambda x: fn(x, ct)),
        (lambda x: fn(c, x), lambda x: fn(ct, x)),
        (lambda x: fn(x, 2.5), lambda x: fn(x, 2.5)),
        (lambda x: fn(-1.5, x), lambda x: fn(-1.5, x)),
        (lambda x: fn(x, np.float64(3.0)), lambda x: fn(x, 3.0)),
        (lambda x: fn(x, 2), lambda x: fn(x, 2)),
        (lambda x: fn(np.arange(1, 4), x), lambda x: fn(torch.arange(1, 4), x)),
    ]:
        mine, _ = check_parity(ours, theirs, [a], TOL[np.float32], what=name)
    # The constant keeps the Tensor's dtype (numbers, 0-d and integer arrays follow the Tensor).
    assert (fn(c, mine[0])).dtype == np.float32
    assert fn(mine[0], np.float64(2.0)).dtype == np.float32


def test_ndarray_on_the_left_gives_a_tensor():
    x = cnnperf.tensor([1.0, 2.0], requires_grad=True)
    y = np.ones(2, np.float32) + x
    assert isinstance(y, cnnperf.Tensor) and y.grad_fn is not None
    y = np.float32(2.0) * x
    assert isinstance(y, cnnperf.Tensor)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unary_neg_pos_and_pow(dtype, rng):
    a = np.abs(randn(rng, (3, 4), dtype)) + 0.5
    tol = TOL[dtype]
    check_parity(lambda x: -x, lambda x: -x, [a], tol, what="neg")
    check_parity(lambda x: +x * 2, lambda x: +x * 2, [a], tol, what="pos")
    for p in (2, 3.0, 0.5, -1.5, 0, 1):
        check_parity(lambda x, p=p: x**p, lambda x, p=p: x**p, [a], tol, what=f"pow {p}")


MATMUL = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((6,), (2, 6, 3)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", MATMUL, ids=str)
def test_matmul_like_torch(shapes, dtype, rng):
    a, b = randn(rng, shapes[0], dtype), randn(rng, shapes[1], dtype)
    check_parity(operator.matmul, operator.matmul, [a, b], TOL[dtype], what=f"matmul{shapes}")
    check_parity(F.matmul, torch.matmul, [a, b], TOL[dtype], requires_grad=[False, True])


def test_matmul_with_an_ndarray_on_either_side(rng):
    a, w = randn(rng, (3, 4), np.float32), randn(rng, (4, 2), np.float32)
    wt = torch.from_numpy(w)
    check_parity(lambda x: x @ w, lambda x: x @ wt, [a], TOL[np.float32])
    check_parity(lambda x: w.T @ x.T, lambda x: wt.T @ x.T, [a], TOL[np.float32])


REDUCE = [
    dict(),
    dict(axis=0),
    dict(axis=-1, keepdims=True),
    dict(axis=(0, 2)),
    dict(axis=(1,), keepdims=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", REDUCE, ids=str)
@pytest.mark.parametrize("name", ["sum", "mean"])
def test_sum_and_mean_like_torch(name, kw, dtype, rng):
    a = randn(rng, (2, 3, 4), dtype)
    axis = kw.get("axis")
    tkw = {} if axis is None else {"dim": axis, "keepdim": kw.get("keepdims", False)}
    check_parity(
        lambda x: getattr(x, name)(**kw),
        lambda x: getattr(x, name)(**tkw),
        [a],
        TOL[dtype],
        what=f"{name} {kw}",
    )


def test_sum_mean_torch_aliases_and_0d(rng):
    a = randn(rng, (2, 3), np.float32)
    check_parity(lambda x: x.sum(dim=1, keepdim=True), lambda x: x.sum(1, True), [a], 1e-6)
    check_parity(lambda x: F.mean(x, dim=0), lambda x: x.mean(0), [a], 1e-6)
    s = np.array(2.5, np.float32)
    check_parity(lambda x: x.sum() * 2, lambda x: x.sum() * 2, [s], 1e-6)
    with pytest.raises(TypeError, match="pass axis or its alias dim, not both"):
        cnnperf.tensor(a).sum(axis=0, dim=0)
    with pytest.raises(ValueError, match=r"axis 2 is out of range for a tensor of shape \(2, 3\)"):
        cnnperf.tensor(a).mean(axis=2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reshape_and_flatten(dtype, rng):
    a = randn(rng, (2, 3, 4, 5), dtype)
    tol = TOL[dtype]
    # the multiplication gives each element its own gradient, so a misplaced one shows
    m = randn(rng, (6, 20), dtype)
    mt = torch.from_numpy(m)
    check_parity(lambda x: x.reshape(6, -1) * m, lambda x: x.reshape(6, -1) * mt, [a], tol)
    check_parity(lambda x: x.reshape((6, 20)) * m, lambda x: x.reshape((6, 20)) * mt, [a], tol)
    check_parity(lambda x: F.flatten(x, 1), lambda x: torch.flatten(x, 1), [a], tol)
    check_parity(lambda x: x.flatten(), lambda x: x.flatten(), [a], tol)
    check_parity(lambda x: x.flatten(1, 2), lambda x: x.flatten(1, 2), [a], tol)
    check_parity(lambda x: F.flatten(x, -3, -2), lambda x: x.flatten(-3, -2), [a], tol)


def test_cat_like_torch(rng):
    a, b, c = (randn(rng, s, np.float64) for s in [(2, 3, 4), (2, 1, 4), (2, 5, 4)])
    tol = TOL[np.float64]
    check_parity(lambda *t: F.cat(t, dim=1), lambda *t: torch.cat(t, 1), [a, b, c], tol)
    check_parity(lambda *t: F.cat(t, dim=-2), lambda *t: torch.cat(t, -2), [a, b, c], tol)
    check_parity(
        lambda *t: F.concatenate(t, axis=1),
        lambda *t: torch.cat(t, 1),
        [a, b, c],
        tol,
        requires_grad=[True, False, True],
    )
    x = randn(rng, (3, 2), np.float32)
    const = np.ones((1, 2), np.float32)
    check_parity(
        lambda t: F.cat([t, const, t], dim=0),
        lambda t: torch.cat([t, torch.from_numpy(const), t], 0),
        [x],
        TOL[np.float32],
        what="a tensor concatenated twice with a constant",
    )


INDICES = [
    (slice(1, None),),
    (1,),
    (Ellipsis, slice(None, None, 2)),
    (slice(None), None, 2),
    (-1, slice(0, 2), 1),
    (np.array([0, 2, 0]),),
    (slice(None), np.array([3, 3, 1])),
]


@pytest.mark.parametrize("index", INDICES, ids=repr)
def test_getitem_like_torch(index, rng):
    a = randn(rng, (3, 4, 5), np.float64)
    tidx = tuple(torch.from_numpy(i) if isinstance(i, np.ndarray) else i for i in index)
    check_parity(lambda x: x[index], lambda x: x[tidx], [a], TOL[np.float64], what=repr(index))


def test_getitem_negative_step(rng):
    a = randn(rng, (3, 5), np.float64)
    check_parity(lambda x: x[..., ::-2], lambda x: x.flip(-1)[..., ::2], [a], TOL[np.float64])


def test_iteration_yields_recorded_rows():
    x = cnnperf.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    rows = list(x)
    assert len(rows) == 3 and rows[1].data.tolist() == [2.0, 3.0]
    (rows[0] * 2 + rows[2]).sum().backward()
    assert x.grad.tolist() == [[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]]
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(x.sum())


def test_getitem_boolean_mask_and_list(rng):
    a = randn(rng, (4, 3), np.float32)
    mask = a[:, 0] > 0
    check_parity(lambda x: x[mask], lambda x: x[torch.from_numpy(mask)], [a], 1e-6)
    check_parity(lambda x: x[[1, 1, 3]], lambda x: x[[1, 1, 3]], [a], 1e-6)


def test_astype_gradient_comes_back_in_the_leaf_dtype(rng):
    a = randn(rng, (3,), np.float32)
    x = cnnperf.tensor(a, requires_grad=True)
    y = x.astype(np.float64) * np.arange(3.0)
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [0, 1, 2])


def test_0d_tensor_of_another_dtype_combines_with_a_tensor():
    x32 = cnnperf.tensor(np.ones(3, np.float32), requires_grad=True)
    s64 = cnnperf.tensor(np.array(2.0), requires_grad=True)
    y = x32 * s64
    assert y.dtype == np.float32
    y.sum().backward()
    assert s64.grad.dtype == np.float64 and s64.grad == 3.0
    np.testing.assert_array_equal(x32.grad, [2, 2, 2])


def test_error_messages():
    x = cnnperf.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    with pytest.raises(
        ValueError, match=r"add: operands of shapes \(2, 3\) and \(4,\) cannot be broadcast"
    ):
        x + np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"mul: operands of shapes \(2, 3\) and \(3, 2\)"):
        x * cnnperf.tensor(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"sub: operands have different dtypes, float32 with"):
        x - np.ones((2, 3), np.float64)
    with pytest.raises(TypeError, match="div: unsupported operand type str"):
        x / "2"
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(2, 3\) do not match"):
        x @ x
    with pytest.raises(ValueError, match=r"matmul: both operands need at least one dimension"):
        x @ 2.0
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) \(6 elem"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match=r"cat: tensors of shapes \[\(2, 3\), \(3, 3\)\] differ"):
        F.cat([x, np.ones((3, 3), np.float32)], dim=1)
    with pytest.raises(ValueError, match="cat: expected a non-empty sequence"):
        F.cat([])
    with pytest.raises(IndexError, match=r"getitem: index .* is invalid for shape \(2, 3\)"):
        x[5]
    with pytest.raises(TypeError, match="pow: the exponent must be a Python or NumPy number"):
        x ** cnnperf.tensor([2.0])
    with pytest.raises(ValueError, match=r"flatten: start_dim=2 and end_dim=-1 must lie in"):
        x.flatten(2)


def test_gradients_reduce_to_each_operand_shape_exactly():
    # every element of b is used 6 times (2 x 3 broadcast): its gradient is 6 * g.
    a = cnnperf.tensor(np.zeros((2, 3, 4), np.float32), requires_grad=True)
    b = cnnperf.tensor(np.zeros((1, 4), np.float32), requires_grad=True)
    (a + b).sum().backward()
    assert b.grad.shape == (1, 4)
    assert_rel_close(b.grad, np.full((1, 4), 6.0), 0)


def test_permute_transpose_and_T(rng):
    a = randn(rng, (2, 3, 4), np.float64)
    tol = TOL[np.float64]
    check_parity(lambda x: x.permute(2, 0, 1), lambda x: x.permute(2, 0, 1), [a], tol)
    check_parity(lambda x: F.permute(x, (1, 2, 0)), lambda x: x.permute(1, 2, 0), [a], tol)
    check_parity(lambda x: x.transpose(0, -1), lambda x: x.transpose(0, -1), [a], tol)
    check_parity(lambda x: x.T, lambda x: x.permute(2, 1, 0), [a], tol)
    with pytest.raises(ValueError, match=r"permute: dims \(0, 0, 1\) are not a permutation"):
        cnnperf.tensor(a).permute(0, 0, 1)
    with pytest.raises(ValueError, match=r"transpose: dimension 3 is out of range"):
        F.transpose(cnnperf.tensor(a), 0, 3)
