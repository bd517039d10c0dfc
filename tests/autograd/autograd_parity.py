"""Run a function on cnnperf Tensors and on torch tensors; compare outputs and gradients.

``check_parity(ours, theirs, arrays, tol)`` makes leaves of ``arrays`` on both sides, runs the
two functions, backpropagates the same random upstream gradient (or the scalar loss itself)
and asserts the outputs and every leaf's gradient agree to ``tol`` relative to max |torch|.
"""

from __future__ import annotations

import numpy as np
import torch
from conftest import assert_rel_close, to_torch

import cnnperf

# Relative to max |expected|: float32 near its epsilon (1.2e-7) times modest accumulation
# depth; float64 likewise far below any algorithmic difference.
TOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]


def check_parity(
    ours,
    theirs,
    arrays,
    tol: float,
    *,
    requires_grad=None,
    seed: int = 0,
    what: str = "",
):
    """Compare ``ours(*Tensors)`` with ``theirs(*torch tensors)`` forward and backward.

    Args:
        ours, theirs: functions of the leaves, returning one tensor.
        arrays: the leaf values (ndarrays).
        requires_grad: per-leaf flags (default: all True).
        seed: for the upstream gradient of a non-scalar output.

    Returns:
        (our leaves, torch leaves) for further checks.
    """
    flags = [True] * len(arrays) if requires_grad is None else list(requires_grad)
    mine = [cnnperf.tensor(a, requires_grad=f) for a, f in zip(arrays, flags, strict=True)]
    ref = [to_torch(a, requires_grad=f) for a, f in zip(arrays, flags, strict=True)]
    y = ours(*mine)
    yt = theirs(*ref)
    assert isinstance(y, cnnperf.Tensor), type(y)
    assert y.dtype == np.dtype(yt.detach().numpy().dtype), (y.dtype, yt.dtype)
    assert_rel_close(y.data, yt.detach().numpy(), tol, f"{what} forward")
    if not any(flags):
        return mine, ref
    if y.data.size == 1 and y.ndim == 0:
        y.backward()
        yt.backward()
    else:
        g = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
        y.backward(g)
        yt.backward(torch.from_numpy(g))
    for i, (a, b) in enumerate(zip(mine, ref, strict=True)):
        if not flags[i]:
            assert a.grad is None
            continue
        assert a.grad is not None, f"{what}: leaf {i} got no gradient"
        assert a.grad.dtype == a.dtype, f"{what}: leaf {i} gradient dtype {a.grad.dtype}"
        assert_rel_close(a.grad, b.grad.numpy(), tol, f"{what} grad of leaf {i}")
    return mine, ref


def randn(rng, shape, dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)
