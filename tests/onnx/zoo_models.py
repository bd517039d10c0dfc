"""Real CNN architectures the other tests do not see, written in PyTorch after torchvision's
layouts (torchvision itself is not needed) at reduced width and resolution: SqueezeNet 1.1,
DenseNet, an Inception v3 / GoogLeNet mix, ShuffleNetV2, EfficientNet-B0, MnasNet, RegNetY,
VGG-11 with BatchNorm, AlexNet, a small U-Net and ConvNeXt.

:func:`build` returns a model in eval mode with seeded weights and BatchNorm statistics made
non-trivial (``cnnperf.bench.models.randomize_batchnorm``), and its input shape (n, c, h, w).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnperf.bench.models import randomize_batchnorm

__all__ = ["ZOO", "build"]


def conv_bn(c_in, c_out, k, stride=1, groups=1, act=nn.ReLU, eps=1e-5, padding=None):
    """Conv (no bias) + BatchNorm (+ activation), torchvision's Conv2dNormActivation."""
    pad = (k - 1) // 2 if padding is None else padding
    layers = [nn.Conv2d(c_in, c_out, k, stride, pad, groups=groups, bias=False),
              nn.BatchNorm2d(c_out, eps=eps)]  # fmt: skip
    return nn.Sequential(*layers, *([act()] if act else []))


# -- SqueezeNet 1.1 ------------------------------------------------------------------------
class Fire(nn.Module):
    def __init__(self, c_in: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


def squeezenet1_1(d: int = 4, classes: int = 10) -> nn.Module:
    pool = nn.MaxPool2d(3, 2, ceil_mode=True)  # ceil_mode: the odd last windows count
    fires = [(64, 16, 64), (128, 16, 64), "M", (128, 32, 128), (256, 32, 128), "M",
             (256, 48, 192), (384, 48, 192), (384, 64, 256), (512, 64, 256)]  # fmt: skip
    layers = [nn.Conv2d(3, 64 // d, 3, 2), nn.ReLU(), pool]
    for f in fires:
        layers.append(pool if f == "M" else Fire(f[0] // d, f[1] // d, f[2] // d, f[2] // d))
    head = [nn.Dropout(0.5), nn.Conv2d(512 // d, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)]
    return nn.Sequential(*layers, *head, nn.Flatten(1))


# -- DenseNet ------------------------------------------------------------------------------
class DenseLayer(nn.Module):  # BN-ReLU-Conv order: the norms read concatenations
    def __init__(self, c_in: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features):
        x = torch.cat(features, 1)
        x = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(x)))


class DenseNet(nn.Module):
    def __init__(self, growth=8, blocks=(3, 3, 2), init=16, bn_size=2, classes=10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, init, 7, 2, 3, bias=False), nn.BatchNorm2d(init),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))  # fmt: skip
        self.blocks, self.transitions = nn.ModuleList(), nn.ModuleList()
        c = init
        for i, n in enumerate(blocks):
            self.blocks.append(
                nn.ModuleList(DenseLayer(c + j * growth, growth, bn_size) for j in range(n))
            )
            c += n * growth
            if i < len(blocks) - 1:
                self.transitions.append(nn.Sequential(
                    nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False),
                    nn.AvgPool2d(2, 2)))  # fmt: skip
                c //= 2
        self.norm5, self.classifier = nn.BatchNorm2d(c), nn.Linear(c, classes)

    def forward(self, x):
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            features = [x]
            for layer in block:
                features.append(layer(features))
            x = torch.cat(features, 1)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        x = F.adaptive_avg_pool2d(F.relu(self.norm5(x)), 1)
        return self.classifier(torch.flatten(x, 1))


# -- Inception v3 / GoogLeNet ----------------------------------------------------------------
def basic(c_in, c_out, k, stride=1, padding=0):
    """Inception's BasicConv2d: conv (no bias), BatchNorm eps 0.001, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, padding, bias=False),
                         nn.BatchNorm2d(c_out, eps=0.001), nn.ReLU())  # fmt: skip


class Branches(nn.Module):
    """Runs each branch (a Sequential, or a pair of parallel tails after a common head) and
    concatenates along channels."""

    def __init__(self, *branches) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


class AvgPool3(nn.Module):  # F.avg_pool2d(x, 3, 1, 1): count_include_pad=True, as Inception's
    def forward(self, x):
        return F.avg_pool2d(x, 3, 1, 1)


def inception_a(c, pool_features, d):
    return Branches(
        basic(c, 64 // d, 1),
        nn.Sequential(basic(c, 48 // d, 1), basic(48 // d, 64 // d, 5, padding=2)),
        nn.Sequential(basic(c, 64 // d, 1), basic(64 // d, 96 // d, 3, padding=1),
                      basic(96 // d, 96 // d, 3, padding=1)),
        nn.Sequential(AvgPool3(), basic(c, pool_features, 1)),
    )  # fmt: skip


def inception_b(c, d):  # grid reduction
    return Branches(
        basic(c, 384 // d, 3, stride=2),
        nn.Sequential(basic(c, 64 // d, 1), basic(64 // d, 96 // d, 3, padding=1),
                      basic(96 // d, 96 // d, 3, stride=2)),
        nn.MaxPool2d(3, 2),
    )  # fmt: skip


def inception_c(c, c7, d):  # factorised 7x7: 1x7 and 7x1 kernels
    return Branches(
        basic(c, 192 // d, 1),
        nn.Sequential(basic(c, c7, 1), basic(c7, c7, (1, 7), padding=(0, 3)),
                      basic(c7, 192 // d, (7, 1), padding=(3, 0))),
        nn.Sequential(basic(c, c7, 1), basic(c7, c7, (7, 1), padding=(3, 0)),
                      basic(c7, c7, (1, 7), padding=(0, 3)),
                      basic(c7, 192 // d, (1, 7), padding=(0, 3))),
        nn.Sequential(AvgPool3(), basic(c, 192 // d, 1)),
    )  # fmt: skip


def googlenet_inception(c, d):  # GoogLeNet's module: branch 4 max-pools with ceil_mode
    return Branches(
        basic(c, 64 // d, 1),
        nn.Sequential(basic(c, 96 // d, 1), basic(96 // d, 128 // d, 3, padding=1)),
        nn.Sequential(basic(c, 16 // d, 1), basic(16 // d, 32 // d, 3, padding=1)),
        nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), basic(c, 32 // d, 1)),
    )


class Split2(nn.Module):  # Inception E's 1x3 / 3x1 pair after a common head
    def __init__(self, head, c_mid, c_out) -> None:
        super().__init__()
        self.head = head
        self.a = basic(c_mid, c_out, (1, 3), padding=(0, 1))
        self.b = basic(c_mid, c_out, (3, 1), padding=(1, 0))

    def forward(self, x):
        x = self.head(x)
        return torch.cat([self.a(x), self.b(x)], 1)


def inception_e(c, d):
    return Branches(
        basic(c, 320 // d, 1),
        Split2(basic(c, 384 // d, 1), 384 // d, 384 // d),
        Split2(nn.Sequential(basic(c, 448 // d, 1), basic(448 // d, 384 // d, 3, padding=1)),
               384 // d, 384 // d),
        nn.Sequential(AvgPool3(), basic(c, 192 // d, 1)),
    )  # fmt: skip


class Inception(nn.Module):
    def __init__(self, d: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(basic(3, 32 // d, 3, stride=2),
                                  basic(32 // d, 64 // d, 3, padding=1),
                                  nn.MaxPool2d(3, 2))  # fmt: skip
        c = 64 // d
        blocks = [inception_a(c, 32 // d, d)]
        c = (64 + 64 + 96 + 32) // d
        blocks += [inception_b(c, d)]
        c += (384 + 96) // d
        blocks += [inception_c(c, 128 // d, d)]
        c = 4 * 192 // d
        blocks += [googlenet_inception(c, d)]
        c = (64 + 128 + 32 + 32) // d
        blocks += [inception_e(c, d)]
        c = (320 + 4 * 384 + 192) // d
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        # torchvision's transform_input: per-channel re-normalisation (Gather/Slice, Mul, Add)
        stats = ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))
        chans = [torch.unsqueeze(x[:, i], 1) * (s / 0.5) + (m - 0.5) / 0.5
                 for i, (m, s) in enumerate(stats)]  # fmt: skip
        x = self.blocks(self.stem(torch.cat(chans, 1)))
        x = F.dropout(F.adaptive_avg_pool2d(x, (1, 1)), 0.5, self.training)
        return self.fc(torch.flatten(x, 1))


# -- ShuffleNetV2 ----------------------------------------------------------------------------
def channel_shuffle(x, groups: int):
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    return torch.transpose(x, 1, 2).contiguous().view(n, -1, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride, half = stride, c_out // 2
        if stride > 1:
            self.branch1 = nn.Sequential(conv_bn(c_in, c_in, 3, stride, c_in, None),
                                         conv_bn(c_in, half, 1))  # fmt: skip
        self.branch2 = nn.Sequential(conv_bn(c_in if stride > 1 else half, half, 1),
                                     conv_bn(half, half, 3, stride, half, None),
                                     conv_bn(half, half, 1))  # fmt: skip

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, repeats=(2, 2, 2), chans=(8, 16, 32, 48, 64), classes=10) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, chans[0], 3, 2), nn.MaxPool2d(3, 2, 1))
        units, c = [], chans[0]
        for r, c_out in zip(repeats, chans[1:4], strict=True):
            units += [ShuffleUnit(c if i == 0 else c_out, c_out, 2 if i == 0 else 1)
                      for i in range(r)]  # fmt: skip
            c = c_out
        self.stages = nn.Sequential(*units, conv_bn(c, chans[4], 1))
        self.fc = nn.Linear(chans[4], classes)

    def forward(self, x):
        return self.fc(self.stages(self.stem(x)).mean([2, 3]))


# -- EfficientNet-B0 -------------------------------------------------------------------------
class SqueezeExcite(nn.Module):  # global pool, 1x1 convs, Sigmoid gate, broadcast Mul
    def __init__(self, c: int, squeeze: int, act=nn.SiLU) -> None:
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1), act()

    def forward(self, x):
        s = self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(s)


class MBConv(nn.Module):
    def __init__(self, expand: int, k: int, stride: int, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_in * expand
        layers = [conv_bn(c_in, mid, 1, act=nn.SiLU)] if expand != 1 else []
        layers += [conv_bn(mid, mid, k, stride, mid, nn.SiLU),
                   SqueezeExcite(mid, max(1, c_in // 4)),
                   conv_bn(mid, c_out, 1, act=None)]  # fmt: skip
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.block(x)
        # torchvision's StochasticDepth is the identity in eval mode: off here
        return y + x if self.residual else y


def efficientnet_b0(classes: int = 10) -> nn.Module:
    # (expand, kernel, stride, c_in, c_out, repeats): B0's stages at a quarter width, fewer blocks
    stages = [(1, 3, 1, 8, 8, 1), (6, 3, 2, 8, 8, 2), (6, 5, 2, 8, 12, 2), (6, 3, 2, 12, 20, 1),
              (6, 5, 1, 20, 28, 2), (6, 5, 2, 28, 48, 1), (6, 3, 1, 48, 80, 1)]  # fmt: skip
    layers = [conv_bn(3, 8, 3, 2, act=nn.SiLU)]
    for e, k, s, c_in, c_out, r in stages:
        layers += [MBConv(e, k, s if i == 0 else 1, c_in if i == 0 else c_out, c_out)
                   for i in range(r)]  # fmt: skip
    layers += [conv_bn(80, 320, 1, act=nn.SiLU), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
               nn.Dropout(0.2), nn.Linear(320, classes)]  # fmt: skip
    return nn.Sequential(*layers)


# -- MnasNet ---------------------------------------------------------------------------------
class MnasResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.layers = nn.Sequential(conv_bn(c_in, mid, 1), conv_bn(mid, mid, k, stride, mid),
                                    conv_bn(mid, c_out, 1, act=None))  # fmt: skip
        self.residual = c_in == c_out and stride == 1

    def forward(self, x):
        return self.layers(x) + x if self.residual else self.layers(x)


class MnasNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        layers = [conv_bn(3, 8, 3, 2), conv_bn(8, 8, 3, 1, 8), conv_bn(8, 8, 1, act=None)]
        # (c_out, kernel, stride, expansion, repeats): MnasNet-A's stacks at a quarter width
        c = 8
        stacks = [(8, 3, 2, 3, 2), (16, 5, 2, 3, 2), (24, 5, 2, 6, 2), (24, 3, 1, 6, 1),
                  (48, 5, 2, 6, 2), (80, 3, 1, 6, 1)]  # fmt: skip
        for c_out, k, s, e, r in stacks:
            layers += [MnasResidual(c if i == 0 else c_out, c_out, k, s if i == 0 else 1, e)
                       for i in range(r)]  # fmt: skip
            c = c_out
        self.layers = nn.Sequential(*layers, conv_bn(c, 160, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(160, classes))

    def forward(self, x):
        return self.classifier(self.layers(x).mean([2, 3]))


# -- RegNetY ---------------------------------------------------------------------------------
class ResBottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, group_width: int) -> None:
        super().__init__()
        down = c_in != c_out or stride != 1
        self.proj = conv_bn(c_in, c_out, 1, stride, act=None) if down else None
        self.f = nn.Sequential(conv_bn(c_in, c_out, 1),
                               conv_bn(c_out, c_out, 3, stride, c_out // group_width),
                               SqueezeExcite(c_out, max(1, round(0.25 * c_in)), nn.ReLU),
                               conv_bn(c_out, c_out, 1, act=None))  # fmt: skip

    def forward(self, x):
        return F.relu((x if self.proj is None else self.proj(x)) + self.f(x))


def regnet_y(classes: int = 10) -> nn.Module:
    layers, c = [conv_bn(3, 16, 3, 2)], 16
    for c_out, depth in [(24, 1), (48, 2), (96, 2)]:  # grouped 3x3 convs of 8 channels a group
        layers += [ResBottleneck(c if i == 0 else c_out, c_out, 2 if i == 0 else 1, 8)
                   for i in range(depth)]  # fmt: skip
        c = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c, classes))


# -- VGG-11 with BatchNorm, AlexNet ----------------------------------------------------------
def vgg11_bn(d: int = 16, classes: int = 10) -> nn.Module:
    layers, c = [], 3
    for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v // d, 3, padding=1), nn.BatchNorm2d(v // d), nn.ReLU()]
            c = v // d
    hidden = 4096 // (4 * d)
    classifier = [nn.Linear(c * 7 * 7, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, hidden),
                  nn.ReLU(), nn.Dropout(), nn.Linear(hidden, classes)]  # fmt: skip
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(1), *classifier)


def alexnet(d: int = 8, classes: int = 10) -> nn.Module:
    c = [64 // d, 192 // d, 384 // d, 256 // d, 256 // d]
    features = [nn.Conv2d(3, c[0], 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(),
                nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(),
                nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2)]  # fmt: skip
    hidden = 4096 // (4 * d)
    classifier = [nn.Dropout(), nn.Linear(c[4] * 36, hidden), nn.ReLU(), nn.Dropout(),
                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes)]  # fmt: skip
    return nn.Sequential(*features, nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(1), *classifier)


# -- U-Net -----------------------------------------------------------------------------------
def double_conv(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(conv_bn(c_in, c_out, 3), conv_bn(c_out, c_out, 3))


class UNet(nn.Module):
    """Three levels down, three up: ConvTranspose stride 2 (padded to the odd skip size),
    bilinear align_corners=True by scale, nearest to the skip's size, and a bilinear
    align_corners=False side path from the bottleneck; Concat skip connections."""

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.inc, self.d1 = double_conv(3, 8), double_conv(8, 16)
        self.d2, self.d3 = double_conv(16, 24), double_conv(24, 24)
        self.up1 = nn.ConvTranspose2d(24, 24, 2, stride=2)
        self.u1, self.u2, self.u3 = double_conv(48, 16), double_conv(32, 8), double_conv(16, 8)
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.side = nn.Conv2d(24, 8, 1)
        self.outc = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.d1(F.max_pool2d(x1, 2))
        x3 = self.d2(F.max_pool2d(x2, 2))
        x4 = self.d3(F.max_pool2d(x3, 2))
        y = self.up1(x4)
        dy, dx = x3.size(2) - y.size(2), x3.size(3) - y.size(3)
        y = F.pad(y, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        y = self.u1(torch.cat([x3, y], 1))
        y = self.u2(torch.cat([x2, self.up2(y)], 1))
        y = F.interpolate(y, size=x1.shape[2:], mode="nearest")
        y = self.u3(torch.cat([x1, y], 1))
        side = F.interpolate(self.side(x4), size=x1.shape[2:], mode="bilinear", align_corners=False)
        return self.outc(y + side)


# -- ConvNeXt --------------------------------------------------------------------------------
class LayerNorm2d(nn.LayerNorm):  # over channels: permute to NHWC and back, as torchvision's
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(0.5 + torch.rand(dim, 1, 1))

    def forward(self, x):
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.fc2(F.gelu(self.fc1(y))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y  # stochastic depth: identity in eval mode


class ConvNeXt(nn.Module):
    def __init__(self, dims=(16, 32), depths=(2, 1), classes: int = 10) -> None:
        super().__init__()
        layers = [nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6)]
        for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            if i:
                layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            layers += [CNBlock(dim) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.norm, self.fc = LayerNorm2d(dims[-1], eps=1e-6), nn.Linear(dims[-1], classes)

    def forward(self, x):
        x = self.norm(F.adaptive_avg_pool2d(self.features(x), 1))
        return self.fc(torch.flatten(x, 1))


# name -> (constructor, input shape at batch 1)
ZOO = {
    "squeezenet1_1": (squeezenet1_1, (1, 3, 65, 65)),
    "densenet": (DenseNet, (1, 3, 48, 48)),
    "inception": (Inception, (1, 3, 75, 75)),
    "shufflenet_v2": (ShuffleNetV2, (1, 3, 64, 64)),
    "efficientnet_b0": (efficientnet_b0, (1, 3, 64, 64)),
    "mnasnet": (MnasNet, (1, 3, 64, 64)),
    "regnet_y": (regnet_y, (1, 3, 64, 64)),
    "vgg11_bn": (vgg11_bn, (1, 3, 224, 224)),
    "alexnet": (alexnet, (1, 3, 224, 224)),
    "unet": (UNet, (1, 3, 36, 44)),
    "convnext": (ConvNeXt, (1, 3, 64, 64)),
}


def _randomize_norms(model: nn.Module, seed: int) -> None:
    """LayerNorm affine terms away from (1, 0), so that dropping them would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, int, int, int]]:
    """``(model, input_shape)``: the named :data:`ZOO` network in eval mode, seeded weights and
    randomised BatchNorm statistics / LayerNorm affine terms."""
    ctor, shape = ZOO[name]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ctor()
    _randomize_norms(model, seed + 1)
    # randomize_batchnorm calibrates on a square batch: give it the larger side
    return randomize_batchnorm(model, seed + 2, max(shape[2:])).eval(), shape
