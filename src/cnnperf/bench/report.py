"""Reports of a benchmark run: the per-layer table, the summary, JSON and a bar chart."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING

from .core import SELECTING_ENGINES, BenchRun, LayerResult

if TYPE_CHECKING:  # pragma: no cover
    from .models import ModelsBenchRun

__all__ = [
    "SCHEMA",
    "engine_columns",
    "format_table",
    "format_detail",
    "summarize",
    "format_summary",
    "to_json",
    "plot",
    "geomean",
    "MODELS_SCHEMA",
    "format_models_report",
    "models_json",
]

SCHEMA = "cnnperf-bench/2"  # 2: the plan engine, summary["plan"], ratios "plan/<peer>"
MODELS_SCHEMA = "cnnperf-bench-models/1"  # cnnperf bench --models


def geomean(values) -> float | None:
    """Geometric mean of positive values (None when there are none)."""
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def engine_columns(run: BenchRun) -> list[str]:
    """Engine names in column order: cnnperf algorithms as registered, auto, plan, the peers."""
    seen: dict[str, str] = {}
    for r in run.layers:
        for name, res in r.engines.items():
            seen.setdefault(name, res.kind)
    cnn = [n for n, k in seen.items() if k == "cnnperf" and n not in SELECTING_ENGINES]
    tail = [n for n in SELECTING_ENGINES if n in seen]
    return cnn + tail + [n for n, k in seen.items() if k == "peer"]


def _ms(r: LayerResult, name: str) -> str:
    res = r.engines.get(name)
    if res is None:
        return "-"
    if res.error is not None:
        return "fail"
    t = res.median_s
    if t is None:
        return "-"
    mark = ("!" if res.ok is False else "") + ("*" if res.note else "")
    digits = 3 if t < 0.01 else 2 if t < 0.1 else 1
    return f"{t * 1e3:.{digits}f}{mark}"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _peak_pct(gflops: float | None, peak: float | None) -> str:
    return "-" if gflops is None or not peak else f"{100 * gflops / peak:.0f}%"


def format_table(run: BenchRun) -> str:
    """One row per layer: median ms of every engine, auto's GFLOP/s and % of peak, the best
    cnnperf algorithm, auto's (and plan's) time over each peer's, and the algorithm each
    picked."""
    cols = engine_columns(run)
    sel = [e for e in SELECTING_ENGINES if e in cols]
    peers = [c for c in cols if c in run.peers]
    name_w = max([len("layer")] + [len(r.layer.name) for r in run.layers])
    shape_w = max([len("shape")] + [len(r.layer.describe()) for r in run.layers])
    widths = {c: max(9, len(c) + 2) for c in cols}
    best_w = max([len("best")] + [len(r.best_cnnperf() or "-") for r in run.layers])
    header = f"{'layer':<{name_w}}  {'shape':<{shape_w}} {'GFLOP':>7}"
    header += "".join(f"{c:>{widths[c]}}" for c in cols)
    header += f"{'auto GF/s':>11}{'%peak':>6}  {'best':<{best_w}}"
    header += "".join(f"{e + '/' + p:>{max(9, len(e + p) + 2)}}" for e in sel for p in peers)
    header += "".join(f"  {e} picks" for e in sel)
    lines = [header, "-" * len(header)]
    for r in run.layers:
        row = f"{r.layer.name:<{name_w}}  {r.layer.describe():<{shape_w}} {r.gflop:>7.3f}"
        row += "".join(f"{_ms(r, c):>{widths[c]}}" for c in cols)
        g = r.gflops("auto")
        row += f"{'-' if g is None else f'{g:.1f}':>11}{_peak_pct(g, run.peak_gflops):>6}"
        row += f"  {r.best_cnnperf() or '-':<{best_w}}"
        row += "".join(
            f"{_ratio(r.ratio(p, e)):>{max(9, len(e + p) + 2)}}" for e in sel for p in peers
        )
        for e in sel:
            algo = r.auto_algo if e == "auto" else r.engines[e].algo if e in r.engines else None
            row += f"  {algo or '-':<{len(e) + 6}}"
        lines.append(row)
    return "\n".join(lines)


def format_detail(run: BenchRun) -> str:
    """One row per layer and engine: median, min, rounds, first call, GFLOP/s, % of peak, error."""
    lines = []
    for r in run.layers:
        lines.append(f"{r.layer.name}  {r.layer.describe()}  ({r.gflop:.3f} GFLOP)")
        lines.append(
            f"  {'engine':<24}{'median ms':>11}{'min ms':>10}{'rounds':>8}{'first ms':>10}"
            f"{'GFLOP/s':>9}{'%peak':>7}{'rel err':>10}"
        )
        for name, res in r.engines.items():
            if res.error:
                lines.append(f"  {res.label:<24} failed: {res.error}")
                continue
            med, mn = res.median_s, res.min_s
            g = r.gflops(name)
            err = "ref" if name == r.reference else f"{res.rel_err:.1e}"
            err += "!" if res.ok is False else ""
            label = res.label + (f" ({res.algo})" if name in SELECTING_ENGINES and res.algo else "")
            lines.append(
                f"  {label:<24}"
                f"{'-' if med is None else f'{med * 1e3:.3f}':>11}"
                f"{'-' if mn is None else f'{mn * 1e3:.3f}':>10}"
                f"{len(res.times_s):>8}"
                f"{(res.first_call_s or 0) * 1e3:>10.1f}"
                f"{'-' if g is None else f'{g:.1f}':>9}"
                f"{_peak_pct(g, run.peak_gflops):>7}{err:>10}"
            )
        for algo, why in r.unsupported.items():
            lines.append(f"  {'cnnperf ' + algo:<24} not run: {why}")
    return "\n".join(lines)


def summarize(run: BenchRun, worst: int = 3) -> dict:
    """Geometric means of time(auto)/time(peer) over the suite and per tag, and the worst layers;
    the same for ``plan`` under ``"plan"`` when it ran.

    Also lists the layers where auto was clearly slower than the fastest cnnperf algorithm.
    """
    out: dict = {"layers": len(run.layers), **_ratios(run, "auto", worst)}
    if any("plan" in r.engines for r in run.layers):
        out["plan"] = _ratios(run, "plan", worst)
    misses = []
    for r in run.layers:
        best = r.best_cnnperf()
        t_auto, t_best = r.median("auto"), r.median(best) if best else None
        if not (best and t_auto and t_best):
            continue
        # Another algorithm >10% faster: a selection miss. The same algorithm >25% faster:
        # auto's own cost (selection, tuning-cache lookup); smaller gaps are timing noise.
        if t_auto > (1.25 if best == r.auto_algo else 1.10) * t_best:
            misses.append(
                {"layer": r.layer.name, "auto": r.auto_algo, "best": best, "ratio": t_auto / t_best}
            )
    out["auto_not_best"] = misses
    return out


def _ratios(run: BenchRun, engine: str, worst: int) -> dict:
    """time(engine)/time(peer): geometric means over all layers and per tag, the worst layers."""
    peers = list(run.peers)
    out: dict = {"geomean": {}, "by_tag": {}, "worst": {}}
    for peer in peers:
        out["geomean"][peer] = geomean(r.ratio(peer, engine) for r in run.layers)
        ranked = sorted(
            (
                (r.ratio(peer, engine), r.layer.name)
                for r in run.layers
                if r.ratio(peer, engine) is not None
            ),
            reverse=True,
        )
        out["worst"][peer] = [{"layer": n, "ratio": v} for v, n in ranked[:worst]]
    groups: dict[str, list[LayerResult]] = defaultdict(list)
    for r in run.layers:
        for tag in r.layer.tags:
            groups[tag].append(r)
    for tag in sorted(groups):
        entry = {"layers": len(groups[tag])}
        for peer in peers:
            entry[peer] = geomean(r.ratio(peer, engine) for r in groups[tag])
        out["by_tag"][tag] = entry
    return out


def format_summary(run: BenchRun, summary: dict | None = None) -> str:
    s = summary or summarize(run)
    peers = list(run.peers)
    lines = []
    if not peers:
        lines.append("No peer ran (PyTorch / ONNX Runtime missing or excluded): no ratios.")
    else:
        labels = ", ".join(f"{p} = {run.peers[p]}" for p in peers)
        sections = [("auto", s)] + ([("plan", s["plan"])] if "plan" in s else [])
        engines = " and ".join(f"cnnperf {e}" for e, _ in sections)
        lines.append(
            f"Summary over {s['layers']} layer(s): time({engines}) / time(peer), geometric "
            f"mean; below 1 means cnnperf is faster ({labels}); auto = eager conv2d, weight "
            f"prepared per call; plan = plan_conv2d, weight prepared once"
        )
        head = f"  {'tag':<20}{'layers':>7}"
        head += "".join(f"{e + '/' + p:>12}" for e, _ in sections for p in peers)
        lines.append(head)
        row = f"  {'all':<20}{s['layers']:>7}"
        row += "".join(f"{_ratio(sec['geomean'][p]):>12}" for _, sec in sections for p in peers)
        lines.append(row)
        for tag, entry in s["by_tag"].items():
            row = f"  {tag:<20}{entry['layers']:>7}"
            row += "".join(
                f"{_ratio(sec['by_tag'][tag][p]):>12}" for _, sec in sections for p in peers
            )
            lines.append(row)
        for e, sec in sections:
            for p in peers:
                worst = ", ".join(f"{w['layer']} {w['ratio']:.2f}" for w in sec["worst"][p])
                lines.append(f"  worst {e} vs {p}: {worst or '-'}")
    if s["auto_not_best"]:
        lines.append("auto was slower than the fastest cnnperf algorithm on:")
        for m in s["auto_not_best"]:
            if m["auto"] == m["best"]:
                why = f"auto ran {m['best']} too, in {m['ratio']:.2f}x its time (auto's overhead?)"
            else:
                why = f"auto picked {m['auto']}; {m['best']} is {m['ratio']:.2f}x faster"
            lines.append(f"  {m['layer']}: {why}")
    return "\n".join(lines)


def _engine_json(r: LayerResult, name: str, run: BenchRun) -> dict:
    res = r.engines[name]
    g = r.gflops(name)
    return {
        "kind": res.kind,
        "label": res.label,
        "algo": res.algo,
        "median_s": res.median_s,
        "min_s": res.min_s,
        "times_s": list(res.times_s),
        "rounds": len(res.times_s),
        "first_call_s": res.first_call_s,
        "gflops": g,
        "peak_fraction": g / run.peak_gflops if g and run.peak_gflops else None,
        "rel_err": res.rel_err if res.rel_err is None or math.isfinite(res.rel_err) else None,
        "ok": res.ok,
        "error": res.error,
        "note": res.note,
    }


def to_json(run: BenchRun, summary: dict | None = None) -> dict:
    """All raw numbers (seconds, GFLOP/s) as a JSON-ready dict; schema ``cnnperf-bench/1``."""
    layers = []
    for r in run.layers:
        L = r.layer
        layers.append(
            {
                "name": L.name,
                "base": L.base,
                "batch": L.n,
                "tags": sorted(L.tags),
                "shape": {
                    "n": L.n,
                    "c_in": L.c_in,
                    "h": L.h,
                    "w": L.w,
                    "c_out": L.c_out,
                    "kh": L.k,
                    "kw": L.k,
                    "stride": L.stride,
                    "padding": L.padding,
                    "groups": L.groups,
                },
                "spec": L.spec,
                "flops": r.flops,
                "auto_algo": r.auto_algo,
                "reference": r.reference,
                "best_cnnperf": r.best_cnnperf(),
                "ratios": {
                    f"{e}/{p}": r.ratio(p, e)
                    for e in SELECTING_ENGINES
                    if e in r.engines
                    for p in run.peers
                },
                "engines": {name: _engine_json(r, name, run) for name in r.engines},
                "unsupported": dict(r.unsupported),
            }
        )
    return {
        "schema": SCHEMA,
        "machine": run.machine,
        "settings": run.settings.as_dict(),
        "peers": dict(run.peers),
        "layers": layers,
        "summary": summary or summarize(run),
        "notes": list(run.notes),
        "wall_s": run.wall_s,
    }


def plot(run: BenchRun, path: str) -> None:
    """Bar chart of GFLOP/s per layer and engine, the measured peak as a horizontal line.

    Needs matplotlib (``pip install cnnperf[plot]``); raises RuntimeError saying so without it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError(
            f"--plot needs matplotlib, which is not installed ({e}); install it with "
            "`pip install 'cnnperf[plot]'` (or `pip install matplotlib`)"
        ) from None
    cols = engine_columns(run)
    n_layers = len(run.layers)
    width = 0.8 / max(1, len(cols))
    fig_w = min(60.0, max(8.0, 0.22 * n_layers * max(2, len(cols)) + 2))
    fig, ax = plt.subplots(figsize=(fig_w, 6.5), layout="constrained")
    cmap = plt.get_cmap("tab10")
    for j, name in enumerate(cols):
        xs, ys = [], []
        for i, r in enumerate(run.layers):
            g = r.gflops(name)
            if g is not None:
                xs.append(i + (j - (len(cols) - 1) / 2) * width)
                ys.append(g)
        label = next((r.engines[name].label for r in run.layers if name in r.engines), name)
        ax.bar(xs, ys, width=width, label=label, color=cmap(j % 10))
    tallest = max([run.peak_gflops or 0.0] + [r.gflops(c) or 0.0 for r in run.layers for c in cols])
    ax.set_ylim(0, 1.25 * tallest if tallest > 0 else 1.0)  # headroom for the legend
    if run.peak_gflops:
        ax.axhline(run.peak_gflops, color="black", linestyle="--", linewidth=1)
        ax.annotate(
            f"sgemm peak {run.peak_gflops:.0f} GFLOP/s",
            xy=(0, run.peak_gflops),
            xytext=(2, 3),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_xticks(range(n_layers))
    ax.set_xticklabels([r.layer.name for r in run.layers], rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.6, n_layers - 0.4)
    ax.set_ylabel("GFLOP/s (median)")
    m = run.machine
    ax.set_title(
        f"cnnperf bench: conv layers, {m.get('threads')} thread(s), {m.get('cpu')}", fontsize=10
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=min(len(cols), 4), loc="upper right", framealpha=0.9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_models_report(run: ModelsBenchRun) -> str:
    """The table (one row per network and batch), the load-time target and the notes."""
    s, m, mib = run.settings, run.machine, 1 / 2**20
    peers = list(run.peers)
    rounds = s.rounds or f"adaptive (>= {s.target_s:g} s per engine, {s.min_rounds}-{s.max_rounds})"
    cols = ["cnnperf", *peers]
    head = f"{'model':<18}{'GFLOP':>7}" + "".join(f"{c + ' ms':>11}" for c in cols)
    head += "".join(f"{'cnnperf/' + p:>15}" for p in peers)
    head += f"{'load+1st ms':>13}{'max rel err':>13}{'peak act MiB':>14}{'largest MiB':>13}"
    lines = [
        f"cnnperf bench --models: {s.input_size}x{s.input_size} input, {m['threads']} thread(s) "
        f"for every engine, {m['cpu']}",
        f"ms: median of {rounds} interleaved rounds after one warm-up call; load+1st: "
        "cnnperf.compile(ONNX bytes) + first inference",
        "max rel err: max|cnnperf - ref| / max|ref| (ref: ONNX Runtime, else PyTorch); peak "
        "act: cnnperf's planned peak activation memory; largest: the largest single layer's "
        "input + output",
        "",
        head,
        "-" * len(head),
    ]
    for r in run.results:
        row = f"{r.name:<18}{r.flops / 1e9:>7.2f}"
        row += "".join(f"{_ms(r, c):>11}" for c in cols)
        row += "".join(f"{_ratio(r.ratio(p)):>15}" for p in peers)
        mem, err = r.memory, "-" if r.max_rel_err is None else f"{r.max_rel_err:.1e}"
        row += f"{r.load_first_s * 1e3:>13.0f}{err:>13}"
        row += f"{mem['planned_peak_bytes'] * mib:>14.1f}{mem['largest_layer_bytes'] * mib:>13.1f}"
        lines.append(row)
    first = [r for r in run.results if r.model == "resnet18"]
    if first:
        t = first[0].load_first_s
        met = "met" if t < 2 else "NOT met"
        lines += ["", f"ResNet-18 load + first inference: {t:.2f} s (target < 2 s: {met})"]
    if run.notes:
        lines += ["", "Notes:"] + [f"  {n}" for n in run.notes]
    lines.append(f"({run.wall_s:.1f} s)")
    return "\n".join(lines)


def models_json(run: ModelsBenchRun) -> dict:
    """All raw numbers of ``cnnperf bench --models`` as a JSON-ready dict (``MODELS_SCHEMA``)."""
    models = [
        {
            "name": r.name,
            "model": r.model,
            "batch": r.batch,
            "input_shape": list(r.input_shape),
            "flops": r.flops,
            "load_first_s": r.load_first_s,
            "max_rel_err": r.max_rel_err if math.isfinite(r.max_rel_err or 0) else None,
            "max_rel_err_reference": r.err_reference,
            "reference": r.reference,
            "memory": r.memory,
            "ratios": {f"cnnperf/{p}": r.ratio(p) for p in run.peers},
            "engines": {name: _engine_json(r, name, run) for name in r.engines},
        }
        for r in run.results
    ]
    return {
        "schema": MODELS_SCHEMA,
        "machine": run.machine,
        "settings": run.settings.as_dict(),
        "peers": dict(run.peers),
        "models": models,
        "notes": list(run.notes),
        "wall_s": run.wall_s,
    }
