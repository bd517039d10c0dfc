"""Conv2dPlan: the weight prepared once; results equal conv2d for every algorithm."""

from __future__ import annotations

import numpy as np
import pytest
from cases import CONV_CASES
from conftest import assert_rel_close

from cnnperf import ops

CASES = [c for c in CONV_CASES if c.x[0] > 0]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_plan_equals_conv2d_for_every_applicable_algorithm(case):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.x).astype(np.float32)
    w = rng.standard_normal(case.w).astype(np.float32)
    b = rng.standard_normal(case.w[0]).astype(np.float32) if case.bias else None
    p = ops.conv_params(x.shape, w.shape, **case.kwargs)
    for name, algo in ops.CONV_ALGOS.items():
        if algo.why_not(p) is not None:
            continue
        plan = ops.plan_conv2d(w, b, **case.kwargs, input_shape=x.shape, algo=name,
                               activation="silu")  # fmt: skip
        assert plan.algorithm.name == name
        expected = ops.conv2d(x, w, b, **case.kwargs, algo=name, activation="silu")
        assert_rel_close(plan(x), expected, 1e-6, f"{case.id}/{name}")


def test_plan_snapshots_the_weight_and_accepts_other_batch_sizes():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    x = rng.standard_normal((5, 3, 7, 7)).astype(np.float32)
    plan = ops.plan_conv2d(w, input_shape=(1, 3, 7, 7), padding=1)
    expected = ops.conv2d(x, w, padding=1, algo=plan.algorithm.name)  # the same arithmetic
    w[:] = 0  # changing the caller's array after planning does not reach the plan
    np.testing.assert_array_equal(plan(x), expected)
    assert plan(x[0]).shape == (4, 7, 7)  # unbatched
    assert plan(x[:0]).shape == (0, 4, 7, 7)


@pytest.mark.parametrize(
    "x_shape, dtype, message",
    [
        ((1, 3, 8, 7), np.float32, r"planned for input \(n, 3, 7, 7\), got \(1, 3, 8, 7\)"),
        ((1, 3, 7, 7), np.float64, r"all arrays must have the same dtype"),
    ],
)
def test_plan_rejects_other_shapes_and_dtypes(x_shape, dtype, message):
    plan = ops.plan_conv2d(np.ones((4, 3, 3, 3), np.float32), input_shape=(2, 3, 7, 7))
    with pytest.raises(ValueError, match=message):
        plan(np.ones(x_shape, dtype))


def test_plan_validates_at_construction():
    with pytest.raises(ValueError, match=r"plan_conv2d: Given groups=1, weight of shape"):
        ops.plan_conv2d(np.ones((4, 2, 3, 3), np.float32), input_shape=(1, 3, 7, 7))
    with pytest.raises(ValueError, match=r"input_shape must be"):
        ops.plan_conv2d(np.ones((4, 3, 3, 3), np.float32), input_shape=(7, 7))
