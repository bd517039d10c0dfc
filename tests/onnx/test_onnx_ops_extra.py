"""Per-op conformance of cnnperf.onnx against ONNX Runtime, beyond test_onnx_ops.py: the ops
added for full coverage (ConvTranspose, Elu, Selu, PRelu, Erf, LogSoftmax, Pow, Sqrt, Sum, Max,
Min, LRN, LayerNormalization, Pad) and the attribute forms that changed across opsets 7 to 21.

Tolerances: element-wise ops 1e-5 relative / 1e-6 absolute per element (``ELEMENTWISE``);
Erf 1e-6 absolute against ORT (whose float32 erf is a polynomial fit) and exact against
``math.erf`` rounded to float32; accumulating ops (convolutions, norms, pools) relative to the
largest output, as in test_onnx_ops.py.
Resize and the data-movement ops are in test_onnx_ops_extra_tensor.py.
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from conftest import assert_rel_close
from onnx import TensorProto, helper, numpy_helper

import cnnperf.onnx

RNG = np.random.default_rng(5)
F = TensorProto.FLOAT
ELEMENTWISE = {"rtol": 1e-5, "atol": 1e-6}
X4 = (2, 6, 9, 8)


def rand(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def graph_model(nodes, inputs, outputs, inits=None, opset=13):
    """A model of ``nodes`` with float inputs ``{name: shape}`` and initializers ``{name: a}``."""
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info(k, F, list(s)) for k, s in inputs.items()],
        [helper.make_tensor_value_info(o, F, None) for o in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def node_model(op, x_shape, attrs=None, consts=(), opset=13, n_out=1, extra_inputs=None):
    """One ``op`` node reading x, then ``extra_inputs`` ({name: shape}, run-time), then the
    named constants (``(name, array)``; array None for an absent optional input)."""
    extra = dict(extra_inputs or {})
    ins = ["x", *extra] + [n if v is not None else "" for n, v in consts]
    while ins[-1] == "":
        ins.pop()
    outs = ["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, ins, outs, name=f"{op}_0", **(attrs or {}))
    inits = {n: v for n, v in consts if v is not None}
    return graph_model([node], {"x": x_shape, **extra}, outs, inits, opset)


def run_both(model, feeds, **load_kw):
    """(cnnperf outputs, ONNX Runtime outputs) on the same model bytes."""
    data = model.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    compiled = cnnperf.onnx.load(data, **load_kw)
    got = compiled.run(feeds)
    got = [got[o.name] for o in model.graph.output]
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.float32 and g.shape == w.shape, (g.dtype, g.shape, w.shape)
    return got, want


def check(model, feeds, how="elementwise", tol=1e-5, **load_kw):
    """Compare with ORT: ``"exact"``, ``"elementwise"`` (ELEMENTWISE) or ``"rel"`` (max error
    relative to the largest output <= tol)."""
    if not isinstance(feeds, dict):
        feeds = {"x": feeds}
    got, want = run_both(model, feeds, **load_kw)
    for g, w in zip(got, want, strict=True):
        if how == "exact":
            np.testing.assert_array_equal(g, w)
        elif how == "elementwise":
            np.testing.assert_allclose(g, w, **ELEMENTWISE)
        else:
            assert_rel_close(g, w, tol, model.graph.node[-1].op_type)


# -- Conv forms ------------------------------------------------------------------------------

CONV_FORMS = [
    ({"kernel_shape": [1, 7], "pads": [0, 3, 0, 3]}, (4, 6, 1, 7)),
    ({"kernel_shape": [7, 1], "pads": [3, 0, 3, 0]}, (4, 6, 7, 1)),
    ({"auto_pad": "SAME_UPPER", "strides": [3, 1]}, (4, 6, 3, 2)),
    ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, (4, 6, 2, 3)),
    ({"auto_pad": "VALID", "group": 2}, (4, 3, 3, 3)),
    ({"pads": [2, 0, 1, 3], "group": 3, "dilations": [2, 2], "strides": [1, 2]}, (6, 2, 3, 3)),
]


@pytest.mark.parametrize("opset", [7, 11, 13])
@pytest.mark.parametrize("attrs,w_shape", CONV_FORMS)
def test_conv_forms(attrs, w_shape, opset):
    consts = [("w", rand(*w_shape)), ("b", rand(w_shape[0]))]
    check(node_model("Conv", X4, attrs, consts, opset), rand(*X4), "rel", 1e-5)


# -- ConvTranspose ---------------------------------------------------------------------------

CONV_T_CASES = [
    ({}, (6, 4, 3, 3)),
    ({"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, (6, 4, 3, 3)),
    ({"strides": [2, 3], "pads": [0, 1, 2, 1]}, (6, 4, 3, 4)),  # asymmetric
    ({"strides": [2, 2], "output_padding": [1, 0], "pads": [1, 0, 1, 1]}, (6, 4, 4, 4)),
    ({"group": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]}, (6, 2, 3, 3)),
    ({"group": 6, "strides": [2, 2]}, (6, 1, 4, 4)),  # depthwise
    ({"dilations": [2, 2], "pads": [1, 1, 1, 1]}, (6, 4, 3, 3)),
    ({"strides": [2, 2], "output_shape": [18, 16]}, (6, 4, 3, 3)),
    ({"strides": [2, 2], "output_shape": [17, 15]}, (6, 4, 3, 3)),
    ({"strides": [2, 2], "output_shape": [20, 18]}, (6, 4, 3, 3)),  # larger than the full
    ({"strides": [2, 2], "output_shape": [18, 16], "auto_pad": "SAME_UPPER"}, (6, 4, 3, 3)),
    ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, (6, 4, 3, 3)),
    ({"strides": [2, 2], "auto_pad": "SAME_LOWER"}, (6, 4, 3, 3)),
    ({"strides": [3, 2], "auto_pad": "SAME_UPPER"}, (6, 4, 2, 2)),  # full < in * stride
    ({"strides": [2, 2], "auto_pad": "SAME_LOWER", "output_padding": [1, 1]}, (6, 4, 3, 3)),
    ({"strides": [2, 2], "auto_pad": "VALID", "output_padding": [1, 1]}, (6, 4, 3, 3)),
    ({"kernel_shape": [1, 7], "pads": [0, 3, 0, 3]}, (6, 4, 1, 7)),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("attrs,w_shape", CONV_T_CASES)
def test_conv_transpose(attrs, w_shape, bias):
    consts = [
        ("w", rand(*w_shape)),
        ("b", rand(w_shape[1] * attrs.get("group", 1)) if bias else None),
    ]
    check(node_model("ConvTranspose", X4, attrs, consts), rand(*X4), "rel", 1e-5)


@pytest.mark.parametrize("opset", [7, 11, 21])
def test_conv_transpose_opsets(opset):
    attrs = {"strides": [2, 2], "pads": [1, 0, 0, 1], "output_padding": [1, 1]}
    consts = [("w", rand(6, 3, 3, 3)), ("b", rand(3))]
    check(node_model("ConvTranspose", X4, attrs, consts, opset), rand(*X4), "rel", 1e-5)


def test_conv_transpose_dynamic_batch():
    model = node_model(
        "ConvTranspose", ("n", 6, 5, 5), {"strides": [2, 2]}, [("w", rand(6, 2, 3, 3))]
    )
    for n in (1, 3):
        check(model, rand(n, 6, 5, 5), "rel", 1e-5)


# -- Pools and norms across opsets ----------------------------------------------------------

POOL_OPSET_CASES = [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 7),
    ("MaxPool", {"kernel_shape": [3, 2], "storage_order": 0}, 8),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, 10),
    ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2], "ceil_mode": 1}, 10),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}, 11),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}, 12),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}, 7),
    (
        "AveragePool",
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1, "pads": [1, 0, 1, 0]},
        10,
    ),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}, 11),
    (
        "AveragePool",
        {
            "kernel_shape": [3, 3],
            "strides": [2, 2],
            "auto_pad": "SAME_UPPER",
            "count_include_pad": 1,
        },
        11,
    ),
    ("AveragePool", {"kernel_shape": [2, 2], "dilations": [2, 1], "ceil_mode": 1}, 19),
]


@pytest.mark.parametrize("op,attrs,opset", POOL_OPSET_CASES)
def test_pool_opsets(op, attrs, opset):
    check(node_model(op, X4, attrs, opset=opset), rand(*X4), "rel", 1e-6)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("opset", [7, 21])
def test_global_pool_opsets(op, opset):
    check(node_model(op, X4, opset=opset), rand(*X4), "rel", 1e-6)


@pytest.mark.parametrize("opset", [7, 9, 14, 15])
def test_batch_norm_opsets(opset):
    c = X4[1]
    consts = [
        ("s", rand(c)),
        ("b", rand(c)),
        ("m", rand(c)),
        ("v", RNG.uniform(0.5, 2, c).astype(np.float32)),
    ]
    attrs = {"epsilon": 1e-3, **({"spatial": 1} if opset < 9 else {})}
    check(node_model("BatchNormalization", X4, attrs, consts, opset), rand(*X4), "rel", 1e-6)


def test_lrn_odd_sizes_match_onnxruntime():
    for size, attrs in [(3, {}), (5, {"alpha": 0.5, "beta": 0.6, "bias": 2.0}), (1, {})]:
        for opset in (7, 13):
            model = node_model("LRN", X4, {"size": size, **attrs}, opset=opset)
            check(model, rand(*X4, scale=2.0))


def _lrn_spec(x, size, alpha, beta, bias):
    """ONNX LRN from the spec's formula, float64: channels [c - (size-1)//2, c + size//2]."""
    x = x.astype(np.float64)
    c = x.shape[1]
    sq = np.zeros_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - (size - 1) // 2), min(c - 1, ch + -(-(size - 1) // 2))
        sq[:, ch] = np.sum(x[:, lo : hi + 1] ** 2, axis=1)
    return x / (bias + alpha / size * sq) ** beta


@pytest.mark.parametrize("size", [2, 4, 3])
def test_lrn_matches_spec_formula(size):
    """ONNX Runtime rejects even sizes; the spec defines them (the window leans forward)."""
    x = rand(*X4, scale=2.0)
    model = node_model("LRN", X4, {"size": size, "alpha": 0.3, "beta": 0.75, "bias": 1.5})
    got = cnnperf.onnx.load(model)(x)
    np.testing.assert_allclose(got, _lrn_spec(x, size, 0.3, 0.75, 1.5), **ELEMENTWISE)


@pytest.mark.parametrize(
    "axis,x_shape,bias", [(-1, (2, 5, 16), True), (1, X4, True), (2, X4, False), (-2, X4, True)]
)
def test_layer_norm(axis, x_shape, bias):
    norm = x_shape[axis % len(x_shape) :]
    consts = [("s", rand(*norm)), ("b", rand(*norm) if bias else None)]
    model = node_model("LayerNormalization", x_shape, {"axis": axis, "epsilon": 1e-4}, consts, 17)
    check(model, rand(*x_shape, scale=3.0) + 1.0, "rel", 1e-5)


def test_layer_norm_broadcast_scale_opset21():
    consts = [("s", rand(8)), ("b", rand(1))]
    model = node_model("LayerNormalization", X4, {"axis": 2}, consts, opset=21)
    check(model, rand(*X4), "rel", 1e-5)


# -- Activations -----------------------------------------------------------------------------

UNARY_OPSET_CASES = [
    ("Relu", {}, 7),
    ("Relu", {}, 14),
    ("LeakyRelu", {"alpha": 0.1}, 7),
    ("LeakyRelu", {}, 16),
    ("Sigmoid", {}, 7),
    ("Tanh", {}, 7),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 7),
    ("HardSwish", {}, 14),
    ("Elu", {}, 7),
    ("Elu", {"alpha": 0.4}, 13),
    ("Selu", {}, 7),
    ("Selu", {"alpha": 1.2, "gamma": 0.9}, 13),
    ("Sqrt", {}, 7),
    ("Sqrt", {}, 13),
    ("Softmax", {"axis": 2}, 7),
    ("LogSoftmax", {}, 7),
    ("LogSoftmax", {"axis": 2}, 11),
    ("LogSoftmax", {}, 13),
    ("LogSoftmax", {"axis": 1}, 13),
    ("LogSoftmax", {"axis": 0}, 13),
    ("Clip", {"min": -1.0, "max": 1.5}, 7),
    ("Dropout", {"ratio": 0.5}, 10),
    ("Identity", {}, 16),
]


@pytest.mark.parametrize("op,attrs,opset", UNARY_OPSET_CASES)
def test_unary_opsets(op, attrs, opset):
    x = rand(*X4, scale=3.0)
    if op == "Sqrt":
        x = np.abs(x)
    check(node_model(op, X4, attrs, opset=opset), x)


@pytest.mark.parametrize("opset", [9, 13])
def test_erf(opset):
    x = np.concatenate([rand(2, 300, scale=2.0).ravel(), [0, 1e-6, -1e-5, 3.9, -4.5, 10, -np.inf]])
    x = x.astype(np.float32).reshape(1, -1)
    got, want = run_both(node_model("Erf", x.shape, opset=opset), {"x": x})
    # ORT's float32 erf is a polynomial fit good to a few ulp; ours is rounded from float64.
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got[0], np.vectorize(math.erf)(x).astype(np.float32))


def test_erf_in_gelu_pattern():
    """x * 0.5 * (1 + erf(x / sqrt 2)), as PyTorch exports nn.GELU()."""
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["a"]),
        helper.make_node("Erf", ["a"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["p"]),
        helper.make_node("Mul", ["x", "p"], ["q"]),
        helper.make_node("Mul", ["q", "half"], ["y"]),
    ]
    inits = {
        k: np.array(v, np.float32) for k, v in {"sqrt2": 2**0.5, "one": 1.0, "half": 0.5}.items()
    }
    check(graph_model(nodes, {"x": X4}, ["y"], inits), rand(*X4, scale=2.0))


@pytest.mark.parametrize("opset", [7, 9, 16])
@pytest.mark.parametrize("slope_shape", [(1,), (6, 1, 1), (8,), (9, 8), (1, 6, 1, 1), (6, 9, 8)])
def test_prelu(slope_shape, opset):
    slope = RNG.uniform(-0.5, 0.5, slope_shape).astype(np.float32)
    check(node_model("PRelu", X4, {}, [("s", slope)], opset), rand(*X4))


@pytest.mark.parametrize("lo,hi,opset", [(-0.5, 0.5, 11), (0.0, None, 13), (None, 1.0, 13)])
def test_clip_inputs_opsets(lo, hi, opset):
    consts = [
        ("lo", None if lo is None else np.array(lo, np.float32)),
        ("hi", None if hi is None else np.array(hi, np.float32)),
    ]
    check(node_model("Clip", X4, {}, consts, opset), rand(*X4, scale=2.0))


# -- Arithmetic with broadcasting ------------------------------------------------------------

SHAPES_B = [(), (1,), (8,), (6, 1, 1), (1, 6, 9, 1), X4]


@pytest.mark.parametrize("opset", [7, 13, 14])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow"])
@pytest.mark.parametrize("c_shape", SHAPES_B)
def test_binary_broadcast_opsets(op, c_shape, opset):
    c = RNG.uniform(0.5, 2, c_shape).astype(np.float32)
    x = np.abs(rand(*X4)) + 0.1 if op == "Pow" else rand(*X4)
    check(node_model(op, X4, {}, [("c", c)], opset), x)


def test_binary_runtime_operands_broadcast_both_ways():
    for op in ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum"):
        model = node_model(op, (2, 1, 9, 8), extra_inputs={"z": (6, 1, 8)})
        x, z = np.abs(rand(2, 1, 9, 8)) + 0.5, RNG.uniform(0.5, 2, (6, 1, 8)).astype(np.float32)
        check(model, {"x": x, "z": z})


@pytest.mark.parametrize(
    "exponent",
    [
        np.array(2, np.int64),
        np.array([3], np.int32),
        np.array(0.5, np.float32),
        np.array(-1.5, np.float32),
    ],
)
def test_pow_exponent_types(exponent):
    check(node_model("Pow", X4, {}, [("e", exponent)], 15), np.abs(rand(*X4)) + 0.1)


@pytest.mark.parametrize("opset", [7, 8, 13])
@pytest.mark.parametrize("op", ["Sum", "Max", "Min"])
def test_variadic(op, opset):
    broadcast = opset >= 8
    consts = [("c1", rand(*(X4 if not broadcast else (6, 1, 8)))), ("c2", rand(*X4))]
    check(node_model(op, X4, {}, consts, opset), rand(*X4))
    check(node_model(op, X4, {}, [], opset), rand(*X4))  # one input: a copy


# -- Gemm, MatMul, Dropout across opsets -----------------------------------------------------

GEMM_OPSET_CASES = [
    ({"transB": 1, "alpha": 0.5, "beta": 2.0}, (7, 5), (7,), 7),  # C required before 11
    ({"transA": 1, "beta": 0.0}, (5, 7), (3, 7), 9),
    ({"transA": 1, "transB": 1}, (7, 5), None, 11),  # C optional from 11 on
    ({"alpha": 2.0}, (5, 7), (1, 1), 13),
]


@pytest.mark.parametrize("attrs,b_shape,c_shape,opset", GEMM_OPSET_CASES)
def test_gemm_opsets(attrs, b_shape, c_shape, opset):
    x_shape = (5, 3) if attrs.get("transA") else (3, 5)
    consts = [("b", rand(*b_shape)), ("c", None if c_shape is None else rand(*c_shape))]
    check(node_model("Gemm", x_shape, attrs, consts, opset), rand(*x_shape), "rel", 1e-6)


def test_gemm_runtime_b_and_matmul_opsets():
    model = node_model(
        "Gemm", (3, 5), {"transB": 1}, [("c", rand(4))], 11, extra_inputs={"z": (4, 5)}
    )
    check(model, {"x": rand(3, 5), "z": rand(4, 5)}, "rel", 1e-6)
    for opset in (7, 9, 13):
        model = node_model("MatMul", (2, 3, 5), {}, [("b", rand(5, 4))], opset)
        check(model, rand(2, 3, 5), "rel", 1e-6)


@pytest.mark.parametrize("opset", [12, 13])
def test_dropout_ratio_and_training_mode_inputs(opset):
    consts = [("r", np.array(0.4, np.float32)), ("t", np.array(False))]
    check(node_model("Dropout", X4, {}, consts, opset), rand(*X4), "exact")
