"""Checks that a checkpoint fits a model, optimizer and scheduler, run before anything loads.

Each ``*_problems`` function returns a list of readable problems (empty when it fits), so
:func:`~cnnperf.training.load_checkpoint` can report all of them at once.

>>> from cnnperf import nn, optim
>>> m = nn.Linear(2, 1)
>>> param_info(optim.SGD(m.parameters(), lr=0.1), m)
[{'name': 'weight', 'shape': [1, 2], 'dtype': 'float32'}, {'name': 'bias', 'shape': [1], \
'dtype': 'float32'}]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..autograd.tensor import Tensor
from ..nn.module import Module
from ..optim.optimizer import Optimizer

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

__all__ = [
    "param_info",
    "optimizer_params",
    "model_problems",
    "optimizer_problems",
    "scheduler_problems",
]


def _param_names(model: Module) -> dict[int, str]:
    return {id(p): key for key, p in model.named_parameters()}


def optimizer_params(optimizer: Optimizer) -> list[Tensor]:
    """The optimizer's parameters in ``state_dict`` numbering (groups in order)."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def param_info(optimizer: Optimizer, model: Module) -> list[dict[str, Any]]:
    """Per optimizer parameter: its model key (None if outside ``model``), shape and dtype."""
    names = _param_names(model)
    return [
        {"name": names.get(id(p)), "shape": list(p.shape), "dtype": p.dtype.name}
        for p in optimizer_params(optimizer)
    ]


def _array(value: Any) -> np.ndarray:
    return value.data if isinstance(value, Tensor) else np.asarray(value)


def model_problems(ckpt: Checkpoint, model: Module, strict: bool) -> list[str]:
    """Key (when ``strict``), shape and dtype differences between checkpoint and model."""
    current = {k: _array(v) for k, v in model.state_dict(keep_vars=True).items()}
    saved = ckpt.model_state
    problems = []
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    if strict and missing:
        problems.append("missing key(s) in the checkpoint: " + ", ".join(missing))
    if strict and unexpected:
        problems.append("unexpected key(s) in the checkpoint: " + ", ".join(unexpected))
    for key, target in current.items():
        if key not in saved:
            continue
        value = saved[key]
        if value.shape != target.shape:
            problems.append(
                f"size mismatch for {key}: shape {value.shape} in the checkpoint, "
                f"{target.shape} in the model"
            )
        elif value.dtype != target.dtype:
            problems.append(
                f"dtype mismatch for {key}: {value.dtype} in the checkpoint, {target.dtype} "
                f"in the model"
            )
    return problems


def optimizer_problems(ckpt: Checkpoint, optimizer: Optimizer, model: Module) -> list[str]:
    """Class, groups, parameters (model key, shape, dtype) and state-array differences."""
    name = type(optimizer).__name__
    if ckpt.optimizer_state is None:
        return ["the checkpoint holds no optimizer state (saved without one): pass optimizer=None"]
    if ckpt.optimizer_class != name:
        return [f"the checkpoint holds {ckpt.optimizer_class} state, the optimizer is a {name}"]
    saved_groups = ckpt.optimizer_state["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups):
        return [
            f"the checkpoint's {ckpt.optimizer_class} has {len(saved_groups)} parameter groups, "
            f"the optimizer has {len(optimizer.param_groups)}"
        ]
    problems = []
    offset = 0
    for i, (group, saved) in enumerate(zip(optimizer.param_groups, saved_groups, strict=True)):
        n = len(group["params"])
        if not isinstance(saved, dict) or saved.get("params") != list(range(offset, offset + n)):
            size = len(saved["params"]) if isinstance(saved, dict) else "?"
            problems.append(
                f"optimizer parameter group {i} has {size} parameters in the checkpoint, {n} "
                f"in the optimizer"
            )
        offset += n
    if problems:
        return problems
    here = param_info(optimizer, model)
    if len(ckpt.optimizer_params) != len(here):
        return [f"the checkpoint describes {len(ckpt.optimizer_params)} optimizer parameters"]
    for i, (was, now) in enumerate(zip(ckpt.optimizer_params, here, strict=True)):
        if was != now:
            problems.append(
                f"optimizer parameter {i} is {was} in the checkpoint but {now} in the optimizer"
            )
    params = optimizer_params(optimizer)
    for index, entries in ckpt.optimizer_state["state"].items():
        if not 0 <= index < len(params):
            problems.append(f"optimizer state for parameter {index}, which does not exist")
            continue
        p = params[index]
        for key, value in entries.items():
            if isinstance(value, np.ndarray) and (value.shape, value.dtype) != (p.shape, p.dtype):
                problems.append(
                    f"optimizer state {key!r} of parameter {index} is {value.dtype}{value.shape}"
                    f", the parameter is {p.dtype}{p.shape}"
                )
    return problems


def scheduler_problems(ckpt: Checkpoint, scheduler: Any, optimizer: Any) -> list[str]:
    """Class, optimizer and state-entry differences (inner schedulers of a SequentialLR too)."""
    name = type(scheduler).__name__
    if ckpt.scheduler_state is None:
        return ["the checkpoint holds no scheduler state (saved without one): pass scheduler=None"]
    if ckpt.scheduler_class != name:
        return [f"the checkpoint holds {ckpt.scheduler_class} state, the scheduler is a {name}"]
    if optimizer is not None and getattr(scheduler, "optimizer", optimizer) is not optimizer:
        return [f"the {name} drives another optimizer than the one passed"]
    saved, current = ckpt.scheduler_state, scheduler.state_dict()
    pairs = [("", saved, current)]
    if isinstance(saved.get("_schedulers"), list) and isinstance(current.get("_schedulers"), list):
        if len(saved["_schedulers"]) != len(current["_schedulers"]):
            return [
                f"the checkpoint's {name} chains {len(saved['_schedulers'])} schedulers, this "
                f"one {len(current['_schedulers'])}"
            ]
        inner = zip(saved["_schedulers"], current["_schedulers"], strict=True)
        pairs += [(f" (inner scheduler {i})", a, b) for i, (a, b) in enumerate(inner)]
    problems = []
    for where, a, b in pairs:
        if not isinstance(a, dict) or set(a) != set(b):
            got = sorted(a) if isinstance(a, dict) else type(a).__name__
            problems.append(f"{name} state{where} has entries {got}, expected {sorted(b)}")
    return problems
