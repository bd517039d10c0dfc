"""Graph passes and the executor: every pass leaves the outputs unchanged (compiled == eager)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_rel_close

from cnnperf import ops
from cnnperf.compile import (
    Graph,
    Node,
    compile_graph,
    eliminate_identity,
    fold_batchnorm,
    fuse_conv_activation,
    infer_shapes,
)
from cnnperf.compile.passes import DEFAULT_PASSES, fuse_gelu_pattern

RNG = np.random.default_rng(0)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _conv_act_graph(act: str, attrs: dict) -> Graph:
    return Graph(
        nodes=[
            Node("conv2d", ["x", "w", "b"], ["t"], {"pads": (1, 0, 2, 1), "stride": (2, 1)}),
            Node(act, ["t"], ["y"], attrs),
        ],
        initializers={"w": _r(6, 4, 3, 3), "b": _r(6)},
        inputs={"x": (None, 4, 9, 8)},
        outputs=["y"],
    )


ACTS = [
    ("relu", {}, "relu"),
    ("leaky_relu", {"alpha": 0.2}, ("leaky_relu", 0.2)),
    ("sigmoid", {}, "sigmoid"),
    ("tanh", {}, "tanh"),
    ("hardswish", {}, "hardswish"),
    ("hardsigmoid", {"alpha": 1 / 6, "beta": 0.5}, "hardsigmoid"),
    ("clip", {"min": 0.0, "max": 6.0}, "relu6"),
    ("clip", {"min": 0.0, "max": np.inf}, "relu"),
    ("gelu", {"approximate": "none"}, "gelu"),
    ("gelu", {"approximate": "tanh"}, "gelu_tanh"),
]


@pytest.mark.parametrize("act,attrs,fused", ACTS)
def test_fuse_conv_activation_matches_unfused(act, attrs, fused):
    g = _conv_act_graph(act, attrs)
    g2 = fuse_conv_activation(g)
    assert [n.op for n in g2.nodes] == ["conv2d"]
    assert g2.nodes[0].attrs["activation"] == fused and g2.nodes[0].outputs == ["y"]
    assert [n.op for n in g.nodes] == ["conv2d", act]  # the input graph is unchanged
    x = 3 * _r(2, 4, 9, 8)
    want = compile_graph(g, passes=())(x)
    assert_rel_close(compile_graph(g2, passes=())(x), want, 1e-6, act)
    # Independent oracle: ops.conv2d then the activation.
    t = ops.conv2d(x, g.initializers["w"], g.initializers["b"], (2, 1), ((1, 0), (2, 1)))
    assert_rel_close(want, compile_graph(Graph([g.nodes[1]], {}, {"t": t.shape}, ["y"]))(t),
                     1e-6, act)  # fmt: skip


@pytest.mark.parametrize("attrs", [{"alpha": 0.2, "beta": 0.5}, {"min": -1.0, "max": 6.0}])
def test_non_fusable_activation_forms_stay(attrs):
    g = _conv_act_graph("hardsigmoid" if "alpha" in attrs else "clip", attrs)
    assert len(fuse_conv_activation(g).nodes) == 2


def test_no_fusion_when_conv_output_is_read_twice_or_is_an_output():
    g = _conv_act_graph("relu", {})
    g.nodes.append(Node("add", ["t", "y"], ["z"]))
    g.outputs = ["z"]
    assert len(fuse_conv_activation(g).nodes) == 3
    g = _conv_act_graph("relu", {})
    g.outputs = ["y", "t"]
    g2 = fuse_conv_activation(g)
    assert len(g2.nodes) == 2
    x = _r(1, 4, 9, 8)
    out = compile_graph(g2).run({"x": x})
    assert np.array_equal(out["y"], np.maximum(out["t"], 0))


def _bn_graph(bias: bool, act: str | None = "relu") -> Graph:
    c = 5
    inits = {"w": _r(c, 3, 3, 3), "s": _r(c), "beta": _r(c), "m": _r(c),
             "v": RNG.uniform(0.3, 2, c).astype(np.float32)}  # fmt: skip
    conv_in = ["x", "w"]
    if bias:
        inits["b"] = _r(c)
        conv_in.append("b")
    nodes = [
        Node("conv2d", conv_in, ["t"], {"pads": (1, 1, 1, 1), "groups": 1}),
        Node("batch_norm", ["t", "s", "beta", "m", "v"], ["u"], {"eps": 1e-3}),
    ]
    if act:
        nodes.append(Node(act, ["u"], ["y"]))
    return Graph(nodes, inits, {"x": (None, 3, 7, 7)}, ["y" if act else "u"])


@pytest.mark.parametrize("bias", [True, False])
def test_fold_batchnorm_matches_unfolded(bias):
    g = _bn_graph(bias)
    folded = fold_batchnorm(g)
    assert [n.op for n in folded.nodes] == ["conv2d", "relu"]
    assert "w" not in folded.initializers  # the original weight is no longer used
    x = _r(2, 3, 7, 7)
    want = compile_graph(g, passes=())(x)
    assert_rel_close(compile_graph(folded, passes=())(x), want, 1e-5, "fold_batchnorm")
    full = compile_graph(g)  # default passes: fold, then fuse the relu
    assert [n.op for n in full.graph.nodes] == ["conv2d"]
    assert_rel_close(full(x), want, 1e-5, "default passes")


def test_fold_batchnorm_leaves_shared_conv_output():
    g = _bn_graph(True, act=None)
    g.nodes.append(Node("add", ["t", "u"], ["y"]))
    g.outputs = ["y"]
    assert [n.op for n in fold_batchnorm(g).nodes] == ["conv2d", "batch_norm", "add"]


def test_eliminate_identity():
    g = Graph(
        nodes=[
            Node("identity", ["x"], ["a"]),
            Node("relu", ["a"], ["b"]),
            Node("dropout", ["b"], ["c"]),
            Node("identity", ["c"], ["y"]),
            Node("identity", ["x"], ["z"]),  # input copied to an output: kept
        ],
        inputs={"x": (None, 3)},
        outputs=["y", "z"],
    )
    g2 = eliminate_identity(g)
    assert [(n.op, n.inputs, n.outputs) for n in g2.nodes] == [
        ("relu", ["x"], ["y"]),
        ("identity", ["x"], ["z"]),
    ]
    x = _r(4, 3)
    a, b = compile_graph(g, passes=()).run({"x": x}), compile_graph(g2, passes=()).run({"x": x})
    assert np.array_equal(a["y"], b["y"]) and np.array_equal(a["z"], x)


def test_conv_plan_uses_weight_prepared_selection(monkeypatch):
    seen = []
    real = ops.conv.select_conv_algo

    def spy(p, algo="auto", dtype="float32", *, weight_prepared=False):
        seen.append(weight_prepared)
        return real(p, algo, dtype, weight_prepared=weight_prepared)

    monkeypatch.setattr("cnnperf.ops.conv_plan.select_conv_algo", spy)
    model = compile_graph(_conv_act_graph("relu", {}))
    assert seen == [True]
    assert model(_r(3, 4, 9, 8)).shape == (3, 6, 4, 9)


def test_shape_inference_and_graph_validation():
    g = _bn_graph(True)
    g.nodes += [Node("global_avg_pool2d", ["y"], ["p"]), Node("flatten", ["p"], ["f"], {"axis": 1}),
                Node("reshape", ["f"], ["r"], {"shape": (0, -1, 1)})]  # fmt: skip
    g.outputs = ["r"]
    assert infer_shapes(g)["r"] == (None, 5, 1)
    assert compile_graph(g)(_r(3, 3, 7, 7)).shape == (3, 5, 1)
    with pytest.raises(ValueError, match="reads \\['nope'\\]"):
        Graph([Node("relu", ["nope"], ["y"])], {}, {"x": (1,)}, ["y"]).validate()
    with pytest.raises(ValueError, match="unknown op 'frobnicate'"):
        Node("frobnicate", ["x"], ["y"])
    with pytest.raises(ValueError, match="only the first, batch, dimension may be None"):
        Graph([], {}, {"x": (1, None)}, []).validate()


def test_call_needs_one_input_one_output():
    g = Graph([Node("add", ["x", "z"], ["y"])], {}, {"x": (2,), "z": (2,)}, ["y"])
    model = compile_graph(g)
    with pytest.raises(ValueError, match="use .run"):
        model(np.ones(2, np.float32))
    out = model.run({"x": np.ones(2, np.float32), "z": np.ones(2, np.float32)})
    assert out["y"].tolist() == [2.0, 2.0] and model.input_names == ["x", "z"]


# -- fuse_gelu_pattern ---------------------------------------------------------------------

GELU_C = {"r2": 2**0.5, "ir2": 0.5**0.5, "one": 1.0, "half": 0.5, "k": (2 / np.pi) ** 0.5,
          "c": 0.044715, "three": 3.0}  # fmt: skip
_ERF_DIV = [Node("div", ["x", "r2"], ["a"]), Node("erf", ["a"], ["e"])]
_ERF_MUL = [Node("mul", ["ir2", "x"], ["a"]), Node("erf", ["a"], ["e"])]
_TANH = [Node("mul", ["x", "x"], ["sq"]), Node("mul", ["x", "sq"], ["cube"]),
         Node("mul", ["c", "cube"], ["t"]), Node("add", ["x", "t"], ["u"]),
         Node("mul", ["k", "u"], ["v"]), Node("tanh", ["v"], ["e"])]  # fmt: skip
_TANH_POW = [Node("pow", ["x", "three"], ["cube"]), Node("mul", ["cube", "c"], ["t"]),
             Node("add", ["t", "x"], ["u"]), Node("mul", ["u", "k"], ["v"]),
             Node("tanh", ["v"], ["e"])]  # fmt: skip
_TANH_CUBE_LEFT = [Node("mul", ["x", "x"], ["sq"]), Node("mul", ["sq", "x"], ["cube"]),
                   *_TANH[2:]]  # fmt: skip
# x * 0.5 * (1 + gate): PyTorch's order, cnnperf's exporter's, and 0.5 applied to the sum
_PRODUCTS = {
    "torch": [Node("add", ["e", "one"], ["p"]), Node("mul", ["x", "p"], ["q"]),
              Node("mul", ["q", "half"], ["y"])],
    "half_first": [Node("add", ["one", "e"], ["p"]), Node("mul", ["half", "x"], ["h"]),
                   Node("mul", ["h", "p"], ["y"])],
    "half_on_sum": [Node("add", ["e", "one"], ["p"]), Node("mul", ["p", "half"], ["s"]),
                    Node("mul", ["x", "s"], ["y"])],
}  # fmt: skip
GELU_FORMS = [(gate, prod, approx) for gate, approx in
              ((_ERF_DIV, "none"), (_ERF_MUL, "none"), (_TANH, "tanh"), (_TANH_POW, "tanh"),
               (_TANH_CUBE_LEFT, "tanh")) for prod in _PRODUCTS]  # fmt: skip


def _gelu_graph(gate, prod, consts=None, x_shape=(None, 3, 5, 4)) -> Graph:
    consts = {**GELU_C, **(consts or {})}
    inits = {k: np.asarray(v, np.float32) for k, v in consts.items()}
    nodes = [Node(n.op, n.inputs, n.outputs) for n in [*gate, *_PRODUCTS[prod]]]
    return Graph(nodes, inits, {"x": x_shape}, ["y"])


@pytest.mark.parametrize("case", range(len(GELU_FORMS)))
def test_fuse_gelu_pattern_matches_unfused_and_ops_gelu(case):
    gate, prod, approx = GELU_FORMS[case]
    g = _gelu_graph(gate, prod)
    fused = fuse_gelu_pattern(g)
    assert [(n.op, n.inputs, n.outputs, n.attrs) for n in fused.nodes] == [
        ("gelu", ["x"], ["y"], {"approximate": approx})
    ]
    assert fused.initializers == {} and len(g.nodes) > 1  # the input graph is unchanged
    x = np.concatenate([3 * _r(2, 3, 5, 4).ravel()[:-4], [0.0, -9.0, 9.0, 1e-3]])
    x = x.astype(np.float32).reshape(2, 3, 5, 4)
    want = compile_graph(g, passes=())(x)
    assert_rel_close(compile_graph(fused, passes=())(x), want, 1e-6, f"{prod} {approx}")
    assert_rel_close(want, ops.gelu(x.astype(np.float64), approx), 1e-6, "vs float64 gelu")


def test_fused_gelu_after_a_conv_becomes_its_activation():
    g = _gelu_graph(_ERF_DIV, "torch")
    g.nodes.insert(0, Node("conv2d", ["x0", "w"], ["x"], {"pads": (1, 1, 1, 1)}))
    g.inputs, g.initializers["w"] = {"x0": (None, 2, 5, 4)}, _r(3, 2, 3, 3)
    compiled = compile_graph(g)
    assert DEFAULT_PASSES.index(fuse_gelu_pattern) < DEFAULT_PASSES.index(fuse_conv_activation)
    fused = [(n.op, n.attrs.get("activation")) for n in compiled.graph.nodes]
    assert fused == [("conv2d", "gelu")]
    x = _r(2, 2, 5, 4)
    assert_rel_close(compiled(x), compile_graph(g, passes=())(x), 1e-6, "conv + gelu")


@pytest.mark.parametrize(
    "change",
    ["wrong_constant", "shared_sum", "sum_is_an_output", "broadcasting_constant", "other_x"],
)
def test_gelu_look_alikes_are_not_fused(change):
    consts, x_shape = {}, (None, 3, 5, 4)
    if change == "wrong_constant":
        consts["half"] = 0.6
    if change == "broadcasting_constant":
        consts["one"] = np.ones((1, 1, 1, 1, 1))
    g = _gelu_graph(_ERF_DIV, "torch", consts, x_shape)
    if change == "shared_sum":
        g.nodes.append(Node("relu", ["p"], ["z"]))
        g.outputs.append("z")
    if change == "sum_is_an_output":
        g.outputs.append("p")
    if change == "other_x":  # erf(x2 / sqrt 2), but x * ... * 0.5 of another value
        g.inputs["x2"] = x_shape
        g.nodes[0] = Node("div", ["x2", "r2"], ["a"])
    fused = fuse_gelu_pattern(g)
    assert [n.op for n in fused.nodes] == [n.op for n in g.nodes]


def test_new_ops_shapes():
    g = Graph(
        nodes=[
            Node("expand", ["x"], ["e"], {"shape": (4, 1, 1, 5)}),
            Node("reduce_l2", ["e"], ["r"], {"axes": (0, 3), "keepdims": False}),
            Node("global_lp_pool", ["x"], ["p"], {"p": 2}),
            Node("where", ["m", "x", "p"], ["w"]),
            Node("less", ["w", "x"], ["l"]),
            Node("instance_norm", ["x", "s", "b"], ["i"], {"eps": 1e-5}),
        ],
        initializers={"m": np.ones((3, 1, 1), np.float32), "s": _r(3), "b": _r(3)},
        inputs={"x": (None, 3, 2, 1)},
        outputs=["r", "w", "l", "i"],
    )
    shapes = infer_shapes(g)
    assert [shapes[v] for v in ("e", "r", "p", "w", "l", "i")] == [
        (4, 3, 2, 5), (3, 2), (None, 3, 1, 1), (None, 3, 2, 1), (None, 3, 2, 1), (None, 3, 2, 1),
    ]  # fmt: skip
    out = compile_graph(g).run({"x": _r(4, 3, 2, 1)})
    assert [out[v].shape for v in ("r", "w", "l", "i")] == [(3, 2)] + [(4, 3, 2, 1)] * 3
    with pytest.raises(ValueError, match="expand 'bad': input \\(None, 3, 2, 1\\) does not"):
        infer_shapes(Graph([Node("expand", ["x"], ["e"], {"shape": (5, 2)}, name="bad")], {},
                           {"x": (None, 3, 2, 1)}, ["e"]))  # fmt: skip
