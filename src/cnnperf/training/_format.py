"""The checkpoint container: a safetensors file with one JSON document (and checksum) inside.

Layout of a checkpoint (format ``cnnperf.checkpoint``, version 1):

- tensors: the model's ``state_dict`` under its PyTorch keys (``"0.weight"``, ...), so
  ``safetensors.numpy.load_file`` or ``safetensors.torch.load_file`` read the weights directly;
  the optimizer's per-parameter arrays under ``__optim__.state.<index>.<name>``.
- ``__metadata__["cnnperf.checkpoint"]``, the only metadata entry: a compact JSON document
  (see :mod:`._json`) with the format name and version, epoch, step, the optimizer's groups and
  scalar state, the scheduler's state, RNG states and the caller's extras, and last a
  ``"sha256"``: SHA-256 over the document's text without that entry and, in sorted key order,
  each tensor's key, dtype, shape and little-endian bytes. A flipped byte that still parses is
  caught here. (The reader re-serialises the parsed document to check it, so what is verified
  is exactly what is loaded. One metadata entry, not two, keeps the file's bytes reproducible:
  safetensors writes the metadata map in an arbitrary order.)

>>> import numpy as np
>>> data = pack({"w": np.ones(2, np.float32)}, {"format": "cnnperf.checkpoint", "version": 1})
>>> doc, tensors = unpack_checkpoint(data, "demo.safetensors")
>>> doc["version"], tensors["w"].tolist()
(1, [1.0, 1.0])
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "CheckpointError",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "OPTIM_PREFIX",
    "checksum",
    "pack",
    "read_file_bytes",
    "parse_safetensors",
    "unpack_checkpoint",
]

FORMAT_NAME = "cnnperf.checkpoint"
FORMAT_VERSION = 1
OPTIM_PREFIX = "__optim__."
_META_DOC = "cnnperf.checkpoint"
# safetensors dtypes with a NumPy equivalent (not BF16 or the F8 formats)
_NUMPY_DTYPES = {"BOOL", "U8", "I8", "U16", "I16", "F16", "U32", "I32", "F32", "U64", "I64", "F64"}


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be loaded; the message names the file.

    Raised for unreadable, empty, truncated or corrupt files, a format version from a newer
    cnnperf, and a checkpoint that does not match the model, optimizer or scheduler it is
    loaded into. Whenever it is raised, nothing has been loaded.

    Example:
        >>> issubclass(CheckpointError, ValueError)
        True
    """


CheckpointError.__module__ = "cnnperf.training"  # its public home, in tracebacks and pickles


def checksum(doc_text: str, tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 (hex) of the document text and every tensor (key, dtype, shape, bytes).

    Example:
        >>> len(checksum("{}", {"w": np.zeros(3, np.float32)}))
        64
    """
    h = hashlib.sha256(b"cnnperf.checkpoint\0")
    h.update(doc_text.encode("utf-8"))
    for key in sorted(tensors):
        a = np.asarray(tensors[key])
        le = np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")
        h.update(f"\0{key}\0{le.dtype.str}\0{list(a.shape)}\0".encode())
        h.update(le.reshape(-1).view(np.uint8))
    return h.hexdigest()


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


def pack(tensors: Mapping[str, np.ndarray], doc: Mapping[str, Any]) -> bytes:
    """The bytes of a checkpoint file holding ``tensors`` and the plain-JSON ``doc``.

    Example:
        >>> pack({}, {})[8:9]
        b'{'
    """
    from safetensors.numpy import save

    arrays = {k: np.asarray(v, order="C") for k, v in tensors.items()}  # 0-d stays 0-d
    text = _dumps({**doc, "sha256": checksum(_dumps(doc), arrays)})
    return save(arrays, metadata={_META_DOC: text})


def read_file_bytes(path: str | os.PathLike[str]) -> bytes:
    """The whole file, or CheckpointError naming it (missing, unreadable, empty).

    Example:
        >>> read_file_bytes("/nonexistent/x.safetensors")
        Traceback (most recent call last):
        ...
        cnnperf.training.CheckpointError: /nonexistent/x.safetensors: cannot read \
the file: [Errno 2] No such file or directory...
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        msg = e.strerror or str(e)
        raise CheckpointError(f"{path}: cannot read the file: [Errno {e.errno}] {msg}") from e
    if not data:
        raise CheckpointError(f"{path}: the file is empty (0 bytes)")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def parse_safetensors(data: bytes, path: Any) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """(``__metadata__``, tensors) of a safetensors file's bytes; CheckpointError if malformed.

    Example:
        >>> from safetensors.numpy import save
        >>> meta, t = parse_safetensors(save({"a": np.zeros(1)}, {"k": "v"}), "f")
        >>> meta, t["a"].dtype
        ({'k': 'v'}, dtype('float64'))
    """
    if len(data) < 8:
        raise CheckpointError(
            f"{path}: truncated or not a safetensors file ({len(data)} bytes, shorter than the "
            f"8-byte header length)"
        )
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise CheckpointError(
            f"{path}: truncated or not a safetensors file (its first 8 bytes announce a "
            f"{n}-byte header, but only {len(data) - 8} bytes follow)"
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: not a safetensors file (header is not JSON: {e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: malformed safetensors __metadata__ (not str -> str)")
    for key, entry in header.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if key != "__metadata__" and isinstance(dtype, str) and dtype not in _NUMPY_DTYPES:
            raise CheckpointError(
                f"{path}: tensor {key!r} has dtype {dtype}, which NumPy cannot hold; convert "
                f"the state_dict before exporting it (e.g. {{k: v.float() for k, v in "
                f"sd.items()}})"
            )
    from safetensors.numpy import load

    try:
        tensors = load(data)
    except Exception as e:  # SafetensorError (a bare Exception subclass) or a NumPy error
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file: {e}") from e
    return metadata, tensors


def unpack_checkpoint(data: bytes, path: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(document, tensors) of a checkpoint's bytes, after the format, version and checksum checks.

    Example:
        >>> unpack_checkpoint(b"garbage!" * 4, "g.bin")
        Traceback (most recent call last):
        ...
        cnnperf.training.CheckpointError: g.bin: truncated or not a safetensors file \
(its first 8 bytes announce a ...-byte header, but only 24 bytes follow)
    """
    from ._json import decode

    metadata, tensors = parse_safetensors(data, path)
    doc_text = metadata.get(_META_DOC)
    if doc_text is None:
        raise CheckpointError(
            f"{path}: a safetensors file but not a cnnperf checkpoint (no {_META_DOC!r} "
            f"metadata); load plain weights with cnnperf.training.load_state_dict_file"
        )
    try:
        plain = json.loads(doc_text, parse_constant=_reject_constant)
        name, version = plain["format"], plain["version"]
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(
            f"{path}: corrupt checkpoint metadata (not a JSON document with 'format' and "
            f"'version': {type(e).__name__}: {e})"
        ) from e
    if name != FORMAT_NAME:
        raise CheckpointError(
            f"{path}: unknown checkpoint format {name!r}, expected {FORMAT_NAME!r}"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: invalid checkpoint format version {version!r}")
    stored = plain.pop("sha256", None)
    canonical = _dumps(plain)
    ok = stored is not None and stored == checksum(canonical, tensors)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} was written by a newer cnnperf; "
            f"this cnnperf reads versions up to {FORMAT_VERSION} (upgrade cnnperf)"
            + ("" if ok else ", or the file is corrupt (checksum mismatch)")
        )
    if stored is None:
        raise CheckpointError(f"{path}: corrupt checkpoint: the 'sha256' checksum is missing")
    if not ok:
        raise CheckpointError(
            f"{path}: corrupt checkpoint: checksum mismatch (the tensors or the metadata "
            f"changed after the file was written)"
        )
    try:
        doc = decode(canonical)
    except ValueError as e:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata: {e}") from e
    return doc, tensors
