"""Checkpoints: round trips, atomic writes, and all-or-nothing loading of bad files."""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter

import numpy as np
import pytest
import safetensors.numpy

from cnnperf import _atomic, nn, optim
from cnnperf.autograd import default_generator, manual_seed
from cnnperf.optim import lr_scheduler
from cnnperf.training import (
    FORMAT_VERSION,
    CheckpointError,
    _format,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from cnnperf.training._json import decode, encode


def make_model(seed: int = 0, hidden: int = 4) -> nn.Module:
    manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, hidden, 3, padding=1),
        nn.BatchNorm2d(hidden),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(hidden * 2 * 2, 3),
    )


def train_steps(model, opt, sched=None, steps: int = 2, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = rng.standard_normal((4, 1, 4, 4)).astype(np.float32)
        y = rng.integers(0, 3, 4)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()


def trained(seed: int = 0, optimizer: str = "sgd"):
    model = make_model(seed)
    if optimizer == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    else:
        opt = optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99), amsgrad=True)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    train_steps(model, opt, sched, seed=seed)
    return model, opt, sched


def snapshot(model, opt=None, sched=None):
    """Everything a load could change, as plain comparable values."""
    snap = {"model": {k: v.copy() for k, v in model.state_dict().items()}}
    if opt is not None:
        sd = opt.state_dict()
        snap["opt_groups"] = sd["param_groups"]
        snap["opt_state"] = {
            i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
            for i, s in sd["state"].items()
        }
    if sched is not None:
        snap["sched"] = sched.state_dict()
    snap["rng"] = default_generator().bit_generator.state
    return snap


def assert_same(a, b) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key in ("model", "opt_state"):
            assert a[key].keys() == b[key].keys(), key
            for k in a[key]:
                x, y = a[key][k], b[key][k]
                if isinstance(x, dict):
                    assert x.keys() == y.keys()
                    for n in x:
                        assert (
                            np.array_equal(x[n], y[n])
                            and np.asarray(x[n]).dtype == np.asarray(y[n]).dtype
                        ), (key, k, n)
                else:
                    assert x.dtype == y.dtype and np.array_equal(x, y), (key, k)
        else:
            assert a[key] == b[key], key


# ------------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_round_trip_restores_model_optimizer_scheduler_rng(tmp_path, optimizer):
    path = tmp_path / "ckpt.safetensors"
    model, opt, sched = trained(optimizer=optimizer)
    _ = default_generator().random(3)  # the RNG state is part of the checkpoint
    rng_state = {"loader": np.random.default_rng(5).bit_generator.state}
    extra = {"losses": [1.5, float("nan")], "best": (0.25, 3), "cfg": {"lr": np.float32(0.1)}}
    save_checkpoint(path, model, opt, sched, epoch=2, step=8, rng_state=rng_state, extra=extra)
    expected = snapshot(model, opt, sched)

    model2, opt2, sched2 = trained(seed=1, optimizer=optimizer)
    manual_seed(123)
    info = load_checkpoint(path, model2, opt2, sched2)
    assert_same(snapshot(model2, opt2, sched2), expected)
    assert info["epoch"] == 2 and info["step"] == 8
    assert info["rng_state"] == rng_state
    assert info["extra"]["best"] == (0.25, 3) and np.isnan(info["extra"]["losses"][1])
    assert type(info["extra"]["cfg"]["lr"]) is np.float32
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    assert info["version"] == FORMAT_VERSION
    if optimizer == "adam":
        assert opt2.param_groups[0]["betas"] == (0.8, 0.99)  # a tuple again, not a list


def test_weights_are_plain_safetensors_under_pytorch_keys(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    model, opt, sched = trained()
    save_checkpoint(path, model, opt, sched, epoch=1)
    tensors = safetensors.numpy.load_file(path)
    sd = model.state_dict()
    for key, value in sd.items():
        assert tensors[key].dtype == value.dtype and np.array_equal(tensors[key], value), key
    optim_keys = sorted(k for k in tensors if k not in sd)
    assert optim_keys == [f"__optim__.state.{i}.momentum_buffer" for i in range(6)]
    assert tensors["1.num_batches_tracked"].shape == ()


def test_model_only_checkpoint_and_optional_parts(tmp_path):
    path = tmp_path / "m.safetensors"
    model = make_model()
    save_checkpoint(path, model, epoch=0)
    ckpt = read_checkpoint(path)
    assert ckpt.optimizer_state is None and ckpt.scheduler_state is None and ckpt.step is None
    other = make_model(seed=3)
    load_checkpoint(path, other)
    assert_same(snapshot(other), snapshot(model))
    # an optimizer passed for a checkpoint saved without one is a mismatch
    opt = optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        load_checkpoint(path, other, opt)


@pytest.mark.parametrize(
    "make_sched",
    [
        lambda o: lr_scheduler.MultiStepLR(o, milestones=[1, 3], gamma=0.5),
        lambda o: lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=10),
        lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=4),
        lambda o: lr_scheduler.SequentialLR(
            o, [lr_scheduler.LinearLR(o, total_iters=2), lr_scheduler.StepLR(o, 2)], [2]
        ),
    ],
    ids=["multistep", "onecycle", "cosine", "sequential"],
)
def test_every_scheduler_round_trips(tmp_path, make_sched):
    path = tmp_path / "s.safetensors"
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = make_sched(opt)
    train_steps(model, opt, sched, steps=3)
    save_checkpoint(path, model, opt, sched, epoch=3)
    lrs = []
    for _ in range(3):
        sched.step()
        lrs.append(sched.get_last_lr())

    model2 = make_model(seed=1)
    opt2 = optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    sched2 = make_sched(opt2)
    load_checkpoint(path, model2, opt2, sched2)
    lrs2 = []
    for _ in range(3):
        sched2.step()
        lrs2.append(sched2.get_last_lr())
    assert lrs2 == lrs


def test_json_encoding_is_exact():
    value = {
        "tuple": (1, 2.5),
        "counter": Counter({3: 1, 7: 2}),
        "int_keys": {0: "a", 1: "b"},
        "reserved": {"__py__": "not a tag"},
        "floats": [float("inf"), -float("inf"), -0.0, 0.1 + 0.2, 1e-310],
        "ints": [2**127 + 1, -5],
        "np": [np.float32(0.1), np.int64(-3), np.bool_(True)],
        "array": np.arange(6, dtype=np.uint32).reshape(2, 3),
        "none": None,
    }
    back = decode(encode(value, "v"))
    assert type(back["tuple"]) is tuple and back["tuple"] == (1, 2.5)
    assert type(back["counter"]) is Counter and back["counter"] == value["counter"]
    assert back["int_keys"] == {0: "a", 1: "b"} and back["reserved"] == {"__py__": "not a tag"}
    assert [repr(x) for x in back["floats"]] == [repr(x) for x in value["floats"]]
    assert back["ints"] == value["ints"] and type(back["ints"][0]) is int
    assert [type(x) for x in back["np"]] == [np.float32, np.int64, np.bool_]
    assert back["np"][0] == np.float32(0.1)
    assert back["array"].dtype == np.uint32 and np.array_equal(back["array"], value["array"])
    assert json.loads(encode(value, "v"))  # strict JSON, readable anywhere


def test_unstorable_extra_is_rejected_before_writing(tmp_path):
    path = tmp_path / "c.safetensors"
    model = make_model()
    save_checkpoint(path, model, epoch=1)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"checkpoint\['extra'\]\['tags'\] has type set"):
        save_checkpoint(path, model, epoch=2, extra={"tags": {"a"}})
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="epoch must be a non-negative int, got -1"):
        save_checkpoint(path, model, epoch=-1)


# ------------------------------------------------------------------------------------------------
# atomic writes


def test_crash_mid_write_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    model, opt, sched = trained()
    save_checkpoint(path, model, opt, sched, epoch=1)
    before = path.read_bytes()
    train_steps(model, opt, sched, steps=1, seed=7)

    write_all = _atomic._write_all

    def half_then_fail(f, data):
        f.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atomic, "_write_all", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, model, opt, sched, epoch=2)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.safetensors"]
    assert read_checkpoint(path).epoch == 1

    def interrupted(f, data):
        f.write(data[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic, "_write_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, opt, sched, epoch=2)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.safetensors"]

    monkeypatch.setattr(_atomic, "_write_all", write_all)  # all data written, fsync fails
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        save_checkpoint(path, model, opt, sched, epoch=2)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.safetensors"]


def test_new_file_gets_normal_permissions(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, make_model(), epoch=0)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------------------------------------------
# bad files: a clear CheckpointError naming the file, and nothing changes


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.safetensors"
    model, opt, sched = trained()
    save_checkpoint(path, model, opt, sched, epoch=1, step=2)
    return path


@pytest.fixture
def target():
    """A fresh model/optimizer/scheduler of the same architecture, with its state snapshot."""
    model, opt, sched = trained(seed=9)
    return model, opt, sched


def expect_error(path, objs, match: str) -> CheckpointError:
    model, opt, sched = objs
    before = snapshot(model, opt, sched)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path, model, opt, sched)
    assert str(path) in str(info.value)
    assert_same(snapshot(model, opt, sched), before)
    return info.value


def rewrite(src, dst, mutate=None, tensors_fn=None):
    """Copy a checkpoint, changing its JSON document and/or tensors (with a valid checksum)."""
    meta, tensors = _format.parse_safetensors(src.read_bytes(), src)
    doc = json.loads(meta["cnnperf.checkpoint"])
    del doc["sha256"]
    if mutate is not None:
        mutate(doc)
    if tensors_fn is not None:
        tensors = tensors_fn(dict(tensors))
    dst.write_bytes(_format.pack(tensors, doc))
    return dst


def test_missing_file(tmp_path, target):
    expect_error(tmp_path / "nope.safetensors", target, "cannot read the file.*No such file")


def test_empty_file(tmp_path, target):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    expect_error(path, target, r"the file is empty \(0 bytes\)")


def test_garbage_file(tmp_path, target):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    expect_error(path, target, "truncated or not a safetensors file")
    path.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00hello world")
    expect_error(path, target, "not a safetensors file \\(header is not JSON")


@pytest.mark.parametrize("keep", [5, 12, 200, -1])
def test_truncated_file(good, tmp_path, target, keep):
    data = good.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:keep])
    expect_error(path, target, "truncated")


def test_flipped_byte_in_tensor_data(good, tmp_path, target):
    data = bytearray(good.read_bytes())
    n = int.from_bytes(data[:8], "little")
    for offset in (8 + n, 8 + n + (len(data) - 8 - n) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[offset] ^= 0x10
        path = tmp_path / f"flip{offset}.safetensors"
        path.write_bytes(bytes(bad))
        expect_error(path, target, "corrupt checkpoint: checksum mismatch")


def test_flipped_byte_in_metadata(good, tmp_path, target):
    data = good.read_bytes()
    at = data.index(b'\\"epoch\\":1')  # the document is a JSON string inside the header
    bad = bytearray(data)
    bad[at + len(b'\\"epoch\\":')] = ord("5")  # epoch 1 -> 5: still valid JSON
    path = tmp_path / "epoch.safetensors"
    path.write_bytes(bytes(bad))
    expect_error(path, target, "checksum mismatch")


def test_future_format_version(good, tmp_path, target):
    def future(doc):
        doc["version"] = FORMAT_VERSION + 1
        doc["new_field"] = {"__py__": "tag from the future", "v": 1}

    path = rewrite(good, tmp_path / "future.safetensors", future)
    err = expect_error(path, target, "format version 2 was written by a newer cnnperf")
    assert "reads versions up to 1" in str(err) and "corrupt" not in str(err)


def test_not_a_cnnperf_checkpoint(good, tmp_path, target):
    path = tmp_path / "plain.safetensors"
    safetensors.numpy.save_file({"w": np.zeros(2, np.float32)}, path)
    expect_error(path, target, "not a cnnperf checkpoint.*load_state_dict_file")
    other = rewrite(good, tmp_path / "other.safetensors", lambda d: d.update(format="x"))
    expect_error(other, target, "unknown checkpoint format 'x'")


def test_missing_checksum(good, tmp_path, target):
    meta, tensors = _format.parse_safetensors(good.read_bytes(), good)
    doc = json.loads(meta["cnnperf.checkpoint"])
    del doc["sha256"]
    path = tmp_path / "nosum.safetensors"
    safetensors.numpy.save_file(tensors, path, metadata={"cnnperf.checkpoint": json.dumps(doc)})
    expect_error(path, target, "the 'sha256' checksum is missing")


def test_wrong_architecture(good, tmp_path):
    model = make_model(hidden=5)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    err = expect_error(good, (model, opt, sched), "does not match \\(nothing was loaded\\)")
    msg = str(err)
    assert "size mismatch for 0.weight: shape (4, 1, 3, 3) in the checkpoint, (5, 1, 3, 3)" in msg
    assert "optimizer parameter 0 is" in msg


def test_missing_and_extra_keys(good, tmp_path, target):
    def drop(t):
        del t["1.running_var"]
        return t

    def drop_doc(doc):
        doc["model"]["keys"].remove("1.running_var")

    missing = rewrite(good, tmp_path / "missing.safetensors", drop_doc, drop)
    expect_error(missing, target, "missing key\\(s\\) in the checkpoint: 1.running_var")

    def add(t):
        t["9.weight"] = np.ones(3, np.float32)
        return t

    extra = rewrite(
        good, tmp_path / "extra.safetensors", lambda d: d["model"]["keys"].append("9.weight"), add
    )
    expect_error(extra, target, "unexpected key\\(s\\) in the checkpoint: 9.weight")
    # non-strict loading takes the common keys and reports the rest
    model, opt, sched = target
    info = load_checkpoint(extra, model, strict=False)
    assert info["unexpected_keys"] == ["9.weight"] and info["missing_keys"] == []
    info = load_checkpoint(missing, model, strict=False)
    assert info["missing_keys"] == ["1.running_var"]


def test_stray_tensor_not_in_metadata(good, tmp_path, target):
    def add(t):
        t["__optim__.state.9.momentum_buffer"] = np.ones(3, np.float32)
        return t

    path = rewrite(good, tmp_path / "stray.safetensors", tensors_fn=add)
    expect_error(path, target, "tensors \\['__optim__.state.9.momentum_buffer'\\] are not")


def test_wrong_dtype(good, tmp_path, target):
    def to64(t):
        t["5.weight"] = t["5.weight"].astype(np.float64)
        return t

    path = rewrite(good, tmp_path / "f64.safetensors", tensors_fn=to64)
    expect_error(path, target, "dtype mismatch for 5.weight: float64 in the checkpoint, float32")


def test_optimizer_mismatches(good, target):
    model, _, _ = target
    adam = optim.Adam(model.parameters())
    err = expect_error(good, (model, adam, None), "holds SGD state, the optimizer is a Adam")
    assert "optimizer" in str(err)
    params = list(model.parameters())
    two_groups = optim.SGD([{"params": params[:2]}, {"params": params[2:]}], lr=0.1)
    expect_error(good, (model, two_groups, None), "has 1 parameter groups, the optimizer has 2")
    reordered = optim.SGD(params[::-1], lr=0.1, momentum=0.9)
    expect_error(good, (model, reordered, None), "optimizer parameter 0 is .*'0.weight'.*'5.bias'")


def test_scheduler_mismatches(good, target):
    model, opt, _ = target
    expect_error(
        good,
        (model, opt, lr_scheduler.ExponentialLR(opt, 0.5)),
        "holds StepLR state, the scheduler is a ExponentialLR",
    )
    other = optim.SGD(make_model().parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    expect_error(good, (model, opt, lr_scheduler.StepLR(other, 1)), "drives another optimizer")


def test_failure_while_applying_rolls_everything_back(good, target, monkeypatch):
    model, opt, sched = target
    before = snapshot(model, opt, sched)

    calls = []
    original = lr_scheduler.StepLR.load_state_dict

    def boom(self, state):  # fails once, after the model and optimizer were loaded
        calls.append(state)
        if len(calls) == 1:
            raise RuntimeError("disk gremlin")
        original(self, state)

    monkeypatch.setattr(lr_scheduler.StepLR, "load_state_dict", boom)
    with pytest.raises(CheckpointError, match="loading failed \\(RuntimeError: disk gremlin\\)"):
        load_checkpoint(good, model, opt, sched)
    assert_same(snapshot(model, opt, sched), before)
    assert len(calls) == 2  # the failed load, then the roll-back


def test_checkpoint_error_pickles_and_is_a_value_error():
    err = CheckpointError("x.safetensors: bad")
    assert isinstance(err, ValueError)
    assert str(pickle.loads(pickle.dumps(err))) == "x.safetensors: bad"
