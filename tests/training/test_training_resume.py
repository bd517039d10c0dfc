"""Resuming an interrupted run gives the same losses and weights, bit for bit; NaN stops safely."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cnnperf import nn, optim
from cnnperf.autograd import manual_seed
from cnnperf.training import (
    CheckpointError,
    NonFiniteLossError,
    fit,
    generator_state,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    set_generator_state,
    train_epoch,
)

# The experiment, as source: the tests run it here and in a child process that gets killed.
EXPERIMENT = textwrap.dedent(
    """
    import numpy as np
    from cnnperf import nn, optim
    from cnnperf.autograd import manual_seed
    from cnnperf.optim import lr_scheduler

    EPOCHS, BATCHES, BATCH = 3, 4, 4
    _rng = np.random.default_rng(2024)
    X = _rng.standard_normal((BATCHES * BATCH, 1, 8, 8)).astype(np.float32)
    Y = _rng.integers(0, 3, BATCHES * BATCH)

    def build(seed, kind="sgd"):
        '''Model (with dropout: the RNG state matters), optimizer, scheduler, data generator.'''
        manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(0.25), nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
        )
        if kind == "sgd":
            opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
            sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        else:
            opt = optim.AdamW(model.parameters(), lr=1e-2)
            sched = lr_scheduler.OneCycleLR(opt, max_lr=2e-2, total_steps=EPOCHS * BATCHES)
        return model, opt, sched, np.random.default_rng(seed + 1)

    def batches(data_gen, interrupt=None):
        '''One epoch of shuffled batches; ``interrupt()`` runs before batch 2.'''
        perm = data_gen.permutation(len(X))
        for i in range(BATCHES):
            if i == 2 and interrupt is not None:
                interrupt()
            idx = perm[i * BATCH : (i + 1) * BATCH]
            yield X[idx], Y[idx]
    """
)
ns: dict = {}
exec(EXPERIMENT, ns)
build, batches, EPOCHS = ns["build"], ns["batches"], ns["EPOCHS"]


class Interrupted(Exception):
    """Stands for Ctrl-C or a crash in the middle of an epoch."""


def interrupt():
    raise Interrupted


def final_state(model, opt, sched):
    sd = opt.state_dict()
    return (
        model.state_dict(),
        sd["param_groups"],
        {i: {k: np.asarray(v) for k, v in s.items()} for i, s in sd["state"].items()},
        sched.state_dict(),
    )


def assert_bit_identical(a, b) -> None:
    (ma, ga, sa, ca), (mb, gb, sb, cb) = a, b
    assert list(ma) == list(mb)
    for key in ma:
        assert ma[key].dtype == mb[key].dtype and ma[key].tobytes() == mb[key].tobytes(), key
    assert ga == gb and ca == cb
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys()
        for k in sa[i]:
            assert sa[i][k].tobytes() == sb[i][k].tobytes(), (i, k)


def manual_run(ckpt_dir, *, seed=0, interrupt_epoch=None):
    """Train EPOCHS epochs with train_epoch, checkpointing after each (epoch = completed)."""
    model, opt, sched, data_gen = build(seed)
    history, step = [], 0
    for epoch in range(EPOCHS):
        stop = interrupt if epoch == interrupt_epoch else None
        result = train_epoch(
            model, batches(data_gen, stop), opt, nn.functional.cross_entropy, epoch=epoch, step=step
        )
        step = result.step
        history.append(result.losses)
        sched.step()
        save_checkpoint(
            ckpt_dir / f"epoch{epoch + 1}.safetensors",
            model,
            opt,
            sched,
            epoch=epoch + 1,
            step=step,
            rng_state={"data": generator_state(data_gen)},
            extra={"losses": history},
        )
    return history, final_state(model, opt, sched)


def manual_resume(path, *, restore=True):
    """A fresh process state (other seeds everywhere) continuing from ``path``."""
    model, opt, sched, data_gen = build(seed=999)
    manual_seed(31337)
    info = load_checkpoint(path, model, opt, sched, restore_rng=restore)
    if restore:
        set_generator_state(data_gen, info["rng_state"]["data"])
    history, step = [list(x) for x in info["extra"]["losses"]], info["step"]
    for epoch in range(info["epoch"], EPOCHS):
        result = train_epoch(
            model, batches(data_gen), opt, nn.functional.cross_entropy, epoch=epoch, step=step
        )
        step = result.step
        history.append(result.losses)
        sched.step()
        save_checkpoint(
            path.parent / f"epoch{epoch + 1}.safetensors",
            model,
            opt,
            sched,
            epoch=epoch + 1,
            step=step,
            rng_state={"data": generator_state(data_gen)},
            extra={"losses": history},
        )
    return history, final_state(model, opt, sched)


def test_resume_after_interruption_is_bit_identical(tmp_path):
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full_dir.mkdir()
    cut_dir.mkdir()
    losses, state = manual_run(full_dir)

    with pytest.raises(Interrupted):  # stopped in the middle of epoch 1, after 2 of its steps
        manual_run(cut_dir, interrupt_epoch=1)
    gc.collect()  # every object of the interrupted run is gone
    assert sorted(os.listdir(cut_dir)) == ["epoch1.safetensors"]

    resumed_losses, resumed_state = manual_resume(cut_dir / "epoch1.safetensors")
    assert resumed_losses == losses
    assert_bit_identical(resumed_state, state)
    final = "epoch3.safetensors"
    assert (cut_dir / final).read_bytes() == (full_dir / final).read_bytes()


def test_resume_without_the_rng_states_diverges(tmp_path):
    """The check above is sensitive: without the dropout and data RNG states it fails."""
    losses, _ = manual_run(tmp_path)
    resumed_losses, _ = manual_resume(tmp_path / "epoch1.safetensors", restore=False)
    assert resumed_losses[0] == losses[0] and resumed_losses[1:] != losses[1:]


def run_fit(path, kind, seed, interrupt_epoch=None):
    model, opt, sched, data_gen = build(seed, kind)
    interval = "epoch" if kind == "sgd" else "batch"

    def epoch_batches(epoch):
        return batches(data_gen, interrupt if epoch == interrupt_epoch else None)

    result = fit(
        model, opt, nn.functional.cross_entropy, epoch_batches, epochs=EPOCHS,
        scheduler=sched, scheduler_interval=interval, checkpoint=path, resume=True,
        generators={"data": data_gen},
    )  # fmt: skip
    return result, final_state(model, opt, sched)


@pytest.mark.parametrize("kind", ["sgd", "adamw-onecycle"])
def test_fit_resumes_bit_identically(tmp_path, kind):
    full, full_state = run_fit(tmp_path / "full.safetensors", kind, seed=0)
    path = tmp_path / "cut.safetensors"
    with pytest.raises(Interrupted):
        run_fit(path, kind, seed=0, interrupt_epoch=2)
    assert read_checkpoint(path).epoch == 2
    resumed, resumed_state = run_fit(path, kind, seed=5)  # other seeds: all state comes from disk
    assert resumed.start_epoch == 2 and resumed.losses == full.losses
    assert resumed.step == full.step == EPOCHS * 4
    assert_bit_identical(resumed_state, full_state)
    assert path.read_bytes() == (tmp_path / "full.safetensors").read_bytes()


CHILD = EXPERIMENT + textwrap.dedent(
    """
    import os, signal, sys
    from cnnperf.training import fit

    def die():
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception handlers: a real crash

    model, opt, sched, data_gen = build(0)
    fit(model, opt, nn.functional.cross_entropy,
        lambda epoch: batches(data_gen, die if epoch == 1 else None),
        epochs=EPOCHS, scheduler=sched, checkpoint=sys.argv[1], generators={"data": data_gen})
    """
)


def test_fit_resumes_after_the_process_is_killed(tmp_path):
    path = tmp_path / "killed.safetensors"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert read_checkpoint(path).epoch == 1
    full, full_state = run_fit(tmp_path / "full.safetensors", "sgd", seed=0)
    resumed, resumed_state = run_fit(path, "sgd", seed=77)
    assert resumed.start_epoch == 1 and resumed.losses == full.losses
    assert_bit_identical(resumed_state, full_state)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "run.safetensors"
    model, opt, sched, data_gen = build(0)
    seen = {}

    def epoch_batches(epoch):
        if epoch == 1:
            seen["checkpoint"] = path.read_bytes()  # written after epoch 0
        for i, (x, y) in enumerate(batches(data_gen)):
            if epoch == 1 and i == 2:
                seen["weights"] = model.state_dict()
                x = x.copy()
                x[0, 0, 0, 0] = np.nan
            yield x, y

    with pytest.raises(NonFiniteLossError) as info:
        fit(
            model, opt, nn.functional.cross_entropy, epoch_batches, epochs=EPOCHS,
            scheduler=sched, checkpoint=path, generators={"data": data_gen},
        )  # fmt: skip
    err = info.value
    assert str(err) == (
        f"training stopped: the loss is nan at epoch 1, batch 2 (step 6); the model and optimizer "
        f"were left as before this batch; the last good checkpoint (1 epochs completed) is kept "
        f"at {path}"
    )
    assert (err.epoch, err.batch, err.step, err.last_checkpoint) == (1, 2, 6, str(path))
    assert path.read_bytes() == seen["checkpoint"]
    assert os.listdir(tmp_path) == ["run.safetensors"]
    assert read_checkpoint(path).epoch == 1
    for key, value in model.state_dict().items():  # the bad batch changed nothing, not even
        assert np.array_equal(value, seen["weights"][key]), key  # batch norm's running stats


def test_non_finite_loss_before_any_checkpoint(tmp_path):
    model = nn.Linear(2, 1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = np.ones((2, 2), np.float32), np.full((2, 1), np.inf, np.float32)
    path = tmp_path / "never.safetensors"
    with pytest.raises(NonFiniteLossError, match="loss is inf at epoch 0, batch 0 .*no checkpoint"):
        fit(model, opt, nn.functional.mse_loss, lambda e: [(x, y)], epochs=2, checkpoint=path)
    assert not path.exists()


def test_loop_argument_errors():
    model = nn.Linear(2, 3)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match="the loss must be a scalar, got shape \\(2, 3\\)"):
        train_epoch(model, [(x, None)], opt, lambda out, y: out)
    with pytest.raises(ValueError, match="scheduler_interval must be 'epoch' or 'batch'"):
        fit(model, opt, lambda o, t: o, lambda e: [], epochs=1, scheduler_interval="step")


def test_fit_refuses_a_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "c.safetensors"
    small = nn.Linear(2, 1)
    save_checkpoint(path, small, optim.SGD(small.parameters(), lr=0.1), epoch=1)
    model, opt, sched, data_gen = build(0)
    before = model.state_dict()
    with pytest.raises(ValueError, match="does not match \\(nothing was loaded\\)"):
        fit(
            model, opt, nn.functional.cross_entropy, lambda e: batches(data_gen), epochs=2,
            checkpoint=path, resume=True,
        )  # fmt: skip
    for key, value in model.state_dict().items():
        assert np.array_equal(value, before[key])
    # a checkpoint without the data generator's state is refused before anything loads
    model2, opt2, _, _ = build(0)
    save_checkpoint(path, model2, opt2, epoch=1)
    before = model.state_dict()
    with pytest.raises(CheckpointError, match="does not match.*\n  no state for generator 'data'"):
        fit(
            model, opt, nn.functional.cross_entropy, lambda e: batches(data_gen), epochs=2,
            checkpoint=path, resume=True, generators={"data": data_gen},
        )  # fmt: skip
    for key, value in model.state_dict().items():
        assert np.array_equal(value, before[key])
