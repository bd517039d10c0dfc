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
