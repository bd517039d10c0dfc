"""What ``cnnperf train`` runs: data, model, optimizer and schedule from a :class:`TrainConfig`,
epochs with a validation pass and a checkpoint each, resume, and a stop on a non-finite loss.

:func:`run_training` trains ``config.model`` (:func:`~cnnperf.training.build_model`) on
``config.data`` with cross-entropy, evaluating on the test split after every epoch (the
validation set: the bundled digits' fixed 20% split, or the data set's own test files), and
writes ``<checkpoint_dir>/last.safetensors`` atomically after every epoch
(:func:`~cnnperf.training.save_checkpoint`: model, optimizer, scheduler, the global dropout
generator, the loader's position, the run's configuration and history). With ``resume=True``
it continues from that file, and the run ends exactly as an uninterrupted one: same batches
(the :class:`~cnnperf.data.DataLoader` draws every order and augmentation from the seed and the
epoch number), same weights, same accuracies. A NaN or infinite loss raises
:class:`~cnnperf.training.NonFiniteLossError` naming the last good checkpoint, which stays as it
was.

Images are normalised per channel with the training set's mean and standard deviation (kept in
the checkpoint and in a saved model, so :func:`~cnnperf.training.predict` applies the same).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     config = TrainConfig(model="lenet", epochs=1, limit=128, checkpoint_dir=d)
...     result = run_training(config)
>>> len(result.history), sorted(result.history[0])[:4]
(1, ['epoch', 'images_per_s', 'lr', 'test_accuracy'])
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import data as cdata
from ..autograd.grad_mode import no_grad
from ..autograd.random_state import manual_seed
from ..nn import functional as F
from ..nn.module import Module
from ..optim import SGD, Adam, AdamW, lr_scheduler
from ._format import CheckpointError
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .loop import NonFiniteLossError, train_epoch
from .models import MODELS, build_model, count_parameters

__all__ = [
    "TrainConfig",
    "TrainResult",
    "DATA_KINDS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "CHECKPOINT_NAME",
    "load_data",
    "parse_data_spec",
    "evaluate",
    "TrainingRun",
    "run_training",
]

DATA_KINDS = ("digits", "mnist", "fashion-mnist", "cifar10", "folder")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "cosine", "onecycle")
CHECKPOINT_NAME = "last.safetensors"

# Defaults that depend on the optimizer (used when TrainConfig leaves them None).
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-3, "adam": 0.0, "adamw": 0.01}
# The settings a resumed run must share with its checkpoint (and the epochs, except without a
# schedule: step, cosine and onecycle are shaped by the total).
_RUN_KEYS = (
    "data", "model", "lr", "batch_size", "optimizer", "momentum", "weight_decay",
    "label_smoothing", "scheduler", "seed", "augment", "limit", "image_size",
)  # fmt: skip
_EVAL_BATCH = 500


@dataclass
class TrainConfig:
    """The settings of one training run (``cnnperf train``'s options).

    Attributes:
        data: ``"digits"`` (bundled) or ``"mnist:PATH"``, ``"fashion-mnist:PATH"``,
            ``"cifar10:PATH"``, ``"folder:PATH"`` (see :func:`load_data`).
        model: a :data:`~cnnperf.training.MODELS` name.
        epochs: total epochs (a resumed run stops at the same total).
        lr: learning rate (None: 0.1 for SGD, 1e-3 for Adam and AdamW); OneCycle's peak.
        batch_size: images per step.
        optimizer: "sgd" (with ``momentum``), "adam" or "adamw".
        momentum: SGD's momentum.
        weight_decay: None: 5e-3 for SGD (chosen on the digits; CIFAR-10 recipes use 5e-4),
            0 for Adam, 0.01 for AdamW.
        label_smoothing: the training loss's label smoothing, in [0, 1) (the test loss is
            plain cross-entropy).
        scheduler: "none", "step" (x0.1 at 50% and 75% of the epochs), "cosine" (to 0 over
            the epochs, stepped per epoch) or "onecycle" (per batch, peak ``lr``).
        seed: seeds the weights, the shuffling, augmentation and dropout.
        augment: random crops (padding size/8) and, for 3-channel images, horizontal flips.
        limit: use at most this many training and this many test images (None: all).
        image_size: resize ``folder:`` images to this side (None: keep; they must agree).
        checkpoint_dir: where ``last.safetensors`` is written after every epoch.
        resume: continue from the checkpoint in ``checkpoint_dir`` when there is one.
    """

    data: str = "digits"
    model: str = "resnet_small"
    epochs: int = 15
    lr: float | None = None
    batch_size: int = 64
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float | None = None
    label_smoothing: float = 0.0
    scheduler: str = "onecycle"
    seed: int = 0
    augment: bool = False
    limit: int | None = None
    image_size: int | None = None
    checkpoint_dir: str = "cnnperf-train"
    resume: bool = False

    def resolved(self) -> TrainConfig:
        """A checked copy with the optimizer-dependent defaults filled in (ValueError if bad).

        Example:
            >>> TrainConfig(optimizer="adamw").resolved().weight_decay
            0.01
            >>> TrainConfig(epochs=0).resolved()
            Traceback (most recent call last):
            ...
            ValueError: epochs must be an int >= 1, got 0
        """
        c = dataclasses.replace(self)
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("seed", 0)):
            _check_int(getattr(c, name), name, minimum)
        for name in ("limit", "image_size"):
            if getattr(c, name) is not None:
                _check_int(getattr(c, name), name, 1)
        _choice(c.model, "model", tuple(MODELS))
        _choice(c.optimizer, "optimizer", OPTIMIZERS)
        _choice(c.scheduler, "scheduler", SCHEDULERS)
        parse_data_spec(c.data)
        c.lr = DEFAULT_LR[c.optimizer] if c.lr is None else c.lr
        if c.weight_decay is None:
            c.weight_decay = DEFAULT_WEIGHT_DECAY[c.optimizer]
        for name in ("lr", "momentum", "weight_decay", "label_smoothing"):
            value = getattr(c, name)
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                bound = "> 0" if name == "lr" else ">= 0"
                raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
            setattr(c, name, float(value))
        for name in ("momentum", "label_smoothing"):
            if getattr(c, name) >= 1:
                raise ValueError(f"{name} must be < 1, got {getattr(c, name)!r}")
        return c

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (JSON-able)."""
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What :func:`run_training` returns.

    Attributes:
        model: the trained model (in training mode).
        config: the resolved configuration.
        history: one dict per completed epoch (including epochs before a resume):
            ``epoch`` (1-based), ``lr`` (at the epoch's start), ``train_loss`` (the mean of
            the batch losses), ``train_accuracy`` (over the epoch's images), ``test_loss``,
            ``test_accuracy``, ``time_s`` (training time) and ``images_per_s``.
        preprocess: ``{"mean": [...], "std": [...]}``, the normalisation used.
        classes: the class names.
        checkpoint: the checkpoint file.
        resumed_from: the epochs the checkpoint held when this run resumed (None: a new run).
        num_train, num_test: the sizes of the training and test sets.
        parameters: the model's number of trainable values.
    """

    model: Module
    config: TrainConfig
    history: list[dict[str, Any]]
    preprocess: dict[str, list[float]]
    classes: list[str]
    checkpoint: str
    resumed_from: int | None = None
    num_train: int = 0
    num_test: int = 0
    parameters: int = 0


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(choices)}")


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """``"kind:PATH"`` (or ``"digits"``) as ``(kind, path)``; ValueError naming a bad spec.

    Example:
        >>> parse_data_spec("mnist:/data/mnist"), parse_data_spec("digits")
        (('mnist', '/data/mnist'), ('digits', None))
        >>> parse_data_spec("imagenet:/x")
        Traceback (most recent call last):
        ...
        ValueError: data 'imagenet:/x': unknown kind 'imagenet'; use digits, mnist:PATH, \
fashion-mnist:PATH, cifar10:PATH or folder:PATH
    """
    kind, sep, path = str(spec).partition(":")
    usage = "use digits, mnist:PATH, fashion-mnist:PATH, cifar10:PATH or folder:PATH"
    if kind not in DATA_KINDS:
        raise ValueError(f"data {spec!r}: unknown kind {kind!r}; {usage}")
    if kind == "digits":
        if sep:
            raise ValueError(f"data {spec!r}: the bundled digits take no path; use 'digits'")
        return kind, None
    if not path:
        raise ValueError(f"data {spec!r}: {kind} needs a path ({kind}:PATH)")
    return kind, path


def load_data(
    spec: str, *, limit: int | None = None, image_size: int | None = None
) -> tuple[cdata.Dataset, cdata.Dataset]:
    """The (train, test) datasets a data spec names.

    - ``digits``: the bundled digits, ``digits_split(test_fraction=0.2, seed=0)`` (fixed, so
      the test set never depends on the run's seed);
    - ``mnist:PATH`` / ``fashion-mnist:PATH`` / ``cifar10:PATH``: the training and test files
      in PATH (see :mod:`cnnperf.data`);
    - ``folder:PATH``: ``PATH/train`` and ``PATH/test`` (or ``PATH/val``) image folders when
      both exist, else the class folders in PATH split 80/20 (stratified, seed 0).

    ``limit`` keeps the first ``limit`` samples of each; ``image_size`` resizes folder images.

    Example:
        >>> train, test = load_data("digits", limit=100)
        >>> len(train), len(test), train.images.shape[1:]
        (100, 100, (1, 8, 8))
    """
    kind, path = parse_data_spec(spec)
    if image_size is not None and kind != "folder":
        raise ValueError(f"image_size applies to folder: data only, not {spec!r}")
    if kind == "digits":
        train, test = cdata.digits_split(test_fraction=0.2, seed=0)
    elif kind == "folder":
        root = path
        sub = {name: os.path.join(root, name) for name in ("train", "test", "val")}
        held_out = sub["test"] if os.path.isdir(sub["test"]) else sub["val"]
        if os.path.isdir(sub["train"]) and os.path.isdir(held_out):
            train = cdata.load_image_folder(sub["train"], size=image_size)
            test = cdata.load_image_folder(held_out, size=image_size)
            if test.classes != train.classes:
                raise ValueError(
                    f"data {spec!r}: {held_out} has classes {test.classes} but {sub['train']} "
                    f"has {train.classes}"
                )
        else:
            train, test = cdata.train_test_split(
                cdata.load_image_folder(root, size=image_size), test_fraction=0.2, seed=0
            )
    else:
        loader = {
            "mnist": cdata.load_mnist,
            "fashion-mnist": cdata.load_fashion_mnist,
            "cifar10": cdata.load_cifar10,
        }[kind]
        train, test = loader(path, train=True), loader(path, train=False)
    if limit is not None:
        train, test = train[:limit], test[:limit]
    if train.images.ndim != 4 or train.images.shape[1:] != test.images.shape[1:]:
        raise ValueError(
            f"data {spec!r}: expected images (n, c, h, w) of one shape, got train "
            f"{train.images.shape} and test {test.images.shape}"
        )
    return train, test


def _channel_stats(images: np.ndarray) -> dict[str, list[float]]:
    """Per-channel mean and standard deviation (float64 sums; std floored at 1e-6)."""
    mean = images.mean(axis=(0, 2, 3), dtype=np.float64)
    std = images.std(axis=(0, 2, 3), dtype=np.float64)
    return {"mean": [float(m) for m in mean], "std": [max(float(s), 1e-6) for s in std]}


def _make_optimizer(c: TrainConfig, model: Module):
    params = model.parameters()
    if c.optimizer == "sgd":
        return SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    cls = Adam if c.optimizer == "adam" else AdamW
    return cls(params, lr=c.lr, weight_decay=c.weight_decay)


def _make_scheduler(c: TrainConfig, optimizer, steps_per_epoch: int):
    """(scheduler or None, stepped per batch?)."""
    if c.scheduler == "step":
        milestones = sorted({max(1, c.epochs // 2), max(1, (3 * c.epochs) // 4)})
        return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1), False
    if c.scheduler == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.epochs), False
    if c.scheduler == "onecycle":
        total = c.epochs * steps_per_epoch
        return lr_scheduler.OneCycleLR(optimizer, max_lr=c.lr, total_steps=total), True
    return None, False


def _transform(c: TrainConfig, shape: tuple[int, ...], preprocess: dict[str, list[float]]):
    normalize = cdata.Normalize(preprocess["mean"], preprocess["std"])
    if not c.augment:
        return normalize
    _, channels, h, w = shape
    steps: list[Any] = [cdata.RandomCrop((h, w), padding=max(1, min(h, w) // 8))]
    if channels == 3:
        steps.append(cdata.RandomHorizontalFlip())
    return cdata.Compose([*steps, normalize])


def evaluate(
    model: Module, images: np.ndarray, labels: np.ndarray, normalize: Callable | None = None
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` in eval mode; the mode is restored.

    Example:
        >>> from cnnperf.training import build_model
        >>> loss, acc = evaluate(build_model("lenet", 1, 10, 8), np.zeros((4, 1, 8, 8),
        ...                      np.float32), np.arange(4))
        >>> 0 <= acc <= 1
        True
    """
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        with no_grad():
            for i in range(0, len(labels), _EVAL_BATCH):
                x, y = images[i : i + _EVAL_BATCH], labels[i : i + _EVAL_BATCH]
                x = normalize(x) if normalize is not None else x
                out = model(np.ascontiguousarray(x, dtype=np.float32))
                loss = F.cross_entropy(out, y, reduction="sum")
                total_loss += float(loss.data)
                correct += int((out.data.argmax(axis=1) == y).sum())
    finally:
        model.train(was_training)
    n = max(1, len(labels))
    return total_loss / n, correct / n


def _check_resume(saved: dict[str, Any], c: TrainConfig, epochs_done: int, path: str) -> None:
    problems = []
    for key in _RUN_KEYS:
        if saved.get(key) != getattr(c, key):
            problems.append(f"{key}: {saved.get(key)!r} in the checkpoint, {getattr(c, key)!r} now")
    if c.scheduler != "none" and saved.get("epochs") != c.epochs:
        problems.append(
            f"epochs: {saved.get('epochs')!r} in the checkpoint, {c.epochs!r} now (the "
            f"{c.scheduler} schedule depends on the total)"
        )
    if epochs_done > c.epochs:
        problems.append(f"the checkpoint holds {epochs_done} epochs, more than epochs={c.epochs}")
    if problems:
        raise CheckpointError(
            f"{path}: cannot resume: the run's settings differ from the checkpoint's (start a new "
            f"run without --resume, or use another checkpoint directory):\n  "
            + "\n  ".join(problems)
        )


BatchCallback = Callable[[int, int, int, float, float, float], None]
EpochCallback = Callable[[dict[str, Any]], None]


class TrainingRun:
    """A prepared training run: data, model, optimizer, scheduler, loader, resumed state.

    Construction does everything that can fail on bad settings, data or checkpoints (so a
    command-line front end can report those as usage errors) and nothing slow beyond loading
    the data; :meth:`train` runs the remaining epochs. :func:`run_training` does both.

    Raises:
        ValueError: bad settings or data.
        CheckpointError: ``resume`` with a checkpoint that does not fit the settings (a
            ``ValueError`` too); nothing was loaded.
    """

    def __init__(self, config: TrainConfig, log: Callable[[str], None] | None = None) -> None:
        c = self.config = config.resolved()
        say = log or (lambda message: None)
        train, test = load_data(c.data, limit=c.limit, image_size=c.image_size)
        self.train_set, self.test_set = train, test
        _, channels, h, w = train.images.shape
        bigger = train if len(train.classes) >= len(test.classes) else test
        self.classes = list(bigger.classes)
        self.preprocess = _channel_stats(train.images)
        self.normalize = cdata.Normalize(self.preprocess["mean"], self.preprocess["std"])
        self.model = build_model(c.model, channels, len(self.classes), (h, w), seed=c.seed)
        self.loader = cdata.DataLoader(
            train,
            batch_size=c.batch_size,
            shuffle=True,
            seed=c.seed,
            transform=_transform(c, train.images.shape, self.preprocess),
        )
        self.optimizer = _make_optimizer(c, self.model)
        self.scheduler, self.per_batch = _make_scheduler(c, self.optimizer, len(self.loader))
        os.makedirs(c.checkpoint_dir, exist_ok=True)
        self.path = path = os.path.join(c.checkpoint_dir, CHECKPOINT_NAME)
        self.history: list[dict[str, Any]] = []
        self.start, self.step, self.resumed_from = 0, 0, None
        if c.resume and os.path.exists(path):
            ckpt = read_checkpoint(path)
            extra = ckpt.extra if isinstance(ckpt.extra, dict) else {}
            _check_resume(extra.get("config") or {}, c, ckpt.epoch, path)
            info = load_checkpoint(ckpt, self.model, self.optimizer, self.scheduler)
            self.loader.load_state_dict((info["rng_state"] or {})["loader"])
            self.history = list(extra.get("history") or [])
            self.start, self.step = info["epoch"], info["step"] or 0
            self.resumed_from = info["epoch"]
            say(f"resuming from {path} ({self.start} of {c.epochs} epochs done)")
        else:
            if c.resume:
                say(f"no checkpoint at {path}: starting a new run")
            elif os.path.exists(path):
                say(f"{path} exists and will be replaced (pass --resume to continue that run)")
            manual_seed(c.seed)  # the global generator: dropout masks

    def train(
        self, on_batch: BatchCallback | None = None, on_epoch: EpochCallback | None = None
    ) -> TrainResult:
        """Run the remaining epochs (see :func:`run_training` for the callbacks)."""
        c, model, optimizer, scheduler = self.config, self.model, self.optimizer, self.scheduler
        loader, history, path = self.loader, self.history, self.path
        config_record = c.as_dict()
        for epoch in range(self.start, c.epochs):
            lr = float(optimizer.param_groups[0]["lr"])
            stats = _EpochStats(len(loader), c.label_smoothing)
            t0 = time.perf_counter()
            try:
                result = train_epoch(
                    model,
                    stats.batches(loader, epoch, on_batch, t0),
                    optimizer,
                    stats.loss_fn,
                    epoch=epoch,
                    step=self.step,
                    batch_scheduler=scheduler if self.per_batch else None,
                )
            except NonFiniteLossError as e:
                kept = path if history and os.path.exists(path) else None
                raise NonFiniteLossError(
                    e.loss, e.epoch, e.batch, e.step, kept, len(history) if kept else None
                ) from None
            seconds = time.perf_counter() - t0
            self.step = result.step
            if scheduler is not None and not self.per_batch:
                scheduler.step()
            test_loss, test_acc = evaluate(
                model, self.test_set.images, self.test_set.labels, self.normalize
            )
            record = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": float(np.mean(result.losses)),
                "train_accuracy": stats.correct / max(1, stats.seen),
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "time_s": seconds,
                "images_per_s": stats.seen / seconds if seconds > 0 else 0.0,
            }
            history.append(record)
            save_checkpoint(
                path,
                model,
                optimizer,
                scheduler,
                epoch=epoch + 1,
                step=self.step,
                rng_state={"loader": loader.state_dict()},
                extra={
                    "config": config_record,
                    "history": history,
                    "preprocess": self.preprocess,
                    "classes": self.classes,
                },
            )
            if on_epoch is not None:
                on_epoch(record)
        return TrainResult(
            model=model,
            config=c,
            history=history,
            preprocess=self.preprocess,
            classes=self.classes,
            checkpoint=path,
            resumed_from=self.resumed_from,
            num_train=len(self.train_set),
            num_test=len(self.test_set),
            parameters=count_parameters(model),
        )


def run_training(
    config: TrainConfig,
    *,
    on_batch: BatchCallback | None = None,
    on_epoch: EpochCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train as ``config`` says; return the model and the per-epoch history.

    Args:
        config: the settings (checked; optimizer-dependent defaults filled in).
        on_batch: called after every step as ``on_batch(epoch, batch, batches, loss,
            accuracy, images_per_s)`` (0-based epoch and batch; running means over the epoch).
        on_epoch: called with each epoch's history record, after its checkpoint is written.
        log: receives notes (a resumed or restarted run).

    Raises:
        ValueError: bad settings or data.
        CheckpointError: ``resume`` with a checkpoint that does not fit the settings.
        NonFiniteLossError: a NaN or infinite loss; ``last_checkpoint`` names the checkpoint
            left as it was (None when no epoch completed).
    """
    return TrainingRun(config, log).train(on_batch, on_epoch)


class _EpochStats:
    """Running loss and accuracy of one epoch, fed by the loss function it wraps."""

    def __init__(self, batches: int, label_smoothing: float = 0.0) -> None:
        self.total = batches
        self.label_smoothing = label_smoothing
        self.seen = 0
        self.correct = 0
        self.loss_sum = 0.0
        self.count = 0

    def loss_fn(self, output: Any, target: np.ndarray) -> Any:
        loss = F.cross_entropy(output, target, label_smoothing=self.label_smoothing)
        self.correct += int((output.data.argmax(axis=1) == target).sum())
        self.seen += len(target)
        self.loss_sum += float(loss.data)
        self.count += 1
        return loss

    def batches(
        self, loader: cdata.DataLoader, epoch: int, on_batch: BatchCallback | None, t0: float
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if loader.epoch != epoch:  # pragma: no cover - the loader state and the loop disagree
            raise RuntimeError(f"the data loader stands at epoch {loader.epoch}, not {epoch}")
        for batch, (x, y) in enumerate(loader):
            yield x, y
            # resumed here once the step that used this batch is done
            if on_batch is not None:
                elapsed = time.perf_counter() - t0
                on_batch(
                    epoch,
                    batch,
                    self.total,
                    self.loss_sum / max(1, self.count),
                    self.correct / max(1, self.seen),
                    self.seen / elapsed if elapsed > 0 else 0.0,
                )
