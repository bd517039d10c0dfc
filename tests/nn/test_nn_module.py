"""Module bookkeeping against torch.nn: registration, iteration, modes, state dicts, containers."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import cnnperf
from cnnperf import nn
from cnnperf.autograd import manual_seed


def _nets(lib):
    """The same nested network written against cnnperf.nn or torch.nn."""

    class Block(lib.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = lib.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn = lib.BatchNorm2d(c)
            self.act = lib.ReLU()
            self.shortcut = lib.Sequential(lib.Conv2d(c, c, 1), lib.BatchNorm2d(c, affine=False))

        def forward(self, x):
            return self.act(self.bn(self.conv(x)) + self.shortcut(x))

    class Net(lib.Module):
        def __init__(self):
            super().__init__()
            self.stem = lib.Sequential(
                lib.Conv2d(3, 4, 3, padding=1), lib.BatchNorm2d(4), lib.ReLU(), lib.MaxPool2d(2)
            )
            self.blocks = lib.ModuleList([Block(4), Block(4)])
            self.register_buffer("scale", lib_array(lib, np.full(4, 2.0, np.float32)))
            self.register_buffer("cache", lib_array(lib, np.zeros(3, np.float32)), persistent=False)
            self.register_buffer("absent", None)
            self.head = lib.Sequential(lib.Flatten(), lib.Linear(4 * 4 * 4, 5))

        def forward(self, x):
            h = self.stem(x)
            for b in self.blocks:
                h = b(h)
            return self.head(h)

    return Net()


def lib_array(lib, a):
    return torch.from_numpy(a) if lib is torch.nn else a


def test_state_dict_keys_shapes_and_dtypes_are_torchs():
    ours, theirs = _nets(nn), _nets(torch.nn)
    sd, tsd = ours.state_dict(), theirs.state_dict()
    assert list(sd) == list(tsd)
    assert "blocks.1.shortcut.1.num_batches_tracked" in sd and "cache" not in sd
    for key, value in sd.items():
        ref = tsd[key].numpy()
        assert isinstance(value, np.ndarray), key
        assert value.shape == ref.shape and value.dtype == ref.dtype, key
    assert sd["stem.1.num_batches_tracked"].shape == ()
    names = lambda pairs: [n for n, _ in pairs]  # noqa: E731
    assert names(ours.named_parameters()) == names(theirs.named_parameters())
    assert names(ours.named_buffers()) == names(theirs.named_buffers())
    assert names(ours.named_modules()) == names(theirs.named_modules())
    assert names(ours.named_children()) == names(theirs.named_children())
    # torch < 2.5 prints no "bias=" for BatchNorm: compare without it
    strip = lambda s: s.replace(", bias=True, track", ", track")  # noqa: E731
    assert strip(repr(ours)) == strip(repr(theirs))


def test_state_dict_round_trip_with_torch_gives_the_same_outputs():
    manual_seed(0)
    ours, theirs = _nets(nn), _nets(torch.nn)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    for mode in (True, False):
        ours.train(mode)
        theirs.train(mode)
        y, yt = ours(x), theirs(torch.from_numpy(x))
        np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    back = _nets(nn)
    back.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for key, value in back.state_dict().items():
        np.testing.assert_array_equal(value, theirs.state_dict()[key].numpy())


def test_state_dict_is_a_snapshot_unless_keep_vars():
    lin = nn.Linear(2, 2)
    sd = lin.state_dict()
    lin.weight.data += 1
    assert not np.array_equal(sd["weight"], lin.weight.data)
    live = lin.state_dict(keep_vars=True)
    assert live["weight"] is lin.weight


def test_strict_load_reports_every_problem_and_loads_nothing():
    manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Linear(3, 4))
    before = model.state_dict()
    good = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Linear(3, 4))
    state = good.state_dict()
    del state["0.bias"]
    state["9.weight"] = np.zeros(2, np.float32)
    state["1.running_mean"] = np.zeros(5, np.float32)
    state["1.num_batches_tracked"] = np.array(2.0)
    state["3.bias"] = [0.0, 0.0, 0.0, 0.0]
    state["3.weight"] = np.ones((4, 3), np.int64)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    msg = str(info.value)
    assert "Error(s) in loading state_dict for Sequential" in msg
    assert 'Missing key(s) in state_dict: "0.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "9.weight"' in msg
    assert (
        "size mismatch for 1.running_mean: copying a param with shape (5,) from checkpoint, "
        "the shape in current model is (2,)"
    ) in msg
    assert "dtype mismatch for 1.num_batches_tracked: the value has dtype float64" in msg
    assert "dtype mismatch for 3.weight: the value has dtype int64" in msg
    assert "wrong type for 3.bias: expected a numpy.ndarray or cnnperf Tensor, got list" in msg
    for key, value in model.state_dict().items():  # nothing was loaded, not even good entries
        np.testing.assert_array_equal(value, before[key])
    assert not np.array_equal(before["0.weight"], state["0.weight"])


def test_non_strict_load_returns_missing_and_unexpected_but_still_checks_shapes():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    src = nn.Sequential(nn.Linear(2, 3))
    weight_before = model[0].weight
    result = model.load_state_dict({**src.state_dict(), "extra": np.zeros(1)}, strict=False)
    assert result.missing_keys == [
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
    assert result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(model[0].weight.data, src[0].weight.data)
    assert model[0].weight is weight_before  # copied into the live parameter
    with pytest.raises(ValueError, match="size mismatch for 0.bias"):
        model.load_state_dict({"0.bias": np.zeros(4, np.float32)}, strict=False)


def test_load_refuses_torch_tensors_with_a_hint():
    lin = nn.Linear(2, 1)
    with pytest.raises(ValueError, match=r"got torch.Tensor \(convert it with .numpy\(\)\)"):
        lin.load_state_dict({k: torch.from_numpy(v) for k, v in lin.state_dict().items()})


def test_load_accepts_tensors_and_casts_float64():
    lin = nn.Linear(2, 1)
    lin.load_state_dict({"weight": cnnperf.tensor([[1.0, 2.0]]), "bias": np.array([0.5])})
    assert lin.bias.dtype == np.float32 and lin.bias.data.tolist() == [0.5]
    assert lin.weight.data.tolist() == [[1.0, 2.0]]


def test_registration_and_attribute_errors():
    m = nn.Module()
    m.w = nn.Parameter(np.ones(2, np.float32))
    m.sub = nn.Linear(1, 1)
    m.register_buffer("buf", np.zeros(1))
    m.plain = 3
    m.plain = nn.Parameter(np.ones(1, np.float32))  # replaces the plain attribute, as torch
    del m.plain
    assert [n for n, _ in m.named_parameters()] == ["w", "sub.weight", "sub.bias"]
    assert list(m.state_dict()) == ["w", "buf", "sub.weight", "sub.bias"]
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'w'"):
        m.w = cnnperf.tensor([1.0])
    with pytest.raises(TypeError, match="cannot assign 'list' as buffer 'buf'"):
        m.buf = [1]
    with pytest.raises(TypeError, match="as child module 'sub'"):
        m.sub = 5
    m.w = None
    assert [n for n, _ in m.named_parameters()] == ["sub.weight", "sub.bias"]
    del m.sub
    assert list(m.state_dict()) == ["buf"]
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'nope'"):
        _ = m.nope
    with pytest.raises(KeyError, match="be empty or contain"):
        m.register_buffer("a.b", np.zeros(1))

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(1, np.float32))

    with pytest.raises(AttributeError, match=r"before Module.__init__\(\) call"):
        Early()
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        nn.Module()(np.ones(1, np.float32))


def test_shared_parameters_and_modules_are_listed_once():
    lin = nn.Linear(2, 2)
    net = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(net.parameters())) == 2
    assert len(list(net.modules())) == 3
    assert list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # as torch


def test_train_eval_zero_grad_requires_grad_and_apply():
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2)))
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="expected to be a bool"):
        net.train("yes")
    net(np.ones((3, 2), np.float32)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Dropout", "BatchNorm1d", "Sequential", "Sequential"]


def test_containers_index_like_torch():
    seq = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 3))
    assert isinstance(seq[-1], nn.Linear) and len(seq) == 3
    tseq = torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.ReLU(), torch.nn.Linear(2, 3))
    assert list(seq[1:].state_dict()) == list(tseq[1:].state_dict()) == ["2.weight", "2.bias"]
    del seq[0]
    del tseq[0]
    assert list(seq.state_dict()) == ["1.weight", "1.bias"]  # renumbered
    assert list(tseq.state_dict()) == list(seq.state_dict())
    with pytest.raises(IndexError, match="index 5 is out of range for 2 modules"):
        seq[5]
    ml = nn.ModuleList([nn.ReLU(), nn.ReLU(), nn.Tanh()])
    tml = torch.nn.ModuleList([torch.nn.ReLU(), torch.nn.ReLU(), torch.nn.Tanh()])
    assert repr(ml) == repr(tml)
    ml.insert(1, nn.Linear(1, 1))
    assert list(ml.state_dict()) == ["1.weight", "1.bias"]
    md = nn.ModuleDict({"a": nn.Linear(1, 1)})
    md["b"] = nn.Linear(1, 2)
    assert list(md) == ["a", "b"] and "b" in md
    assert list(md.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]


def test_parameter_basics():
    arr = np.zeros(3, np.float32)
    p = nn.Parameter(arr)
    assert p.data is arr and p.requires_grad and p.is_leaf
    assert repr(p).startswith("Parameter containing:\nTensor(")
    assert nn.Parameter(cnnperf.tensor([1.0])).shape == (1,)
    assert not nn.Parameter(arr, requires_grad=False).requires_grad
    with pytest.raises(ValueError, match="dtype float32 or float64"):
        nn.Parameter(np.zeros(2, np.int64))


def test_deepcopy_and_pickle_keep_the_model():
    manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))
    net(np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32))
    net.eval()
    x = np.ones((1, 2, 4, 4), np.float32)
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert isinstance(clone[0].weight, nn.Parameter) and clone[0].weight.requires_grad
        assert clone[0].weight.data is not net[0].weight.data
        assert int(clone[1].num_batches_tracked) == 1
        np.testing.assert_array_equal(clone(x).data, net(x).data)


def test_import_cnnperf_exposes_nn_and_optim_without_numba():
    code = (
        "import sys, cnnperf; print(cnnperf.nn.Linear.__name__, cnnperf.optim.SGD.__name__, "
        "'numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Linear", "SGD", "False"]
