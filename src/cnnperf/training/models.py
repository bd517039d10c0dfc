"""Named architectures for :func:`build_model` and ``cnnperf train``: LeNet, a small VGG and a
small ResNet, for any image size from 8x8 up (digits 8x8, MNIST 28x28, CIFAR-10 32x32x3).

Every model is built from :mod:`cnnperf.nn` layers, so its ``state_dict`` has PyTorch's keys and
the same architecture written with ``torch.nn`` (same attribute names) loads it unchanged. Each
takes ``(in_channels, num_classes, input_size)`` and a ``seed``: its initial weights are drawn
from ``numpy.random.default_rng(seed)`` (PyTorch's default distributions), never from the global
generator, so a seed always gives the same model. A model keeps its constructor arguments in
``model.arch`` (what :func:`cnnperf.training.save_model` stores to rebuild it).

- ``lenet``: LeNet-5 (LeCun et al., 1998) with ReLU and max pooling: conv 5x5 (6) - pool -
  conv 5x5 (16) - pool - 120 - 84 - classes. The first convolution pads by 2 (28x28 MNIST keeps
  its size, as in the usual MNIST LeNet); the second is unpadded as in LeNet-5 from 20 pixels
  up (28x28: 28-14-10-5, 400 features) and pads by 2 below, where small maps would vanish
  (8x8 digits: 8-4-4-2).
- ``vgg_small``: three VGG stages (Simonyan & Zisserman, 2015) of 3x3 conv - batch norm - ReLU
  (widths 32, 64, 128; one, two and two convolutions), each followed by 2x2 max pooling while
  the map is at least 4 pixels wide, then global average pooling and a 256-unit classifier with
  dropout.
- ``resnet_small``: a CIFAR-style ResNet (He et al., 2016): a 3x3 stem (16) and three stages of
  ``blocks`` BasicBlocks (16, 32, 64 channels; the last two halve the map while it is at least
  4 pixels wide, with 1x1 projection shortcuts), global average pooling and a linear classifier.

>>> import numpy as np
>>> model = build_model("lenet", in_channels=1, num_classes=10, input_size=8, seed=0)
>>> model(np.zeros((2, 1, 8, 8), np.float32)).shape, count_parameters(model)
((2, 10), 21386)
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import nn
from ..autograd.tensor import Tensor
from ..nn import functional as F

__all__ = [
    "MODELS",
    "MIN_INPUT_SIZE",
    "LeNet",
    "VGGSmall",
    "ResNetSmall",
    "BasicBlock",
    "build_model",
    "count_parameters",
    "input_hw",
]

MIN_INPUT_SIZE = 8
"""The smallest image side every architecture accepts."""


def input_hw(input_size: Any, where: str = "build_model") -> tuple[int, int]:
    """``input_size`` (an int or an (h, w) pair, each >= :data:`MIN_INPUT_SIZE`) as (h, w).

    Example:
        >>> input_hw(28), input_hw((32, 24))
        ((28, 28), (32, 24))
    """
    pair = (input_size, input_size) if isinstance(input_size, numbers.Integral) else input_size
    ok = (
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pair)
        and min(pair) >= MIN_INPUT_SIZE
    )
    if not ok:
        raise ValueError(
            f"{where}: input_size must be an int or an (h, w) pair of ints >= {MIN_INPUT_SIZE}, "
            f"got {input_size!r}"
        )
    return int(pair[0]), int(pair[1])


def _check_count(value: Any, name: str, minimum: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _arch(name: str, in_channels: int, num_classes: int, input_size: Any, **extra: Any) -> dict:
    where = name
    h, w = input_hw(input_size, where)
    arch = {
        "name": name,
        "in_channels": _check_count(in_channels, "in_channels", 1, where),
        "num_classes": _check_count(num_classes, "num_classes", 2, where),
        "input_size": [h, w],
    }
    arch.update(extra)
    return arch


class LeNet(nn.Module):
    """LeNet-5 with ReLU and max pooling; see the module docstring for the padding rule.

    Args:
        in_channels: image channels (1 for digits and MNIST, 3 for CIFAR-10).
        num_classes: outputs (logits).
        input_size: image side, or (h, w); at least 8.
        seed: seeds the initial weights.

    Shape:
        (n, in_channels, h, w) -> (n, num_classes). Attributes ``features`` (the convolutions,
        keys ``features.0`` and ``features.3``) and ``classifier`` (``classifier.0/2/4``).

    Example:
        >>> m = LeNet(1, 10, 28)
        >>> m.features[3].padding, count_parameters(m)
        ((0, 0), 61706)
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, input_size: Any = 28, seed: int = 0
    ) -> None:
        super().__init__()
        self.arch = _arch("lenet", in_channels, num_classes, input_size)
        g = np.random.default_rng(seed)
        h, w = self.arch["input_size"]
        h1, w1 = h // 2, w // 2  # after conv1 (padding 2 keeps the size) and the first pool
        pad2 = 2 if min(h1, w1) < 10 else 0  # inputs below 20 pixels: padded (module doc)
        h2, w2 = (h1 + 2 * pad2 - 4) // 2, (w1 + 2 * pad2 - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(self.arch["in_channels"], 6, 5, padding=2, generator=g),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=pad2, generator=g),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * h2 * w2, 120, generator=g),
            nn.ReLU(),
            nn.Linear(120, 84, generator=g),
            nn.ReLU(),
            nn.Linear(84, self.arch["num_classes"], generator=g),
        )

    def forward(self, x: Any) -> Tensor:
        return self.classifier(F.flatten(self.features(x), 1))


def _conv_bn_relu(c_in: int, c_out: int, g: np.random.Generator) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False, generator=g),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


class VGGSmall(nn.Module):
    """A small VGG: stages of 3x3 conv - BN - ReLU and max pooling, global average pooling,
    a 256-unit classifier with dropout.

    Args:
        in_channels, num_classes, input_size, seed: as :class:`LeNet`.
        widths: channels of the three stages (default (32, 64, 128)).
        dropout: dropout probability before the last linear layer (default 0.3).

    Shape:
        (n, in_channels, h, w) -> (n, num_classes).

    Example:
        >>> m = VGGSmall(3, 10, 32)
        >>> m(np.zeros((1, 3, 32, 32), np.float32)).shape, count_parameters(m)
        ((1, 10), 313770)
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        input_size: Any = 32,
        seed: int = 0,
        widths: tuple[int, int, int] = (32, 64, 128),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        widths = tuple(_check_count(c, "widths", 1, "vgg_small") for c in widths)
        if len(widths) != 3:
            raise ValueError(f"vgg_small: widths must be 3 channel counts, got {widths!r}")
        self.arch = _arch(
            "vgg_small", in_channels, num_classes, input_size, widths=list(widths),
            dropout=float(dropout),
        )  # fmt: skip
        g = np.random.default_rng(seed)
        h, w = self.arch["input_size"]
        layers: list[nn.Module] = []
        c = self.arch["in_channels"]
        for width, convs in zip(widths, (1, 2, 2), strict=True):
            for _ in range(convs):
                layers += _conv_bn_relu(c, width, g)
                c = width
            if min(h, w) >= 4:  # keep at least a 2x2 map
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(c, 256, generator=g),
            nn.ReLU(),
            nn.Dropout(self.arch["dropout"]),
            nn.Linear(256, self.arch["num_classes"], generator=g),
        )

    def forward(self, x: Any) -> Tensor:
        return self.classifier(F.flatten(self.pool(self.features(x)), 1))


class BasicBlock(nn.Module):
    """ResNet's basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    The shortcut is the identity, or a strided 1x1 convolution with batch norm (``downsample``)
    when the block changes the channels or the map size.

    Example:
        >>> b = BasicBlock(8, 16, stride=2, generator=0)
        >>> b(np.zeros((1, 8, 6, 6), np.float32)).shape, b.downsample is not None
        ((1, 16, 3, 3), True)
    """

    def __init__(
        self, c_in: int, c_out: int, stride: int = 1, generator: np.random.Generator | int = 0
    ) -> None:
        super().__init__()
        g = np.random.default_rng(generator)  # a Generator is returned as it is
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, generator=g)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False, generator=g)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False, generator=g),
                nn.BatchNorm2d(c_out),
            )

    def forward(self, x: Any) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ResNetSmall(nn.Module):
    """A CIFAR-style ResNet: 3x3 stem, three stages of BasicBlocks, average pool, linear.

    Args:
        in_channels, num_classes, input_size, seed: as :class:`LeNet`.
        widths: channels of the three stages (default (16, 32, 64)).
        blocks: BasicBlocks per stage (default 1; 3 gives ResNet-20).

    Shape:
        (n, in_channels, h, w) -> (n, num_classes); keys ``conv1``, ``bn1``,
        ``layer1.0.conv1`` ... ``layer3.0.downsample.1``, ``fc`` as in torchvision.

    Example:
        >>> m = ResNetSmall(1, 10, 8)
        >>> m(np.zeros((2, 1, 8, 8), np.float32)).shape, count_parameters(m)
        ((2, 10), 77754)
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        input_size: Any = 32,
        seed: int = 0,
        widths: tuple[int, int, int] = (16, 32, 64),
        blocks: int = 1,
    ) -> None:
        super().__init__()
        widths = tuple(_check_count(c, "widths", 1, "resnet_small") for c in widths)
        if len(widths) != 3:
            raise ValueError(f"resnet_small: widths must be 3 channel counts, got {widths!r}")
        blocks = _check_count(blocks, "blocks", 1, "resnet_small")
        self.arch = _arch(
            "resnet_small", in_channels, num_classes, input_size, widths=list(widths),
            blocks=blocks,
        )  # fmt: skip
        g = np.random.default_rng(seed)
        h, w = self.arch["input_size"]
        c = widths[0]
        self.conv1 = nn.Conv2d(self.arch["in_channels"], c, 3, padding=1, bias=False, generator=g)
        self.bn1 = nn.BatchNorm2d(c)
        for i, width in enumerate(widths):
            stride = 2 if i > 0 and min(h, w) >= 4 else 1  # keep at least a 2x2 map
            if stride == 2:
                h, w = (h + 1) // 2, (w + 1) // 2  # 3x3, padding 1, stride 2
            stage = [BasicBlock(c, width, stride, generator=g)]
            stage += [BasicBlock(width, width, 1, generator=g) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            c = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, self.arch["num_classes"], generator=g)

    def forward(self, x: Any) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.flatten(self.avgpool(x), 1))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet": LeNet,
    "vgg_small": VGGSmall,
    "resnet_small": ResNetSmall,
}
"""Architecture name -> constructor ``(in_channels, num_classes, input_size, seed, **options)``."""


def build_model(
    name: str,
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: Any = 28,
    seed: int = 0,
    **options: Any,
) -> nn.Module:
    """Build the architecture ``name`` (a key of :data:`MODELS`) with seeded initial weights.

    Args:
        name: "lenet", "vgg_small" or "resnet_small".
        in_channels: image channels.
        num_classes: number of classes (outputs).
        input_size: image side, or (h, w); at least :data:`MIN_INPUT_SIZE`.
        seed: non-negative int; the same seed gives the same weights.
        options: architecture options (``widths``, ``blocks``, ``dropout``).

    Example:
        >>> a = build_model("resnet_small", 3, 10, 32, seed=1)
        >>> b = build_model("resnet_small", 3, 10, 32, seed=1)
        >>> bool(np.array_equal(a.conv1.weight.data, b.conv1.weight.data)), a.arch["name"]
        (True, 'resnet_small')
        >>> build_model("alexnet")
        Traceback (most recent call last):
        ...
        ValueError: build_model: unknown model 'alexnet'; choose from lenet, vgg_small, \
resnet_small
    """
    if name not in MODELS:
        raise ValueError(f"build_model: unknown model {name!r}; choose from {', '.join(MODELS)}")
    _check_count(seed, "seed", 0, "build_model")
    return MODELS[name](in_channels, num_classes, input_size, seed=seed, **options)


def count_parameters(model: nn.Module) -> int:
    """The number of trainable values in ``model``.

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        8
    """
    return int(sum(p.data.size for p in model.parameters()))
