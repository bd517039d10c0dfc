"""``cnnperf tune``: tables, --json, --show, --clear, layer parsing (small layers, one round)."""

from __future__ import annotations

import json
import re

import pytest

from cnnperf.cli import tune as tune_cli
from cnnperf.cli.main import main
from cnnperf.cli.tune import DEFAULT_LAYERS, parse_layer
from cnnperf.ops import autotune
from cnnperf.ops.conv import CONV_ALGOS
from cnnperf.shapes import ConvParams

SMALL = ["--layer", "1,4,8,8,4,3", "--layer", "1,6,9,9,6,3,2,1,6", "--rounds", "1"]


pytestmark = pytest.mark.usefixtures("cache_file")  # (tests/conftest.py)


def test_suite_layer_names_are_accepted(capsys):
    assert main(["tune", "--layer", "resnet18.layer4.3x3/b1", "--rounds", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["params"]["c_in"] for r in doc["results"]] == [512]


def test_parse_layer_defaults_and_fields():
    assert parse_layer("1,8,10,10,16,3") == ConvParams(
        1, 8, 10, 10, 16, 3, 3, pt=1, pb=1, pl=1, pr=1
    )
    p = parse_layer("2,8,10,10,8,5,2,0,8")
    assert (p.n, p.kh, p.sh, p.pt, p.g) == (2, 5, 2, 0, 8)
    assert p.is_depthwise


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,2,3", "bad layer spec '1,2,3': expected .*N,C,H,W,CO,K"),
        ("1,8,8,8,8,a", "bad layer spec '1,8,8,8,8,a': expected .*N,C,H,W,CO,K"),
        ("1,8,8,8,8,3,0", "stride and groups must be >= 1"),
        ("1,6,8,8,6,3,1,1,4", "groups=4 must divide the input channels"),
        ("resnet99.conv1", "unknown layer 'resnet99.conv1'"),
        ("1,4,2,2,4,5,1,0", "kernel size \\(dilated\\) \\(5, 5\\) is larger"),
    ],
)
def test_bad_layer_is_a_usage_error(text, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tune", "--layer", text])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--layer" in err
    assert re.search(message, err), err


def test_default_layers_parse():
    layers = [parse_layer(t) for t in DEFAULT_LAYERS]
    assert any(p.kh == 1 for p in layers) and any(p.is_depthwise for p in layers)
    assert any(p.kh == 5 for p in layers)
    assert {p.c_in for p in layers if p.kh == 3 and p.g == 1} == {64, 128, 256, 512}


def test_table_lists_every_algorithm_and_stores(cache_file, capsys):
    assert main(["tune", *SMALL]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("layer"))
    assert header.split() == ["layer", *CONV_ALGOS, "chosen"]
    rows = [line for line in out.splitlines() if line.startswith("1x")]
    assert [r.split(" k")[0] for r in rows] == ["1x4x8x8>4", "1x6x9x9>6"]
    assert rows[1].startswith("1x6x9x9>6 k3 s2 p1 g6")
    for row in rows:
        assert row.split()[-1] in CONV_ALGOS
        assert "ms" in row
    assert str(cache_file) in out
    entries = json.loads(cache_file.read_text())["entries"]
    assert len(entries) == 2
    assert {e["algo"] for e in entries.values()} <= set(CONV_ALGOS)


def test_json_output_parses(cache_file, capsys):
    assert main(["tune", *SMALL, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cache"] == str(cache_file) and doc["rounds"] == 1
    assert doc["threads"] >= 1 and doc["cpu"] == autotune.cpu_fingerprint()
    assert [r["layer"] for r in doc["results"]] == ["1x4x8x8>4 k3 s1 p1", "1x6x9x9>6 k3 s2 p1 g6"]
    for r in doc["results"]:
        assert r["chosen"] in r["median_s"] and r["stored"] is True
        assert set(r["median_s"]) | set(r["failed"]) | set(r["skipped"]) == set(CONV_ALGOS)
    assert doc["results"][1]["params"]["g"] == 6
    assert "entries" not in doc and "cleared" not in doc


def test_show_prints_path_and_entries(cache_file, capsys):
    main(["tune", "--show"])
    assert capsys.readouterr().out.strip() == f"tuning cache: {cache_file} (no file)"
    main(["tune", "--layer", "1,4,8,8,4,3", "--rounds", "1"])
    capsys.readouterr()
    assert main(["tune", "--show"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"tuning cache: {cache_file} (1 entry)"
    assert lines[1].startswith("  conv2d 1x4x8x8>4 k3 s1 p1 float32")
    assert "(other machine or version)" not in lines[1]
    assert main(["tune", "--show", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["entries"]) == list(json.loads(cache_file.read_text())["entries"])
    assert "results" not in doc  # --show alone tunes nothing


def test_clear_removes_the_file(cache_file, capsys):
    main(["tune", "--layer", "1,4,8,8,4,1", "--rounds", "1"])
    assert cache_file.exists()
    capsys.readouterr()
    assert main(["tune", "--clear"]) == 0
    assert capsys.readouterr().out.strip() == f"removed {cache_file}"
    assert not cache_file.exists()
    assert main(["tune", "--clear", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cleared"] is False


def test_without_layers_tunes_the_default_set(monkeypatch, cache_file, capsys):
    monkeypatch.setattr(tune_cli, "DEFAULT_LAYERS", ["1,4,6,6,4,3", "1,4,6,6,8,1,1,0"])
    assert main(["tune", "--rounds", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["layer"] for r in doc["results"]] == ["1x4x6x6>4 k3 s1 p1", "1x4x6x6>8 k1 s1 p0"]


def test_failures_are_listed(monkeypatch, capsys):
    from cnnperf.ops.conv_algos import ConvAlgorithm

    class Broken(ConvAlgorithm):
        name = "broken"

        def run(self, *args, **kwargs):
            raise RuntimeError("boom")

    monkeypatch.setitem(CONV_ALGOS, "broken", Broken())
    assert main(["tune", "--layer", "1,4,8,8,4,3", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("1x4x8x8"))
    assert "failed" in row
    assert "  1x4x8x8>4 k3 s1 p1: broken failed: RuntimeError: boom" in out


def test_bad_rounds(capsys):
    assert main(["tune", "--layer", "1,4,8,8,4,3", "--rounds", "0"]) == 2
    assert "--rounds must be a positive int, got 0" in capsys.readouterr().err


def test_help_lists_tune(capsys):
    assert main([]) == 0
    assert "tune" in capsys.readouterr().out
