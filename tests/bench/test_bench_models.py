"""``cnnperf bench --models``: the networks (torchvision's ResNet-18 and MobileNetV2), their
whole-model parity with ONNX Runtime and PyTorch, and the benchmark path with one round on
64x64 inputs. Nothing here asserts which engine is faster."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

import cnnperf
from cnnperf.bench import models, report
from cnnperf.bench.models import ModelsBenchSettings, max_rel_err, run_models_bench
from cnnperf.cli.main import main

# torchvision's parameter counts (resnet18: 11,689,512; mobilenet_v2: 3,504,872) and the
# BatchNorm / conv counts of the two architectures.
ARCH = {
    "resnet18": {"params": 11_689_512, "bn": 20, "conv": 20},
    "mobilenet_v2": {"params": 3_504_872, "bn": 52, "conv": 52},
}


@pytest.mark.parametrize("name", list(models.MODELS))
def test_full_size_network_matches_onnxruntime_and_pytorch(name):
    model = models.build_model(name, seed=0)
    assert sum(p.numel() for p in model.parameters()) == ARCH[name]["params"]
    data = models.export_onnx(model, 224)
    source = cnnperf.onnx.import_model(data)
    ops = [n.op for n in source.nodes]
    # The BatchNorms reach cnnperf (the exporter's folding is off) and cnnperf folds them all.
    assert ops.count("batch_norm") == ARCH[name]["bn"] and ops.count("conv2d") == ARCH[name]["conv"]
    compiled = cnnperf.compile(data, (1, 3, 224, 224))
    assert [n.op for n in compiled.graph.nodes].count("batch_norm") == 0
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    got = compiled(x)
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        eager = model(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (1, 1000)
    assert max_rel_err(got, want) <= 1e-3, f"{name}: {max_rel_err(got, want):.2e} vs ORT"
    assert max_rel_err(got, eager) <= 1e-3, f"{name}: {max_rel_err(got, eager):.2e} vs torch"
    # Non-trivial logits: the network is not dominated by the BatchNorm shifts.
    y2 = compiled(np.random.default_rng(2).standard_normal(x.shape).astype(np.float32))
    assert max_rel_err(y2, got) > 0.05


def test_batchnorm_statistics_are_random_but_calibrated():
    model = models.mobilenet_v2(width_mult=0.5, classes=10, seed=3)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not model.training and len(bns) == 52
    for m in bns:
        assert not torch.allclose(m.running_var, torch.ones_like(m.running_var))
        assert not torch.allclose(m.weight, torch.ones_like(m.weight))
        assert torch.all(m.running_var > 0)
    same = models.mobilenet_v2(width_mult=0.5, classes=10, seed=3)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
        assert torch.equal(y, same(x))  # seeded
        assert 1e-2 < float(y.std()) < 1e2  # activations of order one reach the classifier


def test_models_bench_one_round_at_64x64():
    settings = ModelsBenchSettings(input_size=64, batches=(1, 2), rounds=1)
    run = run_models_bench(settings, threads=1)
    assert [r.name for r in run.results] == [
        "resnet18/b1", "resnet18/b2", "mobilenet_v2/b1", "mobilenet_v2/b2"]  # fmt: skip
    assert set(run.peers) == {"ort", "torch"} and run.notes == []
    for r in run.results:
        assert r.input_shape == (r.batch, 3, 64, 64)
        assert set(r.engines) == {"cnnperf", "ort", "torch"}
        assert all(res.ok and len(res.times_s) == 1 for res in r.engines.values())
        assert r.reference == r.err_reference == "ort"
        assert r.max_rel_err is not None and r.max_rel_err <= 1e-3
        assert r.load_first_s > 0 and r.ratio("ort") > 0 and r.ratio("torch") > 0
        mem = r.memory
        assert 0 < mem["largest_layer_bytes"] <= mem["planned_peak_bytes"] <= mem["naive_bytes"]
    r18 = run.results[0]
    # ResNet-18's FLOPs scale with the pixels: 3.64 GFLOP at 224x224 (torchvision: 1.82 GMACs).
    assert r18.flops == pytest.approx(3.64e9 * (64 / 224) ** 2, rel=0.02)
    assert run.results[1].flops == 2 * r18.flops
    text = report.format_models_report(run)
    for col in ("cnnperf ms", "ort ms", "torch ms", "cnnperf/ort", "cnnperf/torch",
                "load+1st ms", "max rel err", "peak act MiB", "largest MiB"):  # fmt: skip
        assert col in text
    assert "mobilenet_v2/b2" in text and "ResNet-18 load + first inference" in text
    doc = json.loads(json.dumps(report.models_json(run), allow_nan=False))
    assert doc["schema"] == report.MODELS_SCHEMA == "cnnperf-bench-models/1"
    assert doc["settings"]["input_size"] == 64 and doc["settings"]["batches"] == [1, 2]
    entry = doc["models"][2]
    assert entry["name"] == "mobilenet_v2/b1" and entry["input_shape"] == [1, 3, 64, 64]
    assert set(entry["ratios"]) == {"cnnperf/ort", "cnnperf/torch"}
    assert entry["engines"]["cnnperf"]["rounds"] == 1 and entry["max_rel_err"] <= 1e-3
    assert set(entry["memory"]) == {
        "planned_peak_bytes", "naive_bytes", "largest_layer", "largest_layer_bytes"}  # fmt: skip


def test_models_bench_without_peers_and_bad_settings():
    settings = ModelsBenchSettings(models=("mobilenet_v2",), input_size=32, batches=(1,),
                                   rounds=1, peers=())  # fmt: skip
    run = run_models_bench(settings, threads=1)
    (r,) = run.results
    assert list(r.engines) == ["cnnperf"] and r.max_rel_err is None and r.ratio("ort") is None
    assert "cnnperf/ort" not in report.format_models_report(run)
    with pytest.raises(ValueError, match=r"unknown models \['vgg16'\]; choose from"):
        run_models_bench(ModelsBenchSettings(models=("vgg16",)))
    with pytest.raises(ValueError, match="input_size 16 < 32"):
        run_models_bench(ModelsBenchSettings(input_size=16))
    with pytest.raises(ValueError, match="unknown model 'alexnet'"):
        models.build_model("alexnet")


@pytest.fixture
def small_models(monkeypatch):
    """The command's runs on 64x64 inputs, MobileNetV2 only; records the settings."""
    seen = []
    real = models.run_models_bench

    def small(settings, **kwargs):
        seen.append(settings)
        small_settings = dataclasses.replace(settings, input_size=64, models=("mobilenet_v2",))
        return real(small_settings, **kwargs)

    monkeypatch.setattr(models, "run_models_bench", small)
    return seen


def test_command_quick_json(small_models, capsys):
    argv = ["bench", "--models", "--quick", "--rounds", "1", "--threads", "1", "--json", "-"]
    assert main([*argv, "--no-progress"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout is pure JSON, the table went to stderr
    assert "cnnperf bench --models" in captured.err
    assert doc["schema"] == "cnnperf-bench-models/1"
    assert [m["name"] for m in doc["models"]] == ["mobilenet_v2/b1"]
    (settings,) = small_models
    assert settings.batches == (1,) and settings.tol == 1e-3 and settings.rounds == 1
    assert settings.models == ("resnet18", "mobilenet_v2") and settings.input_size == 224


def test_command_batches_and_clashes(small_models, capsys, tmp_path):
    js = tmp_path / "m.json"
    argv = ["bench", "--models", "--batch", "2", "--rounds", "1", "--no-peers", "--tol", "0.01"]
    assert main([*argv, "--no-progress", "--json", str(js)]) == 0
    assert f"wrote {js}" in capsys.readouterr().out
    assert [m["name"] for m in json.loads(js.read_text())["models"]] == ["mobilenet_v2/b2"]
    assert small_models[0].batches == (2,) and small_models[0].tol == 0.01
    for extra in (["--layer", "1,4,8,8,4,3"], ["--train"], ["--plot", "x.png"]):
        with pytest.raises(SystemExit) as exc:
            main(["bench", "--models", *extra])
        assert exc.value.code == 2
        assert "--models times whole networks; it does not take" in capsys.readouterr().err
