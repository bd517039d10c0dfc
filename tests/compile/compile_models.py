"""Small cnnperf.nn models for the tracing, memory-plan and API tests (not collected)."""

from __future__ import annotations

import numpy as np

from cnnperf import nn
from cnnperf.autograd import functional as F


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms (so that eval != identity)."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            c = m.num_features
            m.running_mean[:] = 0.1 * rng.standard_normal(c)
            m.running_var[:] = 0.5 + rng.random(c)
            m.weight.data[:] = 1 + 0.2 * rng.standard_normal(c)
            m.bias.data[:] = 0.2 + 0.1 * rng.standard_normal(c)
    return model


class BasicBlock(nn.Module):
    """ResNet basic block; the residual add is written with ``+`` in forward."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet-18's layout (torchvision names) with a width multiplier and block counts."""

    def __init__(self, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c, self.stages = widths[0], len(widths)
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            layer = [BasicBlock(c, w, 1 if i == 0 else 2)]
            layer += [BasicBlock(w, w) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            c = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(F.flatten(self.avgpool(x), 1))


def resnet18() -> ResNet:
    return randomize_bn(ResNet())


def tiny_resnet(classes: int = 5) -> ResNet:
    return randomize_bn(ResNet(widths=(8, 16), blocks=(1, 2), classes=classes))
