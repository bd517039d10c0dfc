"""Whole-model parity: ResNet-18 and MobileNetV2 (torchvision's layouts, from cnnperf.bench.models,
at reduced width) exported to ONNX and run by cnnperf.onnx.load vs ONNX Runtime (random weights
and BatchNorm statistics; the full-size networks are checked in tests/bench/test_bench_models.py).
"""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
import torch

import cnnperf.onnx
from cnnperf.bench.models import export_onnx, mobilenet_v2, resnet18

EXPORTERS = ["legacy", "dynamo"]  # PyTorch's two ONNX exporters (dynamo needs onnxscript)


def _export(model: torch.nn.Module, size: int, exporter: str) -> bytes:
    if exporter == "legacy":
        return export_onnx(model, size)  # keeps the BatchNorm nodes: cnnperf folds them
    buf = io.BytesIO()
    x = torch.zeros(1, 3, size, size)
    shapes = ({0: torch.export.Dim("n", max=64)},)
    torch.onnx.export(model, (x,), buf, input_names=["x"], output_names=["y"], dynamo=True,
                      dynamic_shapes=shapes)  # fmt: skip
    return buf.getvalue()


def _norm_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("net,size", [("resnet18", 64), ("mobilenetv2", 96)])
def test_whole_model_matches_onnxruntime(net, size, exporter):
    if net == "resnet18":
        model = resnet18(width=16, classes=10, seed=0)
    else:
        model = mobilenet_v2(width_mult=0.25, classes=10, seed=0)
    data = _export(model, size, exporter)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    if exporter == "legacy":  # the BatchNorms reach cnnperf, which folds them
        bns = [n for n in cnnperf.onnx.import_model(data).nodes if n.op == "batch_norm"]
        assert len(bns) == (20 if net == "resnet18" else 52)
    compiled = cnnperf.onnx.load(data)
    ops = [n.op for n in compiled.graph.nodes]
    assert "batch_norm" not in ops
    # Every ReLU/ReLU6 is fused into its conv, and every residual add (ResNet's with the ReLU
    # after it) into the conv before it.
    assert ops.count("relu") + ops.count("clip") + ops.count("add") == 0
    residual = sum(bool(n.attrs.get("residual")) for n in compiled.graph.nodes)
    assert residual == (8 if net == "resnet18" else 11)
    rng = np.random.default_rng(2)
    for batch in (1, 2):
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        got = compiled(x)
        assert got.shape == want.shape == (batch, 10)
        assert _norm_rel(got, want) <= 1e-3, f"{net} batch {batch}: {_norm_rel(got, want):.2e}"
        with torch.no_grad():
            assert _norm_rel(got, model(torch.from_numpy(x)).numpy()) <= 1e-3
