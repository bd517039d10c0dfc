"""Training support: atomic, resumable checkpoints, PyTorch weight files, a training loop.

- :func:`save_checkpoint` / :func:`load_checkpoint`: model, optimizer, scheduler, epoch and RNG
  state in one safetensors file, written atomically and loaded all or nothing
  (:mod:`cnnperf.training.checkpoint` describes the format).
- :func:`load_state_dict_file`: a PyTorch ``state_dict`` exported as ``.safetensors`` or
  ``.npz``, for ``model.load_state_dict``.
- :func:`train_epoch` / :func:`fit`: a loop that stops on a NaN or infinite loss
  (:class:`NonFiniteLossError`) and resumes bit for bit from its checkpoint.
- :func:`build_model` / :data:`MODELS`: named architectures (``lenet``, ``vgg_small``,
  ``resnet_small``) for any image size from 8x8, seeded (:mod:`cnnperf.training.models`).
- :func:`save_model` / :func:`load_model` / :func:`predict`: a trained model in one
  safetensors file (PyTorch keys plus what rebuilds the architecture and its normalisation),
  loaded back for inference (:mod:`cnnperf.training.saved_model`).
- :class:`TrainConfig` / :func:`run_training`: what ``cnnperf train`` runs: data, model,
  optimizer, schedule, validation and a checkpoint per epoch (:mod:`cnnperf.training.trainer`).

``import cnnperf`` does not import this package (nor ``safetensors``): import it explicitly.

>>> import os, tempfile
>>> from cnnperf import nn, optim
>>> from cnnperf.training import save_checkpoint, load_checkpoint
>>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
>>> opt = optim.Adam(model.parameters(), lr=1e-3)
>>> with tempfile.TemporaryDirectory() as d:
...     path = os.path.join(d, "epoch1.safetensors")
...     save_checkpoint(path, model, opt, epoch=1, step=10)
...     load_checkpoint(path, model, opt)["step"]
10
"""

from __future__ import annotations

from ._format import FORMAT_NAME, FORMAT_VERSION, CheckpointError
from .checkpoint import Checkpoint, load_checkpoint, read_checkpoint, save_checkpoint
from .loop import EpochResult, FitResult, NonFiniteLossError, fit, train_epoch
from .models import MODELS, build_model, count_parameters
from .rng import generator_state, get_rng_state, set_generator_state, set_rng_state
from .saved_model import load_model, predict, read_model_info, save_model
from .trainer import TrainConfig, TrainResult, run_training
from .weights import load_state_dict_file

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "save_checkpoint",
    "read_checkpoint",
    "load_checkpoint",
    "load_state_dict_file",
    "NonFiniteLossError",
    "EpochResult",
    "FitResult",
    "train_epoch",
    "fit",
    "generator_state",
    "set_generator_state",
    "get_rng_state",
    "set_rng_state",
    "MODELS",
    "build_model",
    "count_parameters",
    "save_model",
    "load_model",
    "read_model_info",
    "predict",
    "TrainConfig",
    "TrainResult",
    "run_training",
]
