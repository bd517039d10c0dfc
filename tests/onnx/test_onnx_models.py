"""Whole-model parity: ResNet-18-style and MobileNetV2-style PyTorch networks exported to ONNX
and run by cnnperf.onnx.load vs ONNX Runtime (random weights and BatchNorm statistics)."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import cnnperf.onnx


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.2)
    return model.eval()


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_out))  # fmt: skip

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18ish(nn.Module):
    """ResNet-18 layout (2 basic blocks per stage) at reduced width."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))  # fmt: skip
        blocks, c = [], w
        for i, c_out in enumerate((w, 2 * w, 4 * w, 8 * w)):
            blocks += [BasicBlock(c, c_out, 1 if i == 0 else 2), BasicBlock(c_out, c_out, 1)]
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(x.view(x.size(0), -1))


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        ]  # fmt: skip
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2ish(nn.Module):
    """MobileNetV2 layout (inverted residuals, ReLU6, depthwise 3x3) at reduced width."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        cfg = [(1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2), (6, 24, 2, 2), (6, 32, 1, 1)]
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                   nn.ReLU6()]  # fmt: skip
        c = 16
        for t, c_out, n, s in cfg:
            for i in range(n):
                layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                c = c_out
        layers += [nn.Conv2d(c, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


EXPORTERS = ["legacy"] + (["dynamo"] if importlib.util.find_spec("onnxscript") else [])


def _export(model: nn.Module, size: int, exporter: str) -> bytes:
    buf = io.BytesIO()
    x = torch.zeros(1, 3, size, size)
    kwargs = {"dynamic_axes": {"x": {0: "n"}}} if exporter == "legacy" else {
        "dynamic_shapes": ({0: torch.export.Dim("n", max=64)},)
    }  # fmt: skip
    torch.onnx.export(model, (x,), buf, input_names=["x"], output_names=["y"],
                      dynamo=exporter == "dynamo", **kwargs)  # fmt: skip
    return buf.getvalue()


def _norm_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("net,size", [("resnet18", 64), ("mobilenetv2", 96)])
def test_whole_model_matches_onnxruntime(net, size, exporter):
    torch.manual_seed(0)
    model = _randomize_bn(ResNet18ish() if net == "resnet18" else MobileNetV2ish(), seed=1)
    data = _export(model, size, exporter)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    compiled = cnnperf.onnx.load(data)
    ops = [n.op for n in compiled.graph.nodes]
    assert "batch_norm" not in ops
    # Every ReLU/ReLU6 is fused into its conv except ResNet's 8 after the residual adds.
    assert ops.count("relu") + ops.count("clip") == (8 if net == "resnet18" else 0)
    rng = np.random.default_rng(2)
    for batch in (1, 2):
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        got = compiled(x)
        assert got.shape == want.shape == (batch, 10)
        assert _norm_rel(got, want) <= 1e-3, f"{net} batch {batch}: {_norm_rel(got, want):.2e}"
        with torch.no_grad():
            assert _norm_rel(got, model(torch.from_numpy(x)).numpy()) <= 1e-3
