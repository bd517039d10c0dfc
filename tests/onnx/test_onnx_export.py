"""cnnperf.onnx.save: exported files pass the ONNX checker and compute, in ONNX Runtime and
re-imported by cnnperf.onnx.load, what the cnnperf model computes (eager or compiled).

Whole models are compared norm-relative (||got - want|| / ||want|| <= 1e-4) at batch 1 and 3
from one file with a dynamic batch. Per-op coverage: test_onnx_export_ops.py.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import assert_rel_close

import cnnperf.compile
import cnnperf.onnx
from cnnperf import _atomic, nn
from cnnperf.autograd import functional as F
from cnnperf.compile import OPS, Graph, Node
from cnnperf.onnx import export
from cnnperf.training.models import BasicBlock, build_model

RNG = np.random.default_rng(0)
TOL = 1e-4


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _norm_rel(got, want) -> float:
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    want = want.astype(np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def _session(model):
    data = model if isinstance(model, (str, bytes)) else model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            c = m.num_features
            m.running_mean[:] = 0.2 * rng.standard_normal(c)
            m.running_var[:] = 0.5 + rng.random(c)
            m.weight.data[:] = 1 + 0.2 * rng.standard_normal(c)
            m.bias.data[:] = 0.1 * rng.standard_normal(c)
    return model


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, depthwise 3x3, ReLU6, 1x1 project, residual add."""

    def __init__(self, c: int, expand: int) -> None:
        super().__init__()
        h = c * expand
        self.conv = nn.Sequential(
            nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c),
        )  # fmt: skip

    def forward(self, x):
        return x + self.conv(x)


class Branches(nn.Module):
    """Inception-like: three branches concatenated on the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 5, 3, 1, 1))
        self.pool = nn.MaxPool2d(3, 1, 1)

    def forward(self, x):
        return F.relu(F.cat([self.a(x), self.b(x), self.pool(x)], 1))


class Reshapes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 4 * 4, 6)

    def forward(self, x):
        y = self.conv(x)  # (n, 4, 4, 4)
        y = y.reshape(y.shape[0], 16, 4).flatten(1)  # (n, 64)
        return self.fc(nn.Flatten()(y.reshape(y.shape[0], 4, 4, 4)))


class Activations(nn.Module):
    """Every activation the tracer knows, as modules and as Tensor operations."""

    def __init__(self) -> None:
        super().__init__()
        acts = [nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(0.2), nn.Hardtanh(-0.5, 0.7), nn.Sigmoid(),
                nn.Tanh(), nn.Hardswish(), nn.Hardsigmoid(), nn.SiLU()]  # fmt: skip
        layers: list[nn.Module] = []
        for act in acts:
            layers += [nn.Conv2d(4, 4, 3, padding=1), act]
        self.body = nn.Sequential(nn.Conv2d(3, 4, 1), *layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 25, 7), nn.Softmax(dim=1))

    def forward(self, x):
        y = self.body(x) * 3.0
        a = F.relu(y) - F.sigmoid(-y) / (1.0 + F.tanh(y) * F.tanh(y))
        b = F.relu6(a * 4.0) + F.hardswish(a) * F.hardsigmoid(y) + F.silu(a)
        return self.head(b)


MODELS = {
    "conv_bn_relu_pool_linear": (lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 4, 16), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(16, 10)), (3, 16, 16)),
    "residual": (lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), BasicBlock(8, 8),
                                       BasicBlock(8, 16, stride=2)), (3, 12, 12)),
    "mobilenet_block": (lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU6(), InvertedResidual(8, 4),
        nn.Conv2d(8, 16, 3, 2, 1, groups=8), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 5)), (3, 17, 17)),
    "concat": (Branches, (3, 9, 11)),
    "reshape": (Reshapes, (3, 9, 9)),
    "pools": (lambda: nn.Sequential(
        nn.Conv2d(2, 4, 1), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=True),
        nn.AvgPool2d(2, 2, 1, ceil_mode=True, count_include_pad=False),
        nn.MaxPool2d(2, 2, 1, ceil_mode=True), nn.AvgPool2d((1, 2), (1, 2), (0, 1)),
        nn.MaxPool2d(2, 1, dilation=1)), (2, 29, 27)),
    "activations": (Activations, (3, 5, 5)),
    "lenet": (lambda: build_model("lenet", 1, 10, 28, seed=1), (1, 28, 28)),
    "vgg_small": (lambda: build_model("vgg_small", 3, 10, 16, seed=2), (3, 16, 16)),
    "resnet_small": (lambda: build_model("resnet_small", 3, 10, 16, seed=3), (3, 16, 16)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_round_trip_matches_eager_in_onnxruntime_and_reimported(name, tmp_path):
    factory, shape = MODELS[name]
    model = _randomize_bn(factory(), seed=len(name))
    path = tmp_path / f"{name}.onnx"
    proto = cnnperf.onnx.save(model, path, (1, *shape))
    onnx.checker.check_model(str(path), full_check=True)
    assert model.training  # traced in eval mode, its mode restored
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", *shape]
    sess, back = _session(str(path)), cnnperf.onnx.load(path)
    for n in (1, 3):
        x = _x(n, *shape)
        want = model.eval()(x).data
        assert _norm_rel(sess.run(None, {"input": x})[0], want) <= TOL, f"ORT, batch {n}"
        assert _norm_rel(back(x), want) <= TOL, f"cnnperf.onnx.load, batch {n}"
        model.train()


def test_exported_graph_is_the_unoptimised_one_with_metadata():
    model = _randomize_bn(MODELS["conv_bn_relu_pool_linear"][0]())
    proto = cnnperf.onnx.save(model, io.BytesIO(), (2, 3, 16, 16))
    ops = [n.op_type for n in proto.graph.node]
    assert ops[:4] == ["Conv", "BatchNormalization", "Relu", "MaxPool"]
    assert ops.count("BatchNormalization") == 3 and ops.count("Dropout") == 0
    assert proto.producer_name == "cnnperf" and proto.producer_version == cnnperf.__version__
    assert {i.data_type for i in proto.graph.initializer} == {onnx.TensorProto.FLOAT}
    names = {i.name for i in proto.graph.initializer}
    assert {"_0.weight", "_0.bias", "_1.running_var", "_13.weight"} <= names  # traced names


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_opset_is_honoured(opset):
    model = Activations()
    proto = cnnperf.onnx.save(model, io.BytesIO(), (1, 3, 5, 5), opset=opset)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", opset)]
    assert ("HardSwish" in {n.op_type for n in proto.graph.node}) == (opset >= 14)
    x = _x(2, 3, 5, 5)
    assert _norm_rel(_session(proto).run(None, {"input": x})[0], model.eval()(x).data) <= TOL


@pytest.mark.parametrize("opset", [12, 22, 17.0, True, "17"])
def test_bad_opset_is_rejected(opset):
    with pytest.raises(ValueError, match=r"opset"):
        cnnperf.onnx.save(nn.ReLU(), io.BytesIO(), (1, 3), opset=opset)


def test_compiled_model_with_fused_relu_and_folded_bn_matches_onnxruntime():
    model = _randomize_bn(MODELS["mobilenet_block"][0]())
    compiled = cnnperf.compile(model, (None, 3, 17, 17))
    nodes = compiled.graph.nodes
    assert "batch_norm" not in [n.op for n in nodes]
    assert sum(n.attrs.get("activation") == "relu6" for n in nodes) == 4
    proto = cnnperf.onnx.save(compiled, io.BytesIO())
    ops = [n.op_type for n in proto.graph.node]
    assert "BatchNormalization" not in ops and ops[:2] == ["Conv", "Clip"]
    sess = _session(proto)
    for n in (1, 3):
        x = _x(n, 3, 17, 17)
        got = sess.run(None, {"input": x})[0]
        assert _norm_rel(got, compiled(x)) <= TOL and _norm_rel(got, model.eval()(x).data) <= TOL


def test_names_are_sanitised_and_unique():
    g = Graph([Node("relu", ["in put"], ["a:b"], name="r 1"), Node("tanh", ["a:b"], ["a_b"]),
               Node("add", ["a_b", "a/b"], ["1"], name="r 1")],
              {"a/b": _x(3)}, {"in put": (None, 3)}, ["1"])  # fmt: skip
    proto = cnnperf.onnx.save(g, io.BytesIO(), input_name="x", output_name="y")
    values = [v for n in proto.graph.node for v in n.output] + [
        i.name for i in proto.graph.initializer
    ]
    names = [n.name for n in proto.graph.node]
    assert len(set(values)) == len(values) and len(set(names)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", v) for v in values + names)
    x = _x(2, 3)
    want = np.tanh(np.maximum(x, 0)) + g.initializers["a/b"]
    assert_rel_close(_session(proto).run(None, {"x": x})[0], want, 1e-6, "sanitised graph")


def test_fixed_batch_and_graph_batch_override():
    model = MODELS["reshape"][0]()
    proto = cnnperf.onnx.save(model, io.BytesIO(), (2, 3, 9, 9), dynamic_batch=False)
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 6]
    x = _x(2, 3, 9, 9)
    assert _norm_rel(_session(proto).run(None, {"input": x})[0], model(x).data) <= TOL
    g = cnnperf.compile.trace(model, (None, 3, 9, 9))
    proto = cnnperf.onnx.save(g, io.BytesIO(), (4, 3, 9, 9), dynamic_batch=False)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    with pytest.raises(ValueError, match=r"dynamic_batch=False needs input_shape"):
        cnnperf.onnx.save(g, io.BytesIO(), dynamic_batch=False)
    with pytest.raises(ValueError, match=r"does not fit the graph's inputs"):
        cnnperf.onnx.save(g, io.BytesIO(), (4, 3, 9, 8))


def test_a_batch_baked_into_the_graph_cannot_be_made_dynamic():
    g = Graph([Node("reshape", ["x"], ["y"], {"shape": (2, 12)}, name="fixed")],
              inputs={"x": (2, 3, 4)}, outputs=["y"])  # fmt: skip
    with pytest.raises(ValueError, match=r"batch size is fixed inside it"):
        cnnperf.onnx.save(g, io.BytesIO())
    proto = cnnperf.onnx.save(g, io.BytesIO(), dynamic_batch=False)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


def test_file_like_target_and_atomic_write_to_a_path(tmp_path, monkeypatch):
    buf = io.BytesIO()
    assert cnnperf.onnx.save(nn.ReLU(), buf, (1, 4)).SerializeToString() == buf.getvalue()
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    cnnperf.onnx.save(nn.ReLU(), str(path), (1, 4))
    assert os.listdir(tmp_path) == ["model.onnx"] and path.read_bytes() == buf.getvalue()

    def failing_write(f, data):
        f.write(data[:10])
        raise OSError("disk full")

    monkeypatch.setattr(_atomic, "_write_all", failing_write)
    with pytest.raises(OSError, match="disk full"):
        cnnperf.onnx.save(nn.Tanh(), path, (1, 4))
    assert os.listdir(tmp_path) == ["model.onnx"] and path.read_bytes() == buf.getvalue()


def test_unsupported_op_names_the_op_and_the_node(monkeypatch):
    monkeypatch.setitem(OPS, "fancy_op", ())
    g = Graph([Node("relu", ["x"], ["t"]), Node("fancy_op", ["t"], ["y"], name="my_fancy")],
              inputs={"x": (None, 3)}, outputs=["y"])  # fmt: skip
    with pytest.raises(NotImplementedError, match=r"fancy_op \(node 'my_fancy'\)"):
        cnnperf.onnx.save(g, io.BytesIO())


def test_bad_arguments_raise_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"needs input_shape"):
        cnnperf.onnx.save(nn.ReLU(), io.BytesIO())
    with pytest.raises(ValueError, match=r"input_shape must be positive ints"):
        cnnperf.onnx.save(nn.ReLU(), io.BytesIO(), (0, 3))
    with pytest.raises(TypeError, match=r"expects a cnnperf.nn.Module.*got str"):
        cnnperf.onnx.save("model.onnx", io.BytesIO())
    with pytest.raises(TypeError, match=r"path must be a str.*got int"):
        cnnperf.onnx.save(nn.ReLU(), 3, (1, 2))
    with pytest.raises(ValueError, match=r"input_name and output_name must differ"):
        cnnperf.onnx.save(nn.ReLU(), io.BytesIO(), (1, 2), input_name="y", output_name="y")
    monkeypatch.setattr(export, "MAX_BYTES", 1000)
    with pytest.raises(ValueError, match=r"too large.*2 GiB"):
        cnnperf.onnx.save(nn.Linear(30, 20), io.BytesIO(), (1, 30))
