"""Per-op conformance of cnnperf.onnx against ONNX Runtime on one-node float32 models."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import assert_rel_close
from onnx import TensorProto, helper, numpy_helper

import cnnperf.onnx

RNG = np.random.default_rng(0)
F = TensorProto.FLOAT


def _rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def make_model(op, x_shape, attrs=None, consts=(), opset=13, out_rank=None, extra_nodes=()):
    """One ``op`` node reading x then the named constants (name, array or None for absent)."""
    inits = [numpy_helper.from_array(v, n) for n, v in consts if v is not None]
    ins = ["x"] + [n if v is not None else "" for n, v in consts]
    while ins[-1] == "":
        ins.pop()  # trailing absent optional inputs are left out (ORT rejects some as "")
    nodes = [*extra_nodes, helper.make_node(op, ins, ["y"], name=f"{op}_0", **(attrs or {}))]
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", F, list(x_shape))],
        [helper.make_tensor_value_info("y", F, None)], initializer=inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def check(model, x, tol=1e-5):
    data = model.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    got = cnnperf.onnx.load(data)(x)
    assert got.dtype == np.float32
    assert_rel_close(got, want, tol, model.graph.node[-1].op_type)


X4 = (2, 6, 11, 10)

CONV_CASES = [
    ({}, (4, 6, 3, 3), True),
    ({"pads": [1, 1, 1, 1], "strides": [2, 2]}, (4, 6, 3, 3), True),
    ({"pads": [0, 1, 2, 1]}, (4, 6, 3, 3), False),  # asymmetric
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (4, 6, 4, 3), True),
    ({"auto_pad": "SAME_LOWER", "strides": [2, 3]}, (4, 6, 4, 2), True),
    ({"auto_pad": "VALID", "strides": [2, 1]}, (4, 6, 3, 3), False),
    ({"group": 3, "pads": [1, 1, 1, 1]}, (6, 2, 3, 3), True),
    ({"group": 6, "pads": [1, 1, 1, 1]}, (12, 1, 3, 3), True),  # depthwise x2
    ({"dilations": [2, 3], "pads": [2, 3, 2, 3]}, (5, 6, 3, 3), True),
    ({"kernel_shape": [1, 5], "pads": [0, 2, 0, 2]}, (4, 6, 1, 5), True),  # non-square
    ({}, (8, 6, 1, 1), False),
    ({"pads": [3, 3, 3, 3], "strides": [2, 2]}, (4, 6, 7, 7), True),
]


@pytest.mark.parametrize("attrs,w_shape,bias", CONV_CASES)
def test_conv(attrs, w_shape, bias):
    consts = [("w", _rand(*w_shape)), ("b", _rand(w_shape[0]) if bias else None)]
    check(make_model("Conv", X4, attrs, consts), _rand(*X4), 1e-4)


POOL_CASES = [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [2, 3], "pads": [0, 1, 1, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [2, 2]}),  # ONNX default stride is 1, not the kernel
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                     "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1,
                     "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [2, 3], "pads": [0, 1, 1, 2]}),
    ("AveragePool", {"kernel_shape": [2, 3], "pads": [0, 1, 1, 2], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "VALID"}),
]  # fmt: skip


@pytest.mark.parametrize("op,attrs", POOL_CASES)
def test_pool(op, attrs):
    check(make_model(op, X4, attrs, opset=13), _rand(*X4))


def test_avg_pool_dilation_opset19():
    attrs = {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 0, 1, 0]}
    check(make_model("AveragePool", X4, attrs, opset=19), _rand(*X4))


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op):
    check(make_model(op, X4), _rand(*X4))


@pytest.mark.parametrize("opset", [9, 15])
def test_batch_norm(opset):
    c = X4[1]
    consts = [("s", _rand(c)), ("b", _rand(c)), ("m", _rand(c)),
              ("v", RNG.uniform(0.5, 2, c).astype(np.float32))]  # fmt: skip
    check(make_model("BatchNormalization", X4, {"epsilon": 1e-3}, consts, opset=opset), _rand(*X4))


UNARY_CASES = [
    ("Relu", {}, 13),
    ("LeakyRelu", {}, 13),
    ("LeakyRelu", {"alpha": 0.2}, 13),
    ("Sigmoid", {}, 13),
    ("Tanh", {}, 13),
    ("HardSigmoid", {}, 13),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, 13),
    ("HardSwish", {}, 14),
    ("Clip", {"min": -0.5, "max": 0.7}, 7),
    ("Clip", {"max": 0.7}, 9),
    ("Identity", {}, 13),
]


@pytest.mark.parametrize("op,attrs,opset", UNARY_CASES)
def test_unary(op, attrs, opset):
    check(make_model(op, X4, attrs, opset=opset), 3 * _rand(*X4))


@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (-1.0, None), (None, 0.5), (None, None)])
def test_clip_inputs_opset11(lo, hi):
    consts = [("lo", None if lo is None else np.array(lo, np.float32)),
              ("hi", None if hi is None else np.array(hi, np.float32))]  # fmt: skip
    check(make_model("Clip", X4, {}, consts, opset=12), 4 * _rand(*X4))


@pytest.mark.parametrize("opset", [7, 12])
def test_dropout_inference(opset):
    check(make_model("Dropout", X4, {"ratio": 0.3} if opset < 12 else {}, opset=opset), _rand(*X4))


@pytest.mark.parametrize(
    "axis,opset", [(None, 11), (2, 11), (-1, 11), (None, 13), (1, 13), (2, 13), (0, 13)]
)
def test_softmax(axis, opset):
    attrs = {} if axis is None else {"axis": axis}
    check(make_model("Softmax", (2, 3, 4, 5), attrs, opset=opset), _rand(2, 3, 4, 5))


GEMM_CASES = [
    ({}, (5, 7), (7,)),
    ({"transB": 1}, (7, 5), (7,)),
    ({"transB": 1, "alpha": 0.5, "beta": 2.0}, (7, 5), (1, 7)),
    ({"transA": 1}, (5, 7), (3, 7)),
    ({}, (5, 7), None),
    ({"beta": 0.5}, (5, 7), ()),
]


@pytest.mark.parametrize("attrs,b_shape,c_shape", GEMM_CASES)
def test_gemm(attrs, b_shape, c_shape):
    x_shape = (5, 3) if attrs.get("transA") else (3, 5)
    c = None if c_shape is None else _rand(*c_shape)
    consts = [("b", _rand(*b_shape)), ("c", c)]
    check(make_model("Gemm", x_shape, attrs, consts, opset=13), _rand(*x_shape))


@pytest.mark.parametrize(
    "x_shape,b_shape", [((3, 5), (5, 4)), ((2, 3, 5), (5,)), ((2, 1, 3, 5), (4, 5, 2))]
)
def test_matmul(x_shape, b_shape):
    check(make_model("MatMul", x_shape, {}, [("b", _rand(*b_shape))]), _rand(*x_shape))


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("c_shape", [(), (6, 1, 1), (1, 10), X4])
def test_binary_broadcast(op, c_shape):
    c = RNG.uniform(0.5, 2, c_shape).astype(np.float32)
    check(make_model(op, X4, {}, [("c", c)]), _rand(*X4))


def test_binary_two_runtime_inputs():
    check(_two_input_model(), _rand(*X4))


def _two_input_model():
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])]
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", F, list(X4))],
        [helper.make_tensor_value_info("y", F, None)],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_concat():
    consts = [("c", _rand(2, 3, 11, 10))]
    check(make_model("Concat", X4, {"axis": 1}, consts), _rand(*X4))
    check(make_model("Concat", X4, {"axis": -1}, [("c", _rand(2, 6, 11, 2))]), _rand(*X4))


@pytest.mark.parametrize("axis,opset", [(None, 9), (0, 11), (2, 13), (-1, 13)])
def test_flatten(axis, opset):
    attrs = {} if axis is None else {"axis": axis}
    check(make_model("Flatten", X4, attrs, opset=opset), _rand(*X4))


@pytest.mark.parametrize(
    "shape,allowzero,opset",
    [([0, -1], 0, 13), ([2, 3, -1], 0, 13), ([-1, 10], 0, 13), ([0, 6, 0, 10], 0, 14),
     ([4, 3, 11, 10], 1, 14)],
)  # fmt: skip
def test_reshape(shape, allowzero, opset):
    attrs = {"allowzero": allowzero} if opset >= 14 else {}
    check(make_model("Reshape", X4, attrs, [("s", np.array(shape, np.int64))], opset), _rand(*X4))


@pytest.mark.parametrize("perm", [None, [0, 2, 3, 1], [1, 0, 3, 2]])
def test_transpose(perm):
    check(make_model("Transpose", X4, {} if perm is None else {"perm": perm}), _rand(*X4))


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [[1, 3], [-1], None])
def test_squeeze(opset, axes):
    shape = (2, 1, 5, 1)
    if opset < 13:
        model = make_model("Squeeze", shape, {} if axes is None else {"axes": axes}, opset=opset)
    else:
        consts = [("a", None if axes is None else np.array(axes, np.int64))]
        model = make_model("Squeeze", shape, {}, consts, opset=opset)
    if axes is None:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    check(model, _rand(*shape))


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [[0], [1, -1], [4, 0]])
def test_unsqueeze(opset, axes):
    if opset < 13:
        model = make_model("Unsqueeze", (2, 3, 4), {"axes": axes}, opset=opset)
    else:
        model = make_model("Unsqueeze", (2, 3, 4), {}, [("a", np.array(axes, np.int64))], opset)
    check(model, _rand(2, 3, 4))


def test_constant_node_operand():
    const = helper.make_node(
        "Constant", [], ["c"], value=numpy_helper.from_array(_rand(6, 1, 1), "c")
    )
    model = make_model("Add", X4, extra_nodes=[const])
    model.graph.node[-1].input.append("c")
    check(model, _rand(*X4))


def test_dynamic_batch_shape_glue():
    """PyTorch's ``x.view(x.size(0), -1)``: Shape -> Gather -> Unsqueeze -> Concat -> Reshape,
    with Cast and a Constant, folded into one Reshape that keeps the batch dynamic."""
    glue = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["i0"], value=numpy_helper.from_array(np.array(0))),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Cast", ["m1f"], ["m1"], to=TensorProto.INT64),
        helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
    ]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "ax"),
             numpy_helper.from_array(np.array([-1.0], np.float32), "m1f")]  # fmt: skip
    nodes = [*glue, helper.make_node("Reshape", ["x", "shape"], ["y"])]
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", F, ["n", 6, 11, 10])],
        [helper.make_tensor_value_info("y", F, None)], initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    compiled = cnnperf.onnx.load(model)
    assert [n.op for n in compiled.graph.nodes] == ["reshape"]
    for n in (1, 3):
        check(model, _rand(n, 6, 11, 10))
