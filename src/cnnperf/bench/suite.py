"""The benchmark suite: convolution layers of real networks, each at batch 1 and batch 8.

A :class:`BenchLayer` is one convolution at one batch size, named ``"<network>.<layer>/b<n>"``
(for example ``"resnet18.layer1.3x3/b8"``). Its tags come from its shape (``"3x3s1"``,
``"1x1"``, ``"depthwise"``, ...), its network and its batch, and group the summary ratios.

Shapes follow the torchvision models at 224x224 input. Layers whose shape already appears
under an earlier network are not repeated (ResNet-50's stride-1 3x3s are ResNet-18's), so no
shape counts twice in the suite's geometric means.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from ..ops.conv import conv_params
from ..shapes import ConvParams

__all__ = [
    "BenchLayer",
    "SUITE",
    "QUICK",
    "BATCHES",
    "suite_layers",
    "parse_shape_spec",
    "select_layers",
    "shape_tags",
]

BATCHES = (1, 8)


@dataclass(frozen=True)
class BenchLayer:
    """One benchmarked convolution: input (n, c_in, h, w), weight (c_out, c_in/groups, k, k)."""

    name: str
    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    k: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def base(self) -> str:
        """The name without the batch suffix: ``"resnet18.layer1.3x3"``."""
        return self.name.rsplit("/", 1)[0]

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c_in, self.h, self.w)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.c_out, self.c_in // self.groups, self.k, self.k)

    def params(self) -> ConvParams:
        """The normalised :class:`ConvParams` (raises ValueError for an invalid shape)."""
        return conv_params(
            self.x_shape, self.w_shape, self.stride, self.padding, 1, self.groups, op="bench"
        )

    @property
    def spec(self) -> str:
        """The shape spec ``N,C,H,W,CO,K,stride,pad,groups`` that ``--layer`` accepts."""
        return (
            f"{self.n},{self.c_in},{self.h},{self.w},{self.c_out},{self.k},"
            f"{self.stride},{self.padding},{self.groups}"
        )

    def describe(self) -> str:
        """Compact shape: ``"8x64x56x56 3x3/1 p1 ->64"`` (plus ``g32`` when grouped)."""
        g = f" g{self.groups}" if self.groups > 1 else ""
        return (
            f"{self.n}x{self.c_in}x{self.h}x{self.w} {self.k}x{self.k}/{self.stride} "
            f"p{self.padding}{g} ->{self.c_out}"
        )


def shape_tags(p: ConvParams) -> set[str]:
    """Tags that follow from the shape: kernel and stride, 1x1, depthwise, grouped, stem, batch.

    Example:
        >>> sorted(shape_tags(conv_params((1, 64, 56, 56), (64, 64, 3, 3), padding=1)))
        ['3x3s1', 'b1', 'dense']
    """
    tags = {f"b{p.n}"}
    if p.is_depthwise:
        tags.add("depthwise")
        tags.add(f"dw{p.kh}x{p.kw}s{p.sh}")
        return tags
    tags.add("grouped" if p.g > 1 else "dense")
    tags.add(f"{p.kh}x{p.kw}s{p.sh}" if p.sh == p.sw else f"{p.kh}x{p.kw}s{p.sh}x{p.sw}")
    if p.kh == p.kw == 1:
        tags.add("1x1")
    if p.kh >= 5 or p.kw >= 5:
        tags.add("large-kernel")
    if p.c_in <= 4:
        tags.add("stem")
    return tags


# (name, c_in, size, c_out, k, stride, padding, groups); padding is k//2 unless given.
_NETWORKS: list[tuple[str, int, int, int, int, int, int | None, int]] = [
    # ResNet-18 (torchvision): the stem, the stride-1 3x3s of each stage, the stride-2 3x3 that
    # opens stages 2-4 and the 1x1/2 projection ("downsample") beside it.
    ("resnet18.conv1", 3, 224, 64, 7, 2, 3, 1),
    ("resnet18.layer1.3x3", 64, 56, 64, 3, 1, None, 1),
    ("resnet18.layer2.3x3", 128, 28, 128, 3, 1, None, 1),
    ("resnet18.layer3.3x3", 256, 14, 256, 3, 1, None, 1),
    ("resnet18.layer4.3x3", 512, 7, 512, 3, 1, None, 1),
    ("resnet18.layer2.3x3s2", 64, 56, 128, 3, 2, None, 1),
    ("resnet18.layer3.3x3s2", 128, 28, 256, 3, 2, None, 1),
    ("resnet18.layer4.3x3s2", 256, 14, 512, 3, 2, None, 1),
    ("resnet18.layer2.down1x1", 64, 56, 128, 1, 2, 0, 1),
    ("resnet18.layer3.down1x1", 128, 28, 256, 1, 2, 0, 1),
    ("resnet18.layer4.down1x1", 256, 14, 512, 1, 2, 0, 1),
    # ResNet-50 (v1.5: the stride sits on the 3x3): bottleneck 1x1 reduce/expand, the strided
    # 3x3s, the 1x1/2 projection. Its stride-1 3x3s have ResNet-18's shapes.
    ("resnet50.layer1.reduce1x1", 256, 56, 64, 1, 1, 0, 1),
    ("resnet50.layer1.expand1x1", 64, 56, 256, 1, 1, 0, 1),
    ("resnet50.layer2.reduce1x1", 512, 28, 128, 1, 1, 0, 1),
    ("resnet50.layer3.reduce1x1", 1024, 14, 256, 1, 1, 0, 1),
    ("resnet50.layer3.expand1x1", 256, 14, 1024, 1, 1, 0, 1),
    ("resnet50.layer4.reduce1x1", 2048, 7, 512, 1, 1, 0, 1),
    ("resnet50.layer4.expand1x1", 512, 7, 2048, 1, 1, 0, 1),
    ("resnet50.layer2.down1x1", 256, 56, 512, 1, 2, 0, 1),
    ("resnet50.layer2.3x3s2", 128, 56, 128, 3, 2, None, 1),
    ("resnet50.layer3.3x3s2", 256, 28, 256, 3, 2, None, 1),
    ("resnet50.layer4.3x3s2", 512, 14, 512, 3, 2, None, 1),
    # VGG-16: the first conv (3 input channels) and the second 3x3 of each block.
    ("vgg16.conv1_1", 3, 224, 64, 3, 1, None, 1),
    ("vgg16.conv1_2", 64, 224, 64, 3, 1, None, 1),
    ("vgg16.conv2_2", 128, 112, 128, 3, 1, None, 1),
    ("vgg16.conv3_2", 256, 56, 256, 3, 1, None, 1),
    ("vgg16.conv4_2", 512, 28, 512, 3, 1, None, 1),
    ("vgg16.conv5_2", 512, 14, 512, 3, 1, None, 1),
    # MobileNetV2 (torchvision's features[i]): the 3x3/2 stem, depthwise 3x3s at stride 1 and 2,
    # pointwise 1x1 expand/project and the final 1x1.
    ("mobilenetv2.f0.conv", 3, 224, 32, 3, 2, None, 1),
    ("mobilenetv2.f1.dw", 32, 112, 32, 3, 1, None, 32),
    ("mobilenetv2.f2.dw", 96, 112, 96, 3, 2, None, 96),
    ("mobilenetv2.f3.dw", 144, 56, 144, 3, 1, None, 144),
    ("mobilenetv2.f4.dw", 144, 56, 144, 3, 2, None, 144),
    ("mobilenetv2.f5.dw", 192, 28, 192, 3, 1, None, 192),
    ("mobilenetv2.f7.dw", 192, 28, 192, 3, 2, None, 192),
    ("mobilenetv2.f8.dw", 384, 14, 384, 3, 1, None, 384),
    ("mobilenetv2.f12.dw", 576, 14, 576, 3, 1, None, 576),
    ("mobilenetv2.f14.dw", 576, 14, 576, 3, 2, None, 576),
    ("mobilenetv2.f15.dw", 960, 7, 960, 3, 1, None, 960),
    ("mobilenetv2.f1.project", 32, 112, 16, 1, 1, 0, 1),
    ("mobilenetv2.f2.expand", 16, 112, 96, 1, 1, 0, 1),
    ("mobilenetv2.f3.expand", 24, 56, 144, 1, 1, 0, 1),
    ("mobilenetv2.f3.project", 144, 56, 24, 1, 1, 0, 1),
    ("mobilenetv2.f8.expand", 64, 14, 384, 1, 1, 0, 1),
    ("mobilenetv2.f15.expand", 160, 7, 960, 1, 1, 0, 1),
    ("mobilenetv2.f17.project", 960, 7, 320, 1, 1, 0, 1),
    ("mobilenetv2.f18.conv", 320, 7, 1280, 1, 1, 0, 1),
    # AlexNet (torchvision): 11x11/4 stem with padding 2, then 5x5 on 27x27.
    ("alexnet.conv1", 3, 224, 64, 11, 4, 2, 1),
    ("alexnet.conv2", 64, 27, 192, 5, 1, 2, 1),
    # Inception 5x5 branches: GoogLeNet inception(3b) (32->96 on 28x28, as in the paper) and
    # Inception-v3 Mixed_5b (48->64 on 35x35).
    ("googlenet.inception3b.5x5", 32, 28, 96, 5, 1, 2, 1),
    ("inception_v3.mixed5b.5x5", 48, 35, 64, 5, 1, 2, 1),
]


def _make(name, n, c_in, hw, c_out, k, stride, padding, groups, extra=()) -> BenchLayer:
    if padding is None:
        padding = k // 2
    layer = BenchLayer(name, n, c_in, hw, hw, c_out, k, stride, padding, groups)
    tags = shape_tags(layer.params()) | set(extra)
    return BenchLayer(name, n, c_in, hw, hw, c_out, k, stride, padding, groups, frozenset(tags))


def suite_layers() -> list[BenchLayer]:
    """Every suite layer at every batch in :data:`BATCHES`, in network order."""
    layers = []
    for name, c_in, hw, c_out, k, stride, padding, groups in _NETWORKS:
        net = name.split(".", 1)[0]
        for n in BATCHES:
            layers.append(
                _make(f"{name}/b{n}", n, c_in, hw, c_out, k, stride, padding, groups, {net})
            )
    return layers


SUITE: list[BenchLayer] = suite_layers()

# The --quick subset: one layer per kind (stem, 3x3 stride 1 and 2, 1x1 stride 1 and 2,
# depthwise stride 1 and 2, pointwise, 5x5), mostly at batch 1, a few at batch 8; about 20 s
# on the 2-core development machine.
QUICK: tuple[str, ...] = (
    "resnet18.conv1/b1",
    "resnet18.layer1.3x3/b1",
    "resnet18.layer3.3x3/b8",
    "resnet18.layer2.3x3s2/b1",
    "resnet18.layer3.down1x1/b1",
    "resnet50.layer1.reduce1x1/b1",
    "resnet50.layer4.expand1x1/b8",
    "vgg16.conv5_2/b1",
    "mobilenetv2.f3.dw/b1",
    "mobilenetv2.f4.dw/b8",
    "mobilenetv2.f2.expand/b1",
    "alexnet.conv2/b1",
)

_SPEC_RE = re.compile(r"^\s*\d+(\s*,\s*\d+){5,8}\s*$")
_SPEC_FIELDS = "N,C,H,W,CO,K[,stride[,pad[,groups]]]"


def parse_shape_spec(spec: str) -> BenchLayer:
    """Parse ``"N,C,H,W,CO,K[,stride[,pad[,groups]]]"`` into a custom layer.

    ``pad`` defaults to ``K // 2`` (same-size output at stride 1), stride and groups to 1. The
    layer is named ``"custom.<spec>"`` and tagged like the suite's layers plus ``"custom"``.

    Example:
        >>> parse_shape_spec("1,64,56,56,64,3").describe()
        '1x64x56x56 3x3/1 p1 ->64'
    """
    if not _SPEC_RE.match(spec):
        raise ValueError(
            f"bad layer spec {spec!r}: expected a suite layer name or {_SPEC_FIELDS} "
            "(6 to 9 comma-separated non-negative integers), e.g. 1,64,56,56,64,3 or "
            "8,144,56,56,144,3,2,1,144"
        )
    values = [int(v) for v in spec.split(",")]
    n, c_in, hw_h, hw_w, c_out, k = values[:6]
    stride = values[6] if len(values) > 6 else 1
    padding = values[7] if len(values) > 7 else k // 2
    groups = values[8] if len(values) > 8 else 1
    if min(n, c_in, hw_h, hw_w, c_out, k, stride, groups) < 1:
        raise ValueError(
            f"bad layer spec {spec!r}: N, C, H, W, CO, K, stride and groups must be >= 1 "
            f"({_SPEC_FIELDS})"
        )
    name = "custom." + ",".join(str(v) for v in values)
    layer = BenchLayer(name, n, c_in, hw_h, hw_w, c_out, k, stride, padding, groups)
    try:
        p = layer.params()
    except ValueError as e:
        raise ValueError(f"bad layer spec {spec!r} ({_SPEC_FIELDS}): {e}") from None
    return BenchLayer(
        name, n, c_in, hw_h, hw_w, c_out, k, stride, padding, groups,
        frozenset(shape_tags(p) | {"custom"}),
    )  # fmt: skip


def _hint(name: str, bases: list[str]) -> str:
    close = difflib.get_close_matches(name.split("/")[0], bases, n=6, cutoff=0.5)
    if not close:
        net = name.split(".")[0]
        close = [b for b in bases if b.split(".")[0] == net][:6]
    return f"; did you mean one of {close}?" if close else ""


def select_layers(
    names: list[str] | None = None,
    *,
    quick: bool = False,
    tags: list[str] | None = None,
    batches: list[int] | None = None,
    suite: list[BenchLayer] | None = None,
) -> list[BenchLayer]:
    """The layers to run, in suite order (custom specs after, in the order given).

    Args:
        names: suite names (``"resnet18.layer1.3x3/b8"``), base names without the batch suffix
            (every batch), or shape specs (see :func:`parse_shape_spec`). None: the whole suite.
        quick: without ``names``, start from the :data:`QUICK` subset instead of the whole
            suite (``names`` win over ``quick``).
        tags: keep only layers carrying every one of these tags.
        batches: keep only these batch sizes (suite layers only).
    """
    suite = SUITE if suite is None else suite
    by_name = {layer.name: layer for layer in suite}
    picked: list[BenchLayer] = []
    if names:
        chosen: set[str] = set()
        custom: list[BenchLayer] = []
        for raw in names:
            name = raw.strip()
            if name in by_name:
                chosen.add(name)
            elif any(layer.base == name for layer in suite):
                chosen.update(layer.name for layer in suite if layer.base == name)
            elif name and name[0].isdigit():
                layer = parse_shape_spec(name)
                if all(c.name != layer.name for c in custom):
                    custom.append(layer)
            else:
                hint = _hint(name, sorted({layer.base for layer in suite}))
                raise ValueError(
                    f"unknown layer {name!r}: not a suite layer (see `cnnperf bench --list`) "
                    f"nor a shape spec {_SPEC_FIELDS}{hint}"
                )
        picked = [layer for layer in suite if layer.name in chosen] + custom
    elif quick:
        picked = [layer for layer in suite if layer.name in QUICK]
    else:
        picked = list(suite)
    if batches:
        picked = [layer for layer in picked if layer.n in batches or "custom" in layer.tags]
    if tags:
        known = set().union(*(layer.tags for layer in suite), *(layer.tags for layer in picked))
        unknown = [t for t in tags if t not in known]
        if unknown:
            raise ValueError(f"unknown tag(s) {unknown}; known tags: {sorted(known)}")
        picked = [layer for layer in picked if set(tags) <= layer.tags]
    if not picked:
        raise ValueError("no layer left to benchmark after applying --layer/--tag/--batch")
    return picked
