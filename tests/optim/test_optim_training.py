"""Training parity: a small CNN trained by cnnperf and by PyTorch from the same weights on the
same batches follows the same trajectory (losses, weights, running statistics) step for step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnperf import nn, optim
from cnnperf.autograd import manual_seed

STEPS = 12
# float32 through a conv/BN/linear network: the two engines differ by rounding (~1e-6); ten
# steps of training must not amplify that past 1e-4 of each tensor's scale.
TOL = 1e-4


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: PyTorch's second thread only adds hand-offs (and stalls on a busy machine)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _model(lib):
    return lib.Sequential(
        lib.Conv2d(3, 8, 3, padding=1, bias=False),
        lib.BatchNorm2d(8),
        lib.ReLU(),
        lib.MaxPool2d(2),
        lib.Conv2d(8, 8, 3, padding=1),
        lib.ReLU(),
        lib.Flatten(),
        lib.Linear(8 * 4 * 4, 10),
    )


OPTIMIZERS = {
    "sgd_momentum_wd": lambda o, p: o.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4),
    "sgd_nesterov": lambda o, p: o.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
    "sgd_dampening": lambda o, p: o.SGD(p, lr=0.1, momentum=0.5, dampening=0.5),
    "adam": lambda o, p: o.Adam(p, lr=3e-3),
    "adam_wd_amsgrad": lambda o, p: o.Adam(p, lr=3e-3, weight_decay=1e-3, amsgrad=True),
    "adamw": lambda o, p: o.AdamW(p, lr=3e-3, weight_decay=0.05),
}


def _run(make_opt, schedule=None, clip=None):
    """Train both models; return the worst relative differences seen over all steps."""
    manual_seed(0)
    ours = _model(nn)
    theirs = _model(torch.nn)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    opt, topt = make_opt(optim, ours.parameters()), make_opt(torch.optim, theirs.parameters())
    sched = tsched = None
    if schedule is not None:
        sched, tsched = schedule(optim.lr_scheduler, opt), schedule(torch.optim.lr_scheduler, topt)
    rng = np.random.default_rng(1)
    worst = {"loss": 0.0, "weights": 0.0}
    losses = []
    for _ in range(STEPS):
        x = rng.standard_normal((8, 3, 8, 8)).astype(np.float32)
        y = rng.integers(0, 10, 8)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(ours(x), y)
        loss.backward()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        if clip is not None:
            norm = nn.utils.clip_grad_norm_(ours.parameters(), clip)
            tnorm = torch.nn.utils.clip_grad_norm_(theirs.parameters(), clip)
            assert abs(float(norm) - tnorm.item()) <= TOL * tnorm.item()
        opt.step()
        topt.step()
        if sched is not None:
            sched.step()
            tsched.step()
            assert sched.get_last_lr() == tsched.get_last_lr()
        losses.append(loss.item())
        worst["loss"] = max(worst["loss"], abs(loss.item() - tloss.item()) / abs(tloss.item()))
        tsd = theirs.state_dict()
        for key, value in ours.state_dict().items():
            ref = tsd[key].numpy()
            if value.dtype.kind == "f":
                err = float(np.abs(value - ref).max() / np.abs(ref).max())
                worst["weights"] = max(worst["weights"], err)
            else:
                assert value == ref, key  # num_batches_tracked
    return worst, losses


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_training_matches_torch_step_for_step(name):
    worst, losses = _run(OPTIMIZERS[name])
    assert worst["loss"] <= TOL, worst
    assert worst["weights"] <= TOL, worst
    assert losses[-1] != losses[0]  # the weights did move


def test_training_with_onecycle_schedule_and_clipping_matches_torch():
    worst, _ = _run(
        lambda o, p: o.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
        schedule=lambda s, opt: s.OneCycleLR(opt, max_lr=0.1, total_steps=STEPS),
        clip=1.0,
    )
    assert worst["loss"] <= TOL and worst["weights"] <= TOL, worst
