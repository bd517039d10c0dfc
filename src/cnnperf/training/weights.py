"""Weights files from PyTorch (or anywhere): ``.safetensors`` and ``.npz`` to ``{key: ndarray}``.

Export a PyTorch model's weights with either of

.. code-block:: python

    safetensors.torch.save_file(torch_model.state_dict(), "weights.safetensors")
    np.savez("weights.npz", **{k: v.numpy() for k, v in torch_model.state_dict().items()})

and load them into the same cnnperf architecture (its ``state_dict`` keys are PyTorch's):
``model.load_state_dict(load_state_dict_file("weights.safetensors"))``. Pickles (``.pt``,
``.pth``) are refused: unpickling runs arbitrary code.

>>> import os, tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     p = os.path.join(d, "w.npz"); np.savez(p, **{"0.weight": np.ones((2, 3), np.float32)})
...     {k: v.shape for k, v in load_state_dict_file(p).items()}
{'0.weight': (2, 3)}
"""

from __future__ import annotations

import io
import os

import numpy as np

from ._format import CheckpointError, parse_safetensors, read_file_bytes, unpack_checkpoint

__all__ = ["load_state_dict_file"]

_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_ZIP_MAGIC = b"PK\x03\x04"


def _pickle_error(path: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: PyTorch pickle files are not read (unpickling runs arbitrary code); "
        f"export the state_dict with safetensors.torch.save_file(model.state_dict(), "
        f"'weights.safetensors') or np.savez('weights.npz', **{{k: v.numpy() for k, v in "
        f"model.state_dict().items()}})"
    )


def _load_npz(data: bytes, path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            if any(key.endswith("data.pkl") for key in f.files):  # torch.save's zip format
                raise _pickle_error(path)
            return {key: f[key] for key in f.files}
    except CheckpointError:
        raise
    except Exception as e:  # BadZipFile, a pickled (object) array, a corrupt member
        raise CheckpointError(f"{path}: cannot read the .npz file: {type(e).__name__}: {e}") from e


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The ``{key: ndarray}`` state dictionary stored in a ``.safetensors`` or ``.npz`` file.

    The format is recognised from the content (a zip archive is ``.npz``, anything else must
    be safetensors). For a cnnperf checkpoint (see :mod:`cnnperf.training.checkpoint`), the
    checksum is verified and only the model's weights are returned, without optimizer state.

    Args:
        path: the file.

    Returns:
        key -> ndarray, for ``model.load_state_dict`` (which checks keys, shapes and dtypes).

    Raises:
        CheckpointError: the file is unreadable, empty, truncated, corrupt, a pickle, or holds
            a dtype NumPy lacks (bfloat16: convert with ``.float()`` before exporting).

    Example:
        >>> load_state_dict_file("model.pth")
        Traceback (most recent call last):
        ...
        cnnperf.training.CheckpointError: model.pth: PyTorch pickle files are not \
read (unpickling runs arbitrary code); export the state_dict with \
safetensors.torch.save_file(model.state_dict(), 'weights.safetensors') or \
np.savez('weights.npz', **{k: v.numpy() for k, v in model.state_dict().items()})
    """
    name = os.fspath(path)
    if name.lower().endswith(_PICKLE_SUFFIXES):
        raise _pickle_error(name)
    data = read_file_bytes(name)
    if data.startswith(_ZIP_MAGIC):
        return _load_npz(data, name)
    if name.lower().endswith(".npz"):
        raise CheckpointError(f"{name}: not a .npz file (no zip signature): truncated or corrupt")
    metadata, tensors = parse_safetensors(data, name)
    if "cnnperf.checkpoint" in metadata:
        doc, tensors = unpack_checkpoint(data, name)
        return {key: tensors[key] for key in doc["model"]["keys"]}
    return tensors
