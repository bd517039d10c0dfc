"""Tracing cnnperf.nn models into the graph IR: traced == eager (eval mode), clear errors."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
from compile_models import BasicBlock, randomize_bn, tiny_resnet
from conftest import assert_rel_close

import cnnperf.onnx
from cnnperf import nn
from cnnperf.autograd import functional as F
from cnnperf.autograd import no_grad
from cnnperf.compile import compile_graph, trace

RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _eager(model, x):
    return model.eval()(x).data


def _check(model, input_shape, x, tol=1e-5):
    g = trace(model, input_shape)
    want = _eager(model, x)
    for passes in ((), None):  # the traced graph as is, and after BN folding and fusion
        got = compile_graph(g, passes)(x)
        assert got.shape == want.shape
        assert_rel_close(got, want, tol, f"passes={passes}")
    return g


def test_sequential_with_every_layer_kind_matches_eager():
    model = randomize_bn(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding="valid", groups=2, bias=False),
            nn.LeakyReLU(0.1),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(8, 6, 1),
            nn.Hardswish(),
            nn.AvgPool2d(3, stride=1, padding=1),
            nn.ReLU6(),
            nn.Conv2d(6, 6, 3, padding=1, dilation=1),
            nn.SiLU(),
            nn.Dropout(0.5),
            nn.Identity(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(24, 16),
            nn.BatchNorm1d(16),
            nn.Hardtanh(-0.5, 0.5),
            nn.Linear(16, 10),
            nn.Sigmoid(),
            nn.Softmax(dim=1),
        )
    )
    g = _check(model, (None, 3, 17, 15), _x(3, 3, 17, 15))
    ops = [n.op for n in g.nodes]
    assert "identity" not in ops and "dropout" not in ops  # eval-mode Dropout/Identity vanish
    assert ops.count("conv2d") == 4 and ops.count("gemm") == 2


def test_dynamic_batch_and_fixed_batch():
    model = randomize_bn(nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Tanh()))
    g = trace(model, (None, 2, 6, 6))
    assert g.inputs == {"input": (None, 2, 6, 6)} and g.outputs == ["output"]
    compiled = compile_graph(g)
    for n in (1, 4):
        x = _x(n, 2, 6, 6)
        assert_rel_close(compiled(x), _eager(model, x), 1e-5, f"batch {n}")
    fixed = compile_graph(trace(model, (3, 2, 6, 6)))
    with pytest.raises(ValueError, match=r"must have shape \(3, 2, 6, 6\)"):
        fixed(_x(2, 2, 6, 6))


def test_residual_blocks_match_eager():
    model = tiny_resnet()
    g = _check(model, (None, 3, 32, 32), _x(2, 3, 32, 32))
    assert [n.op for n in g.nodes].count("add") == 3  # one per BasicBlock


def test_basic_block_alone_uses_its_input_twice():
    block = randomize_bn(BasicBlock(4, 4))
    g = _check(block, (None, 4, 7, 7), _x(2, 4, 7, 7))
    adds = [n for n in g.nodes if n.op == "add"]
    assert len(adds) == 1 and "input" in adds[0].inputs


class FunctionalOps(nn.Module):
    """Tensor operations in a custom forward: constants, parameters, cat, reshape, two outputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.scale = nn.Parameter(np.full((1, 4, 1, 1), 0.5, np.float32))

    def forward(self, x):
        y = self.conv(x)
        a = F.relu(y) * self.scale - y / 3.0 + 1.0
        b = F.cat([F.sigmoid(-a), F.silu(y), F.hardsigmoid(a)], 1)
        c = F.relu6(F.tanh(b) * 4) + F.hardswish(b)
        return c.reshape(c.shape[0], -1), F.flatten(a, 1)


def test_custom_forward_ops_and_tuple_outputs_match_eager():
    model = FunctionalOps()
    x = _x(2, 3, 5, 5)
    g = trace(model, (None, 3, 5, 5))
    assert g.outputs == ["output_0", "output_1"]
    got = compile_graph(g).run({"input": x})
    want = model(x)
    for name, w in zip(g.outputs, want, strict=True):
        assert_rel_close(got[name], w.data, 1e-5, name)
    assert "scale" in " ".join(g.initializers) or any(
        v.shape == (1, 4, 1, 1) for v in g.initializers.values()
    )


def test_trace_restores_the_model_and_copies_weights():
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    model.train()
    g = trace(model, (None, 3))
    assert model.training and all("forward" not in m.__dict__ for m in model.modules())
    w = g.initializers["0.weight"]
    assert w is not model[0].weight.data and np.array_equal(w, model[0].weight.data)
    model[0].weight.data[:] = 0  # later changes to the model do not leak into the graph
    assert np.abs(g.initializers["0.weight"]).sum() > 0


def test_model_returning_its_input_gets_an_identity_output():
    g = trace(nn.Sequential(nn.Identity()), (None, 2))
    x = _x(3, 2)
    np.testing.assert_array_equal(compile_graph(g)(x), x)


def _onnx_run(model, shape, x):
    """``cnnperf.onnx.save`` (dynamic batch), then ONNX Runtime: one array per output."""
    buf = io.BytesIO()
    cnnperf.onnx.save(model, buf, shape)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def _param(*shape, scale=0.3):
    return nn.Parameter(scale * _x(*shape))


class LayerFunctions(nn.Module):
    """The layer functions on parameters of the module's own, and the extra activations."""

    def __init__(self):
        super().__init__()
        self.w, self.b = _param(4, 3, 3, 3), _param(4)
        self.wt = _param(4, 2, 2, 2)
        self.slope = nn.Parameter(np.array([0.1, -0.2, 0.3, 0.5], np.float32))
        self.shared_slope = nn.Parameter(np.array([0.25], np.float32))

    def forward(self, x):
        y = F.conv2d(x, self.w, self.b, padding=((1, 0), (2, 1)))
        y = F.prelu(F.pad(y, (1, 2, 0, 1), value=0.5), self.slope)
        y = F.pad(y, (1, 1, 2, 1), mode="reflect") + F.pad(y, (1, 1, 2, 1), mode="replicate")
        y = F.conv_transpose2d(y, self.wt, None, stride=2, padding=1, output_padding=1)
        y = F.max_pool2d(y, 3, 2, 1, ceil_mode=True) - F.avg_pool2d(y, 3, 2, 1, ceil_mode=True)
        y = F.adaptive_avg_pool2d(F.avg_pool2d(y, 2, divisor_override=3), (3, 2))
        z = F.elu(y, 0.7) + F.selu(y) - F.gelu(y) * F.gelu(y, "tanh")
        z = z + F.prelu(y, self.shared_slope)
        return F.log_softmax(z, 1), F.softmax(z, -1)


class Activations(nn.Module):
    def forward(self, x):
        a = F.leaky_relu(x, 0.2) + F.hardtanh(x, -0.5, 0.25) + F.relu6(x * 4) + F.silu(x)
        b = F.hardswish(x) * F.hardsigmoid(x) - F.sigmoid(x) / (1.5 + F.tanh(x))
        return F.relu(a) + b


class TensorOps(nn.Module):
    """Reductions, pow, matmul, shape moves, indexing and cat in a custom forward."""

    def __init__(self):
        super().__init__()
        self.m = _param(5, 6)

    def forward(self, x):  # x (n, 3, 4, 5)
        centered = x - x.mean((2, 3), keepdims=True)
        scaled = centered / (F.sum(centered**2, axis=-1, keepdims=True) + 1.0) ** 0.5
        y = F.matmul(scaled, self.m) @ self.m.T  # (n, 3, 4, 5)
        p = y.permute(0, 2, 3, 1).transpose(1, 2)  # (n, 5, 4, 3)
        parts = [p[:, 1:4, ::2, -1], p[..., 0], -p[:, ::-1, -1:, 1].flatten(1, 2)[:, None, :3]]
        mask = np.array([True, False, True])
        picked = x[..., np.array([3, 0, 3]), :] + x[:, mask].sum(1)[:, None, :3]
        out = F.cat([F.flatten(q, 1) for q in parts] + [picked.reshape(x.shape[0], -1)], dim=1)
        return F.cat([out, out.astype(np.float64).astype(np.float32)[:, :7]], 1).mean(-1), y


class NormsAndLinear(nn.Module):
    """Batch norm with running or batch statistics, N-d linear, eval dropout, a weight
    computed from parameters (folded into a constant)."""

    def __init__(self):
        super().__init__()
        self.rm, self.rv = 0.1 * _x(3), 0.5 + np.abs(_x(3))
        self.g, self.beta, self.w = _param(3) + 1, _param(3), _param(3, 3, 1, 1)
        self.lin, self.lin_b = _param(2, 5), _param(2)

    def forward(self, x):
        y = F.batch_norm(x, self.rm, self.rv, self.g, self.beta, eps=1e-3)
        y = y + F.batch_norm(x, None, None, self.g, None, training=True)
        w = (self.w - self.w.mean()) / (F.sum(self.w * self.w) ** 0.5)  # weight standardisation
        y = F.dropout(F.conv2d(y, w), 0.5, training=self.training)
        return F.linear(y, self.lin, self.lin_b)  # (n, 3, 4, 2)


@pytest.mark.parametrize(
    "model,shape",
    [
        (LayerFunctions(), (None, 3, 6, 5)),
        (Activations(), (None, 2, 3, 7)),
        (TensorOps(), (None, 3, 4, 5)),
        (NormsAndLinear(), (None, 3, 4, 5)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "",
)
def test_functional_forwards_compile_and_export(model, shape):
    x = _x(3, *shape[1:])
    with no_grad():
        out = model.eval()(x)
    want = [t.data for t in (out if isinstance(out, tuple) else (out,))]
    g = trace(model, shape)
    for passes in ((), None):
        got = compile_graph(g, passes).run({"input": x})
        for name, w in zip(g.outputs, want, strict=True):
            assert_rel_close(got[name], w, 1e-5, f"{name}, passes={passes}")
    for got, w in zip(_onnx_run(model, shape, x), want, strict=True):
        assert_rel_close(got, w, 1e-4, "onnxruntime")
    assert not [n for n in g.nodes if all(v in g.initializers for v in n.inputs)]  # folded


class Noisy(nn.Module):
    def forward(self, x):
        return F.dropout(x, 0.5)  # training=True whatever the mode: random at inference


class WithLoss(nn.Module):
    def forward(self, x):
        return F.mse_loss(x, np.zeros(x.shape, np.float32))


class WeightFromInput(nn.Module):
    def forward(self, x):
        return F.conv2d(x, F.relu(x))


class TwoArrayIndex(nn.Module):
    def forward(self, x):
        return x[:, np.array([0, 1]), np.array([1, 0])]


class ReversedBatch(nn.Module):
    def forward(self, x):
        return x[::-1]


@pytest.mark.parametrize(
    "model,match",
    [
        (nn.Sequential(nn.MaxPool2d(2, return_indices=True)), "MaxPool2d '0'.*returning tuple"),
        (nn.Sequential(Noisy()), r"training-mode dropout.*the forward of 0 \(Noisy\)"),
        (nn.Sequential(nn.ReLU(), WithLoss()), r"'mse_loss'.*the forward of 1 \(WithLoss\)"),
        (WeightFromInput(), "a conv2d weight computed from the input"),
        (TwoArrayIndex(), r"index .*one integer or boolean array"),
        (ReversedBatch(), "stepping backwards over the batch"),
    ],
)
def test_unsupported_modules_and_ops_are_named(model, match):
    with pytest.raises(NotImplementedError, match=match):
        trace(model, (None, 3, 3, 3))
    assert all("forward" not in m.__dict__ for m in model.modules())


class FlattenBatch(nn.Module):
    def forward(self, x):
        return x.reshape(3, -1) * 2.0


def test_reshape_across_the_batch_needs_a_fixed_batch():
    with pytest.raises(NotImplementedError, match="mixes the dynamic batch.*fixed batch size"):
        trace(FlattenBatch(), (None, 3, 2, 2))
    x = _x(2, 3, 2, 2)
    g = trace(FlattenBatch(), (2, 3, 2, 2))
    np.testing.assert_array_equal(compile_graph(g)(x), x.reshape(3, -1) * 2.0)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape must be positive ints"):
        trace(nn.Sequential(nn.ReLU()), (None, None, 3))
