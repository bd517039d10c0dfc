"""Per-op conformance against ONNX Runtime for the remaining common ops: Gelu and the GELU
patterns older exporters write (fused into one ``gelu`` node), Softplus, Mish, Abs, Exp, Log,
Neg, Reciprocal, Floor, Ceil, ReduceMax/ReduceMin/ReduceL2, InstanceNormalization, Expand,
Equal/Less/Greater with Where (booleans as float32 masks), GlobalLpPool; each at the opsets
where its form changes. Round trips through ``cnnperf.onnx.save``: test_onnx_export_ops.py.

Tolerances: element-wise ops 1e-5 relative / 1e-6 absolute per element; normalisations and
reductions that sum relative to the largest output (1e-5).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import assert_rel_close
from onnx import TensorProto, helper, numpy_helper

import cnnperf.onnx

RNG = np.random.default_rng(11)
F, B = TensorProto.FLOAT, TensorProto.BOOL
X4 = (2, 3, 5, 4)
ELEMENTWISE = {"rtol": 1e-5, "atol": 1e-6}


def rand(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def model(nodes, inputs, outputs, inits=None, opset=13, out_types=None):
    """``nodes`` with float inputs ``{name: shape}`` (batch "n") and initializers."""
    graph = helper.make_graph(
        nodes, "t",
        [helper.make_tensor_value_info(k, F, ["n", *s[1:]]) for k, s in inputs.items()],
        [helper.make_tensor_value_info(o, (out_types or {}).get(o, F), None) for o in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def check(m, feeds, how="elementwise", **load_kw):
    """cnnperf against ONNX Runtime on every output; returns the compiled model. A boolean
    ONNX output must equal cnnperf's float32 mask."""
    data = m.SerializeToString()
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    compiled = cnnperf.onnx.load(data, **load_kw)
    got = compiled.run(feeds)
    for o, w in zip(m.graph.output, want, strict=True):
        g = got[o.name]
        assert g.dtype == np.float32 and g.shape == w.shape, (o.name, g.dtype, g.shape, w.shape)
        if w.dtype == np.bool_:
            np.testing.assert_array_equal(g, w.astype(np.float32))
        elif how == "exact":
            np.testing.assert_array_equal(g, w)
        elif how == "rel":
            assert_rel_close(g, w, 1e-5, o.name)
        else:
            np.testing.assert_allclose(g, w, **ELEMENTWISE)
    return compiled


def ops_of(compiled) -> list[str]:
    return [n.op for n in compiled.graph.nodes]


# -- GELU: the opset-20 op and the patterns of older exports, fused by fuse_gelu_pattern -------


def _torch_onnx(module, shape, opset) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(*shape),), buf, opset_version=opset,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}},
                          dynamo=False)  # fmt: skip
    return buf.getvalue()


class _ConvGelu(torch.nn.Module):
    def __init__(self, approximate):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.act = torch.nn.GELU(approximate=approximate)
        self.head = torch.nn.Linear(4, 6)

    def forward(self, x):
        y = self.act(self.conv(x)).mean(dim=(2, 3))
        return self.act(self.head(y))  # a GELU after a linear: a gelu node of its own


@pytest.mark.parametrize("opset", [11, 17, 20])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_pytorch_gelu_exports_fuse_into_one_gelu(approximate, opset):
    torch.manual_seed(0)
    net = _ConvGelu(approximate).eval()
    data = _torch_onnx(net, (1, 3, 6, 5), opset)
    x = rand(3, 3, 6, 5, scale=2.0)
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    compiled = cnnperf.onnx.load(data)
    conv = compiled.graph.nodes[0]
    assert conv.op == "conv2d"
    assert conv.attrs["activation"] == ("gelu_tanh" if approximate == "tanh" else "gelu")
    assert "erf" not in ops_of(compiled) and "tanh" not in ops_of(compiled)
    assert ops_of(compiled).count("gelu") == 1
    assert_rel_close(compiled(x), want, 1e-5, "vs ORT")
    with torch.no_grad():
        assert_rel_close(compiled(x), net(torch.from_numpy(x)).numpy(), 1e-5, "vs torch")
    unfused = cnnperf.onnx.load(data, passes=())
    assert ("erf" in ops_of(unfused) or "tanh" in ops_of(unfused)) == (opset < 20)
    assert_rel_close(unfused(x), want, 1e-5, "unfused vs ORT")


C = {"r2": np.float32(2**0.5), "ir2": np.float32(0.5**0.5), "one": np.float32(1.0),
     "half": np.float32(0.5), "k": np.float32((2 / np.pi) ** 0.5), "c": np.float32(0.044715),
     "three": np.float32(3.0)}  # fmt: skip
N = helper.make_node
ERF_FORMS = {
    "mul_by_0.7071_half_first": [N("Mul", ["ir2", "x"], ["a"]), N("Erf", ["a"], ["e"]),
                                 N("Add", ["one", "e"], ["p"]), N("Mul", ["x", "half"], ["h"]),
                                 N("Mul", ["p", "h"], ["y"])],
    "div_half_on_the_sum": [N("Div", ["x", "r2"], ["a"]), N("Erf", ["a"], ["e"]),
                            N("Add", ["e", "one"], ["p"]), N("Mul", ["half", "p"], ["t"]),
                            N("Mul", ["t", "x"], ["y"])],
    "tanh_pow": [N("Pow", ["x", "three"], ["c3"]), N("Mul", ["c3", "c"], ["t"]),
                 N("Add", ["t", "x"], ["u"]), N("Mul", ["u", "k"], ["v"]),
                 N("Tanh", ["v"], ["e"]), N("Add", ["e", "one"], ["p"]),
                 N("Mul", ["x", "p"], ["q"]), N("Mul", ["q", "half"], ["y"])],
}  # fmt: skip


@pytest.mark.parametrize("form", sorted(ERF_FORMS))
def test_hand_written_gelu_forms_fuse_and_match_onnxruntime(form):
    m = model(ERF_FORMS[form], {"x": X4}, ["y"], C)
    compiled = check(m, {"x": rand(*X4, scale=3.0)})
    assert ops_of(compiled) == ["gelu"]


def test_gelu_pattern_with_a_shared_intermediate_is_not_fused():
    nodes = [*ERF_FORMS["div_half_on_the_sum"][:-1], N("Mul", ["t", "x"], ["y"]),
             N("Relu", ["p"], ["z"])]  # fmt: skip
    compiled = check(model(nodes, {"x": X4}, ["y", "z"], C), {"x": rand(*X4)})
    assert "gelu" not in ops_of(compiled) and "erf" in ops_of(compiled)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_opset20_is_one_ir_node(approximate):
    m = model([N("Gelu", ["x"], ["y"], approximate=approximate)], {"x": X4}, ["y"], opset=20)
    compiled = check(m, {"x": rand(*X4, scale=4.0)})
    assert [(n.op, n.attrs) for n in compiled.graph.nodes] == [
        ("gelu", {"approximate": approximate})
    ]


# -- element-wise math ---------------------------------------------------------------------

EDGES = np.array([0.0, -0.0, 1e-7, -30.0, 30.0, 90.0, -90.0, 0.5, -2.5, 2.5], np.float32)


def _with_edges(x):
    flat = x.ravel().copy()
    flat[: EDGES.size] = EDGES
    return flat.reshape(x.shape)


@pytest.mark.parametrize("opset", [7, 13])
@pytest.mark.parametrize("op", ["Abs", "Neg", "Floor", "Ceil", "Exp", "Log", "Reciprocal",
                                "Softplus"])  # fmt: skip
def test_unary_math(op, opset):
    x = _with_edges(rand(*X4, scale=3.0))
    if op == "Log":
        x = np.abs(x)  # log(0) = -inf; log of a negative is NaN in both
    if op == "Exp":
        x = np.clip(x, -80, 80)
    compiled = check(model([N(op, ["x"], ["y"])], {"x": X4}, ["y"], opset=opset), {"x": x})
    assert len(compiled.graph.nodes) == 1


@pytest.mark.parametrize("opset", [18, 21])
def test_mish(opset):
    x = _with_edges(rand(*X4, scale=4.0))
    compiled = check(model([N("Mish", ["x"], ["y"])], {"x": X4}, ["y"], opset=opset), {"x": x})
    assert ops_of(compiled) == ["mish"]
    with torch.no_grad():
        want = torch.nn.functional.mish(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(compiled(x), want, **ELEMENTWISE)


def test_unary_math_on_constants_folds():
    nodes = [N("Neg", ["k"], ["nk"]), N("Exp", ["nk"], ["e"]), N("Add", ["x", "e"], ["y"])]
    k = rand(5, 4)
    compiled = check(model(nodes, {"x": X4}, ["y"], {"k": k}), {"x": rand(*X4)})
    assert ops_of(compiled) == ["add"]


# -- reductions ----------------------------------------------------------------------------

REDUCE_FORMS = [((1,), 1), ((-1, 2), 0), (None, 1), ((0, 2, 3), 0)]


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("axes,keepdims", REDUCE_FORMS)
@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin", "ReduceL2"])
def test_reduce(op, axes, keepdims, opset):
    inits, ins, attrs = {}, ["x"], {"keepdims": keepdims}
    if axes is not None and opset >= 18:
        inits["axes"] = np.array(axes, np.int64)
        ins.append("axes")
    elif axes is not None:
        attrs["axes"] = list(axes)
    compiled = check(model([N(op, ins, ["y"], **attrs)], {"x": X4}, ["y"], inits, opset),
                     {"x": rand(*X4)}, "rel")  # fmt: skip
    assert len(compiled.graph.nodes) == 1


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceL2"])
def test_reduce_noop_with_empty_axes_opset18(op):
    compiled = check(model([N(op, ["x"], ["y"], noop_with_empty_axes=1)], {"x": X4}, ["y"],
                           opset=18), {"x": rand(*X4)})  # fmt: skip
    # no reduction; ReduceL2 still takes sqrt(x**2) element-wise
    assert ops_of(compiled) == (["abs"] if op == "ReduceL2" else ["identity"])


# -- InstanceNormalization, GlobalLpPool, Expand ---------------------------------------------


@pytest.mark.parametrize("opset", [7, 13])
@pytest.mark.parametrize("shape,eps", [(X4, 1e-5), ((3, 4, 7), 0.1), ((2, 2, 3, 2, 2), 1e-3)])
def test_instance_norm(shape, eps, opset):
    c = shape[1]
    inits = {"s": rand(c), "b": rand(c)}
    m = model([N("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=eps)], {"x": shape},
              ["y"], inits, opset)  # fmt: skip
    check(m, {"x": rand(*shape, scale=3.0) + 1.0}, "rel")


def test_instance_norm_checks_scale_shape():
    m = model([N("InstanceNormalization", ["x", "s", "b"], ["y"], name="in")], {"x": X4}, ["y"],
              {"s": rand(4), "b": rand(3)})  # fmt: skip
    with pytest.raises(ValueError, match="InstanceNormalization node 'in': scale and bias"):
        cnnperf.onnx.load(m)


@pytest.mark.parametrize("opset", [7, 13])
@pytest.mark.parametrize("p", [1, 2, 3])
def test_global_lp_pool(p, opset):
    m = model([N("GlobalLpPool", ["x"], ["y"], p=p)], {"x": X4}, ["y"], opset=opset)
    assert ops_of(check(m, {"x": rand(*X4)}, "rel")) == ["global_lp_pool"]


@pytest.mark.parametrize("opset", [8, 13])
@pytest.mark.parametrize("x_shape,shape", [((2, 3, 1, 4), (3, 5, 1)), ((2, 1, 5), (3, 1, 4, 5)),
                                           ((2, 3, 1, 1), (1, 1, 1))])  # fmt: skip
def test_expand(x_shape, shape, opset):
    m = model([N("Expand", ["x", "s"], ["y"])], {"x": x_shape}, ["y"],
              {"s": np.array(shape, np.int64)}, opset)  # fmt: skip
    for n in (1, 3):
        check(m, {"x": rand(n, *x_shape[1:])})


def test_expand_to_a_shape_holding_the_dynamic_batch():
    """``x.expand(n, 3, h, w)`` with n read from the input: PyTorch's Shape/Gather/Concat."""
    nodes = [N("Shape", ["x"], ["sh"]), N("Gather", ["sh", "zero"], ["n0"], axis=0),
             N("Unsqueeze", ["n0", "zero1"], ["n1"]), N("Concat", ["n1", "rest"], ["s"], axis=0),
             N("Expand", ["x", "s"], ["y"])]  # fmt: skip
    inits = {"zero": np.array(0, np.int64), "zero1": np.array([0], np.int64),
             "rest": np.array([3, 5, 4], np.int64)}  # fmt: skip
    m = model(nodes, {"x": (2, 1, 5, 4)}, ["y"], inits)
    compiled = check(m, {"x": rand(3, 1, 5, 4)})
    assert ops_of(compiled) == ["expand"]
    assert compiled.run({"x": rand(1, 1, 5, 4)})["y"].shape == (1, 3, 5, 4)


# -- comparisons and Where (float32 masks) ------------------------------------------------


@pytest.mark.parametrize("op,opset", [("Equal", 11), ("Equal", 13), ("Equal", 19), ("Less", 7),
                                      ("Less", 9), ("Less", 13), ("Greater", 7), ("Greater", 9),
                                      ("Greater", 13)])  # fmt: skip
def test_comparison_masks(op, opset):  # Equal takes floats from opset 11 on
    x, z = np.round(rand(*X4)), np.round(rand(1, 3, 1, 4))  # rounded: some equal pairs
    m = model([N(op, ["x", "z"], ["y"])], {"x": X4, "z": (1, 3, 1, 4)}, ["y"], opset=opset,
              out_types={"y": B})  # fmt: skip
    compiled = check(m, {"x": x, "z": z})
    assert 0 < compiled.run({"x": x, "z": z})["y"].sum() < x.size


@pytest.mark.parametrize("opset", [9, 16])
def test_where_of_a_comparison_and_of_a_cast(opset):
    nodes = [N("Greater", ["x", "zero"], ["pos"]), N("Mul", ["x", "slope"], ["neg"]),
             N("Where", ["pos", "x", "neg"], ["y"]),
             N("Cast", ["x"], ["nz"], to=B), N("Where", ["nz", "x", "k"], ["z"]),
             N("Where", ["mask", "x", "k"], ["w"])]  # fmt: skip
    inits = {"zero": np.float32(0.0), "slope": np.float32(0.1), "k": rand(4),
             "mask": np.array([True, False, True, False])}  # fmt: skip
    x = _with_edges(rand(*X4))
    compiled = check(model(nodes, {"x": X4}, ["y", "z", "w"], inits, opset), {"x": x})
    assert ops_of(compiled).count("where") == 4  # the Cast to bool too: where(x, 1, 0)


def test_comparisons_on_shape_constants_fold():
    """PyTorch's ``expand`` glue: Where(Equal(shape, -1), 1, shape) folds to a constant; a
    batch compared with a size could go either way and is refused."""
    nodes = [N("Shape", ["x"], ["sh"]), N("Equal", ["sh", "minus1"], ["eq"]),
             N("Where", ["eq", "ones", "sh"], ["s"]), N("Expand", ["x", "s"], ["y"])]  # fmt: skip
    inits = {"minus1": np.full(4, -1, np.int64), "ones": np.ones(4, np.int64)}
    compiled = check(model(nodes, {"x": X4}, ["y"], inits), {"x": rand(*X4)})
    assert ops_of(compiled) == ["expand"]
    inits["minus1"] = np.array([2, 3, 5, 4], np.int64)
    nodes[1] = N("Equal", ["sh", "minus1"], ["eq"], name="eq")
    with pytest.raises(NotImplementedError, match="Equal node 'eq'.*dynamic batch"):
        cnnperf.onnx.load(model(nodes, {"x": X4}, ["y"], inits))
    compiled = cnnperf.onnx.load(model(nodes, {"x": X4}, ["y"], inits), input_shapes={"x": X4})
    assert ops_of(compiled) == ["expand"]


# -- MaxPool's Indices output ---------------------------------------------------------------


@pytest.mark.parametrize("opset", [8, 12, 13])
def test_maxpool_with_an_unread_indices_output(opset):
    nodes = [N("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], strides=[2, 1])]
    compiled = check(model(nodes, {"x": X4}, ["y"], opset=opset), {"x": rand(*X4)}, "exact")
    assert ops_of(compiled) == ["max_pool2d"]
