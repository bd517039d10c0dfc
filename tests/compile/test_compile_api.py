"""``cnnperf.compile(...)``: both spellings, nn and ONNX sources, profile, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from compile_models import tiny_resnet
from conftest import assert_rel_close
from onnx import TensorProto, helper, numpy_helper

import cnnperf
import cnnperf.compile
from cnnperf import nn
from cnnperf.compile import CompiledModel, Graph, MemoryPlan, compile_model, format_profile

RNG = np.random.default_rng(0)


def tiny_onnx() -> onnx.ModelProto:
    """Conv(3->4, 3x3, pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(4->10)."""
    w = numpy_helper.from_array(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(RNG.standard_normal((10, 4)).astype(np.float32), "fc")
    fcb = numpy_helper.from_array(RNG.standard_normal(10).astype(np.float32), "fcb")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
        [w, fc, fcb],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_both_spellings():
    assert callable(cnnperf.compile) and cnnperf.compile is sys.modules["cnnperf.compile"]
    assert Graph is cnnperf.compile.Graph
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    a = cnnperf.compile(model, input_shape=(None, 3))
    b = compile_model(model, (None, 3), passes=())
    assert isinstance(a, CompiledModel) and a.input_names == ["input"]
    assert a.output_names == ["output"]
    np.testing.assert_allclose(a(x), model(x).data, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b.run({"input": x})["output"], a(x), rtol=1e-6, atol=1e-6)


def test_import_cnnperf_stays_light():
    code = (
        "import cnnperf, sys; print('numba' in sys.modules, 'onnx' in sys.modules, "
        "'cnnperf.compile' in sys.modules); cnnperf.onnx; print('cnnperf.onnx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False", "True"]
    assert "compile" in cnnperf.__all__ and "onnx" in cnnperf.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cnnperf.nope  # noqa: B018


def test_compile_nn_model_matches_eager():
    model = tiny_resnet()
    x = RNG.standard_normal((2, 3, 20, 20)).astype(np.float32)
    compiled = cnnperf.compile(model, (None, 3, 20, 20))
    assert_rel_close(compiled(x), model.eval()(x).data, 1e-5, "tiny resnet")


@pytest.mark.parametrize("form", ["path", "str", "bytes", "proto"])
def test_compile_onnx_matches_onnxruntime(form, tmp_path):
    proto = tiny_onnx()
    path = tmp_path / "tiny.onnx"
    onnx.save(proto, path)
    src = {"path": path, "str": str(path), "bytes": proto.SerializeToString(), "proto": proto}
    model = cnnperf.compile(src[form])
    assert model.input_names == ["x"] and model.output_names == ["logits"]
    x = RNG.standard_normal((3, 3, 8, 8)).astype(np.float32)
    (want,) = ort.InferenceSession(str(path)).run(None, {"x": x})
    assert_rel_close(model(x), want, 1e-5, form)


def test_onnx_input_shape_override_fixes_the_batch():
    model = cnnperf.compile(tiny_onnx(), input_shape=(2, 3, 8, 8))
    assert model.graph.inputs == {"x": (2, 3, 8, 8)}
    with pytest.raises(ValueError, match="must have shape"):
        model(np.zeros((1, 3, 8, 8), np.float32))


def test_compile_errors():
    with pytest.raises(ValueError, match="needs input_shape"):
        cnnperf.compile(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="got int"):
        cnnperf.compile(3)
    with pytest.raises(FileNotFoundError, match="no such file"):
        cnnperf.compile("/nonexistent/model.onnx")


def test_profile_rows_and_memory_plan():
    model = cnnperf.compile(tiny_onnx())
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    rows = model.profile(x, repeat=3)
    assert [r["op"] for r in rows] == [n.op for n in model.graph.nodes]
    assert [r["op"] for r in rows] == ["conv2d", "global_avg_pool2d", "flatten", "gemm"]
    conv, gemm = rows[0], rows[3]
    assert conv["input_shapes"] == [(2, 3, 8, 8), (4, 3, 3, 3)] and conv["output_shapes"] == [
        (2, 4, 8, 8)
    ]
    assert isinstance(conv["algorithm"], str) and conv["gflops"] > 0 and gemm["gflops"] > 0
    assert rows[1]["algorithm"] is None and rows[1]["gflops"] is None
    assert all(r["time_s"] >= 0 for r in rows)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert "conv2d" in format_profile(rows)
    assert len(model.profile({"x": x}, repeat=1)) == 4
    plan = model.memory_plan(batch=2)
    assert isinstance(plan, MemoryPlan) and plan.output_bytes == 2 * 10 * 4
