"""Per-op regressions for the forms the whole-model imports (test_onnx_zoo.py) found unsupported
or mishandled: Gelu (opset 20), ImageScaler and Mean, BatchNormalization with spatial=0, a
Dropout mask output nobody reads, legacy ``broadcast``/``axis`` attributes on arithmetic, Range
in shape computations, and shape errors that name their node. Each against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import cnnperf.onnx

RNG = np.random.default_rng(11)
F = TensorProto.FLOAT
X4 = (2, 6, 5, 7)


def rand(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def model(nodes, x_shape, inits=None, opset=13, outputs=("y",), ir_version=8):
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", F, list(x_shape))],
        [helper.make_tensor_value_info(o, F, None) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)


def ort_run(m, x):
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def check(m, x, rtol=1e-5, atol=1e-6, oracle=None):
    """cnnperf on ``m`` against ONNX Runtime on ``oracle`` (default: ``m`` itself)."""
    want = ort_run(oracle if oracle is not None else m, x)
    got = cnnperf.onnx.load(m.SerializeToString())(x)
    assert got.dtype == np.float32 and got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# -- Gelu (opset 20; PyTorch's exporter emits it for nn.GELU from opset 20 on) ------------------


@pytest.mark.parametrize("approximate", [None, "none", "tanh"])
def test_gelu_opset20(approximate):
    attrs = {} if approximate is None else {"approximate": approximate}
    x = np.concatenate([rand(2, 6, 5, 7, scale=3.0).ravel(), [0.0, -12.0, 12.0, 1e-6]])
    x = x.astype(np.float32).reshape(1, -1)
    m = model([helper.make_node("Gelu", ["x"], ["y"], name="g", **attrs)], x.shape, opset=20)
    check(m, x)


def test_gelu_rejects_unknown_approximation():
    m = model([helper.make_node("Gelu", ["x"], ["y"], name="g", approximate="erf")], X4, opset=20)
    with pytest.raises(ValueError, match="Gelu node 'g': approximate='erf'"):
        cnnperf.onnx.load(m)


# -- old model-zoo ops: ImageScaler (opsets 1-9), Mean ------------------------------------------


def test_image_scaler_opset8():
    node = helper.make_node("ImageScaler", ["x"], ["y"], scale=0.25, bias=[-1.0, 0.5, 2.0])
    check(model([node], (2, 3, 5, 4), opset=8), rand(2, 3, 5, 4))


def test_image_scaler_bias_count_is_checked():
    node = helper.make_node("ImageScaler", ["x"], ["y"], name="sc", scale=0.5, bias=[1.0, 2.0])
    with pytest.raises(ValueError, match="ImageScaler node 'sc': .* one bias per channel"):
        cnnperf.onnx.load(model([node], (1, 3, 4, 4), opset=8))


@pytest.mark.parametrize("opset", [8, 13])
def test_mean_broadcasts(opset):
    inits = {"a": rand(6, 1, 1), "b": rand(7)}
    node = helper.make_node("Mean", ["x", "a", "b", "x"], ["y"])
    check(model([node], X4, inits, opset), rand(*X4))


# -- BatchNormalization spatial=0 (opsets 7 and 8): statistics per activation --------------------


def test_batch_norm_spatial0_opset7():
    c_hw = X4[1:]
    inits = {"s": rand(*c_hw), "b": rand(*c_hw), "m": rand(*c_hw),
             "v": RNG.uniform(0.5, 2, c_hw).astype(np.float32)}  # fmt: skip
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], spatial=0,
                            epsilon=1e-3)  # fmt: skip
    check(model([node], X4, inits, opset=7), rand(*X4))


def test_batch_norm_spatial0_needs_per_activation_params():
    inits = {k: np.ones(X4[1], np.float32) for k in "sbmv"}
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn",
                            spatial=0)  # fmt: skip
    with pytest.raises(
        ValueError, match=r"BatchNormalization node 'bn': spatial=0 needs .*\(6, 5, 7\)"
    ):
        cnnperf.onnx.load(model([node], X4, inits, opset=7))


def test_batch_norm_statistics_outputs_stay_refused():
    """Before opset 14 declaring the statistics outputs makes the node training-mode (ONNX
    Runtime then normalises with the batch's statistics): refused, not silently inference."""
    inits = {k: np.ones(X4[1], np.float32) for k in "sbmv"}
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"],
                            ["y", "rm", "rv", "sm", "sv"], name="bn")  # fmt: skip
    with pytest.raises(NotImplementedError, match="BatchNormalization node 'bn': training mode"):
        cnnperf.onnx.load(model([node], X4, inits, opset=9))


# -- Dropout's mask output declared but unread (old zoo files) ----------------------------------


@pytest.mark.parametrize("opset", [7, 10])
def test_dropout_unread_mask_is_ignored(opset):
    nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"], ratio=0.4),
             helper.make_node("Relu", ["d"], ["y"])]  # fmt: skip
    check(model(nodes, X4, opset=opset), rand(*X4))


def test_dropout_mask_that_is_read_is_refused():
    node = helper.make_node("Dropout", ["x"], ["y", "mask"], name="dr", ratio=0.4)
    with pytest.raises(NotImplementedError, match="Dropout node 'dr': the mask output"):
        cnnperf.onnx.load(model([node], X4, opset=7, outputs=("y", "mask")))


# -- opset < 7's broadcast/axis attributes left on later models ---------------------------------


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
def test_legacy_broadcast_axis_aligns_b(op):
    """``broadcast=1, axis=1`` with B of shape (c,): per channel, not along the last dim (which
    has the same size here). ONNX Runtime rejects the attributes at opset 7: its oracle is the
    same model with B reshaped to (c, 1, 1)."""
    b = RNG.uniform(0.5, 2, 7).astype(np.float32)
    x_shape = (2, 7, 3, 7)
    legacy = model([helper.make_node(op, ["x", "b"], ["y"], broadcast=1, axis=1)], x_shape,
                   {"b": b}, opset=7)  # fmt: skip
    clean = model([helper.make_node(op, ["x", "b"], ["y"])], x_shape, {"b": b.reshape(7, 1, 1)}, 7)
    check(legacy, rand(*x_shape), oracle=clean)


def test_legacy_broadcast_axis_runtime_b():
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Add", ["x", "m"], ["y"], broadcast=1, axis=0)]  # fmt: skip
    clean = [nodes[0], helper.make_node("Unsqueeze", ["m"], ["mu"], axes=[2, 3]),
             helper.make_node("Add", ["x", "mu"], ["y"])]  # fmt: skip
    check(model(nodes, X4, opset=7), rand(*X4), oracle=model(clean, X4, opset=7))


def test_legacy_gemm_broadcast_attribute_is_harmless():
    inits = {"w": rand(4, 5), "c": rand(4)}
    legacy = helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1, broadcast=1)
    clean = helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1)
    check(model([legacy], (3, 5), inits, 7), rand(3, 5), oracle=model([clean], (3, 5), inits, 7))


def test_legacy_broadcast_axis_that_does_not_fit():
    node = helper.make_node("Add", ["x", "b"], ["y"], name="a", broadcast=1, axis=2)
    with pytest.raises(ValueError, match="Add node 'a': legacy broadcast axis 2 does not fit"):
        cnnperf.onnx.load(model([node], X4, {"b": rand(5, 7, 2)}, opset=7))


# -- Range in shape computations; shape errors name the node ------------------------------------


def test_range_folds_into_gather_indices():
    inits = {"start": np.array(5, np.int64), "limit": np.array(-1, np.int64),
             "delta": np.array(-2, np.int64)}  # fmt: skip
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["idx"]),
             helper.make_node("Gather", ["x", "idx"], ["y"], axis=1)]  # fmt: skip
    m = model(nodes, ("n", *X4[1:]), inits, opset=11)
    assert [n.op for n in cnnperf.onnx.import_model(m).nodes] == ["gather"]
    check(m, rand(*X4))


def test_range_over_the_dynamic_batch_asks_for_a_fixed_batch():
    """The dynamo exporter's ``as_strided`` indices: Range(0, batch) needs a fixed batch."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], end=1),
             helper.make_node("Squeeze", ["s"], ["n"]),
             helper.make_node("Range", ["zero", "n", "one"], ["r"], name="rg"),
             helper.make_node("Gather", ["x", "r"], ["y"], axis=0)]  # fmt: skip
    inits = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64)}
    m = model(nodes, ("n", *X4[1:]), inits, opset=15)
    with pytest.raises(NotImplementedError, match="Range node 'rg': .* input_shapes="):
        cnnperf.onnx.load(m)
    x = rand(*X4)
    got = cnnperf.onnx.load(m, input_shapes={"x": X4})(x)
    np.testing.assert_array_equal(got, ort_run(m, x))


def test_broadcast_error_names_the_node():
    node = helper.make_node("Mul", ["x", "c"], ["y"], name="scale")
    with pytest.raises(ValueError, match=r"Mul node 'scale': shapes .* cannot be broadcast"):
        cnnperf.onnx.load(model([node], X4, {"c": rand(5)}))
