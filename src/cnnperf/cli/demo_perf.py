"""``cnnperf demo``'s sections 3 and 4 (:func:`perf_sections`): the compiled model's per-layer
profile; the throughput of the compiled model, the eager ``nn`` model and a PyTorch twin with
the same weights; and the naive float64 loop's time for the network's convolutions.

Example:
    >>> fmt_rate(12345.6), fmt_rate(None)
    ('12,346', '-')
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import ops, reference
from ..autograd.grad_mode import no_grad
from ..bench.runner import Engine, run_interleaved

__all__ = ["torch_twin", "measure_throughput", "naive_conv_seconds", "perf_sections", "fmt_rate"]


def fmt_rate(v: float | None) -> str:
    """Images/s with thousands separators; ``-`` for a missing value."""
    return "-" if v is None else f"{v:,.0f}"


@functools.cache
def _torch_resnet_small():
    """The PyTorch class of ``resnet_small`` (defined on first use: PyTorch is optional)."""
    import torch
    from torch import nn

    from ..bench.models import _classes

    # torchvision's block: the attribute names (and so the state_dict keys) of
    # cnnperf.training.models.BasicBlock
    BasicBlock = _classes()[2]

    class ResNetSmall(nn.Module):
        def __init__(self, stem: tuple[int, int], stages: list[list[tuple]], classes: int):
            super().__init__()
            self.conv1 = nn.Conv2d(stem[0], stem[1], 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(stem[1])
            for i, blocks in enumerate(stages):
                setattr(self, f"layer{i + 1}", nn.Sequential(*(BasicBlock(*b) for b in blocks)))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(stages[-1][-1][1], classes)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNetSmall


def torch_twin(model: Any) -> Any:
    """A ``torch.nn`` copy of a cnnperf ``resnet_small`` in eval mode, loaded with
    ``load_state_dict`` from the model's ``state_dict`` (PyTorch's keys; strict).

    Raises:
        ImportError: PyTorch is not installed.
        NotImplementedError: the model is not a ``resnet_small``.
    """
    import torch

    name = (getattr(model, "arch", None) or {}).get("name")
    if name != "resnet_small":
        raise NotImplementedError(f"torch_twin: only resnet_small has a PyTorch twin, not {name!r}")
    stages = [
        [(b.conv1.in_channels, b.conv1.out_channels, b.conv1.stride[0]) for b in layer]
        for layer in (model.layer1, model.layer2, model.layer3)
    ]
    stem = (model.conv1.in_channels, model.conv1.out_channels)
    twin = _torch_resnet_small()(stem, stages, model.fc.out_features)
    state = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    twin.load_state_dict(state)
    return twin.eval()


def measure_throughput(
    engines: Mapping[str, Mapping[int, Callable[[], Any]]],
    *,
    reference_name: str,
    min_rounds: int,
    target_s: float,
) -> tuple[dict[str, dict[int, float]], list[str]]:
    """Images/s of each engine at each batch size: interleaved rounds, median per engine.

    Args:
        engines: label -> {batch: fn}; ``fn()`` runs one forward pass of that batch and
            returns the logits.
        reference_name: the engine every output is compared with (norm-relative 1e-4).
        min_rounds, target_s: as :func:`cnnperf.bench.runner.run_interleaved`.

    Returns:
        ({label: {batch: images/s}}, problems: one line per engine that failed or whose
        logits differ from the reference's).
    """
    batches = sorted({b for per in engines.values() for b in per})
    rates: dict[str, dict[int, float]] = {label: {} for label in engines}
    problems: list[str] = []
    for b in batches:
        here = [Engine(label, per[b]) for label, per in engines.items() if b in per]
        results, _ = run_interleaved(
            here,
            reference=reference_name,
            min_rounds=min_rounds,
            target_s=target_s,
            budget_s=max(1.0, 3 * target_s),
        )
        for label, res in results.items():
            if res.error is not None:
                problems.append(f"{label} at batch {b}: {res.error}")
            elif res.ok is False:
                problems.append(
                    f"{label} at batch {b}: logits differ from {reference_name}'s by "
                    f"{res.rel_err:.1e} (norm-relative)"
                )
            elif res.median_s:
                rates[label][b] = b / res.median_s
    return rates, problems


def naive_conv_seconds(compiled: Any, repeat: int = 1, seed: int = 0) -> dict[str, Any]:
    """Time ``cnnperf.reference.conv2d`` (float64 Python loops) on one output channel of every
    conv2d node of a compiled model, for one image, and scale each by its output channels.

    The loop does the same work for every output channel, so the estimate is the time the
    naive loop would take for all of the network's convolutions on one image. Each slice is
    also run with ``cnnperf.ops.conv2d`` (float32) on the same data, as a check.

    Args:
        compiled: a :class:`~cnnperf.compile.CompiledModel` (its conv2d nodes, weights and
            inferred shapes; a dynamic batch counts as 1).
        repeat: runs per slice; the fastest counts.

    Returns:
        ``seconds`` (per image, all convolutions), ``layers``, ``macs`` (multiply-adds per
        image), ``timed_outputs`` and ``outputs`` (output elements timed / in all), and
        ``max_rel_err`` (reference vs cnnperf on the slices, over max |y|).
    """
    rng = np.random.default_rng(seed)
    graph = compiled.graph
    total = macs = 0.0
    timed = outputs = layers = 0
    worst = 0.0
    for node in graph.nodes:
        if node.op != "conv2d":
            continue
        a = node.attrs
        w = graph.initializers[node.inputs[1]]
        n_bias = len(node.inputs) - 2 - int(bool(a.get("residual")))  # x, w[, bias][, residual]
        bias = graph.initializers[node.inputs[2]] if n_bias > 0 else None
        c_out, c_in_g, kh, kw = w.shape
        x_shape = compiled.shapes[node.inputs[0]]
        x = rng.standard_normal((1, c_in_g, *x_shape[2:]))  # group 0's input channels
        pt, pb, pl, pr = a.get("pads", (0, 0, 0, 0))
        kwargs = dict(
            stride=a.get("stride", (1, 1)),
            padding=((pt, pb), (pl, pr)),
            dilation=a.get("dilation", (1, 1)),
        )
        b1 = None if bias is None else bias[:1]
        best = float("inf")
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            y = reference.conv2d(x, w[:1], b1, **kwargs)
            best = min(best, time.perf_counter() - t0)
        got = ops.conv2d(x.astype(np.float32), np.ascontiguousarray(w[:1]), b1, **kwargs)
        scale = float(np.max(np.abs(y))) or 1.0
        worst = max(worst, float(np.max(np.abs(got - y))) / scale)
        total += best * c_out
        timed += y.size
        outputs += y.size * c_out
        macs += y.size * c_out * c_in_g * kh * kw
        layers += 1
    return {
        "seconds": total,
        "layers": layers,
        "macs": int(macs),
        "timed_outputs": timed,
        "outputs": outputs,
        "max_rel_err": worst,
    }


def perf_sections(
    say: Callable[[str], None],
    head: Callable[[str], None],
    model: Any,
    compiled: Any,
    x_test: np.ndarray,
    big: int,
    rounds: int,
    quick: bool,
    peak: float,
    threads: int,
    torch: Any,
) -> tuple[int, dict]:
    """``cnnperf demo``'s sections 3 (profile, throughput) and 4 (the naive loop).

    Args:
        say, head: print a line, a section title.
        model: the trained ``nn`` model (eval mode); ``compiled``: it compiled for any batch.
        x_test: normalised test images; the throughput runs the first 1 and ``big``.
        rounds: profile passes and minimum throughput rounds; ``quick``: shorter timings.
        peak: the machine's float32 GFLOP/s; ``threads``: the thread count (for the text).
        torch: the ``torch`` module, or None when PyTorch is not importable.

    Returns:
        (exit status: 1 if an engine failed or its logits differ, else 0; summary values).
    """
    from ..compile import compile_model
    from ..compile.profile import format_profile, profile_totals

    status = 0
    xb = np.ascontiguousarray(x_test[:big])
    x1 = np.ascontiguousarray(x_test[:1])
    compiled_big = compile_model(model, xb.shape)  # conv plans for this batch
    head(
        f"3. Profile: the compiled model at batch {big} (conv plans chosen for it), median of "
        f"{rounds} pass(es) per node"
    )
    rows = compiled_big.profile(xb, repeat=rounds)
    say(format_profile(rows))
    t = profile_totals(rows, peak)
    say(
        f"total: {len(rows)} nodes, {t['flops'] / 1e9:.3f} GFLOP, {t['time_s'] * 1e3:.2f} ms "
        f"summed, {t['gflops']:.1f} GFLOP/s ({100 * t['peak_fraction']:.1f}% of peak); "
        f"conv/gemm nodes take {100 * t['compute_share']:.0f}% of the time"
    )

    def eager_fn(x):
        def fn():
            with no_grad():
                return model(x).data

        return fn

    engines = {
        "cnnperf compiled": {1: lambda: compiled(x1), big: lambda: compiled_big(xb)},
        "cnnperf nn (eager)": {1: eager_fn(x1), big: eager_fn(xb)},
    }
    torch_label = None
    if torch is None:
        say("(PyTorch not installed: skipping the PyTorch comparison)")
    else:
        twin = torch_twin(model)
        torch_label = f"PyTorch {torch.__version__}"

        def torch_fn(x):
            xt = torch.from_numpy(x)

            def fn():
                with torch.no_grad():
                    return twin(xt).numpy()

            return fn

        engines[torch_label] = {1: torch_fn(x1), big: torch_fn(xb)}
    rates, problems = measure_throughput(
        engines,
        reference_name="cnnperf compiled",
        min_rounds=rounds,
        target_s=0.05 if quick else 0.3,
    )
    say()
    say(
        f"inference throughput, images/s ({threads} thread(s), same weights; median of "
        f"interleaved rounds after a warm-up call each):"
    )
    say(f"{'engine':<26}{'batch 1':>12}{f'batch {big}':>12}")
    for label, per in rates.items():
        say(f"{label:<26}{fmt_rate(per.get(1)):>12}{fmt_rate(per.get(big)):>12}")
    for p in problems:
        say(f"ERROR: {p}")
        status = 1
    comp = rates["cnnperf compiled"]
    ratios = {"eager": rates["cnnperf nn (eager)"]}
    if torch_label is not None:
        ratios["PyTorch"] = rates[torch_label]
    parts = []
    for name, other in ratios.items():
        r = [comp[b] / other[b] for b in (1, big) if b in comp and b in other]
        if len(r) == 2:
            parts.append(f"{r[0]:.2f}x {name}'s at batch 1, {r[1]:.2f}x at batch {big}")
    if parts:
        say("compiled throughput: " + "; ".join(parts))

    # 4. The naive reference ----------------------------------------------------------------
    head("4. The naive loop: cnnperf.reference.conv2d (float64 Python loops)")
    naive = naive_conv_seconds(compiled, repeat=1 if quick else 2)
    say(
        f"timed on one output channel of each of the {naive['layers']} conv layers for one "
        f"image ({naive['timed_outputs']:,} of {naive['outputs']:,} outputs), scaled by each "
        "layer's output channels:"
    )
    say(
        f"{naive['seconds']:.2f} s per image for the network's convolutions "
        f"({naive['macs'] / 1e6:.2f} M multiply-adds, "
        f"{naive['seconds'] / naive['macs'] * 1e9:,.0f} ns each); cnnperf's float32 conv "
        f"matches it to {naive['max_rel_err']:.0e} of max |y| on those slices"
    )
    if naive["max_rel_err"] > 1e-4:
        say(f"ERROR: cnnperf's conv differs from the float64 loop by {naive['max_rel_err']:.1e}")
        status = 1
    slower = {b: naive["seconds"] * comp[b] for b in (1, big) if b in comp}
    if slower:
        say(
            "the compiled model: "
            + ", ".join(f"{1e3 / comp[b]:.3f} ms per image at batch {b}" for b in slower)
            + " -> the naive loop is "
            + ", ".join(f"~{v:,.0f}x slower at batch {b}" for b, v in slower.items())
            + " (its convolutions alone: a lower bound)"
        )
    return status, {
        "rate_1": comp.get(1),
        "rate_big": comp.get(big),
        "vs_eager_big": _ratio(comp, ratios["eager"], big),
        "vs_torch_big": _ratio(comp, ratios.get("PyTorch"), big),
        "naive_slower": slower.get(big),
    }


def _ratio(a: dict, b: dict | None, key: int) -> float | None:
    return a[key] / b[key] if b is not None and key in a and key in b else None
