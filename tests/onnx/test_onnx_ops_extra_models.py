"""The added ops as PyTorch's exporter emits them: one network using ConvTranspose, PRelu, Elu,
reflect and replicate Pad, Split (chunk), strided Slice, nearest and bilinear Resize,
DepthToSpace (pixel_shuffle), Selu, LayerNorm (decomposed before opset 17), GELU (Erf, fused
back into one gelu by the default passes),
ReduceMean/ReduceSum, Clip and LogSoftmax, exported at opsets 11, 13 and 17 with a dynamic
batch, run by cnnperf.onnx.load against ONNX Runtime and PyTorch."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_rel_close
from torch import nn

import cnnperf.onnx


class ExtraNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, (1, 7), padding=(0, 3))
        self.prelu = nn.PReLU(8)
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, padding_mode="reflect")
        self.shuffle = nn.PixelShuffle(2)
        self.norm = nn.LayerNorm(22)
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        y = F.elu(self.up(self.prelu(self.conv(x))), 0.5)
        a, b = self.conv2(y).chunk(2, dim=1)
        up = F.interpolate(a, scale_factor=2.0, mode="nearest")[:, :, ::2, ::2]
        y = self.shuffle(torch.cat([a * torch.sigmoid(b), up], 1))
        y = F.interpolate(y, size=(20, 24), mode="bilinear", align_corners=False)
        y = F.gelu(self.norm(F.selu(y[:, :, 1:-1, 2:])))
        y = F.pad(y, (1, 2, 0, 1), mode="replicate")
        y = y.mean(dim=(2, 3)) + 0.01 * y.sum(dim=(2, 3))
        return F.log_softmax(self.head(torch.clamp(y, -2, 2)), dim=1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("opset", [11, 13, 17])
def test_exported_network_matches_onnxruntime_and_torch(opset):
    torch.manual_seed(0)
    model = ExtraNet().eval()
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.zeros(1, 3, 6, 5),), buf, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "n"}}, opset_version=opset,
                      dynamo=False)  # fmt: skip
    data = buf.getvalue()
    compiled = cnnperf.onnx.load(data)
    ops = {n.op for n in compiled.graph.nodes}
    expected = {"conv_transpose2d", "prelu", "elu", "pad", "slice", "resize", "depth_to_space",
                "selu", "gelu", "reduce_mean", "reduce_sum", "log_softmax"}  # fmt: skip
    assert expected <= ops, expected - ops
    assert ("layer_norm" in ops) == (opset >= 17)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(4)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, 6, 5)).astype(np.float32)
        got = compiled(x)
        assert got.shape == (batch, 5)
        assert_rel_close(got, sess.run(None, {"x": x})[0], 1e-5, f"opset {opset} vs ORT")
        with torch.no_grad():
            assert_rel_close(got, model(torch.from_numpy(x)).numpy(), 1e-5, "vs torch")
