"""Tracing cnnperf.nn models into the graph IR: traced == eager (eval mode), clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from compile_models import BasicBlock, randomize_bn, tiny_resnet
from conftest import assert_rel_close

from cnnperf import nn
from cnnperf.autograd import functional as F
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


class UsesMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


@pytest.mark.parametrize(
    "model,match",
    [
        (nn.Sequential(nn.Conv2d(3, 3, 1), nn.ELU()), r"'elu'.*the forward of 1 \(ELU\)"),
        (nn.Sequential(nn.Sequential(UsesMean())), r"'mean'.*the forward of 0\.0 \(UsesMean\)"),
        (nn.Sequential(nn.ConvTranspose2d(3, 2, 2)), r"conv_transpose2d.*ConvTranspose2d"),
        (nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect")), "padding_mode"),
        (nn.Sequential(nn.MaxPool2d(2, return_indices=True)), "MaxPool2d '0'.*returning tuple"),
    ],
)
def test_unsupported_modules_and_ops_are_named(model, match):
    with pytest.raises(NotImplementedError, match=match):
        trace(model, (None, 3, 4, 4))
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape must be positive ints"):
        trace(nn.Sequential(nn.ReLU()), (None, None, 3))
