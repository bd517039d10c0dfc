"""``cnnperf profile`` on a small ONNX model (conv+bn+relu, pool, conv+relu, gemm), in-process."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cnnperf.bench import machine
from cnnperf.cli.main import main
from cnnperf.compile.profile import fused_ops, node_bytes

PEAK, BANDWIDTH = 100.0, 10.0
REAL_BANDWIDTH = machine.memory_bandwidth_gbs  # before the fixture patches it


@pytest.fixture(autouse=True)
def fast_machine(monkeypatch):
    # The 2048^3 sgemm and the 128 MiB copy take about a second; both have their own tests.
    monkeypatch.setattr(machine, "sgemm_peak_gflops", lambda *a, **k: PEAK)
    monkeypatch.setattr(machine, "memory_bandwidth_gbs", lambda *a, **k: BANDWIDTH)


def _save_model(path, dims=("n", 3, 12, 12)):
    """conv1 (3->8, 3x3, pad 1, bias) + BN + ReLU, max-pool 2, conv2 (8->6, 3x3) + ReLU,
    global average pool, flatten, gemm (6->5)."""
    rng = np.random.default_rng(0)

    def const(name, *shape, scale=1.0, offset=0.0):
        a = (offset + scale * rng.standard_normal(shape)).astype(np.float32)
        return numpy_helper.from_array(a, name)

    inits = [
        const("w1", 8, 3, 3, 3, scale=0.3), const("b1", 8, scale=0.1),
        const("s", 8, scale=0.1, offset=1.0), const("beta", 8, scale=0.1),
        const("mean", 8, scale=0.1), numpy_helper.from_array(
            (0.5 + rng.random(8)).astype(np.float32), "var"),
        const("w2", 6, 8, 3, 3, scale=0.2), const("fc", 5, 6), const("fcb", 5),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node(
            "BatchNormalization", ["c1", "s", "beta", "mean", "var"], ["n1"], name="bn1"
        ),  # fmt: skip
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node(
            "MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool"
        ),  # fmt: skip
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 5])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return str(path)


def _profile_json(capsys, *argv) -> tuple[dict, str]:
    assert main(["profile", *argv, "--json", "-"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_table_rows_and_totals(tmp_path, capsys):
    path = _save_model(tmp_path / "m.onnx")
    assert main(["profile", path, "--batch", "2", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("node "))
    for col in ("op", "algo", "ms", "GFLOP/s", "%peak", "MB", "FLOP/B", "fused"):
        assert col in header.split()
    rows = {line.split()[0]: line for line in lines if line.split()[:1]
            and line.split()[0] in ("conv1", "pool", "conv2", "gap", "flatten", "fc")}  # fmt: skip
    assert sorted(rows) == ["conv1", "conv2", "fc", "flatten", "gap", "pool"]
    # the stem writes the channel-blocked layout its max pool reads (compile.layout)
    assert "2x3x12x12 -> 2x1x12x12x8" in rows["conv1"]
    assert rows["conv1"].endswith("batch_norm+relu") and rows["conv2"].endswith("relu")
    assert rows["pool"].endswith("-") and "2x1x12x12x8 -> 2x8x6x6" in rows["pool"]
    assert "peak 100 GFLOP/s" in out and "memory bandwidth 10.0 GB/s" in out
    total = next(line for line in lines if line.startswith("total "))
    assert "6 nodes" in total and "GFLOP" in total and "% of peak" in total
    assert "planned peak activation memory (batch 2)" in out


def test_json_fields_and_values(tmp_path, capsys):
    path = _save_model(tmp_path / "m.onnx")
    doc, err = _profile_json(capsys, path, "--batch", "3", "--repeat", "3")
    assert "cnnperf profile:" in err  # the table went to stderr
    assert doc["schema"] == "cnnperf-profile/1" and doc["inputs"] == {"x": [3, 3, 12, 12]}
    assert doc["machine"]["peak_gflops"] == PEAK
    assert doc["machine"]["memory_bandwidth_gbs"] == BANDWIDTH
    nodes = {r["name"]: r for r in doc["nodes"]}
    assert [r["op"] for r in doc["nodes"]] == [
        "conv2d", "max_pool2d", "conv2d", "global_avg_pool2d", "flatten", "gemm"]  # fmt: skip
    assert sum(r["share"] for r in doc["nodes"]) == pytest.approx(1.0)
    assert all(r["time_s"] >= 0 and 0 <= r["share"] <= 1 for r in doc["nodes"])
    conv1, conv2, fc = nodes["conv1"], nodes["conv2"], nodes["fc"]
    # 2 * n * c_out * c_in * kh * kw * oh * ow
    assert conv1["flops"] == 2 * 3 * 8 * 3 * 3 * 3 * 12 * 12
    assert conv2["flops"] == 2 * 3 * 6 * 8 * 3 * 3 * 4 * 4
    assert fc["flops"] == 2 * 3 * 6 * 5
    assert nodes["gap"]["flops"] is None and nodes["gap"]["gflops"] is None
    # inputs (x, folded weight, folded bias) + output, float32
    assert conv1["bytes"] == 4 * (3 * 3 * 12 * 12 + 8 * 3 * 3 * 3 + 8 + 3 * 8 * 12 * 12)
    assert conv1["intensity"] == pytest.approx(conv1["flops"] / conv1["bytes"])
    assert nodes["flatten"]["bytes"] == 0  # a view
    for r in (conv1, conv2, fc):
        assert r["gflops"] == pytest.approx(r["flops"] / r["time_s"] / 1e9)
        assert r["peak_fraction"] == pytest.approx(r["gflops"] / PEAK)
    assert isinstance(conv1["algorithm"], str) and nodes["pool"]["algorithm"] is None
    assert conv1["fused"] == ["batch_norm", "relu"] and conv2["fused"] == ["relu"]
    assert fc["fused"] == [] and nodes["pool"]["fused"] == []
    total = doc["total"]
    assert total["flops"] == conv1["flops"] + conv2["flops"] + fc["flops"]
    assert total["time_s"] == pytest.approx(sum(r["time_s"] for r in doc["nodes"]))
    assert total["bytes"] == sum(r["bytes"] for r in doc["nodes"])
    mem = doc["memory"]
    assert mem["planned_peak_bytes"] <= mem["naive_bytes"]
    assert mem["largest_layer"] == "conv1"  # x in + (3, 8, 12, 12) out
    assert mem["largest_layer_bytes"] == 4 * 3 * (3 + 8) * 12 * 12


def test_shape_option_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # installed by the test extra
    path = _save_model(tmp_path / "m.onnx", dims=("n", 3, "h", "w"))
    png = tmp_path / "p.png"
    assert main(["profile", path, "--shape", "3,16,10", "--repeat", "1", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {png}" in out and "1x3x16x10 -> 1x1x16x10x8" in out  # blocked for the pool
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_json_file(tmp_path, capsys):
    path = _save_model(tmp_path / "m.onnx")
    js = tmp_path / "p.json"
    assert main(["profile", path, "--repeat", "1", "--json", str(js)]) == 0
    assert f"wrote {js}" in capsys.readouterr().out
    assert json.loads(js.read_text())["nodes"][0]["name"] == "conv1"


def test_errors_exit_2_with_a_clear_message(tmp_path, capsys, monkeypatch):
    assert main(["profile", str(tmp_path / "missing.onnx")]) == 2
    err = capsys.readouterr().err
    assert "cnnperf profile: error:" in err and "no such file" in err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["profile", str(bad)]) == 2
    assert "is not a valid ONNX model" in capsys.readouterr().err
    fixed = _save_model(tmp_path / "fixed.onnx", dims=(1, 3, 12, 12))
    assert main(["profile", fixed, "--batch", "4"]) == 2
    assert "--batch 4: the model's input 'x' has the fixed shape (1, 3, 12, 12)" in (
        capsys.readouterr().err
    )
    for argv in (["--repeat", "0"], ["--batch", "x"], ["--shape", "3,x"]):
        with pytest.raises(SystemExit) as exc:
            main(["profile", fixed, *argv])
        assert exc.value.code == 2
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["profile", fixed, "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_node_bytes_and_fused_ops_without_source():
    from cnnperf.compile import Node

    assert node_bytes("conv2d", [(1, 2, 3, 3), (4, 2, 1, 1)], [(1, 4, 3, 3)]) == 4 * (18 + 8 + 36)
    assert node_bytes("reshape", [(1, 8)], [(2, 4)]) == 0
    conv = Node("conv2d", ["x", "w"], ["y"], {"activation": ("leaky_relu", 0.1)})
    assert fused_ops(conv) == ["leaky_relu(0.1)"]
    assert fused_ops(Node("conv2d", ["x", "w"], ["y"])) == []


def test_memory_bandwidth_is_measured():
    assert REAL_BANDWIDTH(nbytes=2**22, rounds=2) > 0
    with pytest.raises(ValueError, match="nbytes=0"):
        REAL_BANDWIDTH(nbytes=0)
