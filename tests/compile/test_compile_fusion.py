"""fuse_residual_add: ``act(conv(x) + r)`` as one conv node; fused == unfused == PyTorch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from compile_models import tiny_resnet
from conftest import assert_rel_close, to_torch

import cnnperf.onnx
from cnnperf.bench.models import export_onnx, resnet18
from cnnperf.compile import Graph, Node, compile_graph, fold_batchnorm, fuse_conv_activation
from cnnperf.compile import trace as trace_model
from cnnperf.compile.passes import DEFAULT_PASSES, fuse_residual_add

RNG = np.random.default_rng(0)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# (graph op, attrs, the conv's fused activation, PyTorch oracle)
ACTS = [
    (None, {}, None, lambda t: t),
    ("relu", {}, "relu", F.relu),
    ("leaky_relu", {"alpha": 0.2}, ("leaky_relu", 0.2), lambda t: F.leaky_relu(t, 0.2)),
    ("sigmoid", {}, "sigmoid", torch.sigmoid),
    ("tanh", {}, "tanh", torch.tanh),
    ("hardswish", {}, "hardswish", F.hardswish),
    ("hardsigmoid", {"alpha": 1 / 6, "beta": 0.5}, "hardsigmoid", F.hardsigmoid),
    ("clip", {"min": 0.0, "max": 6.0}, "relu6", F.relu6),
]


def _block(act=None, attrs=None, conv_first=True, downsample=False) -> Graph:
    """ResNet basic block (BN folded): relu(conv1(x)) -> conv2 -> add identity -> act.

    With ``downsample`` the identity is a 1x1 stride-2 conv of x, computed first (as traced
    PyTorch blocks do); else x itself (a graph input).
    """
    c, s = 6, 2 if downsample else 1
    inits = {"w1": 0.3 * _r(c, 4 if downsample else c, 3, 3), "b1": _r(c),
             "w2": 0.3 * _r(c, c, 3, 3), "b2": _r(c)}  # fmt: skip
    nodes = []
    identity = "x"
    if downsample:
        inits |= {"wd": 0.5 * _r(c, 4, 1, 1), "bd": _r(c)}
        nodes.append(Node("conv2d", ["x", "wd", "bd"], ["idn"], {"stride": (2, 2)}, "down"))
        identity = "idn"
    nodes += [
        Node("conv2d", ["x", "w1", "b1"], ["t1"], {"pads": (1, 1, 1, 1), "stride": (s, s)}, "c1"),
        Node("relu", ["t1"], ["a1"], name="relu1"),
        Node("conv2d", ["a1", "w2", "b2"], ["t2"], {"pads": (1, 1, 1, 1)}, "c2"),
        Node("add", ["t2", identity] if conv_first else [identity, "t2"], ["s"], name="add"),
    ]
    if act is not None:
        nodes.append(Node(act, ["s"], ["y"], dict(attrs or {}), "act"))
    x_shape = (None, 4, 11, 9) if downsample else (None, c, 10, 9)
    return Graph(nodes, inits, {"x": x_shape}, ["y" if act else "s"])


def _torch_block(g: Graph, x: np.ndarray, act) -> np.ndarray:
    w = {k: to_torch(v) for k, v in g.initializers.items()}
    t = to_torch(x)
    down = "wd" in w
    identity = F.conv2d(t, w["wd"], w["bd"], stride=2) if down else t
    a1 = F.relu(F.conv2d(t, w["w1"], w["b1"], stride=2 if down else 1, padding=1))
    with torch.no_grad():
        return act(F.conv2d(a1, w["w2"], w["b2"], padding=1) + identity).numpy()


@pytest.mark.parametrize("downsample", [False, True], ids=["identity", "downsample"])
@pytest.mark.parametrize("conv_first", [True, False], ids=["add(conv,r)", "add(r,conv)"])
@pytest.mark.parametrize("act,attrs,fused,torch_act", ACTS, ids=lambda a: str(a))
def test_residual_block_fused_equals_unfused_and_torch(act, attrs, fused, torch_act, conv_first,
                                                       downsample):  # fmt: skip
    g = _block(act, attrs, conv_first, downsample)
    g2 = fuse_residual_add(g)
    assert [n.op for n in g.nodes][-1] == (act or "add")  # the input graph is unchanged
    assert [n.op for n in g2.nodes] == ["conv2d"] * downsample + ["conv2d", "relu", "conv2d"]
    conv2 = next(n for n in g2.nodes if n.name == "c2")
    identity = "idn" if downsample else "x"
    assert conv2.inputs == ["a1", "w2", "b2", identity] and conv2.attrs["residual"] is True
    assert conv2.attrs.get("activation") == fused and conv2.outputs == g.outputs
    x = 2 * _r(3, *g.inputs["x"][1:])
    want = compile_graph(g, passes=())(x)
    got = compile_graph(g2, passes=())(x)
    if act in (None, "relu", "clip"):  # the same float32 arithmetic, fused or not
        np.testing.assert_array_equal(got, want)
    assert_rel_close(got, want, 1e-6, f"{act} fused vs unfused")
    full = compile_graph(g)  # default passes: relu1 fused too, one node per conv
    assert [n.op for n in full.graph.nodes] == ["conv2d"] * (3 if downsample else 2)
    assert_rel_close(full(x), want, 1e-6, f"{act} default passes")
    assert_rel_close(got, _torch_block(g, x, torch_act), 1e-5, f"{act} vs torch")


def test_nan_and_inf_in_the_residual_propagate_as_unfused():
    g = _block("relu")
    x = _r(2, 6, 10, 9)
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]  # reaches the residual add directly
    with np.errstate(invalid="ignore", over="ignore"):
        want = compile_graph(g, passes=())(x)
        got = compile_graph(g)(x)
    assert np.isnan(want).any() and np.isnan(got).any()
    np.testing.assert_array_equal(got, want)


def test_residual_that_is_a_second_graph_input():
    g = Graph(
        nodes=[Node("conv2d", ["x", "w"], ["t"], {"pads": (1, 1, 1, 1)}),
               Node("add", ["z", "t"], ["s"]), Node("relu", ["s"], ["y"])],
        initializers={"w": _r(5, 3, 3, 3)},
        inputs={"x": (2, 3, 6, 7), "z": (2, 5, 6, 7)},
        outputs=["y"],
    )  # fmt: skip
    g2 = fuse_residual_add(g)
    assert [(n.op, n.inputs, n.attrs.get("activation")) for n in g2.nodes] == [
        ("conv2d", ["x", "w", "z"], "relu")
    ]
    feeds = {"x": _r(2, 3, 6, 7), "z": _r(2, 5, 6, 7)}
    want = compile_graph(g, passes=()).run(feeds)["y"]
    np.testing.assert_array_equal(compile_graph(g2, passes=()).run(feeds)["y"], want)
    # Two inputs with dynamic batches: their sizes may differ at run time (the add would
    # broadcast), so the equal static shapes prove nothing: no fusion.
    g.inputs = {"x": (None, 3, 6, 7), "z": (None, 5, 6, 7)}
    assert [n.op for n in fuse_residual_add(g).nodes] == ["conv2d", "add", "relu"]
    feeds["z"] = feeds["z"][:1]
    y = compile_graph(g).run(feeds)["y"]
    assert y.shape == (2, 5, 6, 7)
    np.testing.assert_array_equal(y, np.maximum(compile_graph(g, passes=()).run(feeds)["y"], 0))


def _not_fused(g: Graph, x: np.ndarray) -> None:
    g2 = fuse_residual_add(g)
    assert [n.op for n in g2.nodes] == [n.op for n in g.nodes]
    assert not any(n.attrs.get("residual") for n in g2.nodes)
    a, b = compile_graph(g, passes=()).run({"x": x}), compile_graph(g).run({"x": x})
    for k in g.outputs:
        assert_rel_close(b[k], a[k], 1e-6, k)


def test_no_fusion_when_the_add_reads_the_conv_output_twice():
    g = _block("relu")
    g.nodes[-2].inputs = ["t2", "t2"]
    _not_fused(g, _r(2, 6, 10, 9))


def test_no_fusion_when_the_conv_output_is_also_a_graph_output_or_read_elsewhere():
    g = _block("relu")
    g.outputs = ["y", "t2"]
    _not_fused(g, _r(2, 6, 10, 9))
    g = _block(None)
    g.nodes.append(Node("mul", ["t2", "s"], ["m"]))
    g.outputs = ["m"]
    _not_fused(g, _r(2, 6, 10, 9))


@pytest.mark.parametrize("where", ["initializer", "pooled"])
def test_no_fusion_for_a_broadcasting_add(where):
    g = _block("relu")
    if where == "initializer":
        g.initializers["r"] = _r(1, 6, 1, 1)
    else:  # (None, 6, 1, 1), computed before conv2: an SE-like gate
        g.nodes.insert(0, Node("global_avg_pool2d", ["x"], ["r"]))
    g.nodes[-2].inputs = ["t2", "r"]
    _not_fused(g, _r(2, 6, 10, 9))


def test_no_fusion_when_the_residual_is_computed_after_the_conv():
    g = _block("relu")
    g.nodes.insert(3, Node("tanh", ["x"], ["late"]))  # after c2, before the add
    g.nodes[-2].inputs = ["t2", "late"]
    g.validate()
    _not_fused(g, _r(2, 6, 10, 9))


def test_no_fusion_when_the_conv_already_applies_an_activation():
    g = Graph(
        nodes=[Node("conv2d", ["x", "w"], ["t"], {"pads": (1, 1, 1, 1), "activation": "tanh"}),
               Node("add", ["t", "x"], ["s"]), Node("relu", ["s"], ["y"])],
        initializers={"w": _r(3, 3, 3, 3)},
        inputs={"x": (None, 3, 5, 5)},
        outputs=["y"],
    )  # fmt: skip
    _not_fused(g, _r(2, 3, 5, 5))  # relu(tanh(conv) + x) is no conv + residual


def test_the_add_output_as_graph_output_keeps_the_activation_node():
    g = _block("relu")
    g.outputs = ["y", "s"]
    g2 = fuse_residual_add(g)
    assert [n.op for n in g2.nodes] == ["conv2d", "relu", "conv2d", "relu"]
    assert g2.nodes[2].outputs == ["s"] and g2.nodes[2].attrs.get("activation") is None
    x = _r(2, 6, 10, 9)
    a, b = compile_graph(g, passes=()).run({"x": x}), compile_graph(g).run({"x": x})
    for k in ("y", "s"):
        np.testing.assert_array_equal(b[k], a[k])


def test_other_passes_on_a_residual_conv():
    """fuse_conv_activation may add an activation after the residual; fold_batchnorm must not
    fold a batch norm into it (bn(conv + r) is no conv)."""
    w, b = _r(4, 4, 3, 3), _r(4)
    conv = Node("conv2d", ["x", "w", "b", "x"], ["t"], {"pads": (1, 1, 1, 1), "residual": True})
    g = Graph([conv, Node("sigmoid", ["t"], ["y"])], {"w": w, "b": b}, {"x": (None, 4, 5, 5)},
              ["y"])  # fmt: skip
    g2 = fuse_conv_activation(g)
    assert [(n.op, n.attrs.get("activation")) for n in g2.nodes] == [("conv2d", "sigmoid")]
    x = _r(2, 4, 5, 5)
    want = torch.sigmoid(F.conv2d(to_torch(x), to_torch(w), to_torch(b), padding=1)
                         + to_torch(x)).numpy()  # fmt: skip
    assert_rel_close(compile_graph(g, passes=())(x), want, 1e-5, "residual conv, sigmoid node")
    assert_rel_close(compile_graph(g2, passes=())(x), want, 1e-5, "residual conv + sigmoid")
    bn = {"s": _r(4), "beta": _r(4), "m": _r(4), "v": RNG.uniform(0.5, 2, 4).astype(np.float32)}
    g.nodes[1] = Node("batch_norm", ["t", "s", "beta", "m", "v"], ["y"])
    g.initializers |= bn
    assert [n.op for n in fold_batchnorm(g).nodes] == ["conv2d", "batch_norm"]


def test_residual_conv_without_enough_inputs_is_rejected():
    g = Graph([Node("conv2d", ["x", "w"], ["y"], {"residual": True}, "bad")],
              {"w": _r(2, 2, 1, 1)}, {"x": (1, 2, 3, 3)}, ["y"])  # fmt: skip
    with pytest.raises(ValueError, match=r"conv2d 'bad': residual=True needs inputs"):
        compile_graph(g, passes=())


def test_traced_resnet_default_passes_fuse_every_residual_add():
    model = tiny_resnet()
    g = trace_model(model, (None, 3, 16, 16))
    assert sum(n.op == "add" for n in g.nodes) == 3
    compiled = compile_graph(g)
    ops = [n.op for n in compiled.graph.nodes]
    assert "add" not in ops and "relu" not in ops and "batch_norm" not in ops
    assert sum(bool(n.attrs.get("residual")) for n in compiled.graph.nodes) == 3
    assert DEFAULT_PASSES.index(fuse_residual_add) < DEFAULT_PASSES.index(fuse_conv_activation)
    x = _r(3, 3, 16, 16)
    want = compile_graph(g, passes=())(x)
    assert_rel_close(compiled(x), want, 1e-5, "tiny resnet")
    assert_rel_close(compiled(x), model.eval()(x).data, 1e-5, "tiny resnet vs eager")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_resnet18_every_residual_fused_matches_onnxruntime():
    data = export_onnx(resnet18(width=16, classes=10, seed=0), 64)
    compiled = cnnperf.onnx.load(data)
    ops = [n.op for n in compiled.graph.nodes]
    assert "add" not in ops and "relu" not in ops
    residual = [n for n in compiled.graph.nodes if n.attrs.get("residual")]
    assert len(residual) == 8 and all(n.attrs["activation"] == "relu" for n in residual)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = _r(batch, 3, 64, 64)
        assert_rel_close(compiled(x), sess.run(None, {"x": x})[0], 1e-4, f"batch {batch}")
