"""``cnnperf bench --models``: whole networks, cnnperf against ONNX Runtime and PyTorch eager.

ResNet-18 and MobileNetV2 are torchvision's architectures (layer for layer; torchvision itself
is not needed), written in PyTorch with seeded random weights and BatchNorm statistics made
non-trivial (:func:`randomize_batchnorm`), so that folding them into the convs matters. Each
network is exported once to ONNX bytes (dynamic batch); per batch size, cnnperf compiles those
bytes, ONNX Runtime runs them and PyTorch runs the module, in this process at the same thread
count, timed in interleaved rounds (:func:`cnnperf.bench.runner.run_interleaved`) after a
warm-up call each. PyTorch is needed to build the networks (imported only here).

>>> model = resnet18(width=8, classes=5)
>>> sum(1 for m in model.modules() if type(m).__name__ == "BasicBlock"), model.fc.out_features
(8, 5)
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import config
from .machine import machine_info
from .peers import OrtPeer, available_peers
from .runner import Engine, EngineResult, engine_notes, run_interleaved

__all__ = [
    "MODELS",
    "resnet18",
    "mobilenet_v2",
    "build_model",
    "randomize_batchnorm",
    "export_onnx",
    "max_rel_err",
    "ModelsBenchSettings",
    "ModelResult",
    "ModelsBenchRun",
    "run_models_bench",
]

MODELS = ("resnet18", "mobilenet_v2")


@functools.cache
def _classes():
    """``(ResNet18, MobileNetV2, BasicBlock)``: the PyTorch module classes (defined on first
    use: PyTorch is no cnnperf dependency)."""
    import torch
    from torch import nn

    def conv_bn(c_in, c_out, k, stride=1, groups=1, act=None):
        layers = [nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(c_out)]  # fmt: skip
        return nn.Sequential(*layers, *([act(inplace=True)] if act else []))

    class BasicBlock(nn.Module):  # torchvision's names: conv1, bn1, relu, conv2, bn2, downsample
        def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            down = stride > 1 or c_in != c_out
            self.downsample = conv_bn(c_in, c_out, 1, stride) if down else None

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + identity)

    class ResNet18(nn.Module):  # torchvision's resnet18; ``width`` scales every stage
        def __init__(self, width: int = 64, classes: int = 1000) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            c = width
            for i in range(4):
                c_out = width * 2**i
                blocks = [BasicBlock(c, c_out, 1 if i == 0 else 2), BasicBlock(c_out, c_out)]
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
                c = c_out
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(c, classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class InvertedResidual(nn.Module):  # 1x1 expand, 3x3 depthwise, 1x1 linear projection
        def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden, relu6 = int(round(c_in * expand)), nn.ReLU6
            self.use_res_connect = stride == 1 and c_in == c_out
            layers = [conv_bn(c_in, hidden, 1, act=relu6)] if expand != 1 else []
            layers += [
                conv_bn(hidden, hidden, 3, stride, hidden, relu6),
                *conv_bn(hidden, c_out, 1),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):  # torchvision's mobilenet_v2 (features, classifier)
        # (expansion t, channels c, repeats n, first stride s), as in the paper's Table 2
        CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip

        def __init__(self, width_mult: float = 1.0, classes: int = 1000) -> None:
            super().__init__()
            c, last = _divisible(32 * width_mult), _divisible(1280 * max(1.0, width_mult))
            layers = [conv_bn(3, c, 3, 2, act=nn.ReLU6)]
            for t, ch, n, s in self.CFG:
                for i in range(n):
                    c_out = _divisible(ch * width_mult)
                    layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                    c = c_out
            self.features = nn.Sequential(*layers, conv_bn(c, last, 1, act=nn.ReLU6))
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, classes))
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out")
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)

        def forward(self, x):
            x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
            return self.classifier(torch.flatten(x, 1))

    return ResNet18, MobileNetV2, BasicBlock


def _divisible(v: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: the nearest multiple of 8, never 10% below ``v``."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def randomize_batchnorm(model, seed: int = 0, input_size: int = 64):
    """Give every BatchNorm2d running statistics and affine terms that fold into something
    non-trivial, keeping activations of order one through the network; returns it in eval mode.

    One forward pass in training mode on a seeded random batch sets each layer's running
    statistics to its batch's; then the means are shifted by 0.2 standard deviations times a
    normal draw, the variances scaled by U(0.5, 2), the scales drawn from U(0.5, 1.5) and the
    shifts from 0.2 N(0, 1).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one batch, that batch's statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, input_size, input_size, generator=g))
        for m in bns:
            c = m.num_features
            m.momentum = 0.1
            std = m.running_var.sqrt()
            m.running_mean.add_(0.2 * std * torch.randn(c, generator=g))
            m.running_var.mul_(0.5 + 1.5 * torch.rand(c, generator=g))
            m.weight.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.copy_(0.2 * torch.randn(c, generator=g))
    return model.eval()


def _seeded(which: int, seed: int, *args):
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _classes()[which](*args)
    return randomize_batchnorm(model, seed + 1)


def resnet18(*, width: int = 64, classes: int = 1000, seed: int = 0):
    """torchvision's ResNet-18 in PyTorch (eval mode): seeded weights, random BatchNorm."""
    return _seeded(0, seed, width, classes)


def mobilenet_v2(*, width_mult: float = 1.0, classes: int = 1000, seed: int = 0):
    """torchvision's MobileNetV2 in PyTorch (eval mode): seeded weights, random BatchNorm."""
    return _seeded(1, seed, width_mult, classes)


def build_model(name: str, seed: int = 0):
    """One of :data:`MODELS` at full size with 1000 classes; ValueError for other names."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {list(MODELS)}")
    return resnet18(seed=seed) if name == "resnet18" else mobilenet_v2(seed=seed)


def export_onnx(model, input_size: int, opset: int = 17) -> bytes:
    """``model`` exported to ONNX bytes by the TorchScript exporter (``dynamo=False``: it
    works offline, without onnxscript): input ``x`` of shape (n, 3, size, size), dynamic n,
    output ``y``. Without the exporter's constant folding, which would fold the BatchNorms
    into the convs itself: the graph keeps them, for cnnperf's and ONNX Runtime's passes."""
    import warnings

    import torch

    buf = io.BytesIO()
    x = torch.zeros(1, 3, input_size, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(model, (x,), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=opset,
                          do_constant_folding=False, dynamo=False)  # fmt: skip
    return buf.getvalue()


def max_rel_err(actual, expected) -> float:
    """``max |actual - expected| / max |expected|`` in float64 (inf on a shape mismatch).

    Example:
        >>> max_rel_err(np.array([1.0, 2.1]), np.array([1.0, 2.0]))  # doctest: +ELLIPSIS
        0.05...
    """
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if a.shape != e.shape:
        return float("inf")
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    err = float(np.max(np.abs(a - e))) if e.size else 0.0
    if not (np.isfinite(err) and np.isfinite(scale)):
        return float("inf")
    return err / scale if scale > 0 else err


# ----------------------------------------------------------------------------------------------
# the benchmark


@dataclass
class ModelsBenchSettings:
    """What to run and how to time it (see :func:`cnnperf.bench.runner.run_interleaved`).

    ``tol`` bounds the norm-relative difference of each engine's output from the reference
    (ONNX Runtime, else PyTorch): a whole network's float32 error, hence looser than a layer's.
    """

    models: tuple[str, ...] = MODELS
    batches: tuple[int, ...] = (1, 8)
    input_size: int = 224
    rounds: int | None = None
    target_s: float = 1.0
    min_rounds: int = 5
    max_rounds: int = 100
    budget_s: float = 4.0
    tol: float = 1e-3
    seed: int = 0
    peers: tuple[str, ...] = ("ort", "torch")
    ort_spin: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rounds": self.rounds or "adaptive",
            "statistic": "median of interleaved rounds (rotating order) after one warm-up call",
            "tol_measure": "||y - y_ref||_2 / ||y_ref||_2",
            "max_rel_err_measure": "max |y_cnnperf - y_ref| / max |y_ref|",
            "load_first": "cnnperf.compile(ONNX bytes) + the first inference",
        }


@dataclass
class ModelResult:
    """One network at one batch size: every engine's times and cnnperf's extra numbers.

    Attributes:
        load_first_s: ``cnnperf.compile`` on the ONNX bytes plus the first inference.
        max_rel_err: :func:`max_rel_err` of cnnperf's output against ONNX Runtime's (against
            PyTorch's without ONNX Runtime).
        memory: cnnperf's memory plan: ``planned_peak_bytes`` (activations), the largest
            single layer (``largest_layer``, ``largest_layer_bytes``: inputs + outputs) and
            ``naive_bytes`` (every activation kept).
    """

    model: str
    batch: int
    input_shape: tuple[int, ...]
    flops: int
    load_first_s: float
    max_rel_err: float | None
    err_reference: str | None
    memory: dict[str, Any]
    engines: dict[str, EngineResult]
    reference: str | None

    @property
    def name(self) -> str:
        return f"{self.model}/b{self.batch}"

    def median(self, engine: str) -> float | None:
        res = self.engines.get(engine)
        return res.median_s if res is not None and res.timed else None

    def gflops(self, engine: str) -> float | None:
        """GFLOP/s of ``engine`` at its median time (None when it has none)."""
        t = self.median(engine)
        return self.flops / t / 1e9 if t else None

    def ratio(self, peer: str) -> float | None:
        """time(cnnperf) / time(peer): below 1 means cnnperf is faster."""
        a, b = self.median("cnnperf"), self.median(peer)
        return a / b if a is not None and b else None


@dataclass
class ModelsBenchRun:
    """Everything one ``cnnperf bench --models`` measured."""

    machine: dict
    settings: ModelsBenchSettings
    results: list[ModelResult]
    notes: list[str] = field(default_factory=list)
    peers: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def peak_gflops(self) -> float | None:
        return self.machine.get("peak_gflops")


def _ort_engine(peer: OrtPeer, data: bytes, x: np.ndarray) -> Engine:
    """ONNX Runtime on the model bytes with the layer bench's session options (OrtPeer)."""
    ort = peer._ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = peer._threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if peer.spin else "0")
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    return Engine("ort", lambda: sess.run(None, feed)[0], kind="peer", label=peer.label)


def _torch_engine(torch, model, x: np.ndarray, label: str) -> Engine:
    xt = torch.from_numpy(x)

    def run():
        with torch.no_grad():
            return model(xt).numpy()

    return Engine("torch", run, kind="peer", label=label)


def _graph_flops(compiled) -> int:
    from ..compile.profile import node_flops

    sh = compiled.shapes
    flops = (node_flops(n.op, [sh[v] for v in n.inputs], [sh[v] for v in n.outputs])
             for n in compiled.graph.nodes)  # fmt: skip
    return sum(f or 0 for f in flops)


def _run_one(name, batch, data, model, torch, peers, settings) -> ModelResult:
    from ..compile import compile_model

    size = settings.input_size
    shape = (batch, 3, size, size)
    x = np.random.default_rng(settings.seed + batch).standard_normal(shape, dtype=np.float32)
    t0 = time.perf_counter()
    compiled = compile_model(data, shape)
    y = compiled(x)
    load_first = time.perf_counter() - t0
    engines = [Engine("cnnperf", lambda: compiled(x), label="cnnperf")]
    for peer in peers:
        if peer.name == "ort":
            engines.append(_ort_engine(peer, data, x))
        else:
            engines.append(_torch_engine(torch, model, x, peer.label))
    others = {e.name: e for e in engines[1:]}
    err_ref = next((n for n in ("ort", "torch") if n in others), None)
    try:
        err = max_rel_err(y, others[err_ref].fn()) if err_ref else None
    except Exception:  # the peer's failure is reported by run_interleaved below
        err = None
    results, ref_used = run_interleaved(
        engines,
        rounds=settings.rounds,
        target_s=settings.target_s,
        min_rounds=settings.min_rounds,
        max_rounds=settings.max_rounds,
        budget_s=settings.budget_s,
        reference=err_ref or "cnnperf",
        tol=settings.tol,
    )
    plan = compiled.memory_plan(batch)
    keys = ("planned_peak_bytes", "naive_bytes", "largest_layer", "largest_layer_bytes")
    memory = {k: getattr(plan, k) for k in keys}
    return ModelResult(name, batch, shape, _graph_flops(compiled), load_first, err, err_ref,
                       memory, results, ref_used)  # fmt: skip


def run_models_bench(
    settings: ModelsBenchSettings | None = None,
    *,
    threads: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ModelsBenchRun:
    """Build, export and time every model of ``settings`` at every batch size.

    Args:
        threads: for every engine (default ``cnnperf.get_num_threads()``); restored afterwards.
        progress: called as ``progress(done, total, label)`` before each network and batch and
            once at the end.

    Raises:
        ImportError: PyTorch or onnx is missing (both are needed to build the networks).
    """
    settings = settings or ModelsBenchSettings()
    bad = [name for name in settings.models if name not in MODELS]
    if bad:
        raise ValueError(f"run_models_bench: unknown models {bad}; choose from {list(MODELS)}")
    if settings.input_size < 32:  # five stride-2 stages
        raise ValueError(f"run_models_bench: input_size {settings.input_size} < 32")
    try:
        import onnx  # noqa: F401  (cnnperf's importer)
        import torch
    except ImportError as e:
        raise ImportError(
            f"cnnperf bench --models builds the networks in PyTorch and exports them to ONNX: "
            f"pip install torch onnx ({e})"
        ) from e
    t_start = time.perf_counter()
    saved = config.get_num_threads()
    threads = saved if threads is None else threads
    config.set_num_threads(threads)
    saved_torch = torch.get_num_threads()
    torch.set_num_threads(threads)  # PyTorch builds and exports even when it is not a peer
    peers, notes = available_peers(threads, settings.peers, ort_spin=settings.ort_spin)
    total = len(settings.models) * len(settings.batches)
    results: list[ModelResult] = []
    try:
        for name in settings.models:
            if progress:
                progress(len(results), total, f"{name}: building and exporting")
            model = build_model(name, settings.seed)
            data = export_onnx(model, settings.input_size)
            for batch in settings.batches:
                if progress:
                    progress(len(results), total, f"{name}/b{batch}")
                results.append(_run_one(name, batch, data, model, torch, peers, settings))
        if progress:
            progress(total, total, "")
        machine = machine_info(None)
    finally:
        for peer in peers:
            peer.teardown()
        torch.set_num_threads(saved_torch)
        config.set_num_threads(saved)
    for r in results:
        notes += engine_notes(r.name, r.engines, r.reference, settings.tol)
    return ModelsBenchRun(machine, settings, results, notes, {p.name: p.label for p in peers},
                          time.perf_counter() - t_start)  # fmt: skip
