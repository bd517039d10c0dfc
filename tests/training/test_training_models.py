"""Named architectures (shapes, parameter counts, seeds, PyTorch parity) and saved models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_rel_close

from cnnperf import nn
from cnnperf.training import (
    MODELS,
    CheckpointError,
    build_model,
    count_parameters,
    load_model,
    predict,
    read_model_info,
    save_checkpoint,
    save_model,
)
from cnnperf.training.models import LeNet, ResNetSmall

INPUTS = [(1, 8), (1, 28), (3, 32), (1, (16, 12))]

# Parameter counts, worked out by hand for LeNet on 28x28 (the classic 61,706 of LeNet-5 on
# MNIST: 156 + 2,416 + 48,120 + 10,164 + 850) and recorded for the others; the PyTorch twins
# below have the same counts.
PARAMS = {
    ("lenet", 1, 8): 21386,
    ("lenet", 1, 28): 61706,
    ("lenet", 3, 32): 83126,
    ("vgg_small", 1, 8): 313194,
    ("vgg_small", 3, 32): 313770,
    ("resnet_small", 1, 8): 77754,
    ("resnet_small", 3, 32): 78042,
}


def _hw(size):
    return size if isinstance(size, tuple) else (size, size)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("c, size", INPUTS)
def test_output_shape_for_every_input_size(name, c, size):
    model = build_model(name, c, 7, size, seed=0)
    x = np.random.default_rng(0).standard_normal((3, c, *_hw(size))).astype(np.float32)
    out = model(x)
    assert out.shape == (3, 7)
    nn.functional.cross_entropy(out, np.array([0, 3, 6])).backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    assert model.arch["input_size"] == list(_hw(size)) and model.arch["num_classes"] == 7


@pytest.mark.parametrize("key, count", PARAMS.items())
def test_parameter_counts(key, count):
    name, c, size = key
    assert count_parameters(build_model(name, c, 10, size)) == count


def test_lenet_layout_follows_lenet5():
    m = LeNet(1, 10, 28)
    assert [type(x).__name__ for x in m.features] == [
        "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d",
    ]  # fmt: skip
    assert m.features[0].padding == (2, 2) and m.features[3].padding == (0, 0)
    assert m.classifier[0].in_features == 16 * 5 * 5
    small = LeNet(1, 10, 8)  # 8 -> 4 -> (padded 5x5) 4 -> 2
    assert small.features[3].padding == (2, 2) and small.classifier[0].in_features == 16 * 2 * 2


def test_resnet_has_basic_blocks_with_projection_shortcuts():
    m = ResNetSmall(3, 10, 32, blocks=2)
    assert m.layer1[0].downsample is None
    assert m.layer2[0].downsample is not None and m.layer2[0].conv1.stride == (2, 2)
    assert m.layer2[1].downsample is None
    assert any(k.startswith("layer3.0.downsample.1.running_mean") for k in m.state_dict())
    assert m(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 10)
    # 8x8: 8 -> 4 -> 2, never below a 2x2 map
    assert ResNetSmall(1, 10, 8).layer3[0].conv1.stride == (2, 2)


def test_same_seed_same_weights_other_seed_other_weights():
    for name in MODELS:
        a, b, c = (build_model(name, 1, 10, 8, seed=s) for s in (5, 5, 6))
        sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
        assert all(np.array_equal(sa[k], sb[k]) for k in sa)
        assert any(not np.array_equal(sa[k], sc[k]) for k in sa if k.endswith("weight"))


def test_building_does_not_touch_the_global_generator():
    from cnnperf.autograd import default_generator, manual_seed

    manual_seed(3)
    before = default_generator().bit_generator.state
    build_model("vgg_small", 3, 10, 32, seed=1)
    assert default_generator().bit_generator.state == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="alexnet"), "unknown model 'alexnet'; choose from lenet, vgg_small"),
        (dict(name="lenet", input_size=7), "input_size must be an int or an (h, w) pair"),
        (dict(name="resnet_small", num_classes=1), "num_classes must be an int >= 2, got 1"),
        (dict(name="vgg_small", in_channels=0), "in_channels must be an int >= 1, got 0"),
        (dict(name="lenet", seed=-1), "seed must be an int >= 0, got -1"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError) as exc:
        build_model(**kwargs)
    assert message in str(exc.value)


# ---------------------------------------------------------------------------------------------
# PyTorch twins: the same architectures written with torch.nn load the state_dict unchanged


class TorchLeNet(torch.nn.Module):
    def __init__(self, c, classes, pad2, flat):
        super().__init__()
        t = torch.nn
        self.features = t.Sequential(
            t.Conv2d(c, 6, 5, padding=2), t.ReLU(), t.MaxPool2d(2),
            t.Conv2d(6, 16, 5, padding=pad2), t.ReLU(), t.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = t.Sequential(
            t.Linear(flat, 120), t.ReLU(), t.Linear(120, 84), t.ReLU(), t.Linear(84, classes)
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class TorchBlock(torch.nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        t = torch.nn
        self.conv1 = t.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = t.BatchNorm2d(c_out)
        self.conv2 = t.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = t.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = t.Sequential(
                t.Conv2d(c_in, c_out, 1, stride, bias=False), t.BatchNorm2d(c_out)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + identity)


class TorchResNet(torch.nn.Module):
    def __init__(self, c, classes):
        super().__init__()
        t = torch.nn
        self.conv1 = t.Conv2d(c, 16, 3, 1, 1, bias=False)
        self.bn1 = t.BatchNorm2d(16)
        self.layer1 = t.Sequential(TorchBlock(16, 16, 1))
        self.layer2 = t.Sequential(TorchBlock(16, 32, 2))
        self.layer3 = t.Sequential(TorchBlock(32, 64, 2))
        self.avgpool = t.AdaptiveAvgPool2d(1)
        self.fc = t.Linear(64, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def torch_vgg(c, classes, pools):
    t = torch.nn
    layers, c_in = [], c
    for width, convs, pool in zip((32, 64, 128), (1, 2, 2), pools, strict=True):
        for _ in range(convs):
            layers += [t.Conv2d(c_in, width, 3, padding=1, bias=False), t.BatchNorm2d(width),
                       t.ReLU()]  # fmt: skip
            c_in = width
        layers += [t.MaxPool2d(2)] if pool else []

    class VGG(t.Module):
        def __init__(self):
            super().__init__()
            self.features = t.Sequential(*layers)
            self.pool = t.AdaptiveAvgPool2d(1)
            self.classifier = t.Sequential(
                t.Linear(128, 256), t.ReLU(), t.Dropout(0.3), t.Linear(256, classes)
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.pool(self.features(x)), 1))

    return VGG()


TWINS = [
    ("lenet", 1, 28, lambda: TorchLeNet(1, 10, 0, 400)),
    ("lenet", 1, 8, lambda: TorchLeNet(1, 10, 2, 64)),
    ("lenet", 3, 32, lambda: TorchLeNet(3, 10, 0, 576)),
    ("resnet_small", 3, 32, lambda: TorchResNet(3, 10)),
    ("resnet_small", 1, 8, lambda: TorchResNet(1, 10)),
    ("vgg_small", 3, 32, lambda: torch_vgg(3, 10, (True, True, True))),
    ("vgg_small", 1, 8, lambda: torch_vgg(1, 10, (True, True, False))),
]


@pytest.mark.parametrize("name, c, size, twin", TWINS, ids=[f"{t[0]}-{t[2]}" for t in TWINS])
def test_state_dict_loads_into_the_pytorch_twin_and_outputs_agree(name, c, size, twin):
    model = build_model(name, c, 10, size, seed=2)
    x = np.random.default_rng(1).standard_normal((4, c, size, size)).astype(np.float32)
    model.train()
    model(x)  # one training-mode pass: batch norm running statistics move off their init
    model.eval()
    tmodel = twin()
    state = model.state_dict()
    assert list(state) == list(tmodel.state_dict())
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    tmodel.eval()
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    assert_rel_close(model(x).data, expected, 1e-5, name)


# ---------------------------------------------------------------------------------------------
# saved models


def test_save_load_predict_round_trip(tmp_path):
    model = build_model("resnet_small", 3, 4, (12, 10), seed=4)
    rng = np.random.default_rng(0)
    model(rng.random((8, 3, 12, 10), dtype=np.float32))  # moves the batch norm statistics
    prep = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
    path = tmp_path / "m.safetensors"
    save_model(path, model, preprocess=prep, classes=["a", "b", "c", "d"], extra={"k": 1})
    info = read_model_info(path)
    arch = {"name": "resnet_small", "in_channels": 3, "num_classes": 4, "input_size": [12, 10]}
    assert info["arch"] == {**arch, "widths": [16, 32, 64], "blocks": 1}
    assert info["extra"] == {"k": 1} and info["format"] == "cnnperf.model"
    loaded = load_model(path)
    assert not loaded.training and loaded.classes == ["a", "b", "c", "d"]
    assert loaded.preprocess == prep
    for key, value in model.state_dict().items():
        assert np.array_equal(loaded.state_dict()[key], value), key
    x = rng.random((5, 3, 12, 10), dtype=np.float32)
    want = predict(model, x, preprocess=prep, return_logits=True)
    got = predict(loaded, x, return_logits=True)
    assert np.array_equal(got, want)
    assert np.array_equal(predict(loaded, x), want.argmax(1))
    assert model.training  # predict restored the mode
    # the weights are plain safetensors with PyTorch's keys
    from safetensors.numpy import load_file

    assert set(load_file(path)) == set(model.state_dict())


def test_predict_normalises_like_the_training_transform():
    from cnnperf.data import Normalize

    model = build_model("lenet", 1, 10, 8)
    x = np.random.default_rng(2).random((6, 1, 8, 8), dtype=np.float32)
    prep = {"mean": [0.3], "std": [0.4]}
    logits = predict(model, x, preprocess=prep, return_logits=True)
    model.eval()
    assert np.array_equal(logits, model(Normalize([0.3], [0.4])(x)).data)


def test_load_model_errors_name_the_file(tmp_path):
    ckpt = tmp_path / "ckpt.safetensors"
    save_checkpoint(ckpt, build_model("lenet", 1, 10, 8), epoch=1)
    with pytest.raises(CheckpointError, match="not a cnnperf model file .*training checkpoint"):
        load_model(ckpt)
    bad = tmp_path / "bad.safetensors"
    save_model(bad, build_model("lenet", 1, 10, 8))
    from safetensors.numpy import load_file, save_file

    tensors = load_file(bad)
    meta = read_model_info(bad)
    meta["arch"]["num_classes"] = 5  # the weights say 10
    save_file(tensors, bad, metadata={"cnnperf.model": json.dumps(meta)})
    with pytest.raises(
        CheckpointError, match=f"{bad}: the weights do not fit architecture 'lenet'"
    ):
        load_model(bad)
    with pytest.raises(ValueError, match="save_model: Linear has no 'arch'"):
        save_model(tmp_path / "x.safetensors", nn.Linear(2, 2))
    with pytest.raises(ValueError, match="one mean and one std per input channel"):
        save_model(tmp_path / "y.safetensors", build_model("lenet", 1, 10, 8),
                   preprocess={"mean": [0, 0], "std": [1, 1]})  # fmt: skip


def test_predict_checks_the_image_shape():
    model = build_model("lenet", 1, 10, 28)
    with pytest.raises(
        ValueError, match=r"takes images of shape \(n, 1, 28, 28\), got \(2, 1, 8, 8\)"
    ):
        predict(model, np.zeros((2, 1, 8, 8), np.float32))
