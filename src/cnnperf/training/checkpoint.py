"""Training checkpoints: model, optimizer, scheduler, epoch and RNG state in one atomic file.

A checkpoint is a single safetensors file (format ``cnnperf.checkpoint``, version 1):

- its tensors are the model's ``state_dict`` under PyTorch's keys, so
  ``safetensors.numpy.load_file(path)`` (or ``safetensors.torch.load_file``) reads the weights
  directly, plus the optimizer's per-parameter arrays (momentum buffers, Adam moments) under
  the reserved prefix ``__optim__.state.<index>.<name>``;
- its ``__metadata__["cnnperf.checkpoint"]`` is a JSON document: format name and version, the
  cnnperf version, ``epoch``, ``step``, the model's key order, the optimizer's class,
  ``param_groups`` (hyperparameters), scalar per-parameter state and the model key of each
  parameter, the scheduler's class and state, the RNG states, the caller's ``extra``, and a
  ``sha256`` over the rest of the document and every tensor, so corruption that still parses
  is detected.

One file keeps writing atomic with one rename (a weights file and a state file beside it
could be caught half-replaced by a crash between two renames).

RNG state: the checkpoint always records cnnperf's global generator
(:func:`cnnperf.autograd.default_generator`, used by initialisation without ``generator=`` and
by every dropout mask) and :func:`load_checkpoint` restores it (``restore_rng=True``). Other
generators (a data loader's shuffling) are the caller's: pass their states in ``rng_state``
(any JSON-able value; :func:`~cnnperf.training.rng.generator_state` gives one) and restore
them from the returned ``rng_state``.

Writing goes to a temporary file in the same directory, which is flushed, fsynced and renamed
over ``path`` (then the directory is fsynced): ``path`` always holds the old or the new
checkpoint, complete. Loading checks everything (file, header, format version, checksum,
keys, shapes and dtypes against the model, optimizer groups and state, scheduler, RNG) before
it changes anything, and raises :class:`CheckpointError` naming the file and every problem.

>>> import os, tempfile
>>> from cnnperf import nn, optim
>>> model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
>>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> with tempfile.TemporaryDirectory() as d:
...     path = os.path.join(d, "ckpt.safetensors")
...     save_checkpoint(path, model, opt, epoch=3, extra={"best_loss": 0.25})
...     info = load_checkpoint(path, model, opt)
>>> info["epoch"], info["extra"]
(3, {'best_loss': 0.25})
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._atomic import atomic_write_bytes
from .._version import __version__
from ..autograd.random_state import default_generator
from ..autograd.tensor import Tensor
from ..nn.module import Module
from ..optim.optimizer import Optimizer
from ._checks import model_problems, optimizer_problems, param_info, scheduler_problems
from ._format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    OPTIM_PREFIX,
    CheckpointError,
    pack,
    read_file_bytes,
    unpack_checkpoint,
)
from ._json import to_jsonable
from .rng import check_generator_state, get_rng_state, set_rng_state

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "save_checkpoint",
    "read_checkpoint",
    "load_checkpoint",
]

PathLike = str | os.PathLike[str]


@dataclass
class Checkpoint:
    """The validated contents of a checkpoint file, as :func:`read_checkpoint` returns them.

    Attributes:
        path: the file it was read from.
        version: the format version.
        cnnperf_version: the version of cnnperf that wrote it.
        epoch: the ``epoch`` given to :func:`save_checkpoint`.
        step: the ``step`` given to :func:`save_checkpoint` (None if none).
        model_state: the model's ``state_dict`` (key -> ndarray, in the saved order).
        optimizer_class: the optimizer's class name (None when saved without an optimizer).
        optimizer_state: the optimizer's ``state_dict`` (``torch.optim`` layout) or None.
        optimizer_params: per optimizer parameter: ``{"name", "shape", "dtype"}``; ``name`` is
            the parameter's model key (None for a parameter outside the model).
        scheduler_class: the scheduler's class name, or None.
        scheduler_state: the scheduler's ``state_dict``, or None.
        rng: cnnperf's own generator states (``{"autograd": ...}``).
        rng_state: the caller's ``rng_state``.
        extra: the caller's ``extra``.
    """

    path: str
    version: int
    cnnperf_version: str | None
    epoch: int
    step: int | None
    model_state: dict[str, np.ndarray]
    optimizer_class: str | None = None
    optimizer_state: dict[str, Any] | None = None
    optimizer_params: list[dict[str, Any]] = field(default_factory=list)
    scheduler_class: str | None = None
    scheduler_state: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    rng_state: Any = None
    extra: Any = None


def _check_count(value: Any, name: str, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"save_checkpoint: {name} must be a non-negative int, got {value!r}")


def save_checkpoint(
    path: PathLike,
    model: Module,
    optimizer: Optimizer | None = None,
    scheduler: Any = None,
    *,
    epoch: int,
    step: int | None = None,
    rng_state: Any = None,
    extra: Any = None,
) -> None:
    """Write a checkpoint of ``model`` (and optimizer, scheduler, RNG) to ``path`` atomically.

    Args:
        path: the file to write (conventionally ``*.safetensors``); its directory must exist.
            An existing file is replaced only once the new one is complete on disk.
        model: the module whose ``state_dict`` is saved.
        optimizer: its state (hyperparameters, buffers) is saved too, if given.
        scheduler: a learning-rate scheduler (anything with ``state_dict()``), if given.
        epoch: by convention the number of completed epochs (a resumed loop starts there).
        step: by convention the number of optimizer steps taken so far.
        rng_state: the caller's generator states (JSON-able: dicts, lists, numbers, str,
            tuples, NumPy scalars and arrays), returned as is by :func:`load_checkpoint`.
        extra: anything else of the same kinds (loss history, best metric, configuration).

    Raises:
        CheckpointError: a value that cannot be stored (the file is not touched).
        OSError: the write failed (the previous file at ``path``, if any, is intact).

    Example:
        >>> import tempfile, safetensors.numpy
        >>> from cnnperf import nn
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "m.safetensors")
        ...     save_checkpoint(p, nn.Linear(2, 1), epoch=0)
        ...     sorted(safetensors.numpy.load_file(p))
        ['bias', 'weight']
    """
    _check_count(epoch, "epoch", allow_none=False)
    _check_count(step, "step", allow_none=True)
    tensors: dict[str, np.ndarray] = dict(model.state_dict())
    reserved = [k for k in tensors if k.startswith(OPTIM_PREFIX)]
    if reserved:
        raise CheckpointError(
            f"{path}: cannot save: model keys {reserved} use the prefix {OPTIM_PREFIX!r}, "
            f"reserved for optimizer state"
        )
    doc: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "cnnperf_version": __version__,
        "epoch": int(epoch),
        "step": None if step is None else int(step),
        "model": {"keys": list(tensors)},
        "optimizer": None,
        "scheduler": None,
    }
    if optimizer is not None:
        sd = optimizer.state_dict()
        state: dict[str, Any] = {}
        for index, entries in sd["state"].items():
            names, values = [], {}
            for name, value in entries.items():
                if isinstance(value, Tensor):
                    value = value.data
                if isinstance(value, np.ndarray):
                    names.append(name)
                    tensors[f"{OPTIM_PREFIX}state.{index}.{name}"] = value
                else:
                    values[name] = value
            state[str(index)] = {"tensors": names, "values": values}
        doc["optimizer"] = {
            "class": type(optimizer).__name__,
            "param_groups": sd["param_groups"],
            "params": param_info(optimizer, model),
            "state": state,
        }
    if scheduler is not None:
        doc["scheduler"] = {"class": type(scheduler).__name__, "state": scheduler.state_dict()}
    doc["rng"] = get_rng_state()
    doc["rng_state"] = rng_state
    doc["extra"] = extra
    try:
        plain = to_jsonable(doc, "checkpoint")
    except TypeError as e:
        raise CheckpointError(f"{path}: cannot save: {e}") from None
    atomic_write_bytes(path, pack(tensors, plain))


# ----------------------------------------------------------------------------------------------
# reading


def _corrupt(path: Any, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: corrupt checkpoint metadata: {what}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_checkpoint(path: PathLike) -> Checkpoint:
    """Read and validate a checkpoint file without loading it into anything.

    Checks the file, the safetensors structure, the format name and version and the checksum;
    raises :class:`CheckpointError` naming the file and the problem.

    Example:
        >>> import tempfile
        >>> from cnnperf import nn
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "m.safetensors"); save_checkpoint(p, nn.Linear(2, 1), epoch=7)
        ...     c = read_checkpoint(p)
        >>> c.epoch, list(c.model_state), c.optimizer_state is None
        (7, ['weight', 'bias'], True)
    """
    path = os.fspath(path)
    doc, tensors = unpack_checkpoint(read_file_bytes(path), path)
    if not isinstance(doc, dict):
        raise _corrupt(path, "the document is not a JSON object")
    epoch, step = doc.get("epoch"), doc.get("step")
    if not _is_count(epoch) or not (step is None or _is_count(step)):
        raise _corrupt(path, f"epoch={epoch!r}, step={step!r} are not non-negative ints")
    keys = (doc.get("model") or {}).get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _corrupt(path, "the model key list is missing")
    expected = set(keys)
    ckpt = Checkpoint(
        path=path,
        version=doc["version"],
        cnnperf_version=doc.get("cnnperf_version"),
        epoch=epoch,
        step=step,
        model_state={k: tensors[k] for k in keys if k in tensors},
        rng=doc.get("rng") or {},
        rng_state=doc.get("rng_state"),
        extra=doc.get("extra"),
    )
    if len(ckpt.model_state) != len(keys):
        missing = [k for k in keys if k not in tensors]
        raise _corrupt(path, f"model tensors {missing} are listed but absent")
    opt = doc.get("optimizer")
    if opt is not None:
        try:
            groups, params, state = opt["param_groups"], opt["params"], opt["state"]
            ckpt.optimizer_class = str(opt["class"])
            ckpt.optimizer_params = list(params)
            full_state: dict[int, dict[str, Any]] = {}
            for index, entry in state.items():
                values = dict(entry["values"])
                for name in entry["tensors"]:
                    key = f"{OPTIM_PREFIX}state.{index}.{name}"
                    values[name] = tensors[key]
                    expected.add(key)
                full_state[int(index)] = values
            ckpt.optimizer_state = {"state": full_state, "param_groups": list(groups)}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise _corrupt(path, f"malformed optimizer state ({type(e).__name__}: {e})") from e
    sched = doc.get("scheduler")
    if sched is not None:
        if not isinstance(sched, dict) or not isinstance(sched.get("state"), dict):
            raise _corrupt(path, "malformed scheduler state")
        ckpt.scheduler_class = str(sched.get("class"))
        ckpt.scheduler_state = sched["state"]
    stray = sorted(set(tensors) - expected)
    if stray:
        raise _corrupt(path, f"tensors {stray} are not described by the metadata")
    return ckpt


# ----------------------------------------------------------------------------------------------
# loading


def load_checkpoint(
    path: PathLike | Checkpoint,
    model: Module,
    optimizer: Optimizer | None = None,
    scheduler: Any = None,
    *,
    strict: bool = True,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``, ``scheduler``): all or nothing.

    Everything is checked first: the file (readable, a safetensors file, a cnnperf checkpoint
    of a known format version, matching checksum), the model's keys (all of them when
    ``strict``), shapes and dtypes (equal), the optimizer's class, groups, parameters (each
    the same model key, shape and dtype as when saved) and state, the scheduler's class and
    entries, and the RNG state. Any problem raises one :class:`CheckpointError` that names the
    file and lists the problems; then nothing has changed.

    Args:
        path: the checkpoint file, or a :class:`Checkpoint` from :func:`read_checkpoint`.
        model: receives the weights and buffers.
        optimizer: receives the optimizer state (the checkpoint must hold one); None skips it.
        scheduler: receives the scheduler state (the checkpoint must hold one); None skips it.
        strict: require the model's keys to equal the checkpoint's (else load the common ones).
        restore_rng: restore cnnperf's global generator (dropout, default initialisation).

    Returns:
        ``{"epoch", "step", "rng_state", "extra", "missing_keys", "unexpected_keys",
        "version", "cnnperf_version"}``: what was saved, and the model keys that were absent
        from the checkpoint and ignored in it (both empty when strict).

    Example:
        >>> import tempfile
        >>> from cnnperf import nn
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "m.safetensors"); save_checkpoint(p, nn.Linear(2, 1), epoch=1)
        ...     load_checkpoint(p, nn.Linear(3, 1))
        Traceback (most recent call last):
        ...
        cnnperf.training.CheckpointError: .../m.safetensors: the checkpoint does not match \
(nothing was loaded):
          size mismatch for weight: shape (1, 2) in the checkpoint, (1, 3) in the model
    """
    ckpt = path if isinstance(path, Checkpoint) else read_checkpoint(path)
    problems = model_problems(ckpt, model, strict)
    if optimizer is not None:
        problems += optimizer_problems(ckpt, optimizer, model)
    if scheduler is not None:
        problems += scheduler_problems(ckpt, scheduler, optimizer)
    if restore_rng:
        state = ckpt.rng.get("autograd")
        if state is None:
            problems.append("the checkpoint holds no autograd RNG state: pass restore_rng=False")
        else:
            try:
                check_generator_state(default_generator(), state, "autograd RNG state")
            except ValueError as e:
                problems.append(str(e))
    if problems:
        raise CheckpointError(
            f"{ckpt.path}: the checkpoint does not match (nothing was loaded):\n  "
            + "\n  ".join(problems)
        )
    _apply(ckpt, model, optimizer, scheduler, strict, restore_rng)
    keys = list(model.state_dict(keep_vars=True))
    missing = [k for k in keys if k not in ckpt.model_state]
    unexpected = sorted(set(ckpt.model_state) - set(keys), key=list(ckpt.model_state).index)
    return {
        "epoch": ckpt.epoch,
        "step": ckpt.step,
        "rng_state": ckpt.rng_state,
        "extra": ckpt.extra,
        "missing_keys": missing,
        "unexpected_keys": unexpected,
        "version": ckpt.version,
        "cnnperf_version": ckpt.cnnperf_version,
    }


def _apply(
    ckpt: Checkpoint,
    model: Module,
    optimizer: Optimizer | None,
    scheduler: Any,
    strict: bool,
    restore_rng: bool,
) -> None:
    """Copy the checked state in; on any failure put the previous state back and re-raise."""
    before = (
        model.state_dict(),
        None if optimizer is None else optimizer.state_dict(),
        None if scheduler is None else scheduler.state_dict(),
        get_rng_state(),
    )
    try:
        model.load_state_dict(ckpt.model_state, strict=strict)
        if optimizer is not None:
            optimizer.load_state_dict(ckpt.optimizer_state)
        if scheduler is not None:
            scheduler.load_state_dict(ckpt.scheduler_state)
        if restore_rng:
            set_rng_state(ckpt.rng)
    except BaseException as e:
        model.load_state_dict(before[0])
        if optimizer is not None:
            optimizer.load_state_dict(before[1])
        if scheduler is not None:
            scheduler.load_state_dict(before[2])
        set_rng_state(before[3])
        if isinstance(e, Exception):
            raise CheckpointError(
                f"{ckpt.path}: loading failed ({type(e).__name__}: {e}); the model, optimizer "
                f"and scheduler keep their previous state"
            ) from e
        raise
