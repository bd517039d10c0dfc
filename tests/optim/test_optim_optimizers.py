"""SGD, Adam and AdamW against torch.optim on identical gradients; state dicts; argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_rel_close

from cnnperf import nn, optim

SHAPES = [(6, 4), (6,), (3, 2, 3, 3)]

CONFIGS = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd_momentum_wd": ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=5e-4)),
    "sgd_dampening_maximize": ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, maximize=True)),
    "sgd_nesterov": ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)),
    "adam": ("Adam", dict(lr=1e-2)),
    "adam_wd_betas": ("Adam", dict(lr=1e-2, betas=(0.3, 0.9), weight_decay=1e-2)),
    "adam_amsgrad_maximize": ("Adam", dict(lr=1e-2, amsgrad=True, maximize=True)),
    "adamw": ("AdamW", dict(lr=1e-2)),
    "adamw_amsgrad": ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True, eps=1e-6)),
}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: PyTorch's second thread only adds hand-offs (and stalls on a busy machine)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _pairs(seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours = [nn.Parameter(a.copy()) for a in init]
    theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in init]
    return ours, theirs


def _feed(ours, theirs, rng, step: int) -> None:
    """The same gradients on both sides; magnitudes vary so that Adam's moments matter."""
    for i, (p, t) in enumerate(zip(ours, theirs, strict=True)):
        if i == 1 and step % 4 == 3:  # sometimes a parameter has no gradient: skipped
            p.grad, t.grad = None, None
            continue
        g = (rng.standard_normal(p.shape) * (1.0 if step % 3 == 0 else 1e-3)).astype(p.dtype)
        p.grad, t.grad = g.copy(), torch.from_numpy(g.copy())


def _train(ours, theirs, opt, topt, steps: int, seed: int):
    rng = np.random.default_rng(seed)
    for step in range(steps):
        _feed(ours, theirs, rng, step)
        opt.step()
        topt.step()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_step_for_step_like_torch(name, dtype):
    cls, kwargs = CONFIGS[name]
    ours, theirs = _pairs(dtype=dtype)
    opt, topt = getattr(optim, cls)(ours, **kwargs), getattr(torch.optim, cls)(theirs, **kwargs)
    _train(ours, theirs, opt, topt, steps=25, seed=1)
    # float32 SGD matches bit for bit (see the test below); Adam's only difference is
    # PyTorch's vectorised sqrt, off by an ulp now and then.
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for p, t in zip(ours, theirs, strict=True):
        assert p.data.dtype == dtype
        assert_rel_close(p.data, t.detach().numpy(), tol, f"{name} {p.shape}")
    tstate = topt.state_dict()["state"]
    for index, state in opt.state_dict()["state"].items():
        assert sorted(state) == sorted(tstate[index]), index
        for key, value in state.items():
            ref = tstate[index][key]
            if key == "step":
                assert value == ref.item()
            else:
                assert_rel_close(value, ref.numpy(), tol, f"{name} state {key}")


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
    reason="PyTorch rounds like cnnperf only where its kernels use fused multiply-adds",
)
@pytest.mark.parametrize("name", ["sgd", "sgd_momentum_wd", "sgd_nesterov"])
def test_sgd_float32_is_bit_identical_to_torch(name):
    cls, kwargs = CONFIGS[name]
    ours, theirs = _pairs()
    _train(ours, theirs, optim.SGD(ours, **kwargs), torch.optim.SGD(theirs, **kwargs), 25, 2)
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(p.data, t.detach().numpy())


def test_updates_are_in_place_and_keep_the_arrays():
    ours, _ = _pairs()
    arrays = [p.data for p in ours]
    opt = optim.Adam(ours, lr=0.1)
    for p in ours:
        p.grad = np.ones_like(p.data)
    opt.step()
    assert all(p.data is a for p, a in zip(ours, arrays, strict=True))
    assert all(p.data.dtype == np.float32 for p in ours)


def test_param_groups_have_their_own_settings_like_torch():
    ours, theirs = _pairs()

    def groups(ps):
        return [
            {"params": ps[:2], "lr": 0.2, "momentum": 0.5},
            {"params": ps[2:], "weight_decay": 0.1},
        ]

    opt = optim.SGD(groups(ours), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(groups(theirs), lr=0.05, momentum=0.9)
    _train(ours, theirs, opt, topt, steps=6, seed=3)
    for p, t in zip(ours, theirs, strict=True):
        assert_rel_close(p.data, t.detach().numpy(), 1e-6, "groups")
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    for g, tg in zip(sd["param_groups"], tsd["param_groups"], strict=True):
        for key, value in g.items():
            assert tg[key] == value, key  # every one of our settings is torch's


def test_closure_and_zero_grad():
    p = nn.Parameter(np.array([2.0], np.float32))
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 4.0 and p.data.tolist() == [1.0]  # 2 - 0.25 * 4
    opt.zero_grad(set_to_none=False)
    assert p.grad.tolist() == [0.0]
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize("cls, kwargs", [("SGD", dict(lr=0.1, momentum=0.9)),
                                         ("Adam", dict(lr=1e-2, amsgrad=True)),
                                         ("AdamW", dict(lr=1e-2))])  # fmt: skip
def test_state_dict_round_trip_continues_identically(cls, kwargs):
    def model():
        return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))

    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(8)]

    def train(net, opt, xs):
        for x in xs:
            opt.zero_grad()
            (net(x) ** 2).mean().backward()
            opt.step()

    a = model()
    opt_a = getattr(optim, cls)(a.parameters(), **kwargs)
    train(a, opt_a, batches[:4])
    model_state, opt_state = a.state_dict(), opt_a.state_dict()
    train(a, opt_a, batches[4:])
    # a fresh model and optimizer restored from the checkpoint
    b = model()
    b.load_state_dict(model_state)
    opt_b = getattr(optim, cls)(b.parameters(), lr=123.0)
    opt_b.load_state_dict(opt_state)
    assert opt_b.param_groups[0]["lr"] == kwargs["lr"]
    train(b, opt_b, batches[4:])
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[key], value)
    final_a, final_b = opt_a.state_dict(), opt_b.state_dict()
    for index, state in final_a["state"].items():
        for key, value in state.items():
            np.testing.assert_array_equal(final_b["state"][index][key], value)
    # the checkpoint is a copy: training on did not change it
    key = "momentum_buffer" if cls == "SGD" else "exp_avg"
    assert not np.array_equal(opt_state["state"][0][key], final_a["state"][0][key])


def test_load_state_dict_from_torch_and_errors():
    ours, theirs = _pairs()
    topt = torch.optim.Adam(theirs, lr=3e-3)
    _train(ours, theirs, optim.Adam(ours, lr=3e-3), topt, steps=3, seed=0)
    converted = {
        "state": {
            i: {k: v.numpy() for k, v in s.items()} for i, s in topt.state_dict()["state"].items()
        },
        "param_groups": topt.state_dict()["param_groups"],
    }
    opt = optim.Adam(ours)
    opt.load_state_dict(converted)
    assert opt.state[ours[0]]["step"] == 3.0 and opt.param_groups[0]["lr"] == 3e-3
    bad = optim.Adam(ours[:2])
    with pytest.raises(ValueError, match="loaded parameter group 0 has 3 parameters, the "):
        bad.load_state_dict(converted)
    converted["state"][0]["exp_avg"] = np.zeros((2, 2), np.float32)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 0 has shape \(2, 2\)"):
        opt.load_state_dict(converted)
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["exp_avg"],
                                  before["state"][0]["exp_avg"])  # fmt: skip


def test_argument_errors_name_the_values():
    params = [nn.Parameter(np.zeros(2, np.float32))]
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero damp"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="invalid lr value: -1"):
        optim.SGD(params, lr=-1)
    with pytest.raises(ValueError, match="invalid beta parameter at index 1: 1.0"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="can only optimize Tensors, but one of the params is"):
        optim.SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts"):
        optim.SGD(params[0], lr=0.1)
    with pytest.raises(ValueError, match="appear in more than one parameter group"):
        optim.SGD([{"params": params}, {"params": params}], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([params[0] * 2], lr=0.1)
