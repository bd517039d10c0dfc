"""Trained models for inference: one safetensors file with the weights and how to rebuild them.

:func:`save_model` writes a model built by :func:`~cnnperf.training.build_model` (or anything
with an ``arch`` dict naming a :data:`~cnnperf.training.MODELS` entry) to a single safetensors
file, written atomically:

- its tensors are the model's ``state_dict`` under PyTorch's keys (``safetensors.numpy`` or
  ``safetensors.torch.load_file`` read the weights directly);
- ``__metadata__["cnnperf.model"]`` is a JSON document: ``{"format": "cnnperf.model",
  "version": 1, "cnnperf_version", "arch": {"name", "in_channels", "num_classes",
  "input_size", ...options}, "preprocess": {"mean": [...], "std": [...]} or null, "classes":
  [...] or null, "extra": ...}``.

:func:`load_model` rebuilds the architecture, loads the weights (strictly: every key, shape
and dtype) and returns the model in eval mode, with ``model.preprocess`` and ``model.classes``
set from the file. :func:`predict` applies the stored normalisation and returns class indices.

>>> import os, tempfile
>>> from cnnperf.training import build_model
>>> model = build_model("lenet", 1, 10, 8, seed=0)
>>> x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
>>> with tempfile.TemporaryDirectory() as d:
...     path = os.path.join(d, "digits.safetensors")
...     save_model(path, model, preprocess={"mean": [0.3], "std": [0.4]})
...     loaded = load_model(path)
>>> bool((predict(loaded, x) == predict(model, x, preprocess=loaded.preprocess)).all())
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._atomic import atomic_write_bytes
from .._version import __version__
from ..autograd.grad_mode import no_grad
from ..data.transforms import Normalize
from ..nn.module import Module
from ._format import CheckpointError, parse_safetensors, read_file_bytes
from ._json import to_jsonable
from .models import MODELS, input_hw

__all__ = ["MODEL_FORMAT", "save_model", "load_model", "read_model_info", "predict"]

MODEL_FORMAT = "cnnperf.model"
_VERSION = 1

PathLike = str | os.PathLike[str]


def _check_preprocess(preprocess: Any, channels: int | None, where: str) -> dict | None:
    if preprocess is None:
        return None
    try:
        mean = [float(v) for v in preprocess["mean"]]
        std = [float(v) for v in preprocess["std"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{where}: preprocess must be {{'mean': [...], 'std': [...]}} (one float per "
            f"channel), got {preprocess!r} ({type(e).__name__}: {e})"
        ) from None
    n = len(mean)
    if n == 0 or len(std) != n or (channels is not None and n != channels):
        raise ValueError(
            f"{where}: preprocess needs one mean and one std per input channel "
            f"({channels}), got {n} means and {len(std)} stds"
        )
    if not all(np.isfinite(mean)) or not all(s > 0 and np.isfinite(s) for s in std):
        raise ValueError(f"{where}: preprocess means must be finite and stds > 0, got {preprocess}")
    return {"mean": mean, "std": std}


def save_model(
    path: PathLike,
    model: Module,
    *,
    preprocess: Mapping[str, Sequence[float]] | None = None,
    classes: Sequence[str] | None = None,
    extra: Any = None,
) -> None:
    """Write ``model``'s weights and architecture to ``path`` (safetensors), atomically.

    Args:
        path: the file to write (conventionally ``*.safetensors``); its directory must exist.
        model: a model from :func:`~cnnperf.training.build_model` (it has ``model.arch``).
        preprocess: the per-channel normalisation the model was trained with,
            ``{"mean": [...], "std": [...]}`` (applied by :func:`predict`), or None.
        classes: class names, index i naming output i, or None.
        extra: anything JSON-able to keep beside it (training summary, data set name).

    Raises:
        ValueError: ``model`` has no ``arch`` naming a known architecture, or a bad
            ``preprocess`` / ``classes``.
    """
    arch = getattr(model, "arch", None)
    if not isinstance(arch, Mapping) or arch.get("name") not in MODELS:
        raise ValueError(
            f"save_model: {type(model).__name__} has no 'arch' naming one of {list(MODELS)}; "
            f"build it with cnnperf.training.build_model (or save its state_dict yourself)"
        )
    preprocess = _check_preprocess(preprocess, arch.get("in_channels"), "save_model")
    if classes is not None:
        classes = [str(c) for c in classes]
        if len(classes) != arch.get("num_classes"):
            raise ValueError(
                f"save_model: {len(classes)} class names for a model with "
                f"{arch.get('num_classes')} outputs"
            )
    doc = {
        "format": MODEL_FORMAT,
        "version": _VERSION,
        "cnnperf_version": __version__,
        "arch": dict(arch),
        "preprocess": preprocess,
        "classes": classes,
        "extra": extra,
    }
    text = json.dumps(to_jsonable(doc, "save_model"), separators=(",", ":"), allow_nan=False)
    from safetensors.numpy import save

    tensors = {k: np.asarray(v, order="C") for k, v in model.state_dict().items()}  # 0-d stays 0-d
    atomic_write_bytes(path, save(tensors, metadata={MODEL_FORMAT: text}))


def read_model_info(path: PathLike) -> dict[str, Any]:
    """The metadata document of a file written by :func:`save_model` (no model is built).

    Raises:
        CheckpointError: the file is unreadable, not safetensors, or not a cnnperf model file.

    Example:
        >>> read_model_info("/no/such/model.safetensors")
        Traceback (most recent call last):
        ...
        cnnperf.training.CheckpointError: /no/such/model.safetensors: cannot read the file: \
[Errno 2] No such file or directory
    """
    return _read(path)[0]


def _read(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    name = os.fspath(path)
    metadata, tensors = parse_safetensors(read_file_bytes(name), name)
    text = metadata.get(MODEL_FORMAT)
    if text is None:
        hint = (
            "a training checkpoint: rebuild the model and use load_checkpoint"
            if "cnnperf.checkpoint" in metadata
            else "plain weights: rebuild the model and use load_state_dict_file"
        )
        raise CheckpointError(
            f"{name}: not a cnnperf model file (no {MODEL_FORMAT!r} metadata; {hint})"
        )
    try:
        doc = json.loads(text)
        version, arch = doc["version"], doc["arch"]
        ok = doc.get("format") == MODEL_FORMAT and isinstance(arch, dict) and "name" in arch
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{name}: corrupt model metadata ({type(e).__name__}: {e})") from e
    if not ok:
        raise CheckpointError(f"{name}: corrupt model metadata (format or architecture missing)")
    if not isinstance(version, int) or version > _VERSION:
        raise CheckpointError(
            f"{name}: model format version {version!r} is newer than this cnnperf reads "
            f"({_VERSION}); upgrade cnnperf"
        )
    return doc, tensors


def load_model(path: PathLike) -> Module:
    """Rebuild and load a model written by :func:`save_model`; returned in eval mode.

    The returned module also carries ``model.arch`` (the architecture), ``model.preprocess``
    (the normalisation, or None) and ``model.classes`` (class names, or None).

    Raises:
        CheckpointError: the file cannot be read, is not a cnnperf model file, names an unknown
            architecture, or its weights do not fit the architecture (nothing is returned).
    """
    name = os.fspath(path)
    doc, tensors = _read(name)
    arch = dict(doc["arch"])
    model_name = arch.pop("name")
    if model_name not in MODELS:
        raise CheckpointError(
            f"{name}: unknown architecture {model_name!r} (this cnnperf knows {list(MODELS)})"
        )
    try:
        model = MODELS[model_name](
            arch.pop("in_channels"), arch.pop("num_classes"), tuple(arch.pop("input_size")), **arch
        )
        model.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{name}: the weights do not fit architecture {model_name!r}: {e}"
        ) from e
    model.preprocess = doc.get("preprocess")
    model.classes = doc.get("classes")
    return model.eval()


def predict(
    model: Module,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    preprocess: Mapping[str, Sequence[float]] | None = None,
    return_logits: bool = False,
) -> np.ndarray:
    """Class indices (or logits) for ``images`` (n, c, h, w) in [0, 1], in eval mode.

    The images are normalised per channel with ``preprocess`` (default: ``model.preprocess``,
    set by :func:`load_model`; none if absent) and run in batches without recording gradients.
    The model's training/eval mode is restored afterwards.

    Args:
        model: the network.
        images: float array (n, c, h, w), or one image (c, h, w).
        batch_size: images per forward pass.
        preprocess: ``{"mean": [...], "std": [...]}`` overriding ``model.preprocess``.
        return_logits: return the (n, num_classes) float32 outputs instead of argmax indices.

    Shape:
        (n,) int64 class indices, or (n, num_classes) logits.

    Example:
        >>> from cnnperf.training import build_model
        >>> predict(build_model("lenet", 1, 10, 8), np.zeros((3, 1, 8, 8), np.float32)).shape
        (3,)
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"predict: images must be a float array (n, c, h, w), got shape {x.shape} and dtype "
            f"{x.dtype}"
        )
    arch = getattr(model, "arch", None)
    if isinstance(arch, Mapping):
        want = (arch["in_channels"], *input_hw(tuple(arch["input_size"]), "predict"))
        if tuple(x.shape[1:]) != want:
            raise ValueError(
                f"predict: the model takes images of shape (n, {want[0]}, {want[1]}, {want[2]}), "
                f"got {x.shape}"
            )
    prep = preprocess if preprocess is not None else getattr(model, "preprocess", None)
    prep = _check_preprocess(prep, x.shape[1], "predict")
    x = x.astype(np.float32, copy=False)
    if prep is not None:  # the transform the training loader applied: the same arithmetic
        x = Normalize(prep["mean"], prep["std"])(x)
    step = max(1, int(batch_size))
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            outs = [
                model(np.ascontiguousarray(x[i : i + step])).data
                for i in range(0, x.shape[0], step)
            ]
    finally:
        model.train(was_training)
    if not outs:
        raise ValueError(f"predict: no images (shape {x.shape})")
    logits = np.concatenate(outs)  # (n, num_classes)
    return logits if return_logits else logits.argmax(axis=1)
