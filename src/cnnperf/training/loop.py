"""A minimal training loop: one epoch (:func:`train_epoch`) and a resumable run (:func:`fit`).

:func:`train_epoch` runs ``zero_grad``, forward, loss, ``backward`` and ``optimizer.step`` per
batch and stops with :class:`NonFiniteLossError` at the first NaN or infinite loss, before that
loss touches the model. :func:`fit` adds epochs, a learning-rate scheduler and a
checkpoint written after every epoch; with ``resume=True`` it continues from that checkpoint
and, given the same data, produces the same losses and weights, bit for bit, as a run that was
never interrupted (the checkpoint holds the model, optimizer, scheduler, the global dropout
generator, the states of the ``generators`` the data come from and the loss history). A
non-finite loss never overwrites the last good checkpoint.

>>> from cnnperf import nn, optim
>>> from cnnperf.autograd import manual_seed
>>> _ = manual_seed(0)
>>> model = nn.Linear(2, 1); opt = optim.SGD(model.parameters(), lr=0.1)
>>> x, y = np.ones((4, 2), np.float32), np.zeros((4, 1), np.float32)
>>> result = fit(model, opt, nn.functional.mse_loss, lambda epoch: [(x, y)] * 2, epochs=3)
>>> len(result.losses), len(result.losses[0]), result.step
(3, 2, 6)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..nn.module import Module
from ..optim.optimizer import Optimizer
from ._format import CheckpointError
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .rng import check_generator_state, generator_state, set_generator_state

__all__ = ["NonFiniteLossError", "EpochResult", "FitResult", "train_epoch", "fit"]

LossFn = Callable[[Any, Any], Any]


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss and stopped before applying its gradients.

    Attributes:
        loss: the loss value (nan, inf or -inf).
        epoch: the epoch (0-based) being trained.
        batch: the batch (0-based) within that epoch.
        step: the number of optimizer steps taken before this batch.
        last_checkpoint: the checkpoint file left intact (None when there is none).
        last_checkpoint_epoch: the number of completed epochs that checkpoint holds.

    Example:
        >>> str(NonFiniteLossError(float("nan"), epoch=2, batch=1, step=9))
        'training stopped: the loss is nan at epoch 2, batch 1 (step 9); the model and \
optimizer were left as before this batch and no checkpoint was written'
    """

    def __init__(
        self,
        loss: float,
        epoch: int,
        batch: int,
        step: int,
        last_checkpoint: str | None = None,
        last_checkpoint_epoch: int | None = None,
    ) -> None:
        self.loss, self.epoch, self.batch, self.step = loss, epoch, batch, step
        self.last_checkpoint = last_checkpoint
        self.last_checkpoint_epoch = last_checkpoint_epoch
        msg = (
            f"training stopped: the loss is {loss} at epoch {epoch}, batch {batch} (step "
            f"{step}); the model and optimizer were left as before this batch"
        )
        if last_checkpoint is None:
            msg += " and no checkpoint was written"
        else:
            msg += (
                f"; the last good checkpoint ({last_checkpoint_epoch} epochs completed) is "
                f"kept at {last_checkpoint}"
            )
        super().__init__(msg)

    def __reduce__(self):  # picklable despite the keyword-rich constructor
        args = (self.loss, self.epoch, self.batch, self.step)
        return (type(self), args + (self.last_checkpoint, self.last_checkpoint_epoch))


NonFiniteLossError.__module__ = "cnnperf.training"  # its public home, in tracebacks and pickles


@dataclass
class EpochResult:
    """What :func:`train_epoch` returns: the batch losses and the new optimizer-step count."""

    losses: list[float]
    step: int


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        losses: per epoch, the loss of every batch (including epochs run before a resume).
        step: the number of optimizer steps taken in total.
        start_epoch: the epoch this call started at (0, or the resumed checkpoint's epoch).
    """

    losses: list[list[float]]
    step: int
    start_epoch: int


def _buffers_before(model: Module) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, live array, copy) of every buffer: a forward pass updates some (batch norm)."""
    return [(name, arr, arr.copy()) for name, arr in model.named_buffers()]


def _restore_buffers(model: Module, saved: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    for name, arr, copy in saved:
        path, _, attr = name.rpartition(".")
        owner = model.get_submodule(path)
        if getattr(owner, attr) is arr:
            np.copyto(arr, copy)
        else:  # the module replaced the array instead of updating it
            setattr(owner, attr, copy)


def _loss_value(loss: Any) -> float:
    data = np.asarray(getattr(loss, "data", loss))
    if data.size != 1:
        raise ValueError(f"train_epoch: the loss must be a scalar, got shape {data.shape}")
    return float(data.reshape(()))


def train_epoch(
    model: Module,
    batches: Iterable[tuple[Any, Any]],
    optimizer: Optimizer,
    loss_fn: LossFn,
    *,
    epoch: int = 0,
    step: int = 0,
    batch_scheduler: Any = None,
) -> EpochResult:
    """Train ``model`` for one pass over ``batches`` in training mode.

    Per batch ``(input, target)``: ``optimizer.zero_grad()``, ``loss = loss_fn(model(input),
    target)``, a finiteness check, ``loss.backward()``, ``optimizer.step()`` and
    ``batch_scheduler.step()`` (for per-batch schedules such as ``OneCycleLR``). A non-finite
    loss stops the epoch before ``backward``, and the buffers the forward pass updated (batch
    norm's running statistics) are put back, so the model is as it was before that batch
    (the buffers are copied before each batch for this: they are small).

    Args:
        model: the module (switched to training mode).
        batches: iterable of ``(input, target)`` pairs.
        optimizer: steps once per batch.
        loss_fn: ``(output, target) -> scalar Tensor``, e.g. ``nn.functional.cross_entropy``.
        epoch: the epoch number, for error messages.
        step: optimizer steps taken before this epoch (the returned count continues it).
        batch_scheduler: a scheduler stepped after every optimizer step, or None.

    Raises:
        NonFiniteLossError: a loss was NaN or infinite (its gradients were not applied).

    Example:
        >>> from cnnperf import nn, optim
        >>> m = nn.Linear(1, 1); opt = optim.SGD(m.parameters(), lr=0.1)
        >>> bad = [(np.ones((1, 1), np.float32), np.full((1, 1), np.inf, np.float32))]
        >>> train_epoch(m, bad, opt, nn.functional.mse_loss, epoch=4, step=20)
        Traceback (most recent call last):
        ...
        cnnperf.training.NonFiniteLossError: training stopped: the loss is inf at epoch \
4, batch 0 (step 20); the model and optimizer were left as before this batch and no \
checkpoint was written
    """
    model.train()
    losses: list[float] = []
    for batch, (inputs, target) in enumerate(batches):
        optimizer.zero_grad()
        buffers = _buffers_before(model)
        loss = loss_fn(model(inputs), target)
        value = _loss_value(loss)
        if not math.isfinite(value):
            _restore_buffers(model, buffers)
            raise NonFiniteLossError(value, epoch=epoch, batch=batch, step=step)
        loss.backward()
        optimizer.step()
        if batch_scheduler is not None:
            batch_scheduler.step()
        losses.append(value)
        step += 1
    return EpochResult(losses, step)


def fit(
    model: Module,
    optimizer: Optimizer,
    loss_fn: LossFn,
    batches: Callable[[int], Iterable[tuple[Any, Any]]],
    *,
    epochs: int,
    scheduler: Any = None,
    scheduler_interval: str = "epoch",
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    generators: Mapping[str, np.random.Generator] | None = None,
) -> FitResult:
    """Train for ``epochs`` epochs, checkpointing after each; optionally resume a stopped run.

    Args:
        model, optimizer, loss_fn: as in :func:`train_epoch`.
        batches: ``batches(epoch)`` returns that epoch's ``(input, target)`` pairs; draw any
            randomness (shuffling, augmentation) from ``generators`` so a resume replays it.
        epochs: the total number of epochs (a resumed run stops at the same total).
        scheduler: a learning-rate scheduler, or None.
        scheduler_interval: ``"epoch"`` (step the scheduler after each epoch) or ``"batch"``.
        checkpoint: the checkpoint file written (atomically) after every epoch, or None.
        resume: continue from ``checkpoint`` when it exists (all or nothing: a checkpoint that
            does not fit raises :class:`~cnnperf.training.CheckpointError` before any change).
        generators: name -> generator whose states are saved in and restored from the
            checkpoint (the global dropout generator is always included).

    Raises:
        NonFiniteLossError: a NaN or infinite loss; the checkpoint of the last completed epoch
            is left as it was, and the error names it.

    Example:
        >>> import tempfile
        >>> from cnnperf import nn, optim
        >>> def run(path):
        ...     m = nn.Linear(1, 1); opt = optim.SGD(m.parameters(), lr=0.1)
        ...     data = lambda epoch: [(np.ones((2, 1), np.float32), np.zeros((2, 1), np.float32))]
        ...     return fit(m, opt, nn.functional.mse_loss, data, epochs=2, checkpoint=path,
        ...                resume=True)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     first = run(os.path.join(d, "c.safetensors"))
        ...     again = run(os.path.join(d, "c.safetensors"))  # finds 2 epochs done: no work
        >>> again.start_epoch, again.losses == first.losses
        (2, True)
    """
    if scheduler_interval not in ("epoch", "batch"):
        raise ValueError(
            f"fit: scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}"
        )
    gens = dict(generators or {})
    path = None if checkpoint is None else os.fspath(checkpoint)
    start, step, history = 0, 0, []
    saved_epoch: int | None = None  # the epochs completed in the checkpoint at ``path``
    if resume and path is not None and os.path.exists(path):
        ckpt = read_checkpoint(path)
        saved = ckpt.rng_state.get("generators", {}) if isinstance(ckpt.rng_state, dict) else {}
        problems = []
        for name, gen in gens.items():
            try:
                if name not in saved:
                    raise ValueError(f"no state for generator {name!r}")
                check_generator_state(gen, saved[name], f"generator {name!r}")
            except ValueError as e:
                problems.append(str(e))
        if problems:
            raise CheckpointError(
                f"{path}: the checkpoint does not match (nothing was loaded):\n  "
                + "\n  ".join(problems)
            )
        info = load_checkpoint(ckpt, model, optimizer, scheduler)
        for name, gen in gens.items():
            set_generator_state(gen, saved[name])
        start, step = info["epoch"], info["step"] or 0
        history = [list(x) for x in (info["extra"] or {}).get("losses", [])]
        saved_epoch = start
    per_batch = scheduler if scheduler_interval == "batch" else None
    for epoch in range(start, epochs):
        try:
            result = train_epoch(
                model,
                batches(epoch),
                optimizer,
                loss_fn,
                epoch=epoch,
                step=step,
                batch_scheduler=per_batch,
            )
        except NonFiniteLossError as e:
            kept = None if saved_epoch is None else path
            raise NonFiniteLossError(e.loss, e.epoch, e.batch, e.step, kept, saved_epoch) from None
        step = result.step
        history.append(result.losses)
        if scheduler is not None and per_batch is None:
            scheduler.step()
        if path is not None:
            states = {name: generator_state(gen) for name, gen in gens.items()}
            save_checkpoint(
                path,
                model,
                optimizer,
                scheduler,
                epoch=epoch + 1,
                step=step,
                rng_state={"generators": states},
                extra={"losses": history},
            )
            saved_epoch = epoch + 1
    return FitResult(history, step, start)
