"""PyTorch state_dicts exported as .safetensors or .npz load into the same cnnperf network."""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from conftest import assert_rel_close

from cnnperf import nn, optim
from cnnperf.autograd import manual_seed
from cnnperf.training import CheckpointError, load_state_dict_file, save_checkpoint


def torch_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 10),
    )
    with torch.no_grad():  # running statistics far from their defaults (0, 1, 0 batches)
        g = torch.Generator().manual_seed(1)
        net[1].running_mean.copy_(torch.randn(8, generator=g))
        net[1].running_var.copy_(torch.rand(8, generator=g) + 0.5)
        net[1].weight.copy_(torch.randn(8, generator=g))
        net[1].num_batches_tracked.fill_(17)
    return net.eval()


def cnnperf_net() -> nn.Module:
    manual_seed(123)  # different initial weights: the load must replace all of them
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    ).eval()


def export(net: torch.nn.Module, path, how: str) -> None:
    sd = net.state_dict()
    if how == "safetensors":
        safetensors.torch.save_file(sd, str(path))
    else:
        np.savez(path, **{k: v.numpy() for k, v in sd.items()})


@pytest.mark.parametrize("how", ["safetensors", "npz"])
def test_pytorch_state_dict_loads_and_matches_outputs(tmp_path, how):
    net = torch_net()
    path = tmp_path / f"weights.{how}"
    export(net, path, how)
    weights = load_state_dict_file(path)
    assert set(weights) == set(net.state_dict())
    model = cnnperf_net()
    model.load_state_dict(weights)
    for key, value in model.state_dict().items():
        expected = net.state_dict()[key].numpy()
        assert value.dtype == expected.dtype and np.array_equal(value, expected), key
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    assert_rel_close(model(x).data, expected, 1e-5, f"eval outputs after loading {how}")


def test_cnnperf_checkpoint_gives_model_weights_only(tmp_path):
    model = cnnperf_net()
    path = tmp_path / "c.safetensors"
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    opt.step()
    save_checkpoint(path, model, opt, epoch=1)
    weights = load_state_dict_file(path)
    assert list(weights) == list(model.state_dict())
    # a corrupt checkpoint is detected here too (checksum)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_state_dict_file(path)


def test_pickles_are_refused_with_export_advice(tmp_path):
    for name in ("model.pth", "weights.dat"):
        path = tmp_path / name
        torch.save(torch_net().state_dict(), path)
        with pytest.raises(CheckpointError, match="pickle files are not read.*save_file"):
            load_state_dict_file(path)


def test_bad_weight_files(tmp_path):
    obj = tmp_path / "object.npz"
    np.savez(obj, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(
        CheckpointError, match="object.npz: cannot read the .npz file.*allow_pickle"
    ):
        load_state_dict_file(obj)
    cut = tmp_path / "cut.npz"
    good = tmp_path / "good.npz"
    np.savez(good, w=np.ones(100, np.float32))
    cut.write_bytes(good.read_bytes()[:60])
    with pytest.raises(CheckpointError, match="cut.npz: cannot read the .npz file"):
        load_state_dict_file(cut)
    text = tmp_path / "text.npz"
    text.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="text.npz: not a .npz file"):
        load_state_dict_file(text)
    bf16 = tmp_path / "bf16.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2, dtype=torch.bfloat16)}, str(bf16))
    with pytest.raises(CheckpointError, match="tensor 'w' has dtype BF16, which NumPy cannot"):
        load_state_dict_file(bf16)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.safetensors: the file is empty"):
        load_state_dict_file(empty)
    short = tmp_path / "short.safetensors"
    safetensors.numpy.save_file({"w": np.ones(50, np.float32)}, short)
    short.write_bytes(short.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="short.safetensors: corrupt or truncated"):
        load_state_dict_file(short)
