"""The autotuner: selection order, the on-disk cache (round trip, corruption, merging), tuning."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import cnnperf
from cnnperf import config
from cnnperf.ops import autotune
from cnnperf.ops.conv import CONV_ALGOS, conv2d, conv_params, select_conv_algo
from cnnperf.ops.conv_algos import ConvAlgorithm
from cnnperf.shapes import ConvParams

DENSE = ConvParams(1, 5, 8, 8, 4, 3, 3, pt=1, pb=1, pl=1, pr=1)  # heuristic: im2col
DEPTHWISE = ConvParams(1, 4, 8, 8, 4, 3, 3, pt=1, pb=1, pl=1, pr=1, g=4)  # heuristic: direct


pytestmark = pytest.mark.usefixtures("cache_file")  # (tests/conftest.py)


def entry(algo: str, timestamp: str = "2025-01-01T00:00:00.000000+00:00") -> dict:
    return {"algo": algo, "median_s": {}, "failed": {}, "rounds": 1, "timestamp": timestamp}


def read_file(path) -> dict:
    data = json.loads(path.read_text())
    assert data["schema"] == autotune.SCHEMA
    return data["entries"]


def fresh_process_select(p: ConvParams) -> str:
    code = (
        "import sys; from cnnperf.ops.conv import select_conv_algo; "
        "from cnnperf.shapes import ConvParams; "
        f"print(select_conv_algo(ConvParams(*{dataclasses.astuple(p)!r})).name)"
    )
    env = dict(os.environ, CNNPERF_NUM_THREADS=str(config.get_num_threads()))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.strip()


class Unsupported(ConvAlgorithm):
    name = "unsupported"

    def why_not(self, p):
        return "only for tests"


class Broken(ConvAlgorithm):
    name = "broken"

    def run(self, xp, w_prep, bias, p, out, epi=None):
        raise RuntimeError("boom")


class Wrong(ConvAlgorithm):
    name = "wrong"

    def run(self, xp, w_prep, bias, p, out, epi=None):
        out[...] = 0


class FailsLater(ConvAlgorithm):
    """Runs correctly once (the warm-up), then raises."""

    name = "fails_later"

    def __init__(self):
        self.calls = 0

    def run(self, xp, w_prep, bias, p, out, epi=None):
        self.calls += 1
        if self.calls > 1:
            raise MemoryError("second call")
        CONV_ALGOS["im2col"].run_padded(xp, w_prep, bias, p, out)


# --- keys --------------------------------------------------------------------------------------


def test_key_names_every_field_dtype_threads_cpu_and_version():
    key = autotune.cache_key(DENSE)
    for field in DENSE.__dataclass_fields__:
        assert f"{field}={getattr(DENSE, field)}" in key
    assert "|float32|" in key and f"threads={config.get_num_threads()}" in key
    assert f"cpu={autotune.cpu_fingerprint()}" in key
    assert key.endswith(f"cnnperf={cnnperf.__version__}")
    assert autotune.cache_key(DENSE, np.float64) != key
    assert autotune.cache_key(ConvParams(1, 4, 8, 8, 4, 3, 3, pt=1, pb=0, pl=1, pr=1)) != key


def test_cpu_fingerprint_is_model_and_flag_hash():
    model, digest = autotune.cpu_fingerprint().rsplit("#", 1)
    assert model and len(digest) == 12 and int(digest, 16) >= 0


def test_key_changes_with_thread_count(monkeypatch):
    two = autotune.cache_key(DENSE)
    autotune.get_cache().put(two, entry("direct"))
    assert select_conv_algo(DENSE).name == "direct"
    monkeypatch.setattr(config, "get_num_threads", lambda: config._num_threads + 1)
    assert autotune.cache_key(DENSE) != two
    assert select_conv_algo(DENSE).name == "im2col"  # measured at another thread count


# --- selection order ---------------------------------------------------------------------------


def test_explicit_beats_env_beats_cache_beats_heuristic(monkeypatch):
    assert select_conv_algo(DENSE).name == "im2col"  # heuristic
    autotune.get_cache().put(autotune.cache_key(DENSE), entry("direct"))
    assert select_conv_algo(DENSE).name == "direct"  # cache over heuristic
    monkeypatch.setenv("CNNPERF_ALGO", "im2col")
    assert select_conv_algo(DENSE).name == "im2col"  # env over cache
    assert select_conv_algo(DENSE, "direct").name == "direct"  # explicit over env
    monkeypatch.setenv("CNNPERF_ALGO", "direct")
    assert select_conv_algo(DENSE, "im2col").name == "im2col"


def test_cache_entry_for_an_unknown_algorithm_is_ignored():
    autotune.get_cache().put(autotune.cache_key(DEPTHWISE), entry("gone_in_this_version"))
    assert select_conv_algo(DEPTHWISE).name == "direct"


def test_cache_entry_for_an_algorithm_that_no_longer_covers_the_shape_is_ignored(monkeypatch):
    monkeypatch.setitem(CONV_ALGOS, "unsupported", Unsupported())
    autotune.get_cache().put(autotune.cache_key(DENSE), entry("unsupported"))
    assert select_conv_algo(DENSE).name == "im2col"


def test_a_stale_entry_is_retuned_when_tuning_is_on(cache_file):
    key = autotune.cache_key(DENSE)
    autotune.get_cache().put(key, entry("gone_in_this_version"))
    with cnnperf.tune():
        chosen = select_conv_algo(DENSE).name
    assert chosen in ("direct", "im2col")
    assert read_file(cache_file)[key]["algo"] == chosen


def test_cache_is_per_dtype():
    autotune.get_cache().put(autotune.cache_key(DENSE, "float64"), entry("direct"))
    assert select_conv_algo(DENSE).name == "im2col"
    assert select_conv_algo(DENSE, dtype=np.float64).name == "direct"


# --- tuning on and off -------------------------------------------------------------------------


def test_tuning_off_never_writes(cache_file):
    x = np.ones((1, 5, 8, 8), np.float32)
    conv2d(x, np.ones((4, 5, 3, 3), np.float32), padding=1)
    assert not cache_file.exists()
    assert autotune.get_cache().entries() == {}


@pytest.mark.parametrize("how", ["env", "context", "call"])
def test_tuning_a_cache_miss_times_every_algorithm_and_stores(how, monkeypatch, cache_file, rng):
    x = rng.standard_normal((1, 5, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 5, 3, 3)).astype(np.float32)
    if how == "env":
        monkeypatch.setenv("CNNPERF_TUNE", "1")
        y = conv2d(x, w, padding=1)
    elif how == "context":
        with cnnperf.tune():
            y = conv2d(x, w, padding=1)
        assert not autotune.tuning_enabled()
    else:
        cnnperf.tune(enabled=True)
        y = conv2d(x, w, padding=1)
        assert autotune.tuning_enabled()
    np.testing.assert_allclose(y, conv2d(x, w, padding=1, algo="im2col"), rtol=1e-5, atol=1e-5)
    stored = read_file(cache_file)[autotune.cache_key(DENSE)]
    applicable = {n for n, a in CONV_ALGOS.items() if a.why_not(DENSE) is None}
    assert set(stored["median_s"]) | set(stored["failed"]) == applicable
    assert stored["algo"] in stored["median_s"]
    assert all(t > 0 for t in stored["median_s"].values())
    assert stored["params"] == dataclasses.asdict(DENSE) and stored["dtype"] == "float32"
    assert stored["threads"] == config.get_num_threads()
    assert stored["cnnperf"] == cnnperf.__version__ and stored["timestamp"]


def test_tune_false_overrides_the_environment(monkeypatch, cache_file):
    monkeypatch.setenv("CNNPERF_TUNE", "1")
    with cnnperf.tune(enabled=False):
        assert select_conv_algo(DENSE).name == "im2col"
        with cnnperf.tune():
            assert autotune.tuning_enabled()
        assert not autotune.tuning_enabled()
    assert autotune.tuning_enabled()
    assert not cache_file.exists()


def test_bad_tune_environment_value(monkeypatch):
    monkeypatch.setenv("CNNPERF_TUNE", "maybe")
    with pytest.raises(ValueError, match="CNNPERF_TUNE='maybe' must be 1 or 0"):
        select_conv_algo(DENSE)


# --- tuning itself -----------------------------------------------------------------------------


def test_tuning_skips_and_records_algorithms_that_fail(monkeypatch, cache_file):
    for algo in (Unsupported(), Broken(), Wrong(), FailsLater()):
        monkeypatch.setitem(CONV_ALGOS, algo.name, algo)
    r = autotune.tune_conv2d((1, 5, 8, 8), (4, 5, 3, 3), padding=1, rounds=2)
    assert r.skipped == {"unsupported": "only for tests"}
    assert r.failed["broken"] == "RuntimeError: boom"
    assert r.failed["wrong"].startswith("output differs from 'im2col' by 1.0e+00")
    assert r.failed["fails_later"] == "MemoryError: second call"
    working = {n for n, a in CONV_ALGOS.items() if a.why_not(DENSE) is None}
    working -= {"broken", "wrong", "fails_later"}
    assert set(r.times) == working and r.chosen in r.times
    assert r.params == DENSE and r.rounds == 2 and r.key == autotune.cache_key(DENSE)
    stored = read_file(cache_file)[r.key]
    assert stored["algo"] == r.chosen
    assert set(stored["failed"]) == {"broken", "wrong", "fails_later"}


def test_when_nothing_runs_the_heuristic_is_used_and_not_retried(monkeypatch, cache_file):
    calls = []
    for algo in CONV_ALGOS.values():
        monkeypatch.setattr(algo, "run", lambda *a, **k: calls.append(1) or 1 / 0)
    with cnnperf.tune():
        assert select_conv_algo(DENSE).name == "im2col"
        assert select_conv_algo(DENSE).name == "im2col"
    applicable = [a for a in CONV_ALGOS.values() if a.why_not(DENSE) is None]
    assert len(calls) == len(applicable)  # one warm-up each, once: remembered as untunable
    assert not cache_file.exists()


def test_tune_conv2d_validates_its_arguments():
    with pytest.raises(ValueError, match="rounds must be a positive int, got 0"):
        autotune.tune_conv2d((1, 4, 8, 8), (4, 4, 3, 3), rounds=0)
    with pytest.raises(ValueError, match="unknown algorithm 'nope'"):
        autotune.tune_conv2d((1, 4, 8, 8), (4, 4, 3, 3), algos=["nope"])
    with pytest.raises(ValueError, match=r"x_shape must be \(n, c_in, h, w\), got \(4, 8, 8\)"):
        autotune.tune_conv2d((4, 8, 8), (4, 4, 3, 3))
    with pytest.raises(ValueError, match="tune_conv2d: Given groups=1"):
        autotune.tune_conv2d((1, 3, 8, 8), (4, 4, 3, 3))


def test_tune_conv2d_store_false_and_algos_subset(cache_file):
    r = autotune.tune_conv2d(
        (1, 4, 9, 7), (4, 2, 3, 3), stride=2, groups=2, rounds=1, algos=["direct"], store=False
    )
    assert r.chosen == "direct" and list(r.times) == ["direct"]
    assert r.params == conv_params((1, 4, 9, 7), (4, 2, 3, 3), stride=2, groups=2)
    assert not cache_file.exists()


# --- the cache file ----------------------------------------------------------------------------


def test_round_trip_fresh_load_and_fresh_process(cache_file):
    with cnnperf.tune():
        chosen = select_conv_algo(DEPTHWISE).name
    key = autotune.cache_key(DEPTHWISE)
    assert read_file(cache_file)[key]["algo"] == chosen
    autotune.reset_autotune_state()  # as a new process: reads the file again
    assert autotune.get_cache().get(key)["algo"] == chosen
    assert select_conv_algo(DEPTHWISE).name == chosen
    assert fresh_process_select(DEPTHWISE) == chosen
    # A choice the heuristic would not make proves the other process read the cache.
    autotune.get_cache().put(autotune.cache_key(DENSE), entry("direct"))
    assert fresh_process_select(DENSE) == "direct"


def test_file_is_loaded_once_per_process(cache_file):
    autotune.get_cache().put(autotune.cache_key(DENSE), entry("direct"))
    cache_file.write_text(json.dumps({"schema": 1, "entries": {}}))
    assert select_conv_algo(DENSE).name == "direct"  # still the in-memory copy
    autotune.reset_autotune_state()
    assert select_conv_algo(DENSE).name == "im2col"


def test_cache_dir_is_resolved_once_until_reset(monkeypatch, tmp_path, cache_file):
    autotune.get_cache().put(autotune.cache_key(DENSE), entry("direct"))
    monkeypatch.setenv("CNNPERF_CACHE_DIR", str(tmp_path / "other"))
    assert autotune.cache_path() == tmp_path / "other" / "tune-v1.json"
    assert autotune.get_cache().path == cache_file
    assert select_conv_algo(DENSE).name == "direct"
    autotune.reset_autotune_state()
    assert autotune.get_cache().path == tmp_path / "other" / "tune-v1.json"
    assert select_conv_algo(DENSE).name == "im2col"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("CNNPERF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert autotune.cache_path() == tmp_path / "xdg" / "cnnperf" / "tune-v1.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert autotune.cache_path() == tmp_path / "home" / ".cache" / "cnnperf" / "tune-v1.json"


def test_clear_cache(cache_file):
    autotune.get_cache().put("k", entry("direct"))
    assert cache_file.exists()
    assert autotune.clear_cache() is True
    assert not cache_file.exists() and autotune.get_cache().entries() == {}
    assert autotune.clear_cache() is False


CORRUPT = {
    "garbage bytes": (b"\x00\xff\xfe\x80garbage", "is not valid JSON"),
    "truncated": (b'{"schema": 1, "entries": {"k": {"algo": "dir', "is not valid JSON"),
    "a list": (b'[{"algo": "direct"}]', "is not a JSON object \\(found a list\\)"),
    "future schema": (
        b'{"schema": 2, "entries": {}}',
        "has schema 2; this cnnperf reads schema 1",
    ),
    "no schema": (b'{"entries": {}}', "has schema None; this cnnperf reads schema 1"),
    "bool schema": (b'{"schema": true, "entries": {}}', "has schema True"),
    "entries a list": (b'{"schema": 1, "entries": []}', "has no 'entries' object"),
    "empty file": (b"", "is not valid JSON"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_file_warns_is_ignored_and_rewritten(case, cache_file):
    content, message = CORRUPT[case]
    cache_file.parent.mkdir(parents=True)
    cache_file.write_bytes(content)
    with pytest.warns(autotune.TuneCacheWarning, match="ignoring the tuning cache .*" + message):
        assert select_conv_algo(DENSE).name == "im2col"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: later lookups and the store stay quiet
        assert select_conv_algo(DEPTHWISE).name == "direct"
        assert autotune.get_cache().put(autotune.cache_key(DENSE), entry("direct"))
    assert read_file(cache_file) == {autotune.cache_key(DENSE): entry("direct")}


def test_malformed_entries_are_dropped_with_a_warning(cache_file):
    cache_file.parent.mkdir(parents=True)
    good = {"k": entry("direct")}
    bad = {"b1": {"algo": 3}, "b2": "im2col", "b3": {"algo": "direct", "median_s": [1]}}
    cache_file.write_text(json.dumps({"schema": 1, "entries": {**good, **bad}}))
    with pytest.warns(autotune.TuneCacheWarning, match="dropping part of .*has 3 malformed"):
        assert autotune.get_cache().entries() == good
    autotune.get_cache().put("k2", entry("im2col"))
    assert read_file(cache_file) == {**good, "k2": entry("im2col")}


def test_put_rejects_an_invalid_entry():
    with pytest.raises(ValueError, match="needs a str 'algo'"):
        autotune.get_cache().put("k", {"algo": None})


def test_store_merges_entries_another_process_wrote_meanwhile(cache_file):
    mine = autotune.get_cache()
    assert mine.entries() == {}  # loaded (empty) before the other writer
    other = autotune.TuneCache(cache_file)
    other.put("theirs", entry("direct"))
    other.put("both", entry("direct", "2025-06-01T00:00:00.000000+00:00"))
    mine.put("mine", entry("im2col"))
    mine.put("both", entry("im2col", "2025-01-01T00:00:00.000000+00:00"))  # older: theirs wins
    on_disk = read_file(cache_file)
    assert set(on_disk) == {"theirs", "mine", "both"}
    assert on_disk["both"]["algo"] == "direct"
    assert mine.entries() == on_disk  # the merge is also what this process now sees
    assert not [p for p in cache_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_writer_processes_lose_nothing(cache_file):
    code = (
        "import sys\nfrom cnnperf.ops import autotune\ncache = autotune.get_cache()\n"
        "for i in range(20):\n"
        "    cache.put(f'{sys.argv[1]}-{i}', {'algo': 'im2col', 'timestamp': str(i)})\n"
    )
    env = dict(os.environ)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, tag], env=env, stderr=subprocess.PIPE)
        for tag in ("a", "b", "c")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    assert set(read_file(cache_file)) == {f"{t}-{i}" for t in "abc" for i in range(20)}


def test_unwritable_cache_dir_warns_once_and_keeps_results_in_memory(monkeypatch, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("CNNPERF_CACHE_DIR", str(blocker / "cache"))
    cache = autotune.get_cache()
    with pytest.warns(autotune.TuneCacheWarning, match="cannot write the tuning cache") as rec:
        assert cache.put(autotune.cache_key(DENSE), entry("direct")) is False
        assert cache.put("other", entry("direct")) is False
    assert len(rec) == 1
    assert select_conv_algo(DENSE).name == "direct"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with cnnperf.tune():
            assert select_conv_algo(DEPTHWISE).name in ("direct", "im2col")
