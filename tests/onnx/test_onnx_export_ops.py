"""cnnperf.onnx.save per IR op: one-op graphs (every op in graph.OPS), every activation a conv
may carry, pools in each of their ONNX forms, exported and run by ONNX Runtime against
cnnperf's executor (``compile_graph(g, passes=())``), at opsets 13 to 21. Models and the API:
test_onnx_export.py.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import assert_rel_close

import cnnperf.onnx
from cnnperf.compile import OPS, Graph, Node, compile_graph
from cnnperf.compile.layout import LAYOUT_OPS
from cnnperf.onnx import export
from cnnperf.ops.epilogue import FUSABLE_ACTIVATIONS

RNG = np.random.default_rng(1)


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("opset", [13, 20])
def test_every_fused_conv_activation(opset):
    """One conv per activation a conv may carry, as one multi-output graph."""
    acts = [("leaky_relu", 0.2) if a == "leaky_relu" else ("elu", 0.7) if a == "elu" else a
            for a in FUSABLE_ACTIVATIONS]  # fmt: skip
    nodes = [Node("conv2d", ["x", "w", "b"], [f"y{i}"], {"pads": (1, 0, 2, 1), "activation": a},
                  name=f"conv_{i}") for i, a in enumerate(acts)]  # fmt: skip
    g = Graph(nodes, {"w": _x(4, 3, 3, 3), "b": _x(4)}, {"x": (None, 3, 7, 6)},
              [n.outputs[0] for n in nodes])  # fmt: skip
    proto = cnnperf.onnx.save(g, io.BytesIO(), opset=opset)
    assert [o.name for o in proto.graph.output] == [f"output_{i}" for i in range(len(acts))]
    assert ("Gelu" in {n.op_type for n in proto.graph.node}) == (opset >= 20)
    x = _x(2, 3, 7, 6)
    want = compile_graph(g, passes=()).run({"x": x})
    got = _session(proto).run(None, {"input": x})
    for i, a in enumerate(acts):
        assert_rel_close(got[i], want[f"y{i}"], 1e-5, str(a))


# One-op graphs: (op, attrs, x's shape without the batch, constant inputs ("x": x again)[, the
# first opset with an ONNX form: below it, NotImplementedError names the node]).
W = _x(5, 3, 3, 3)
OP_CASES = [
    ("conv2d", {"stride": (2, 1), "pads": (0, 1, 2, 1), "dilation": (1, 2)}, (3, 7, 8), [W, _x(5)]),
    ("conv2d", {"pads": (1, 1, 1, 1), "groups": 3}, (3, 5, 5), [W[:3, :1]]),
    ("batch_norm", {"eps": 0.1}, (3, 2, 2), [_x(3), _x(3), _x(3), np.abs(_x(3)) + 0.5]),
    ("relu", {}, (3, 4), []),
    ("sigmoid", {}, (3, 4), []),
    ("tanh", {}, (3, 4), []),
    ("global_avg_pool2d", {}, (3, 5, 4), []),
    ("global_max_pool2d", {}, (3, 5, 4), []),
    ("max_pool2d", {"kernel": (3, 3), "stride": (2, 2), "pads": (0, 3, 1, 4), "ceil_mode": True},
     (2, 9, 8), []),
    ("avg_pool2d", {"kernel": (2, 3), "stride": (3, 2), "pads": (2, 0, 1, 3), "ceil_mode": True,
                    "count_include_pad": True}, (2, 9, 8), []),
    ("leaky_relu", {"alpha": 0.3}, (3, 4), []),
    ("clip", {"min": -0.5}, (3, 4), []),
    ("clip", {"max": 0.25}, (3, 4), []),
    ("hardsigmoid", {"alpha": 0.3, "beta": 0.4}, (3, 4), []),
    ("hardswish", {}, (3, 4), []),
    ("softmax", {"axis": 1, "coerce_2d": True}, (3, 2, 4), []),
    ("softmax", {"axis": 2}, (3, 2, 4), []),
    ("gemm", {"alpha": 0.5, "beta": 2.0, "trans_b": 1}, (6,), [_x(4, 6), _x(4)]),
    ("matmul", {}, (2, 5, 6), [_x(6, 3)]),
    ("add", {}, (3, 4, 4), [_x(3, 1, 4)]),
    ("sub", {}, (3, 4, 4), [_x(4)]),
    ("mul", {}, (3, 4, 4), [_x(1, 1, 1)]),
    ("div", {}, (3, 4, 4), [np.abs(_x(4, 1)) + 0.5]),
    ("concat", {"axis": 2}, (3, 4, 4), ["x", "x"]),
    ("flatten", {"axis": 2}, (3, 4, 4), []),
    ("reshape", {"shape": (0, 12, -1)}, (3, 4, 4), []),
    ("transpose", {"perm": (0, 2, 3, 1)}, (3, 4, 5), []),
    ("squeeze", {"axes": (2,)}, (3, 1, 5), []),
    ("unsqueeze", {"axes": (1, -1)}, (3, 5), []),
    ("identity", {}, (3,), []),
    ("dropout", {}, (3,), []),
    ("conv_transpose2d", {"stride": (2, 2), "pads": (1, 0, 2, 1), "output_padding": (1, 3)},
     (5, 4, 5), [W, _x(3)]),
    ("conv_transpose2d", {"stride": (2, 1), "pads": (-1, 1, 0, 0), "groups": 3},
     (3, 4, 5), [W[:3, :1], _x(3)]),
    ("elu", {"alpha": 0.5}, (3, 4), []),
    ("selu", {}, (3, 4), []),
    ("prelu", {}, (3, 4, 2), [_x(3, 1, 1)]),
    ("erf", {}, (3, 4), []),
    ("sqrt", {}, (3, 4), []),
    ("pow", {}, (3, 4), [np.float32(2.0)]),
    ("log_softmax", {"axis": 1, "coerce_2d": True}, (3, 2, 4), []),
    ("sum", {}, (3, 4), [_x(4), "x", _x(1, 4)]),
    ("maximum", {}, (3, 4), [_x(4)]),
    ("minimum", {}, (3, 4), [_x(1)]),
    ("local_response_norm", {"size": 4, "alpha": 0.3, "beta": 0.6, "k": 1.5}, (6, 3, 3), []),
    ("local_response_norm", {"size": 3, "alpha": 0.2, "beta": 0.7, "k": 1.2}, (6, 3, 3), []),
    ("layer_norm", {"axis": 2, "eps": 1e-3}, (3, 4, 5), [_x(4, 5), _x(5)]),
    ("reduce_mean", {"axes": (1, 3), "keepdims": False}, (3, 4, 5), []),
    ("reduce_sum", {"axes": (2,), "keepdims": True}, (3, 4, 5), []),
    ("pad", {"pads": ((0, 0), (1, -1), (2, 1), (0, 3)), "mode": "constant", "value": 0.5},
     (3, 4, 5), []),
    ("pad", {"pads": ((0, 0), (0, 0), (2, 1), (1, 3)), "mode": "reflect"}, (3, 4, 5), []),
    ("pad", {"pads": ((0, 0), (1, 0), (0, 2), (1, 1)), "mode": "edge"}, (3, 4, 5), []),
    ("resize", {"sizes": (None, 3, 8, 15), "scales": (1.0, 1.0, 2.0, 3.0), "mode": "nearest",
                "coord": "asymmetric", "nearest_mode": "floor"}, (3, 4, 5), []),
    ("resize", {"sizes": (None, 3, 7, 4), "scales": (1.0, 1.0, 7 / 4, 0.8), "mode": "linear",
                "coord": "half_pixel"}, (3, 4, 5), []),
    ("resize", {"sizes": (None, 3, 6, 10), "scales": (1.0, 1.0, 1.5, 2.0), "mode": "linear",
                "coord": "align_corners"}, (3, 4, 5), []),
    ("resize", {"sizes": (None, 3, 7, 4), "scales": (1.0, 1.0, 7 / 4, 0.8), "mode": "linear",
                "coord": "half_pixel_symmetric"}, (3, 4, 5), [], 19),
    ("pad", {"pads": ((0, 0), (1, 2), (2, 1), (0, 3)), "mode": "wrap"}, (3, 4, 5), [], 19),
    ("avg_pool2d", {"kernel": (2, 2), "dilation": (2, 1), "pads": (1, 1, 0, 1)}, (2, 6, 6), [],
     19),
    ("slice", {"starts": (1, -1), "ends": (4, -100), "axes": (2, 3), "steps": (2, -2)},
     (3, 5, 6), []),
    ("gather", {"axis": 1, "indices": ((2, 0), (1, -1))}, (3, 5), []),
    ("tile", {"repeats": (1, 2, 3)}, (2, 3), []),
    ("space_to_depth", {"blocksize": 2}, (3, 4, 6), []),
    ("depth_to_space", {"blocksize": 2, "mode": "DCR"}, (8, 2, 3), []),
    ("depth_to_space", {"blocksize": 2, "mode": "CRD"}, (8, 2, 3), []),
    ("gelu", {"approximate": "none"}, (3, 4), []),
    ("gelu", {"approximate": "tanh"}, (3, 4), []),
    ("softplus", {}, (3, 4), []),
    ("mish", {}, (3, 4), []),
    ("abs", {}, (3, 4), []),
    ("exp", {}, (3, 4), []),
    ("log", {}, (3, 4), []),
    ("neg", {}, (3, 4), []),
    ("reciprocal", {}, (3, 4), []),
    ("floor", {}, (3, 4), []),
    ("ceil", {}, (3, 4), []),
    ("reduce_max", {"axes": (1, 3), "keepdims": False}, (3, 4, 5), []),
    ("reduce_min", {"axes": (2,), "keepdims": True}, (3, 4, 5), []),
    ("reduce_l2", {"axes": (1, 2), "keepdims": True}, (3, 4, 5), []),
    ("instance_norm", {"eps": 1e-3}, (3, 4, 5), [_x(3), _x(3)]),
    ("expand", {"shape": (1, 3, 4, 5)}, (1, 4, 5), []),
    ("equal", {}, (3, 4), ["x"]),
    ("less", {}, (3, 4), [_x(4)]),
    ("greater", {}, (3, 4), [_x(3, 1)]),
    ("where", {}, (3, 4), [_x(4), _x(3, 1)]),
    ("global_lp_pool", {"p": 3}, (3, 5, 4), []),
]  # fmt: skip


def test_every_ir_op_has_an_exporter():
    # but the layout conversions, which save removes first (compile.layout.undo_layout)
    assert sorted(set(OPS) - set(export.EXPORTERS) - set(LAYOUT_OPS)) == []


@pytest.mark.parametrize("opset", [13, 17, 21])
@pytest.mark.parametrize("case", range(len(OP_CASES)), ids=[c[0] for c in OP_CASES])
def test_one_op_graph_matches_the_executor(case, opset):
    op, attrs, shape, consts, *min_opset = OP_CASES[case]
    names = ["x" if isinstance(c, str) else f"c{i}" for i, c in enumerate(consts)]
    inits = {k: np.asarray(v, np.float32) for k, v in zip(names, consts, strict=True) if k != "x"}
    g = Graph([Node(op, ["x", *names], ["y"], attrs, name=f"{op}/0")], inits,
              {"x": (None, *shape)}, ["y"])  # fmt: skip
    if opset < (min_opset or [13])[0]:
        with pytest.raises(NotImplementedError, match=rf"{op} node '{op}/0'.*opset"):
            cnnperf.onnx.save(g, io.BytesIO(), opset=opset)
        return
    proto = cnnperf.onnx.save(g, io.BytesIO(), opset=opset)  # runs the full checker
    for n in (1, 3):
        x = np.abs(_x(n, *shape)) if op in ("sqrt", "log") else _x(n, *shape)
        want = compile_graph(g, passes=())(x)
        assert_rel_close(_session(proto).run(None, {"input": x})[0], want, 1e-5, op)


def test_split_and_an_output_that_is_an_input_or_a_constant_or_repeated():
    g = Graph([Node("split", ["x"], ["a", "b"], {"axis": 1, "sizes": (1, 3)}, name="split")],
              {"k": _x(2)}, {"x": (None, 4)}, ["b", "x", "a", "k", "b"])  # fmt: skip
    proto = cnnperf.onnx.save(g, io.BytesIO(), output_name="y")
    x = _x(3, 4)
    got = _session(proto).run(None, {"input": x})
    want = [x[:, 1:], x, x[:, :1], g.initializers["k"], x[:, 1:]]
    assert [o.name for o in proto.graph.output] == [f"y_{i}" for i in range(5)]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_random_pools_match_the_executor_in_every_onnx_form():
    """ceil_mode kept where ONNX agrees, rewritten where ONNX keeps a window starting in the
    end padding, Pad (+ Slice) for count_include_pad and pads ONNX Runtime rejects."""
    rng, forms = np.random.default_rng(7), set()
    for _ in range(80):
        kind = "max_pool2d" if rng.random() < 0.5 else "avg_pool2d"
        k, s = tuple(rng.integers(1, 4, 2).tolist()), tuple(rng.integers(1, 4, 2).tolist())
        pads = tuple(int(rng.integers(0, k[i // 2] + (rng.random() < 0.3))) for i in range(4))
        attrs = {"kernel": k, "stride": s, "pads": pads, "ceil_mode": bool(rng.random() < 0.7)}
        if kind == "avg_pool2d":
            attrs["count_include_pad"] = True  # without it, all-padding windows have no ONNX form
        g = Graph([Node(kind, ["x"], ["y"], attrs, name="pool")], {}, {"x": (None, 2, 7, 8)},
                  ["y"])  # fmt: skip
        proto = cnnperf.onnx.save(g, io.BytesIO(), opset=13)
        pool = next(n for n in proto.graph.node if n.op_type.endswith("Pool"))
        a = {a.name: onnx.helper.get_attribute_value(a) for a in pool.attribute}
        moved = a["pads"] != [pads[0], pads[2], pads[1], pads[3]]  # end pads set for ceil_mode
        forms.add((*[n.op_type[:3] for n in proto.graph.node], a.get("ceil_mode"), moved))
        x = _x(2, 2, 7, 8)
        got, want = _session(proto).run(None, {"input": x})[0], compile_graph(g, passes=())(x)
        # A window of -inf padding alone: -inf, or in some ORT MaxPool kernels -3.4e38.
        lowest = np.finfo(np.float32).min
        assert_rel_close(np.maximum(got, lowest), np.maximum(want, lowest), 1e-6, str(attrs))
    want = {("Max", 1, False), ("Ave", 1, False), ("Max", 0, True), ("Pad", "Max", None, True),
            ("Pad", "Ave", None, True), ("Pad", "Ave", "Sli", None, True)}  # fmt: skip
    assert want <= forms, sorted(forms, key=str)


def test_a_resize_keeping_a_fixed_batch_exports_with_a_dynamic_one():
    attrs = {"sizes": (2, 3, 8, 10), "scales": (1.0, 1.0, 2.0, 2.0), "mode": "linear"}
    g = Graph([Node("resize", ["x"], ["y"], attrs, name="up")], {}, {"x": (2, 3, 4, 5)}, ["y"])
    sess, x = _session(cnnperf.onnx.save(g, io.BytesIO())), _x(3, 3, 4, 5)
    got = sess.run(None, {"input": x})[0]
    assert got.shape == (3, 3, 8, 10)
    assert_rel_close(got[1:], compile_graph(g)(x[1:]), 1e-6, "resize")


def _new_ops_graph() -> Graph:
    """The ops added for GELU and the remaining common ONNX ops, chained, several outputs."""
    nodes = [
        Node("conv2d", ["x", "w"], ["c"], {"pads": (1, 1, 1, 1), "activation": "gelu"}, name="cv"),
        Node("gelu", ["c"], ["g"], {"approximate": "tanh"}, name="g"),
        Node("mish", ["g"], ["m"], name="m"),
        Node("instance_norm", ["m", "s", "b"], ["n"], {"eps": 1e-4}, name="in"),
        Node("softplus", ["n"], ["sp"], name="sp"),
        Node("log", ["sp"], ["lg"], name="lg"),
        Node("greater", ["n", "zero"], ["pos"], name="gt"),
        Node("neg", ["n"], ["ng"], name="ng"),
        Node("where", ["pos", "lg", "ng"], ["wh"], name="wh"),
        Node("reduce_max", ["wh"], ["mx"], {"axes": (2, 3), "keepdims": True}, name="mx"),
        Node("expand", ["mx"], ["ex"], {"shape": (1, 1, 5, 4)}, name="ex"),
        Node("abs", ["ex"], ["ab"], name="ab"),
        Node("exp", ["ng"], ["e"], name="e"),
        Node("reciprocal", ["e"], ["r"], name="r"),
        Node("floor", ["r"], ["fl"], name="fl"),
        Node("ceil", ["wh"], ["ce"], name="ce"),
        Node("equal", ["fl", "ce"], ["eq"], name="eq"),
        Node("less", ["ab", "r"], ["ls"], name="ls"),
        Node("reduce_min", ["ls"], ["mn"], {"axes": (1,), "keepdims": False}, name="mn"),
        Node("reduce_l2", ["wh"], ["l2"], {"axes": (1, 3), "keepdims": False}, name="l2"),
        Node("global_lp_pool", ["wh"], ["lp"], {"p": 2}, name="lp"),
    ]
    inits = {"w": _x(4, 3, 3, 3), "s": _x(4), "b": _x(4), "zero": np.zeros((), np.float32)}
    return Graph(nodes, inits, {"x": (None, 3, 5, 4)}, ["ab", "eq", "mn", "l2", "lp"])


@pytest.mark.parametrize("opset", [13, 17, 18, 20, 21])
def test_new_ops_round_trip_through_onnx(opset):
    """Executor == ONNX Runtime on the saved file == cnnperf on the file loaded back; Gelu and
    Mish as one node from the opsets that have them (20, 18), their formulas before; the
    formula is fused back into one gelu (the conv's activation) by the default passes."""
    g = _new_ops_graph()
    proto = cnnperf.onnx.save(g, io.BytesIO(), opset=opset)
    onnx_ops = [n.op_type for n in proto.graph.node]
    assert ("Gelu" in onnx_ops) == (opset >= 20) and ("Mish" in onnx_ops) == (opset >= 18)
    data = proto.SerializeToString()
    back, unfused = cnnperf.onnx.load(data), cnnperf.onnx.load(data, passes=())
    assert [n.op for n in unfused.graph.nodes].count("gelu") == (2 if opset >= 20 else 0)
    assert [n.attrs.get("activation") for n in back.graph.nodes][0] == "gelu"
    assert [n.op for n in back.graph.nodes].count("gelu") == 1
    assert "erf" not in [n.op for n in back.graph.nodes]
    executor, sess = compile_graph(g, passes=()), _session(proto)
    for n in (1, 3):
        x = _x(n, 3, 5, 4)
        want = executor.run({"x": x})
        got_ort = sess.run(None, {"input": x})
        got_back = back.run({"input": x})
        for i, name in enumerate(g.outputs):
            assert_rel_close(got_ort[i], want[name], 1e-5, f"ORT {name}")
            assert_rel_close(got_back[f"output_{i}"], want[name], 1e-5, f"reloaded {name}")
