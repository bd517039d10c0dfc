"""Learning-rate schedulers: the same sequences as torch.optim.lr_scheduler, float for float."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cnnperf import nn, optim
from cnnperf.optim import lr_scheduler

STEPS = 30

# (id, optimizer name and kwargs, scheduler factory given the lr_scheduler module)
CASES = [
    ("step", ("SGD", {}), lambda s, o: s.StepLR(o, step_size=7, gamma=0.3)),
    ("multistep", ("SGD", {}), lambda s, o: s.MultiStepLR(o, [5, 12, 12, 20], gamma=0.5)),
    ("exponential", ("SGD", {}), lambda s, o: s.ExponentialLR(o, gamma=0.9)),
    ("linear_warmup", ("SGD", {}), lambda s, o: s.LinearLR(o, start_factor=0.1, total_iters=8)),
    ("linear_decay", ("Adam", {}),
     lambda s, o: s.LinearLR(o, start_factor=1.0, end_factor=0.2, total_iters=10)),
    ("cosine", ("SGD", {}), lambda s, o: s.CosineAnnealingLR(o, T_max=10, eta_min=1e-3)),
    ("cosine_long", ("Adam", {}), lambda s, o: s.CosineAnnealingLR(o, T_max=STEPS)),
    ("onecycle", ("SGD", dict(momentum=0.9)),
     lambda s, o: s.OneCycleLR(o, max_lr=[0.5, 0.1], total_steps=STEPS)),
    ("onecycle_linear_3phase", ("SGD", dict(momentum=0.9)),
     lambda s, o: s.OneCycleLR(o, 0.4, epochs=3, steps_per_epoch=10, anneal_strategy="linear",
                               three_phase=True, pct_start=0.25)),
    ("onecycle_adam", ("Adam", {}), lambda s, o: s.OneCycleLR(o, max_lr=0.01, total_steps=STEPS)),
    ("warmup_then_cosine", ("SGD", {}),
     lambda s, o: s.SequentialLR(o, [s.LinearLR(o, 0.01, total_iters=5),
                                     s.CosineAnnealingLR(o, T_max=25)], milestones=[5])),
    ("warmup_then_step", ("SGD", {}),
     lambda s, o: s.SequentialLR(o, [s.LinearLR(o, 0.5, total_iters=4),
                                     s.StepLR(o, 3, 0.5)], milestones=[6])),
]  # fmt: skip


def _optimizers(name: str, kwargs: dict):
    """Two parameter groups with different learning rates, on both sides."""
    ours = [nn.Parameter(np.zeros(2, np.float32)), nn.Parameter(np.zeros(3, np.float32))]
    theirs = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    opt = getattr(optim, name)(
        [{"params": ours[:1]}, {"params": ours[1:], "lr": 0.3}], lr=0.1, **kwargs
    )
    topt = getattr(torch.optim, name)(
        [{"params": theirs[:1]}, {"params": theirs[1:], "lr": 0.3}], lr=0.1, **kwargs
    )
    return opt, topt


def _momenta(opt) -> list:
    return [g.get("momentum", g.get("betas")) for g in opt.param_groups]


def _sequence(opt, sched, steps: int) -> list:
    out = [(sched.get_last_lr(), _momenta(opt))]
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append((sched.get_last_lr(), _momenta(opt)))
        assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_lr_and_momentum_sequences_equal_torchs(case):
    _, (name, kwargs), make = case
    opt, topt = _optimizers(name, kwargs)
    sched = make(lr_scheduler, opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes about the step order
        tsched = make(torch.optim.lr_scheduler, topt)
        expected = _sequence(topt, tsched, STEPS)
    got = _sequence(opt, sched, STEPS)
    assert got == expected  # exact: the same float formulas in the same order
    assert len({lr for lrs, _ in got for lr in lrs}) > 2  # the schedule did change the rate


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_state_dict_round_trip_resumes_the_schedule(case):
    _, (name, kwargs), make = case
    opt, _ = _optimizers(name, kwargs)
    sched = make(lr_scheduler, opt)
    _sequence(opt, sched, 10)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    rest = _sequence(opt, sched, STEPS - 10)
    opt2, _ = _optimizers(name, kwargs)
    sched2 = make(lr_scheduler, opt2)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    assert _sequence(opt2, sched2, STEPS - 10) == rest


def test_onecycle_past_the_end_and_argument_errors():
    opt, _ = _optimizers("SGD", dict(momentum=0.9))
    sched = lr_scheduler.OneCycleLR(opt, 1.0, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 4 times. The specified number of total"):
        sched.step()
    with pytest.raises(ValueError, match="either total_steps OR"):
        lr_scheduler.OneCycleLR(opt, 1.0)
    with pytest.raises(ValueError, match="max_lr must have the same length as"):
        lr_scheduler.OneCycleLR(opt, [1.0], total_steps=5)
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        lr_scheduler.StepLR([], 3)
    with pytest.raises(ValueError, match="step_size must be a positive int, got 0"):
        lr_scheduler.StepLR(opt, 0)
    with pytest.raises(ValueError, match="start_factor=0"):
        lr_scheduler.LinearLR(opt, start_factor=0)
    fresh, _ = _optimizers("SGD", {})
    with pytest.raises(KeyError, match="'initial_lr' is not specified in param_groups"):
        lr_scheduler.StepLR(fresh, 3, last_epoch=4)
