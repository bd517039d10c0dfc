"""Conv2dPlan: the weight prepared once; results equal conv2d for every algorithm; residual=
and out= equal conv -> add -> activation unfused (NaN and Inf included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cases import CONV_CASES
from conftest import assert_rel_close, to_torch
from unfused import UNFUSED as UNFUSED_ACTIVATIONS

from cnnperf import ops, reference
from cnnperf.ops.epilogue import FUSABLE_ACTIVATIONS

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
    # the same arithmetic: the algorithm auto picks at batch 5 (prepared lazily, from the
    # plan's copy of the weight)
    expected = ops.conv2d(x, w, padding=1, algo=plan.algorithm_for(5)[0].name)
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


# --- residual= and out= ------------------------------------------------------------------------

UNFUSED = {**UNFUSED_ACTIVATIONS, None: (lambda y: y, lambda t: t)}


def _residual_case(seed: int = 0, c_out: int = 6):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, 4, 9, 8)) * 2).astype(np.float32)
    w = rng.standard_normal((c_out, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    r = (rng.standard_normal((2, c_out, 9, 8)) * 3).astype(np.float32)
    r[0, 0, 0, :4] = [np.nan, np.inf, -np.inf, np.nan]
    r[1, 5, 8, -3:] = [-np.inf, np.inf, np.nan]
    return x, w, b, r


def test_every_fusable_activation_has_a_residual_test():
    assert set(UNFUSED) - {None} == set(FUSABLE_ACTIVATIONS)


@pytest.mark.parametrize("c_out", [6, 16])  # 16: the blocked kernels' paths (8 channels)
@pytest.mark.parametrize("algo", sorted(ops.CONV_ALGOS))
@pytest.mark.parametrize("name", sorted(UNFUSED, key=str))
def test_residual_equals_conv_add_activation_with_nan_and_inf(name, algo, c_out):
    x, w, b, r = _residual_case(c_out=c_out)
    if ops.CONV_ALGOS[algo].why_not(ops.conv_params(x.shape, w.shape, padding=1)) is not None:
        pytest.skip(f"{algo} does not cover this case")
    plan = ops.plan_conv2d(w, b, padding=1, input_shape=x.shape, algo=algo, activation=name)
    op_fn, torch_fn = UNFUSED[name]
    with np.errstate(invalid="ignore", over="ignore"):
        unfused = op_fn(ops.conv2d(x, w, b, padding=1, algo=algo) + r)
    fused = plan(x, residual=r)
    np.testing.assert_array_equal(np.isnan(fused), np.isnan(unfused), f"{name}/{algo} NaNs")
    assert_rel_close(fused, unfused, 1e-6, f"{name}/{algo} fused vs conv + add + act")
    with torch.no_grad():
        t = F.conv2d(to_torch(x), to_torch(w), to_torch(b), padding=1) + to_torch(r)
        expected = torch_fn(t).numpy()
    np.testing.assert_array_equal(np.isnan(fused), np.isnan(expected), f"{name}/{algo} torch")
    assert_rel_close(fused, expected, 1e-4, f"{name}/{algo} vs torch")
    if name in ("relu", "relu6", None):  # the same float32 arithmetic: bit for bit
        np.testing.assert_array_equal(fused, unfused)
    assert np.array_equal(r[0, 0, 0, :2], [np.nan, np.inf], equal_nan=True)  # r not modified


@pytest.mark.parametrize("algo", ["direct", "im2col", "winograd"])
def test_out_and_residual_write_into_the_given_array(algo):
    x, w, b, r = _residual_case(1)
    r = np.nan_to_num(r)
    plan = ops.plan_conv2d(w, b, padding=1, input_shape=x.shape, algo=algo, activation="relu")
    expected = ops.relu(ops.conv2d(x, w, b, padding=1, algo=algo) + r)
    out = np.full(expected.shape, np.nan, np.float32)  # stale contents must not leak
    assert plan(x, residual=r, out=out) is out
    np.testing.assert_array_equal(out, expected)
    out2 = np.empty_like(out)
    assert plan(x, out=out2) is out2
    np.testing.assert_array_equal(out2, plan(x))
    # unbatched input: residual and out of the unbatched output's shape
    out3 = np.empty(expected.shape[1:], np.float32)
    assert plan(x[1], residual=r[1], out=out3) is out3
    np.testing.assert_array_equal(out3, expected[1])
    np.testing.assert_array_equal(plan(x[1], residual=r[1]), expected[1])
    # a strided residual is accepted (read through a contiguous copy)
    rs = np.concatenate([r, r], axis=3)[..., ::2]  # (2, 6, 9, 8), strided
    want = ops.relu(ops.conv2d(x, w, b, padding=1, algo=algo) + rs)
    np.testing.assert_array_equal(plan(x, residual=rs), want)
    empty = plan(x[:0], residual=r[:0], out=np.empty((0, 6, 9, 8), np.float32))
    assert empty.shape == (0, 6, 9, 8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"residual": np.ones((2, 6, 9, 7), np.float32)},
         r"Conv2dPlan: residual must have the output's shape \(2, 6, 9, 8\) \(no broadcasting\),"
         r" got \(2, 6, 9, 7\)"),
        ({"residual": np.ones((1, 6, 9, 8), np.float32)}, r"residual must have the output's"),
        ({"residual": np.ones((6, 1, 1), np.float32)}, r"residual must have the output's"),
        ({"residual": np.ones((2, 6, 9, 8), np.float64)},
         r"Conv2dPlan: residual must have the weight's dtype float32, got float64"),
        ({"residual": [[1.0]]}, r"Conv2dPlan: residual must be a NumPy array, got list"),
        ({"out": np.ones((2, 6, 9, 9), np.float32)},
         r"Conv2dPlan: out must have the output's shape \(2, 6, 9, 8\)"),
        ({"out": np.ones((2, 6, 9, 8), np.float64)}, r"out must have the weight's dtype"),
        ({"out": np.ones((2, 6, 9, 16), np.float32)[..., ::2]}, r"out must be C-contiguous"),
    ],
)  # fmt: skip
def test_residual_and_out_are_validated(kwargs, message):
    x, w, b, _ = _residual_case()
    plan = ops.plan_conv2d(w, b, padding=1, input_shape=x.shape)
    with pytest.raises(ValueError, match=message):
        plan(x, **kwargs)


def test_out_must_not_overlap_the_input_or_the_residual():
    w = np.ones((3, 3, 1, 1), np.float32)
    plan = ops.plan_conv2d(w, input_shape=(1, 3, 5, 5))
    x = np.ones((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"Conv2dPlan: out must not overlap the input"):
        plan(x, out=x)
    r = np.ones((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"Conv2dPlan: out must not overlap residual"):
        plan(x, residual=r, out=r)
    np.testing.assert_array_equal(plan(x, residual=x), 4 * x)  # the residual may be the input


def test_auto_plan_chooses_again_for_another_batch_size():
    # a few-channel stem: auto picks by batch size; the plan follows it, a forced one does not
    from cnnperf.ops.conv import select_conv_algo

    rng = np.random.default_rng(21)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    plan = ops.plan_conv2d(w, input_shape=(1, 3, 32, 32), stride=2, padding=1)
    forced = ops.plan_conv2d(w, input_shape=(1, 3, 32, 32), stride=2, padding=1, algo="im2col")
    for n in (1, 8, 3, 8):
        p = ops.conv_params((n, 3, 32, 32), w.shape, stride=2, padding=1)
        algo, _ = plan.algorithm_for(n)
        assert algo.name == select_conv_algo(p, "auto", np.float32, weight_prepared=True).name
        assert forced.algorithm_for(n)[0].name == "im2col"
        x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
        expected = reference.conv2d(x, w, stride=2, padding=1)
        assert_rel_close(plan(x), expected, 1e-5, f"auto plan at batch {n}")
        assert_rel_close(forced(x), expected, 1e-5, f"im2col plan at batch {n}")
    names = {plan.algorithm_for(n)[0].name for n in (1, 8)}
    assert len(names) == 2, names  # the stem's choice does change between batch 1 and 8


# --- bind -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algo, kwargs",
    [
        ("winograd_f23", dict(padding=1)),
        ("winograd_f43", dict(padding=1)),
        ("blocked_gemm", dict(stride=2, padding=1)),
        ("blocked_gemm", dict(stride=2)),  # unpadded: the input read in place
    ],
)
@pytest.mark.parametrize("with_residual", [False, True])
def test_a_bound_plan_reruns_on_the_arrays_current_contents(algo, kwargs, with_residual):
    rng = np.random.default_rng(11)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    x = rng.standard_normal((2, 8, 9, 10)).astype(np.float32)
    plan = ops.plan_conv2d(w, b, input_shape=(1, 8, 9, 10), algo=algo, activation="relu",
                           **kwargs)  # fmt: skip
    out = np.empty_like(plan(x))  # batch 2: not the planned 1
    r = rng.standard_normal(out.shape).astype(np.float32) if with_residual else None
    run = plan.bind(x, out, r)
    assert callable(run)
    for seed in (1, 2):
        x[...] = np.random.default_rng(seed).standard_normal(x.shape)
        if r is not None:
            r[...] = np.random.default_rng(seed + 5).standard_normal(r.shape)
        run()
        np.testing.assert_array_equal(out, plan(x, residual=r))
    x[0, 3, 4, 5] = np.nan  # Winograd's transforms spread it: recomputed directly
    run()
    want = plan(x, residual=r)
    np.testing.assert_array_equal(out, want)
    assert np.isnan(out).sum() == np.isnan(want).sum() < out.size // 4


def test_bind_returns_none_where_it_does_not_apply():
    rng = np.random.default_rng(12)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, 8, 9, 10)).astype(np.float32)

    def plan(algo="winograd", activation="relu"):
        return ops.plan_conv2d(w, padding=1, input_shape=x.shape, algo=algo,
                               activation=activation)  # fmt: skip

    out = np.empty((1, 16, 9, 10), np.float32)
    assert plan("im2col").bind(x, out) is None  # no bound form
    assert plan(activation="sigmoid").bind(x, out) is None  # not a fused clamp
    assert plan("blocked_gemm", "sigmoid").bind(x, out) is None
    assert plan().bind(np.asfortranarray(x), out) is None  # not contiguous
    assert plan().bind(x, out[:, :8]) is None  # the wrong shape
    assert plan().bind(x, np.zeros(out.shape)) is None  # the wrong dtype
    assert plan().bind(x, out, np.empty((1, 16, 9, 9), np.float32)) is None
    assert plan().bind(x[:0], out[:0]) is None  # an empty batch
    xo = np.empty((1, 16, 9, 10), np.float32)
    w16 = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    same = ops.plan_conv2d(w16, padding=1, input_shape=xo.shape, algo="winograd")
    assert same.bind(xo, xo) is None  # out overlaps the input
    assert callable(same.bind(xo, out))
