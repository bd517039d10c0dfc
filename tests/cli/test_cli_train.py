"""The ``cnnperf train`` command: summary, checkpoints, resume, NaN stop, saved model, errors.

Runs are tiny (LeNet on 96-160 digits, 1-2 epochs) and in-process, as ``main([...])``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnperf.cli.main import main
from cnnperf.cli.train import EXIT_NON_FINITE
from cnnperf.data import digits_split
from cnnperf.training import (
    build_model,
    load_checkpoint,
    load_model,
    predict,
    read_checkpoint,
    read_model_info,
)
from cnnperf.training import trainer as trainer_module

SMALL = ["--model", "lenet", "--limit", "96", "--batch-size", "32", "--no-progress"]


def train(tmp_path, *argv, name="ck"):
    """Run ``cnnperf train`` in-process into ``tmp_path/name``; return (status, JSON summary)."""
    out = tmp_path / f"{name}.json"
    status = main(
        ["train", *SMALL, "--checkpoint-dir", str(tmp_path / name), "--json", str(out), *argv]
    )
    return status, (json.loads(out.read_text()) if out.exists() else None)


def without_timings(history):
    return [{k: v for k, v in r.items() if k not in ("time_s", "images_per_s")} for r in history]


def test_json_summary_to_stdout_and_a_checkpoint_per_epoch(tmp_path, capsys):
    import cnnperf

    ck = tmp_path / "ck"
    argv = ["train", *SMALL, "--epochs", "2", "--checkpoint-dir", str(ck), "--json", "-"]
    threads = cnnperf.get_num_threads()
    assert main([*argv, "--threads", "1"]) == 0
    assert cnnperf.get_num_threads() == threads  # restored
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout is pure JSON; the report went to stderr
    assert "epoch 1/2" in captured.err and "final test accuracy" in captured.err
    assert doc["schema"] == "cnnperf-train/1"
    assert doc["model"] == "lenet" and doc["data"] == "digits" and doc["epochs"] == 2
    assert doc["num_train"] == 96 and doc["num_test"] == 96 and doc["parameters"] == 21386
    assert doc["threads"] == 1
    assert 0 <= doc["final_test_accuracy"] <= 1 and doc["best_test_accuracy"] >= 0
    assert doc["final_test_accuracy"] == doc["history"][-1]["test_accuracy"]
    assert doc["images_per_s"] > 0 and doc["wall_time_s"] >= doc["train_time_s"] > 0
    assert [r["epoch"] for r in doc["history"]] == [1, 2]
    for record in doc["history"]:
        assert set(record) == {
            "epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
            "time_s", "images_per_s",
        }  # fmt: skip
    assert doc["config"]["lr"] == 0.1 and doc["config"]["weight_decay"] == 5e-3  # sgd defaults
    assert doc["checkpoint"] == str(ck / "last.safetensors")
    ckpt = read_checkpoint(doc["checkpoint"])
    assert ckpt.epoch == 2 and ckpt.step == 2 * 3  # 96 images in batches of 32
    assert ckpt.extra["config"]["model"] == "lenet"
    assert ckpt.rng_state["loader"]["epoch"] == 2


def test_text_report_on_stdout_and_a_note_when_replacing_a_checkpoint(tmp_path, capsys):
    for _ in range(2):
        assert main(["train", *SMALL, "--epochs", "1", "--checkpoint-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1  lr " in out and "test loss" in out and "img/s" in out
    assert "exists and will be replaced (pass --resume to continue that run)" in out


def test_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    # default schedule (onecycle, per batch) and a dropout model: everything must be restored
    args = ["--model", "vgg_small", "--epochs", "2", "--limit", "64"]
    status, full = train(tmp_path, *args, "--save-model", str(tmp_path / "full.st"), name="a")
    assert status == 0

    calls = []
    real = trainer_module.evaluate

    def crash_in_epoch_2(*a, **k):  # after epoch 2's training steps, before its checkpoint
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer_module, "evaluate", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, *args, name="b")
    assert read_checkpoint(tmp_path / "b" / "last.safetensors").epoch == 1
    monkeypatch.setattr(trainer_module, "evaluate", real)

    status, resumed = train(
        tmp_path, *args, "--resume", "--save-model", str(tmp_path / "resumed.st"), name="b"
    )
    assert status == 0 and resumed["resumed_from_epoch"] == 1 and resumed["epochs"] == 2
    assert without_timings(resumed["history"]) == without_timings(full["history"])
    a, b = load_model(tmp_path / "full.st"), load_model(tmp_path / "resumed.st")
    for key, value in a.state_dict().items():
        assert np.array_equal(b.state_dict()[key], value), key


def test_resume_extends_a_run_without_schedule(tmp_path):
    common = ["--scheduler", "none", "--optimizer", "adamw"]
    status, full = train(tmp_path, *common, "--epochs", "2", name="full")
    assert status == 0
    assert train(tmp_path, *common, "--epochs", "1", name="part")[0] == 0
    status, resumed = train(tmp_path, *common, "--epochs", "2", "--resume", name="part")
    assert status == 0 and resumed["resumed_from_epoch"] == 1
    assert without_timings(resumed["history"]) == without_timings(full["history"])
    ckpt_a = read_checkpoint(tmp_path / "full" / "last.safetensors")
    ckpt_b = read_checkpoint(tmp_path / "part" / "last.safetensors")
    for key, value in ckpt_a.model_state.items():
        assert np.array_equal(ckpt_b.model_state[key], value), key


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    assert train(tmp_path, "--epochs", "1")[0] == 0
    with pytest.raises(SystemExit) as exc:
        train(tmp_path, "--epochs", "2", "--lr", "0.05", "--resume")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cnnperf train: error: --resume:" in err and "cannot resume" in err
    assert "lr: 0.1 in the checkpoint, 0.05 now" in err
    assert "epochs: 1 in the checkpoint, 2 now (the onecycle schedule" in err


def test_resume_without_a_checkpoint_starts_a_new_run(tmp_path, capsys):
    status, doc = train(tmp_path, "--epochs", "1", "--resume")
    assert status == 0 and doc["resumed_from_epoch"] is None
    assert "no checkpoint at" in capsys.readouterr().out


def test_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    real = trainer_module._EpochStats.loss_fn
    calls = []

    def nan_in_epoch_2(self, output, target):  # 3 batches per epoch: call 5 is epoch 2, batch 2
        calls.append(1)
        loss = real(self, output, target)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(trainer_module._EpochStats, "loss_fn", nan_in_epoch_2)
    path = tmp_path / "ck" / "last.safetensors"
    status, doc = train(tmp_path, "--epochs", "3", "--save-model", str(tmp_path / "m.st"))
    assert status == EXIT_NON_FINITE and doc is None
    err = capsys.readouterr().err
    assert (
        f"cnnperf train: error: the loss became nan in epoch 2 of 3, batch 2 of 3; training "
        f"stopped before applying it, and the last good checkpoint (1 epoch(s) done) is kept at "
        f"{path}. Try a lower --lr (now 0.1)." in err
    )
    assert read_checkpoint(path).epoch == 1
    assert not (tmp_path / "m.st").exists()


def test_huge_learning_rate_gives_nan_and_no_checkpoint(tmp_path, capsys):
    status, _ = train(tmp_path, "--epochs", "2", "--lr", "1e30")
    assert status == EXIT_NON_FINITE
    err = capsys.readouterr().err
    assert "cnnperf train: error: the loss became" in err and "in epoch 1 of 2" in err
    assert "no checkpoint was written. Try a lower --lr (now 1e+30)." in err
    assert not (tmp_path / "ck" / "last.safetensors").exists()


def test_saved_model_predicts_like_the_trained_model(tmp_path):
    path = tmp_path / "digits.safetensors"
    status, doc = train(tmp_path, "--epochs", "1", "--save-model", str(path))
    assert status == 0 and doc["saved_model"] == str(path)
    info = read_model_info(path)
    assert info["arch"]["name"] == "lenet" and info["arch"]["input_size"] == [8, 8]
    assert info["classes"] == [str(i) for i in range(10)]
    assert info["preprocess"] == doc["preprocess"]
    model = load_model(path)
    # the trained model, rebuilt from the checkpoint of the same run
    ckpt = read_checkpoint(doc["checkpoint"])
    trained = build_model("lenet", 1, 10, 8)
    load_checkpoint(ckpt, trained, restore_rng=False)
    _, test = digits_split(0.2, 0)
    images = test.images[:96]  # the --limit 96 test set
    want = predict(trained, images, preprocess=ckpt.extra["preprocess"], return_logits=True)
    got = predict(model, images, return_logits=True)
    assert np.array_equal(got, want)
    accuracy = float((got.argmax(1) == test.labels[:96]).mean())
    assert accuracy == doc["final_test_accuracy"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
        (["--lr", "-1"], "argument --lr: expected a finite number > 0, got '-1'"),
        (["--lr", "nan"], "argument --lr: expected a finite number > 0, got 'nan'"),
        (["--momentum", "1.5"], "argument --momentum: expected a finite number >= 0 and < 1"),
        (["--batch-size", "x"], "argument --batch-size: expected an integer, got 'x'"),
        (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
        (["--model", "alexnet"], "argument --model: invalid choice: 'alexnet'"),
        (["--scheduler", "warm"], "argument --scheduler: invalid choice: 'warm'"),
        (["--data", "imagenet:/x"], "data 'imagenet:/x': unknown kind 'imagenet'; use digits,"),
        (["--data", "mnist"], "data 'mnist': mnist needs a path (mnist:PATH)"),
        (["--data", "digits:/x"], "data 'digits:/x': the bundled digits take no path"),
        (["--data", "mnist:/no/such/dir"], "/no/such/dir"),
        (["--image-size", "16"], "image_size applies to folder: data only, not 'digits'"),
        (["--threads", "4096"], "--threads 4096: only"),
        (["--save-model", "/no/such/dir/m.st"], "--save-model /no/such/dir/m.st: directory"),
        (["--json", "/no/such/dir/s.json"], "--json /no/such/dir/s.json: directory"),
        (["--label-smoothing", "1"], "argument --label-smoothing: expected a finite number >= 0"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--checkpoint-dir", str(tmp_path), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cnnperf train: error:" in err
    assert message in err


def test_top_level_command_restarts_once_with_passive_pools(monkeypatch, tmp_path):
    import os
    import sys

    from cnnperf.cli import bench as bench_cli
    from cnnperf.cli.main import build_parser
    from cnnperf.cli.train import run_train_command

    calls = []

    def fake_execve(exe, argv, env):
        calls.append((argv, env))
        raise SystemExit(0)

    for key in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", bench_cli._REEXEC_MARK):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(os, "execve", fake_execve)
    argv = ["train", "--epochs", "1", "--checkpoint-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", ["cnnperf", *argv])
    with pytest.raises(SystemExit):
        run_train_command(build_parser().parse_args(argv), top_level=True)
    ((args, env),) = calls
    assert args == [sys.executable, "-m", "cnnperf", *argv]
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["OPENBLAS_THREAD_TIMEOUT"] == "4"
