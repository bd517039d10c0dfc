"""Tensor, the tape and no_grad: construction, backward semantics, errors, exports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from autograd_parity import TOL, check_parity, randn
from conftest import assert_rel_close, to_torch

import cnnperf
from cnnperf.autograd import Tensor, enable_grad, is_grad_enabled, no_grad, tensor
from cnnperf.autograd import functional as F
from cnnperf.autograd.tensor import record

# ----------------------------------------------------------------------------------------------
# construction and attributes


def test_tensor_factory_dtypes_and_copies():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = tensor(a, requires_grad=True)
    assert t.dtype == np.float64 and t.shape == (2, 3) and t.ndim == 2 and len(t) == 2
    assert t.requires_grad and t.is_leaf and t.grad is None and t.grad_fn is None
    assert not np.shares_memory(t.data, a)  # tensor() copies, like torch.tensor
    assert tensor([1.0, 2.0]).dtype == np.float32  # Python floats: float32, like torch
    assert tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert tensor(np.float64(2.0)).shape == ()
    w = Tensor(a)  # the constructor wraps without copying
    assert w.data is a and not w.requires_grad


def test_integer_data_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match=r"Tensor: data must have dtype float32 or float64, got "):
        Tensor(np.arange(3))
    with pytest.raises(ValueError, match=r"tensor: data must have dtype float32 or float64, got "):
        tensor([1, 2, 3])
    with pytest.raises(ValueError, match=r"got int64 with shape \(3,\); cast it with .astype"):
        tensor(np.arange(3, dtype=np.int64))
    with pytest.raises(ValueError, match="got bool"):
        tensor(np.ones(2, bool))
    with pytest.raises(ValueError, match="tensor: dtype must be float32 or float64, got int32"):
        tensor([1.0], dtype=np.int32)
    with pytest.raises(TypeError, match="Tensor: data must be a NumPy array, got list"):
        Tensor([1.0])
    with pytest.raises(ValueError, match=r"conv2d: weight must be a Tensor or a float32/float64"):
        F.conv2d(tensor(np.ones((1, 1, 3, 3))), np.ones((1, 1, 1, 1), np.int64))


def test_numpy_item_detach_and_repr():
    t = tensor([[1.5, 2.5]], requires_grad=True)
    assert t.numpy() is t.data  # works on a tensor that requires grad (unlike torch)
    assert np.asarray(t) is t.data
    y = t * 2
    assert y.numpy().tolist() == [[3.0, 5.0]]
    assert y.sum().item() == 8.0 and isinstance(y.sum().item(), float)
    with pytest.raises(ValueError, match=r"item: only a one-element tensor .* shape \(1, 2\)"):
        t.item()
    d = y.detach()
    assert d.data is y.data and not d.requires_grad and d.grad_fn is None
    assert "grad_fn=<mul>" in repr(y) and "requires_grad=True" in repr(t)
    assert "dtype=float32" in repr(d)


def test_requires_grad_and_zero_grad():
    t = tensor([1.0]).requires_grad_()
    (t * 3).backward()
    assert t.grad.tolist() == [3.0]
    t.zero_grad()
    assert t.grad is None
    with pytest.raises(RuntimeError, match="a non-leaf tensor always requires grad"):
        (t * 2).requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# backward


def test_backward_errors():
    x = tensor(np.ones((2, 3), np.float32), requires_grad=True)
    y = x * 2
    with pytest.raises(
        ValueError,
        match=r"grad can be implicitly created only for scalar outputs, but this tensor has "
        r"shape \(2, 3\)",
    ):
        y.backward()
    with pytest.raises(ValueError, match=r"grad of shape \(3,\) does not match .* \(2, 3\)"):
        y.backward(np.ones(3, np.float32))
    with pytest.raises(RuntimeError, match=r"this tensor \(shape \(2, 3\)\) does not require grad"):
        tensor(np.ones((2, 3))).backward(np.ones((2, 3)))
    z = y.sum()
    z.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        z.backward()


def test_one_element_non_0d_output_needs_no_grad():
    x = tensor([[2.0]], requires_grad=True)
    (x * x).backward()
    assert x.grad.tolist() == [[4.0]]


def test_leaves_accumulate_across_backward_calls_like_torch(rng):
    a = randn(rng, (3, 4), np.float32)
    x, xt = tensor(a, requires_grad=True), to_torch(a, True)
    for k in range(3):
        (F.sigmoid(x) * (k + 1)).sum().backward()
        (torch.sigmoid(xt) * (k + 1)).sum().backward()
    assert_rel_close(x.grad, xt.grad.numpy(), TOL[np.float32], "accumulated grad")


def test_retain_graph_walks_the_graph_twice():
    x = tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]


def test_intermediates_keep_no_grad_and_leaf_grads_do_not_alias():
    a = tensor([1.0, 2.0], requires_grad=True)
    b = tensor([3.0, 4.0], requires_grad=True)
    h = a + b
    (h * 1.0).sum().backward()
    assert h.grad is None
    assert a.grad is not b.grad and not np.shares_memory(a.grad, b.grad)
    a.grad += 1  # an optimiser may update in place: b.grad must not change
    assert b.grad.tolist() == [1.0, 1.0]


def test_constants_in_the_graph_get_no_grad():
    x = tensor([1.0, 2.0], requires_grad=True)
    c = tensor([5.0, 6.0])
    (x * c).sum().backward()
    assert c.grad is None and x.grad.tolist() == [5.0, 6.0]


def test_grad_argument_forms_and_dtype():
    x = tensor(np.ones(2), requires_grad=True)  # float64
    y = x * 3
    y.backward(np.array([1, 2]))  # an integer upstream takes the tensor's dtype
    assert x.grad.dtype == np.float64 and x.grad.tolist() == [3.0, 6.0]
    x.zero_grad()
    (x * 3).backward(tensor(np.array([1.0, 1.0])))
    assert x.grad.tolist() == [3.0, 3.0]


def test_each_node_runs_once_in_a_diamond():
    calls = []
    x = tensor([1.0, 2.0], requires_grad=True)

    def backward(g):
        calls.append(1)
        return (g * 2,)

    h = record(x.data * 2, (x,), backward, "double")
    y = (h * h + h * 3).sum()  # h feeds three products: its gradient is summed first
    y.backward()
    assert len(calls) == 1
    # dy/dx = (2h + 3) * 2 with h = 2x
    assert x.grad.tolist() == [(2 * 2 + 3) * 2, (2 * 4 + 3) * 2]


def test_deep_graph_needs_no_recursion():
    limit = sys.getrecursionlimit()
    x = tensor([1.0], requires_grad=True, dtype=np.float64)
    y = x
    for _ in range(limit * 3):
        y = y + x * 1e-4
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1 + limit * 3 * 1e-4], rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# no_grad


def test_no_grad_records_nothing():
    x = tensor(np.ones((1, 2, 5, 5), np.float32), requires_grad=True)
    w = tensor(np.ones((3, 2, 3, 3), np.float32), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = F.relu(F.conv2d(x, w, padding=1)) * 2 + x.sum()
        assert not y.requires_grad and y.grad_fn is None
        with enable_grad():
            assert (x * 2).grad_fn is not None
        assert not is_grad_enabled()
    assert is_grad_enabled()
    assert (x * 2).grad_fn is not None


def test_no_grad_as_decorator_and_after_an_exception():
    x = tensor([1.0], requires_grad=True)

    @no_grad
    def bare(t):
        return t * 2

    @no_grad()
    def called(t):
        return t * 2

    assert bare(x).grad_fn is None and called(x).grad_fn is None
    assert bare.__name__ == "bare"
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError("x")
    assert is_grad_enabled()
    ctx = no_grad()
    with ctx:
        with ctx:  # one instance nests
            pass
        assert not is_grad_enabled()
    assert is_grad_enabled()


def test_backward_under_no_grad_still_computes_gradients():
    x = tensor([2.0], requires_grad=True)
    y = x * x
    with no_grad():
        y.backward()
    assert x.grad.tolist() == [4.0]


# ----------------------------------------------------------------------------------------------
# package


def test_exports_and_import_weight():
    assert cnnperf.Tensor is Tensor and cnnperf.tensor is tensor and cnnperf.no_grad is no_grad
    for name in ("Tensor", "tensor", "no_grad", "autograd"):
        assert name in cnnperf.__all__
    code = "import cnnperf, sys; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parity_helper_catches_a_wrong_gradient(rng):
    # the harness itself: a function whose backward is wrong must fail the comparison
    a = randn(rng, (3,), np.float32)

    def wrong(x):
        return record(x.data * 2, (x,), lambda g: (g * 3,), "wrong")

    with pytest.raises(AssertionError, match="grad of leaf 0"):
        check_parity(wrong, lambda x: x * 2, [a], TOL[np.float32])
