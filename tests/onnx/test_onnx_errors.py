"""cnnperf.onnx error paths: unsupported ops and forms (all listed in one error), malformed,
truncated and corrupted files, external data (loaded; paths escaping the folder refused),
the missing onnx package."""

from __future__ import annotations

import builtins
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import assert_rel_close
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
        helper.make_node("NonZero", ["a"], ["b"], name="nz"),
        helper.make_node("TopK", ["a", "k"], ["c", "ci"], name="top"),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    k = numpy_helper.from_array(np.array([2], np.int64), "k")
    with pytest.raises(NotImplementedError) as e:
        cnnperf.onnx.load(_model(nodes, [k]))
    msg = str(e.value)
    assert "2 node(s)" in msg and "NonZero (node 'nz')" in msg and "TopK (node 'top')" in msg


def test_unsupported_ops_and_forms_are_reported_together():
    """Unknown op types and op forms a mapper refuses, every one of them in one error; a
    node reading an unsupported node's output is skipped, not reported."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")
    nodes = [
        helper.make_node("Resize", ["x", "", "sc"], ["a"], name="cubic", mode="cubic"),
        helper.make_node("MaxPool", ["a"], ["b", "idx"], name="mp", kernel_shape=[2, 2]),
        helper.make_node("Relu", ["b"], ["c"], name="after_mp"),
        helper.make_node("Erf", ["x"], ["d"], name="fine"),
        helper.make_node("Hardmax", ["d"], ["e"], name="hm"),
        helper.make_node("Conv", ["e", "x"], ["f"], name="runtime_weight"),
        helper.make_node("Conv", ["x", "x"], ["g"], name="runtime_weight2"),
        helper.make_node("Sum", ["c", "f", "g"], ["y"], name="sum"),
    ]
    with pytest.raises(NotImplementedError) as e:
        cnnperf.onnx.load(_model(nodes, [scales]))
    msg = str(e.value)
    assert "uses 1 node(s) cnnperf does not support: Hardmax (node 'hm')" in msg
    assert "2 node(s) use forms cnnperf does not support" in msg
    assert "Resize node 'cubic': mode 'cubic'" in msg
    assert "Conv node 'runtime_weight2': weight ('x') must be a constant" in msg
    assert "MaxPool node 'mp'" not in msg  # its input comes from the refused Resize
    assert "after_mp" not in msg and "'sum'" not in msg
    assert "Conv node 'runtime_weight'" not in msg  # reads Hardmax's output: skipped


def test_custom_domain_is_unsupported():
    node = helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.example")
    with pytest.raises(NotImplementedError, match=r"Relu \(node 'r'\)"):
        cnnperf.onnx.load(_model([node]))


def test_maxpool_indices_nobody_reads_are_accepted():
    node = helper.make_node("MaxPool", ["x"], ["y", "idx"], name="mp", kernel_shape=[2, 2])
    model = _model([node])
    x = np.random.default_rng(3).standard_normal((2, 4, 5, 5)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    compiled = cnnperf.onnx.load(model)
    assert [n.op for n in compiled.graph.nodes] == ["max_pool2d"]
    np.testing.assert_array_equal(compiled(x), sess.run(["y"], {"x": x})[0])


def test_unsupported_form_names_the_node():
    node = helper.make_node("MaxPool", ["x"], ["p", "idx"], name="mp", kernel_shape=[2, 2])
    read = helper.make_node("Cast", ["idx"], ["fidx"], to=F)
    add = helper.make_node("Add", ["p", "fidx"], ["y"])
    with pytest.raises(NotImplementedError, match="MaxPool node 'mp': the Indices output 'idx' is"):
        cnnperf.onnx.load(_model([node, read, add]))
    graph_output = _model([node, helper.make_node("Relu", ["p"], ["y"])])
    graph_output.graph.output.append(helper.make_tensor_value_info("idx", TensorProto.INT64, None))
    with pytest.raises(NotImplementedError, match="MaxPool node 'mp': the Indices output 'idx' is"):
        cnnperf.onnx.load(graph_output)
    w = numpy_helper.from_array(np.ones((2, 4, 3), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="c1d")
    with pytest.raises(NotImplementedError, match="Conv node 'c1d': only 2-D"):
        cnnperf.onnx.load(_model([conv], [w], x_shape=("n", 4, 5)))


def test_non_constant_weight_is_reported():
    conv = helper.make_node("Conv", ["x", "x"], ["y"], name="weird")
    with pytest.raises(NotImplementedError, match="Conv node 'weird': weight .* must be a const"):
        cnnperf.onnx.load(_model([conv]))


def test_unsupported_forms_listed_once_each():
    nodes = [
        helper.make_node("MaxPool", ["x"], ["a", "ia"], name="mp1", kernel_shape=[2, 2]),
        helper.make_node("MaxPool", ["x"], ["b", "ib"], name="mp2", kernel_shape=[3, 3]),
        helper.make_node("Resize", ["x", "", "sc"], ["c"], name="aa", mode="linear", antialias=1),
        helper.make_node("Concat", ["a", "b", "c"], ["y"], axis=1),
        # the Indices are read: refused (an unread Indices output is accepted)
        helper.make_node("Cast", ["ia"], ["fa"], to=F),
        helper.make_node("Cast", ["ib"], ["fb"], to=F),
    ]
    sc = numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], np.float32), "sc")
    with pytest.raises(NotImplementedError) as e:
        cnnperf.onnx.load(_model(nodes, [sc], opset=18))
    msg = str(e.value)
    assert msg.startswith("3 node(s) use forms cnnperf does not support")
    for name in ("MaxPool node 'mp1'", "MaxPool node 'mp2'", "Resize node 'aa': antialiased"):
        assert msg.count(name) == 1, msg


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


def _several_op_model():
    rng = np.random.default_rng(0)
    inits = {
        "w": rng.standard_normal((4, 4, 3, 3)),
        "b": rng.standard_normal(4),
        "sc": np.array([1.0, 1.0, 2.0, 2.0]),
        "st": np.array([0], np.int64),
        "en": np.array([2], np.int64),
        "p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
    }
    inits = [
        numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, k)
        for k, v in inits.items()
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Pad", ["c", "p"], ["d"], mode="reflect"),
        helper.make_node("Resize", ["d", "", "sc"], ["u"], mode="nearest"),
        helper.make_node("Slice", ["u", "st", "en"], ["y"]),
    ]
    return _model(nodes, inits)


def test_truncated_at_every_point_raises_value_error():
    data = _several_op_model().SerializeToString()
    assert cnnperf.onnx.load(data)(np.ones((2, 4, 5, 5), np.float32)).shape == (2, 4, 14, 14)
    for cut in range(0, len(data), 3):
        with pytest.raises(ValueError):
            cnnperf.onnx.load(data[:cut])


def test_corrupted_bytes_give_clear_errors():
    """Random byte changes parse as another model, or fail with ValueError (malformed) or
    NotImplementedError (e.g. an op name changed into an unknown one): nothing else."""
    data = _several_op_model().SerializeToString()
    rng = np.random.default_rng(1)
    outcomes = set()
    for _ in range(300):
        bad = bytearray(data)
        for j in rng.integers(0, len(bad), 3):
            bad[j] = int(rng.integers(0, 256))
        try:
            cnnperf.onnx.load(bytes(bad))
            outcomes.add("loaded")
        except (ValueError, NotImplementedError) as e:
            assert str(e)
            outcomes.add(type(e).__name__)
            assert re.search("node|initializer|ONNX model|[Gg]raph (input|output)", str(e)), e
    assert outcomes == {"loaded", "ValueError", "NotImplementedError"}


# -- External data ---------------------------------------------------------------------------


def _external_model(tmp_path, location="weights.bin"):
    """A Conv model saved with its weight and bias in an external file."""
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.standard_normal((8, 4, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    model = _model([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], [w, b])
    path = tmp_path / "model.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    return path, model


def test_external_data_is_loaded(tmp_path):
    path, model = _external_model(tmp_path)
    assert (tmp_path / "weights.bin").stat().st_size > 8 * 4 * 9 * 4
    raw = onnx.load(str(path), load_external_data=False)
    assert raw.graph.initializer[0].data_location == TensorProto.EXTERNAL
    x = np.random.default_rng(3).standard_normal((2, 4, 5, 5)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = cnnperf.onnx.load(path)(x)
    assert_rel_close(got, want[0], 1e-5, "external-data conv")
    np.testing.assert_array_equal(cnnperf.compile(str(path))(x), got)


def _point_external_data(tmp_path, location: str) -> str:
    path, _ = _external_model(tmp_path)
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    out = tmp_path / "moved.onnx"
    out.write_bytes(model.SerializeToString())
    return str(out)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_external_data_escaping_the_folder_is_refused(tmp_path, where):
    folder = tmp_path / "models"
    folder.mkdir()
    path, _ = _external_model(folder)
    outside = tmp_path / "x.bin"
    outside.write_bytes((folder / "weights.bin").read_bytes())  # a real file: refused anyway
    why = "the path escapes the model's folder"
    if where == "parent":
        location = "../x.bin"
    elif where == "absolute":
        location, why = str(outside), "the location must be a path relative to the model's"
    else:
        (folder / "link.bin").symlink_to(outside)
        location = "link.bin"
    with pytest.raises(ValueError, match=f"tensor 'w' \\(external data .*\\): {why}"):
        cnnperf.onnx.load(_point_external_data(folder, location))


def test_external_data_missing_or_short_file(tmp_path):
    with pytest.raises(ValueError, match="tensor 'w'.*no such file"):
        cnnperf.onnx.load(_point_external_data(tmp_path, "missing.bin"))
    path, _ = _external_model(tmp_path)
    data = (tmp_path / "weights.bin").read_bytes()
    (tmp_path / "weights.bin").write_bytes(data[:100])
    with pytest.raises(ValueError, match="holds .* of the .* bytes needed"):
        cnnperf.onnx.load(path)


def test_external_data_without_a_path_is_refused(tmp_path):
    path, _ = _external_model(tmp_path)
    raw = onnx.load(str(path), load_external_data=False)
    with pytest.raises(ValueError, match="external file; load the model from its path"):
        cnnperf.onnx.load(raw)
    with pytest.raises(ValueError, match="external file; load the model from its path"):
        cnnperf.onnx.load(raw.SerializeToString())
