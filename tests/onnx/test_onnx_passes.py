"""Passes on imported ONNX graphs: Conv+BatchNormalization+Relu, folded and fused, == ORT."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from conftest import assert_rel_close
from onnx import TensorProto, helper, numpy_helper

import cnnperf.onnx
from cnnperf.compile import compile_graph


def test_conv_bn_relu_folded_and_fused_match_unfused_and_ort():
    rng = np.random.default_rng(3)
    c = 8
    arrays = {
        "w": rng.standard_normal((c, 4, 3, 3)), "b": rng.standard_normal(c),
        "s": rng.uniform(0.5, 1.5, c), "beta": rng.standard_normal(c),
        "m": rng.standard_normal(c), "v": rng.uniform(0.5, 2, c),
    }  # fmt: skip
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["t"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["t", "s", "beta", "m", "v"], ["u"]),
        helper.make_node("Dropout", ["u"], ["d"]),
        helper.make_node("Relu", ["d"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    x = rng.standard_normal((2, 4, 10, 10)).astype(np.float32)
    unfused = compile_graph(cnnperf.onnx.import_model(model), passes=())
    assert [n.op for n in unfused.graph.nodes] == ["conv2d", "batch_norm", "dropout", "relu"]
    compiled = cnnperf.onnx.load(model)
    assert [n.op for n in compiled.graph.nodes] == ["conv2d"]
    assert compiled.graph.nodes[0].attrs["activation"] == "relu"
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert_rel_close(unfused(x), want, 1e-5, "unfused")
    assert_rel_close(compiled(x), unfused(x), 1e-5, "folded+fused vs unfused")
    assert_rel_close(compiled(x), want, 1e-5, "folded+fused vs ORT")
