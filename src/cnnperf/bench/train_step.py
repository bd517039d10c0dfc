"""``cnnperf bench --train``: one training step of a LeNet-size CNN, cnnperf against PyTorch.

The network (:func:`lenet_layers`): conv 1->6 5x5, ReLU, max-pool 2, conv 6->16 5x5, ReLU,
max-pool 2, flatten, linear 256->120, ReLU, 120->84, ReLU, 84->10, on 28x28 inputs. One step is
``zero_grad``, forward, cross-entropy, backward and an SGD step (momentum 0.9). cnnperf and
PyTorch start from the same weights and train on the same batch, at the same thread count, in
this process; before timing, one step of each on fresh copies is compared (the loss, and every
parameter after the update). Timing is :func:`cnnperf.bench.runner.run_interleaved`: one
warm-up step each, then interleaved rounds in rotating order; the statistic is the median.

:func:`step_breakdown` times the parts of cnnperf's step (each ``cnnperf.ops`` call, forward
and backward, the optimizer) to show where the time goes.

>>> run = run_train_bench(TrainBenchSettings(batch=4, rounds=1), peers=())
>>> run.check["loss"] is not None, sorted(run.engines)
(True, ['cnnperf'])
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import config
from .machine import machine_info
from .peers import TorchPeer
from .runner import Engine, EngineResult, norm_rel_err, run_interleaved

__all__ = [
    "TrainBenchSettings",
    "TrainBenchRun",
    "lenet_layers",
    "cnnperf_lenet",
    "torch_lenet",
    "run_train_bench",
    "step_breakdown",
    "format_train_report",
    "train_json",
    "TRAIN_SCHEMA",
]

TRAIN_SCHEMA = "cnnperf-bench-train/1"
INPUT_SHAPE = (1, 28, 28)  # (c, h, w)
NUM_CLASSES = 10


@dataclass
class TrainBenchSettings:
    """What to time: see :func:`cnnperf.bench.runner.run_interleaved` for the timing knobs."""

    batch: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    rounds: int | None = None
    target_s: float = 1.0
    min_rounds: int = 10
    max_rounds: int = 200
    budget_s: float = 5.0
    tol: float = 1e-4
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rounds"] = self.rounds if self.rounds is not None else "adaptive"
        d["statistic"] = "median of interleaved rounds (rotating order) after one warm-up step"
        d["step"] = "zero_grad, forward, cross_entropy, backward, SGD step (momentum)"
        return d


@dataclass
class TrainBenchRun:
    """Everything one ``cnnperf bench --train`` measured.

    Attributes:
        engines: name ("cnnperf", "torch") -> raw times (seconds per step).
        check: the one-step comparison with PyTorch: ``loss`` (cnnperf's), ``loss_rel_err``
            and ``params_rel_err`` (largest norm-relative difference over the parameters after
            the update), ``ok``; the errors are None without PyTorch.
        breakdown: :func:`step_breakdown`'s result, when asked for.
    """

    machine: dict
    settings: TrainBenchSettings
    engines: dict[str, EngineResult]
    check: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    peers: dict[str, str] = field(default_factory=dict)
    breakdown: dict[str, Any] | None = None
    wall_s: float = 0.0

    def median_ms(self, name: str) -> float | None:
        res = self.engines.get(name)
        return res.median_s * 1e3 if res is not None and res.timed else None

    def images_per_s(self, name: str) -> float | None:
        ms = self.median_ms(name)
        return self.settings.batch / (ms / 1e3) if ms else None

    def ratio(self, peer: str = "torch") -> float | None:
        """time(cnnperf) / time(peer) per step: below 1 means cnnperf is faster."""
        a, b = self.median_ms("cnnperf"), self.median_ms(peer)
        return a / b if a is not None and b else None


def lenet_layers() -> list[tuple]:
    """The network as ``(kind, args)`` rows, shared by the cnnperf and PyTorch builders.

    Example:
        >>> [kind for kind, _ in lenet_layers()][:3]
        ['conv', 'relu', 'maxpool']
    """
    return [
        ("conv", (1, 6, 5)),
        ("relu", ()),
        ("maxpool", (2,)),
        ("conv", (6, 16, 5)),
        ("relu", ()),
        ("maxpool", (2,)),
        ("flatten", ()),
        ("linear", (16 * 4 * 4, 120)),
        ("relu", ()),
        ("linear", (120, 84)),
        ("relu", ()),
        ("linear", (84, NUM_CLASSES)),
    ]


def cnnperf_lenet(seed: int = 0):
    """The benchmark network in cnnperf (``nn.Sequential``), weights seeded by ``seed``.

    Example:
        >>> model = cnnperf_lenet(0)
        >>> model(np.zeros((2, 1, 28, 28), np.float32)).shape, list(model.state_dict())[:2]
        ((2, 10), ['0.weight', '0.bias'])
    """
    from .. import nn

    g = np.random.default_rng(seed)
    make = {
        "conv": lambda c_in, c_out, k: nn.Conv2d(c_in, c_out, k, generator=g),
        "relu": nn.ReLU,
        "maxpool": nn.MaxPool2d,
        "flatten": nn.Flatten,
        "linear": lambda a, b: nn.Linear(a, b, generator=g),
    }
    return nn.Sequential(*[make[kind](*args) for kind, args in lenet_layers()])


def torch_lenet(torch, state_dict: dict[str, np.ndarray]):
    """The same network in PyTorch (same keys), loaded with copies of ``state_dict``."""
    tnn = torch.nn
    make = {"conv": tnn.Conv2d, "relu": tnn.ReLU, "maxpool": tnn.MaxPool2d,
            "flatten": tnn.Flatten, "linear": tnn.Linear}  # fmt: skip
    model = tnn.Sequential(*[make[kind](*args) for kind, args in lenet_layers()])
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
    return model


def _batch(settings: TrainBenchSettings) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(settings.seed + 1)
    x = rng.standard_normal((settings.batch, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, settings.batch)  # int64
    return x, y


def _cnnperf_step(settings: TrainBenchSettings, x, y):
    """(model, step function returning the loss as a (1,) array)."""
    from .. import nn, optim

    model = cnnperf_lenet(settings.seed)
    opt = optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    loss_fn = nn.functional.cross_entropy

    def step() -> np.ndarray:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return np.asarray(loss.data, np.float32).reshape(1)

    return model, step


def _torch_step(torch, settings: TrainBenchSettings, state, x, y):
    model = torch_lenet(torch, state)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.functional.cross_entropy

    def step() -> np.ndarray:
        opt.zero_grad()
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
        return loss.detach().numpy().astype(np.float32).reshape(1)

    return model, step


def _check(settings, torch, x, y) -> dict[str, Any]:
    """One step of each on fresh copies: the loss and every updated parameter compared."""
    model, step = _cnnperf_step(settings, x, y)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    loss = float(step()[0])
    out: dict[str, Any] = {"loss": loss, "loss_rel_err": None, "params_rel_err": None, "ok": None}
    if torch is None:
        return out
    tmodel, tstep = _torch_step(torch, settings, state, x, y)
    tloss = tstep()
    after = model.state_dict()
    errs = {k: norm_rel_err(after[k], v.detach().numpy()) for k, v in tmodel.state_dict().items()}
    out["loss_rel_err"] = norm_rel_err(np.float32(loss), tloss[0])
    out["params_rel_err"] = max(errs.values())
    out["worst_param"] = max(errs, key=errs.get)
    out["ok"] = out["loss_rel_err"] <= settings.tol and out["params_rel_err"] <= settings.tol
    return out


def run_train_bench(
    settings: TrainBenchSettings | None = None,
    *,
    threads: int | None = None,
    peers: tuple[str, ...] = ("torch",),
    breakdown: bool = False,
) -> TrainBenchRun:
    """Time cnnperf's training step and PyTorch's on the same network, weights and batch.

    Args:
        settings: batch, optimizer and timing settings.
        threads: for both engines (default ``cnnperf.get_num_threads()``); restored afterwards.
        peers: ``("torch",)``, or ``()`` to time cnnperf alone.
        breakdown: also run :func:`step_breakdown` on cnnperf's step.
    """
    settings = settings or TrainBenchSettings()
    t_start = time.perf_counter()
    saved_threads = config.get_num_threads()
    threads = saved_threads if threads is None else threads
    config.set_num_threads(threads)
    notes: list[str] = []
    peer = TorchPeer() if "torch" in peers else None
    torch = None
    if peer is not None:
        why = peer.setup(threads)
        if why is None:
            torch = peer._torch
        else:
            notes.append(why)
    try:
        x, y = _batch(settings)
        check = _check(settings, torch, x, y)
        model, step = _cnnperf_step(settings, x, y)
        engines = [Engine("cnnperf", step, label="cnnperf")]
        if torch is not None:
            state = {k: v.copy() for k, v in model.state_dict().items()}
            engines.append(
                Engine("torch", _torch_step(torch, settings, state, x, y)[1], "peer", peer.label)
            )
        results, _ = run_interleaved(
            engines,
            rounds=settings.rounds,
            target_s=settings.target_s,
            min_rounds=settings.min_rounds,
            max_rounds=settings.max_rounds,
            budget_s=settings.budget_s,
            reference="torch" if torch is not None else "cnnperf",
            tol=settings.tol,
        )
        parts = None
        if breakdown:
            parts = step_breakdown(_cnnperf_step(settings, x, y)[1], rounds=settings.rounds or 20)
        machine = machine_info(None)
    finally:
        if peer is not None:
            peer.teardown()
        config.set_num_threads(saved_threads)
    if check["ok"] is False:
        notes.append(
            f"cnnperf's step differs from PyTorch's: loss {check['loss_rel_err']:.2e}, "
            f"parameters {check['params_rel_err']:.2e} ({check['worst_param']}), norm-relative "
            f"(tolerance {settings.tol:g})"
        )
    for res in results.values():
        if res.error:
            notes.append(f"{res.label} failed: {res.error}")
        if res.note:
            notes.append(f"{res.label}: {res.note}")
    return TrainBenchRun(
        machine=machine,
        settings=settings,
        engines=results,
        check=check,
        notes=notes,
        peers={peer.name: peer.label} if torch is not None else {},
        breakdown=parts,
        wall_s=time.perf_counter() - t_start,
    )


# ----------------------------------------------------------------------------------------------
# where the time goes

_TIMED_OPS = (
    "conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "relu", "relu_backward",
    "linear", "linear_backward", "cross_entropy", "cross_entropy_backward",
)  # fmt: skip


@contextlib.contextmanager
def _timing_ops(totals: dict[str, float]) -> Iterator[None]:
    """Time every call of the ``cnnperf.ops`` functions the step uses (autograd looks them up
    on the module at each call), keyed by function and weight shape, and the optimizers'
    ``step`` and ``zero_grad`` (keyed ``SGD.step``, ``zero_grad``); restored on exit."""
    from .. import ops, optim

    saved = {name: getattr(ops, name) for name in _TIMED_OPS}
    classes = (optim.SGD, optim.Adam, optim.AdamW)
    methods = [(cls, "step", f"{cls.__name__}.step") for cls in classes if "step" in vars(cls)]
    methods.append((optim.Optimizer, "zero_grad", "zero_grad"))
    saved_methods = [(cls, attr, vars(cls)[attr]) for cls, attr, _ in methods]

    def timed_method(key: str, fn: Callable) -> Callable:
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] += time.perf_counter() - t0

        return call

    def timed(name: str, fn: Callable) -> Callable:
        def call(*args, **kwargs):
            key = name
            if name.startswith(("conv2d", "linear")):
                w = args[2] if name.endswith("_backward") else args[1]
                key += str(tuple(np.shape(w)))
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] += time.perf_counter() - t0

        return call

    try:
        for name, fn in saved.items():
            setattr(ops, name, timed(name, fn))
        for cls, attr, key in methods:
            setattr(cls, attr, timed_method(key, getattr(cls, attr)))
        yield
    finally:
        for name, fn in saved.items():
            setattr(ops, name, fn)
        for cls, attr, fn in saved_methods:
            setattr(cls, attr, fn)


def step_breakdown(step: Callable[[], Any], rounds: int = 20) -> dict[str, Any]:
    """Where one cnnperf training step spends its time: mean ms per step of each
    ``cnnperf.ops`` call (by operator and weight shape), of the optimizer's ``step`` and
    ``zero_grad``, and the rest (autograd bookkeeping, modules) as ``other``; after 2 warm-up
    steps.

    Example:
        >>> from cnnperf import nn, optim
        >>> m = nn.Linear(3, 2); opt = optim.SGD(m.parameters(), lr=0.1)
        >>> def step():
        ...     opt.zero_grad(); nn.functional.mse_loss(m(np.ones((4, 3), np.float32)),
        ...                                             np.zeros((4, 2), np.float32)).backward()
        ...     opt.step()
        >>> sorted(step_breakdown(step, rounds=2)["ops_ms"])
        ['SGD.step', 'linear(2, 3)', 'linear_backward(2, 3)', 'zero_grad']
    """
    for _ in range(2):
        step()
    totals: dict[str, float] = defaultdict(float)
    times = []
    with _timing_ops(totals):
        for _ in range(rounds):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    ops_ms = {k: v / rounds * 1e3 for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    step_ms = sum(times) / rounds * 1e3
    return {
        "rounds": rounds,
        "step_ms": step_ms,
        "step_median_ms": statistics.median(times) * 1e3,
        "ops_ms": ops_ms,
        "other_ms": step_ms - sum(ops_ms.values()),
    }


# ----------------------------------------------------------------------------------------------
# reports


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def format_train_report(run: TrainBenchRun, detail: bool = False) -> str:
    """The human-readable report: ms per step, images/s, the ratio, the check, notes."""
    s, m = run.settings, run.machine
    rounds = s.rounds or f"adaptive (>= {s.target_s:g} s per engine, {s.min_rounds}-{s.max_rounds})"
    lines = [
        f"cnnperf bench --train: LeNet-5 size CNN on {INPUT_SHAPE[1]}x{INPUT_SHAPE[2]}, batch "
        f"{s.batch}, SGD lr {s.lr:g} momentum {s.momentum:g}; {m['threads']} thread(s) for "
        f"every engine, {m['cpu']}",
        "one step = zero_grad + forward + cross_entropy + backward + SGD step; ms: median of "
        f"{rounds} interleaved rounds after one warm-up step",
        "",
        f"{'engine':<22}{'ms/step':>10}{'min ms':>10}{'rounds':>8}{'images/s':>11}",
    ]
    for name, res in run.engines.items():
        if res.error:
            lines.append(f"{res.label:<22} failed: {res.error}")
            continue
        lines.append(
            f"{res.label:<22}{_fmt(run.median_ms(name), 3):>10}"
            f"{_fmt(res.min_s * 1e3 if res.min_s else None, 3):>10}{len(res.times_s):>8}"
            f"{_fmt(run.images_per_s(name), 0):>11}"
        )
    ratio = run.ratio()
    lines.append("")
    if ratio is not None:
        how = "faster" if ratio < 1 else "slower"
        factor = 1 / ratio if ratio < 1 else ratio
        lines.append(
            f"ratio cnnperf/torch: {ratio:.2f} (time per step: cnnperf is {factor:.2f}x {how} "
            f"than PyTorch)"
        )
    c = run.check
    if c["ok"] is not None:
        lines.append(
            f"check after one step: loss {c['loss']:.6f}, rel. err. vs PyTorch: loss "
            f"{c['loss_rel_err']:.1e}, parameters {c['params_rel_err']:.1e} "
            f"({'ok' if c['ok'] else 'DIFFERENT'})"
        )
    if detail and run.breakdown:
        b = run.breakdown
        lines += ["", f"cnnperf step breakdown (mean ms per step over {b['rounds']} steps):"]
        for name, ms in b["ops_ms"].items():
            lines.append(f"  {name:<32}{ms:>8.3f}  {100 * ms / b['step_ms']:>4.0f}%")
        lines.append(f"  {'other (autograd, modules)':<32}{b['other_ms']:>8.3f}"
                     f"  {100 * b['other_ms'] / b['step_ms']:>4.0f}%")  # fmt: skip
        lines.append(f"  {'total':<32}{b['step_ms']:>8.3f}")
    if run.notes:
        lines += ["", "Notes:"] + [f"  {n}" for n in run.notes]
    lines.append(f"({run.wall_s:.1f} s)")
    return "\n".join(lines)


def train_json(run: TrainBenchRun) -> dict[str, Any]:
    """All raw numbers as a JSON-ready dict (schema ``cnnperf-bench-train/1``)."""

    def finite(v):
        return v if v is None or math.isfinite(v) else None

    engines = {
        name: {
            "label": res.label,
            "kind": res.kind,
            "median_s": res.median_s,
            "min_s": res.min_s,
            "times_s": list(res.times_s),
            "rounds": len(res.times_s),
            "first_call_s": res.first_call_s,
            "images_per_s": run.images_per_s(name),
            "loss_rel_err": finite(res.rel_err),
            "error": res.error,
            "note": res.note,
        }
        for name, res in run.engines.items()
    }
    check = {k: finite(v) if isinstance(v, float) else v for k, v in run.check.items()}
    return {
        "schema": TRAIN_SCHEMA,
        "network": {
            "layers": [[kind, list(args)] for kind, args in lenet_layers()],
            "input_shape": [run.settings.batch, *INPUT_SHAPE],
        },
        "machine": run.machine,
        "settings": run.settings.as_dict(),
        "peers": dict(run.peers),
        "engines": engines,
        "ratio": {"cnnperf/torch": run.ratio()},
        "check": check,
        "breakdown": run.breakdown,
        "notes": list(run.notes),
        "wall_s": run.wall_s,
    }
