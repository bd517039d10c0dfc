"""``cnnperf run`` on a tiny ONNX classifier, called in-process through cnnperf.cli.run.main."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cnnperf.cli.run import main


def _save_model(path, dims=("n", 3, 8, 8)):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((7, 4)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 7])],
        [w, fc],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return str(path)


def test_random_json(tmp_path, capsys):
    path = _save_model(tmp_path / "m.onnx")
    assert main([path, "--random", "--json", "--batch", "2", "--runs", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["inputs"] == {"x": [2, 3, 8, 8]} and doc["runs"] == 3
    out = doc["outputs"]["logits"]
    assert out["shape"] == [2, 7] and len(out["top5"]) == 2
    for row in out["top5"]:
        scores = [s for _, s in row]
        assert len(row) == 5 and scores == sorted(scores, reverse=True)
    lat = doc["latency_s"]
    assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] and doc["first_run_s"] > 0
    assert doc["throughput_per_s"] > 0


def test_input_file_text_output_matches_the_model(tmp_path, capsys):
    path = _save_model(tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main([path, "--input", str(tmp_path / "x.npy"), "--runs", "2"]) == 0
    text = capsys.readouterr().out
    import cnnperf

    logits = cnnperf.compile(path)(x)[0]
    best = int(np.argmax(logits))
    assert "output logits: shape (1, 7)" in text and f"top-5: {best} (" in text
    assert "first run (includes compilation)" in text and "p99" in text


def test_shape_option_for_dynamic_dims(tmp_path, capsys):
    path = _save_model(tmp_path / "m.onnx", dims=("n", 3, "h", "w"))
    assert main([path, "--shape", "3,6,5", "--json", "--runs", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"] == {"x": [1, 3, 6, 5]}


def test_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "m.onnx"), "--shape", "3,x"])
    with pytest.raises(SystemExit):
        main([str(tmp_path / "m.onnx"), "--random", "--input", "x.npy"])
