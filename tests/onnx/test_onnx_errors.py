"""cnnperf.onnx error paths: unsupported ops, malformed files, missing onnx package."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import cnnperf.onnx

F = TensorProto.FLOAT


def _model(nodes, inits=(), x_shape=("n", 4, 5, 5), opset=13):
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", F, list(x_shape))],
        [helper.make_tensor_value_info("y", F, None)], initializer=list(inits),
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_unsupported_ops_are_all_listed_with_node_names():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("Erf", ["a"], ["b"], name="my_erf"),
        helper.make_node("Resize", ["b"], ["c"], name="up1"),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    with pytest.raises(NotImplementedError) as e:
        cnnperf.onnx.load(_model(nodes))
    msg = str(e.value)
    assert "2 node(s)" in msg and "Erf (node 'my_erf')" in msg and "Resize (node 'up1')" in msg


def test_custom_domain_is_unsupported():
    node = helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.example")
    with pytest.raises(NotImplementedError, match=r"Relu \(node 'r'\)"):
        cnnperf.onnx.load(_model([node]))


def test_unsupported_form_names_the_node():
    node = helper.make_node("MaxPool", ["x"], ["y", "idx"], name="mp", kernel_shape=[2, 2])
    with pytest.raises(NotImplementedError, match="MaxPool node 'mp': the Indices output"):
        cnnperf.onnx.load(_model([node]))
    w = numpy_helper.from_array(np.ones((2, 4, 3), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="c1d")
    with pytest.raises(NotImplementedError, match="Conv node 'c1d': only 2-D"):
        cnnperf.onnx.load(_model([conv], [w], x_shape=("n", 4, 5)))


def test_non_constant_weight_is_reported():
    conv = helper.make_node("Conv", ["x", "x"], ["y"], name="weird")
    with pytest.raises(NotImplementedError, match="Conv node 'weird': weight .* must be a const"):
        cnnperf.onnx.load(_model([conv]))


def test_truncated_file_raises_value_error(tmp_path):
    w = numpy_helper.from_array(np.ones((8, 4, 3, 3), np.float32), "w")
    data = _model([helper.make_node("Conv", ["x", "w"], ["y"])], [w]).SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        cnnperf.onnx.load(path)
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        cnnperf.onnx.load(data[:-7])


@pytest.mark.parametrize("data", [b"", b"\x00\x01garbage\xff" * 3, b"hello world"])
def test_garbage_bytes_raise_value_error(data):
    with pytest.raises(ValueError, match="ONNX model"):
        cnnperf.onnx.load(data)


def test_missing_attribute_is_value_error():
    node = helper.make_node("Concat", ["x", "x"], ["y"], name="cat")  # axis is required
    with pytest.raises(ValueError, match="Concat node 'cat' lacks"):
        cnnperf.onnx.load(_model([node]))


def test_missing_file_and_wrong_type():
    with pytest.raises(FileNotFoundError, match="no such file"):
        cnnperf.onnx.load("/nonexistent/model.onnx")
    with pytest.raises(TypeError, match="path, bytes or an onnx.ModelProto"):
        cnnperf.onnx.load(12)


def test_dynamic_non_batch_dim_needs_input_shapes():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], x_shape=("n", 4, "h", "w"))
    with pytest.raises(ValueError, match="dimension 2 \\(h\\) is dynamic"):
        cnnperf.onnx.load(model)
    compiled = cnnperf.onnx.load(model, input_shapes={"x": (None, 4, 3, 3)})
    assert compiled(np.ones((2, 4, 3, 3), np.float32)).shape == (2, 4, 3, 3)


def test_run_checks_input_shape():
    compiled = cnnperf.onnx.load(_model([helper.make_node("Relu", ["x"], ["y"])]))
    with pytest.raises(ValueError, match=r"input 'x' must have shape \(None, 4, 5, 5\)"):
        compiled(np.ones((1, 4, 5, 6), np.float32))
    with pytest.raises(ValueError, match="missing \\['x'\\]"):
        compiled.run({})


def test_missing_onnx_package_message(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'cnnperf\[onnx\]'"):
        cnnperf.onnx.load(b"whatever")
