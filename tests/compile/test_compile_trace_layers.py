"""Every cnnperf.nn layer traces: compiled == eager (eval, no_grad) and ONNX Runtime == eager.

The layer classes are enumerated from the package (every public Module subclass defined under
``cnnperf.nn``), so a new layer without a case here (and so without tracing support) fails
:func:`test_every_nn_layer_has_a_case`. Each case is compiled as traced and after the default
passes (BN folding, fusion), at a batch other than the trace's, and exported with
``cnnperf.onnx.save`` and run in ONNX Runtime.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnxruntime as ort
import pytest
from compile_models import randomize_bn
from conftest import assert_rel_close

import cnnperf.compile
import cnnperf.onnx
from cnnperf import nn
from cnnperf.autograd import no_grad

COMPILED_TOL, ONNX_TOL = 1e-5, 1e-4

# Not single-input inference layers: what they are, and where they are covered instead.
NOT_LAYERS = {
    nn.Module: "the abstract base class",
    nn.ModuleList: "a container without forward (its members are traced where used)",
    nn.ModuleDict: "a container without forward (its members are traced where used)",
    nn.CrossEntropyLoss: "a loss of (input, target): test_compile_trace.py checks its error",
    nn.MSELoss: "a loss of (input, target): test_compile_trace.py checks its error",
}


def _public_layers() -> set[type]:
    found, todo = set(), [nn.Module]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("cnnperf.nn") and not cls.__name__.startswith("_"):
            found.add(cls)
    return found


def _bn(m: nn.Module) -> nn.Module:
    """Non-trivial running statistics (and affine terms, where the layer has them)."""
    if m.affine:
        return randomize_bn(m, seed=3)
    rng = np.random.default_rng(3)
    m.running_mean[:] = 0.3 * rng.standard_normal(m.num_features)
    m.running_var[:] = 0.5 + rng.random(m.num_features)
    return m


IMG = (None, 3, 9, 8)
# class -> [(case id, factory, input shape)]
CASES: dict[type, list[tuple[str, object, tuple]]] = {
    nn.Sequential: [("mixed", lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.ELU()), IMG)],
    nn.Conv2d: [
        ("plain", lambda: nn.Conv2d(3, 5, 3), IMG),
        ("strided-groups", lambda: nn.Conv2d(3, 6, 3, 2, 1, dilation=2, groups=3), IMG),
        ("same-no-bias", lambda: nn.Conv2d(3, 4, (2, 3), padding="same", bias=False), IMG),
        ("reflect", lambda: nn.Conv2d(3, 4, 3, padding=(1, 2), padding_mode="reflect"), IMG),
        ("replicate", lambda: nn.Conv2d(3, 4, 3, 2, 2, padding_mode="replicate"), IMG),
    ],
    nn.ConvTranspose2d: [
        ("plain", lambda: nn.ConvTranspose2d(3, 4, 3), IMG),
        ("stride-pad-outpad", lambda: nn.ConvTranspose2d(3, 5, 3, 2, 1, output_padding=1), IMG),
        ("groups-dilation", lambda: nn.ConvTranspose2d(3, 6, 2, 2, groups=3, dilation=2), IMG),
        ("no-bias", lambda: nn.ConvTranspose2d(3, 2, (3, 2), (1, 2), (1, 0), bias=False), IMG),
    ],
    nn.MaxPool2d: [
        ("plain", lambda: nn.MaxPool2d(2), IMG),
        ("ceil-dilation", lambda: nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True), IMG),
    ],
    nn.AvgPool2d: [
        ("plain", lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), IMG),
        ("ceil", lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True), IMG),
        ("divisor", lambda: nn.AvgPool2d((3, 2), 2, 1, ceil_mode=True, divisor_override=4), IMG),
    ],
    nn.AdaptiveAvgPool2d: [
        ("global", lambda: nn.AdaptiveAvgPool2d(1), IMG),
        ("divisible", lambda: nn.AdaptiveAvgPool2d((3, 4)), IMG),
        ("overlapping", lambda: nn.AdaptiveAvgPool2d((4, 5)), IMG),
        ("keep-rows", lambda: nn.AdaptiveAvgPool2d((None, 3)), IMG),
    ],
    nn.BatchNorm2d: [
        ("running", lambda: _bn(nn.BatchNorm2d(3)), IMG),
        ("batch-stats", lambda: nn.BatchNorm2d(3, track_running_stats=False), IMG),
        ("no-affine", lambda: _bn(nn.BatchNorm2d(3, affine=False)), IMG),
    ],
    nn.BatchNorm1d: [
        ("2d", lambda: _bn(nn.BatchNorm1d(5)), (None, 5)),
        ("3d", lambda: _bn(nn.BatchNorm1d(3)), (None, 3, 7)),
        ("stats", lambda: nn.BatchNorm1d(3, affine=False, track_running_stats=False), IMG[:3]),
    ],
    nn.Linear: [
        ("2d", lambda: nn.Linear(6, 4), (None, 6)),
        ("3d-no-bias", lambda: nn.Linear(8, 3, bias=False), (None, 2, 8)),
        ("4d", lambda: nn.Linear(8, 3), IMG),
    ],
    nn.Flatten: [
        ("default", lambda: nn.Flatten(), IMG),
        ("inner", lambda: nn.Flatten(2, 3), IMG),
        ("all", lambda: nn.Flatten(0), IMG),
    ],
    nn.Dropout: [("eval", lambda: nn.Dropout(0.3), IMG)],
    nn.Identity: [("plain", lambda: nn.Identity(7), IMG)],
    nn.ReLU: [("plain", lambda: nn.ReLU(inplace=True), IMG)],
    nn.ReLU6: [("plain", lambda: nn.ReLU6(), IMG)],
    nn.LeakyReLU: [("slope", lambda: nn.LeakyReLU(0.2), IMG)],
    nn.ELU: [("default", lambda: nn.ELU(), IMG), ("alpha", lambda: nn.ELU(0.4), IMG)],
    nn.Hardtanh: [("range", lambda: nn.Hardtanh(-0.5, 1.5), IMG)],
    nn.Sigmoid: [("plain", lambda: nn.Sigmoid(), IMG)],
    nn.Hardsigmoid: [("plain", lambda: nn.Hardsigmoid(), IMG)],
    nn.Tanh: [("plain", lambda: nn.Tanh(), IMG)],
    nn.GELU: [("exact", lambda: nn.GELU(), IMG), ("tanh", lambda: nn.GELU("tanh"), IMG)],
    nn.SiLU: [("plain", lambda: nn.SiLU(), IMG)],
    nn.Hardswish: [("plain", lambda: nn.Hardswish(), IMG)],
    nn.Softmax: [
        ("channels", lambda: nn.Softmax(dim=1), IMG),
        ("last", lambda: nn.Softmax(dim=-1), IMG),
        ("implicit", lambda: nn.Softmax(), (None, 6)),
    ],
    nn.LogSoftmax: [
        ("channels", lambda: nn.LogSoftmax(dim=1), IMG),
        ("rows", lambda: nn.LogSoftmax(dim=-2), IMG),
        ("implicit", lambda: nn.LogSoftmax(), (None, 6)),
    ],
}

PARAMS = [
    pytest.param(factory, shape, id=f"{cls.__name__}-{name}")
    for cls, cases in CASES.items()
    for name, factory, shape in cases
]


def test_every_nn_layer_has_a_case():
    layers = _public_layers()
    missing = sorted(c.__name__ for c in layers - set(CASES) - set(NOT_LAYERS))
    assert not missing, f"cnnperf.nn layers without a tracing case: {missing}"
    assert layers >= set(CASES) | set(NOT_LAYERS)
    assert {getattr(nn, n) for n in nn.__all__ if isinstance(getattr(nn, n), type)} <= layers | {
        nn.Parameter,
        nn.IncompatibleKeys,
    }


def _eager(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with no_grad():
        return model.eval()(x).data


def onnx_run(model: nn.Module, shape: tuple, x: np.ndarray) -> list[np.ndarray]:
    """Save ``model`` with ``cnnperf.onnx.save`` (dynamic batch) and run it in ONNX Runtime."""
    buf = io.BytesIO()
    cnnperf.onnx.save(model, buf, shape)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


@pytest.mark.parametrize("factory,shape", PARAMS)
def test_layer_compiled_and_onnx_match_eager(factory, shape):
    model = factory()
    x = np.random.default_rng(7).standard_normal((3, *shape[1:])).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Softmax(dim=None): PyTorch's deprecation warning
        want = _eager(model, x)
        model.train()  # the trace runs in eval mode and restores the mode it found
        for passes in ((), None):
            compiled = cnnperf.compile(model, shape, passes=passes)
            assert_rel_close(compiled(x), want, COMPILED_TOL, f"compiled, passes={passes}")
        (got,) = onnx_run(model, shape, x)
    assert_rel_close(got, want, ONNX_TOL, "onnxruntime")
    assert model.training  # the trace restored the mode it found


def test_layers_traced_from_the_tape_keep_their_parameter_names():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding_mode="reflect", padding=1),
                          nn.ConvTranspose2d(4, 2, 2, stride=2))  # fmt: skip
    g = cnnperf.compile.trace(model, (None, 3, 6, 6))
    assert {"0.weight", "0.bias", "1.weight", "1.bias"} <= set(g.initializers)
    assert [n.op for n in g.nodes] == ["pad", "conv2d", "conv_transpose2d"]
    np.testing.assert_array_equal(g.initializers["1.weight"], model[1].weight.data)


def test_gelu_is_one_gelu_node():
    exact = cnnperf.compile.trace(nn.GELU(), (None, 4))
    approx = cnnperf.compile.trace(nn.GELU("tanh"), (None, 4))
    assert [(n.op, n.attrs) for n in exact.nodes] == [("gelu", {"approximate": "none"})]
    assert [(n.op, n.attrs) for n in approx.nodes] == [("gelu", {"approximate": "tanh"})]
    # Far tails: exact GELU is 0 below and x above; the compiled form must not lose that.
    x = np.array([[-30.0, -6.0, 0.0, 6.0]], np.float32)
    for model in (nn.GELU(), nn.GELU("tanh")):
        assert_rel_close(cnnperf.compile(model, (None, 4))(x), _eager(model, x), 1e-6, "tails")


def test_conv_transpose_output_size_argument_is_traced():
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)

        def forward(self, x):
            return self.up(x, output_size=(2 * x.shape[2], 2 * x.shape[3]))

    model = Up()
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 4)).astype(np.float32)
    g = cnnperf.compile.trace(model, (None, 3, 5, 4))
    assert g.nodes[0].attrs["output_padding"] == (1, 1)
    assert_rel_close(cnnperf.compile(model, (None, 3, 5, 4))(x), _eager(model, x), 1e-5, "up")
