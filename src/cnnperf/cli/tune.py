"""``cnnperf tune``: time every convolution algorithm on some layers and cache the fastest."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .. import config
from .._version import __version__
from ..bench.suite import parse_shape_spec, select_layers
from ..ops import autotune
from ..ops.conv import CONV_ALGOS
from ..shapes import ConvParams

__all__ = [
    "DEFAULT_LAYERS",
    "add_tune_parser",
    "parse_layer",
    "parse_layers",
    "run_tune",
    "run_tune_command",
]

LAYER_FORMAT = "N,C,H,W,CO,K[,stride[,pad[,groups]]]"

# Batch-1 inference layers covering the main algorithm regimes; about 10 s on 2 cores.
DEFAULT_LAYERS = [
    "1,64,56,56,64,3,1,1",  # ResNet-18 layer1 3x3
    "1,128,28,28,128,3,1,1",  # ResNet-18 layer2 3x3
    "1,256,14,14,256,3,1,1",  # ResNet-18 layer3 3x3
    "1,512,7,7,512,3,1,1",  # ResNet-18 layer4 3x3
    "1,256,56,56,64,1,1,0",  # ResNet-50 bottleneck 1x1 reduce
    "1,144,56,56,144,3,1,1,144",  # MobileNetV2 depthwise 3x3
    "1,64,28,28,64,5,1,2",  # dense 5x5
]


def parse_layer(text: str) -> ConvParams:
    """A shape spec ``"N,C,H,W,CO,K[,stride[,pad[,groups]]]"`` -> ConvParams (stride 1, pad K//2,
    groups 1): the format ``cnnperf bench --layer`` reads, parsed by the same function.

    Example:
        >>> parse_layer("1,8,10,10,16,3,2").sh, parse_layer("1,8,10,10,16,3,2").pt
        (2, 1)
    """
    return parse_shape_spec(text).params()


def parse_layers(text: str) -> list[ConvParams]:
    """A ``--layer`` value: a shape spec or a ``cnnperf bench`` suite layer name (a base name
    without ``/bN`` gives every batch size)."""
    return [layer.params() for layer in select_layers([text])]


def _layer_type(text: str) -> list[ConvParams]:
    try:
        return parse_layers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_tune_parser(sub) -> argparse.ArgumentParser:
    """Register ``tune`` on the ``cnnperf`` subparsers."""
    tune = sub.add_parser(
        "tune",
        help="time every convolution algorithm per layer and cache the fastest",
        description="Time every convolution algorithm that covers each layer (one warm-up call, "
        "then interleaved rounds on synthetic float32 data; median), print the table and store "
        "the fastest in the tuning cache that conv2d(algo='auto') reads. Without --layer, tunes "
        "a default set (ResNet-18 3x3 layers, a 1x1, a depthwise 3x3, a 5x5; batch 1).",
    )
    tune.add_argument(
        "--layer",
        action="append",
        type=_layer_type,
        metavar=LAYER_FORMAT,
        help="a layer to tune (repeatable): a shape spec (pad defaults to K//2, stride and groups "
        "to 1) or a `cnnperf bench --list` layer name",
    )
    tune.add_argument("--rounds", type=int, default=5, help="timed rounds per algorithm (5)")
    tune.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    tune.add_argument("--json", action="store_true", help="print one JSON document")
    tune.add_argument("--show", action="store_true", help="print the cache path and entries")
    tune.add_argument("--clear", action="store_true", help="delete the cache file")
    return tune


def run_tune_command(args: argparse.Namespace) -> int:
    """Run ``cnnperf tune`` from parsed arguments (a bad --rounds or --threads: message, 2)."""
    try:
        return run_tune(
            layers=None if args.layer is None else [p for ps in args.layer for p in ps],
            rounds=args.rounds,
            threads=args.threads,
            as_json=args.json,
            show=args.show,
            clear=args.clear,
        )
    except ValueError as e:
        print(f"cnnperf tune: error: {e}", file=sys.stderr)
        return 2


def _label(p: ConvParams) -> str:
    text = f"{p.n}x{p.c_in}x{p.h}x{p.w}>{p.c_out} k{p.kh}"
    if p.kw != p.kh:
        text += f"x{p.kw}"
    text += f" s{p.sh}" if p.sh == p.sw else f" s{p.sh},{p.sw}"
    text += f" p{p.pt}" if len({p.pt, p.pb, p.pl, p.pr}) == 1 else f" p{p.pt},{p.pb},{p.pl},{p.pr}"
    if p.dh != 1 or p.dw != 1:
        text += f" d{p.dh}" if p.dh == p.dw else f" d{p.dh},{p.dw}"
    return text + (f" g{p.g}" if p.g > 1 else "")


def _show(entries: dict, out) -> None:
    here = f"|cpu={autotune.cpu_fingerprint()}|cnnperf={__version__}"
    for key in sorted(entries):
        e = entries[key]
        try:
            label = _label(ConvParams(**e["params"]))
        except (KeyError, TypeError):
            label = key.split("|")[1] if key.count("|") >= 1 else key
        times = ", ".join(f"{a} {t * 1e3:.2f}ms" for a, t in e.get("median_s", {}).items())
        where = "" if key.endswith(here) else " (other machine or version)"
        print(
            f"  {e.get('op', 'conv2d')} {label} {e.get('dtype', '?')} "
            f"{e.get('threads', '?')} thread(s): {e['algo']}  [{times}]  "
            f"{e.get('timestamp', '')}{where}",
            file=out,
        )


def run_tune(
    layers: list[ConvParams] | None = None,
    rounds: int = 5,
    threads: int | None = None,
    as_json: bool = False,
    show: bool = False,
    clear: bool = False,
    out=None,
) -> int:
    """Clear (``clear``), tune ``layers`` (default set unless only clearing/showing), show.

    Returns 0, or 1 if some layer had no algorithm that ran correctly.
    """
    out = out or sys.stdout
    if threads is not None:
        config.set_num_threads(threads)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"cnnperf tune: --rounds must be a positive int, got {rounds!r}")
    path = autotune.cache_path()
    doc: dict = {
        "cache": str(path),
        "threads": config.get_num_threads(),
        "cpu": autotune.cpu_fingerprint(),
        "rounds": rounds,
    }
    if clear:
        doc["cleared"] = autotune.clear_cache()
        if not as_json:
            print(f"{'removed' if doc['cleared'] else 'no tuning cache at'} {path}", file=out)
    if layers is None and not (show or clear):
        layers = [parse_layer(text) for text in DEFAULT_LAYERS]
    status = 0
    if layers:
        names = list(CONV_ALGOS)
        width = max(len(_label(p)) for p in layers) + 2
        if not as_json:
            print(
                f"cnnperf tune: {doc['threads']} thread(s), {doc['cpu']}, median of {rounds} "
                f"interleaved rounds after a warm-up, float32; cache {path}",
                file=out,
            )
            col = max(12, *(len(a) + 2 for a in names))
            print(
                f"{'layer':<{width}}" + "".join(f"{a:>{col}}" for a in names) + "   chosen",
                file=out,
            )
        results, notes = [], []
        for p in layers:
            r = autotune.tune_conv_params(p, rounds=rounds)
            stored = r.chosen is not None and autotune.get_cache().put(r.key, r.to_entry())
            status = status if r.chosen is not None else 1
            results.append(
                {
                    "layer": _label(p),
                    "params": dataclasses.asdict(p),
                    "median_s": r.times,
                    "failed": r.failed,
                    "skipped": r.skipped,
                    "chosen": r.chosen,
                    "stored": stored,
                }
            )
            if as_json:
                continue
            cells = []
            for a in names:
                if a in r.times:
                    cells.append(f"{r.times[a] * 1e3:>{col - 2}.2f}ms")
                else:
                    cells.append(f"{'failed' if a in r.failed else 'n/a':>{col}}")
            print(f"{_label(p):<{width}}" + "".join(cells) + f"   {r.chosen or '-'}", file=out)
            notes += [f"  {_label(p)}: {a} failed: {why}" for a, why in r.failed.items()]
        doc["results"] = results
        if notes and not as_json:
            print("\n".join(["failures:", *notes]), file=out)
    if show:
        entries = autotune.get_cache().entries()
        doc["entries"] = entries
        if not as_json:
            count = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
            state = count if path.exists() else "no file"
            print(f"tuning cache: {path} ({state})", file=out)
            _show(entries, out)
    if as_json:
        print(json.dumps(doc, indent=2), file=out)
    return status
