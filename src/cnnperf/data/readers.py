"""Readers for MNIST / Fashion-MNIST (IDX files) and CIFAR-10 (binary version).

Nothing here downloads: point the loaders at files you already have. Files are parsed as raw
bytes and checked (magic numbers, sizes) before any array is built; CIFAR-10 is read from its
binary version only, never unpickled.

>>> import gzip, pathlib, tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     path = pathlib.Path(d) / "labels.idx1-ubyte.gz"
...     _ = path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])))
...     read_idx(path).tolist()
[7, 2, 1]
"""

from __future__ import annotations

import gzip
import os
import pathlib
import zlib

import numpy as np

from .datasets import Dataset

__all__ = [
    "read_idx",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
]

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]

# IDX type codes (http://yann.lecun.com/exdb/mnist/): the data are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

PathLike = str | os.PathLike


def _read_maybe_gzipped(path: pathlib.Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic (whatever the name)."""
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from None


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into an array.

    Gzip is recognised by the file's magic bytes, not its name. The header is checked: two
    zero bytes, a known type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), at least one dimension, and a payload of exactly prod(dims) items. A file
    that breaks any of these raises ``ValueError`` naming the file and the problem.

    Args:
        path: the file to read.

    Returns:
        An array of shape ``dims`` in native byte order (uint8 for MNIST's files).

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = pathlib.Path(d) / "x"
        ...     _ = p.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
        ...     read_idx(p)
        array([[0, 1, 2],
               [3, 4, 5]], dtype=uint8)
    """
    path = pathlib.Path(path)
    data = _read_maybe_gzipped(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(data)} bytes, shorter than the header")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file: magic number starts with bytes "
            f"0x{data[0]:02x} 0x{data[1]:02x}, expected 0x00 0x00"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}; expected one of {known}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header} bytes, file has "
            f"{len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header
    if payload != expected:
        what = "truncated" if payload < expected else "trailing bytes after the"
        raise ValueError(
            f"{path}: {what} IDX data: dims {dims} of {dtype.name} need {expected} bytes after "
            f"the {header}-byte header, file has {payload}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a writable native-order copy


def _find_file(root: pathlib.Path, names: list[str], what: str) -> pathlib.Path:
    for folder in (root, root / "raw"):
        for name in names:
            for candidate in (folder / name, folder / (name + ".gz")):
                if candidate.is_file():
                    return candidate
    tried = ", ".join(f"{n}[.gz]" for n in names)
    raise FileNotFoundError(f"{what}: none of {tried} found in {root} or {root / 'raw'}")


def _load_idx_pair(root: PathLike, train: bool, classes: list[str], what: str) -> Dataset:
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what}: root {root} is not a directory")
    prefix = "train" if train else "t10k"
    images_path = _find_file(
        root, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"], what
    )
    labels_path = _find_file(
        root, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"], what
    )
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (n, h, w), got {images.dtype} "
            f"{images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (n,), got {labels.dtype} {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{what}: {images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= len(classes):
        raise ValueError(
            f"{labels_path}: label {int(labels.max())} out of range for {len(classes)} classes"
        )
    x = images[:, None].astype(np.float32)  # (n, 1, h, w)
    x *= np.float32(1.0 / 255.0)
    return Dataset(x, labels.astype(np.int64), classes)


def load_mnist(root: PathLike, train: bool = True) -> Dataset:
    """MNIST (or any set in its file layout) from the IDX files in ``root``.

    Reads ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (``t10k-...`` when
    ``train=False``), each gzipped (``.gz``) or not; the ``train-images.idx3-ubyte`` spelling
    and a ``root/raw`` subfolder (torchvision's ``MNIST/raw``) are accepted too.

    Shape:
        images (n, 1, 28, 28) float32 in [0, 1] (pixel / 255); labels (n,) int64 in 0..9;
        n = 60,000 (train) or 10,000 (test).

    Raises:
        FileNotFoundError: a file is missing (the message lists the names tried).
        ValueError: a file is corrupt, or images and labels disagree.

    Example:
        >>> load_mnist("/no/such/dir")
        Traceback (most recent call last):
        ...
        FileNotFoundError: load_mnist: root /no/such/dir is not a directory
    """
    return _load_idx_pair(root, train, MNIST_CLASSES, "load_mnist")


def load_fashion_mnist(root: PathLike, train: bool = True) -> Dataset:
    """Fashion-MNIST from its IDX files in ``root``: as :func:`load_mnist`, with its class names.

    Example:
        >>> FASHION_MNIST_CLASSES[9]
        'Ankle boot'
    """
    return _load_idx_pair(root, train, FASHION_MNIST_CLASSES, "load_fashion_mnist")


_CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte, then the red, green and blue 32x32 planes


def _cifar_classes(folder: pathlib.Path) -> list[str]:
    meta = folder / "batches.meta.txt"
    if meta.is_file():
        names = [line.strip() for line in meta.read_text().splitlines() if line.strip()]
        if len(names) == 10:
            return names
    return list(CIFAR10_CLASSES)


def load_cifar10(root: PathLike, train: bool = True) -> Dataset:
    """CIFAR-10 from its binary version (``cifar-10-binary.tar.gz``, extracted) in ``root``.

    Reads ``data_batch_1.bin`` .. ``data_batch_5.bin`` (train) or ``test_batch.bin``, from
    ``root`` or ``root/cifar-10-batches-bin``. Each record is 1 label byte and 3,072 pixel bytes
    (red, green, blue planes of 32x32, row-major); a file whose size is not a whole number of
    records, or a label above 9, raises ``ValueError``. The Python version (pickled batches) is
    refused: unpickling runs code from the file. Class names come from ``batches.meta.txt``
    when present.

    Shape:
        images (n, 3, 32, 32) float32 in [0, 1] (pixel / 255); labels (n,) int64 in 0..9;
        n = 50,000 (train) or 10,000 (test).

    Example:
        >>> CIFAR10_CLASSES[:3]
        ['airplane', 'automobile', 'bird']
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"load_cifar10: root {root} is not a directory")
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    folder = root
    if not (root / names[0]).is_file() and (root / "cifar-10-batches-bin").is_dir():
        folder = root / "cifar-10-batches-bin"
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        hint = ""
        pickled = [root / "cifar-10-batches-py", root / "data_batch_1", root / "test_batch"]
        if any(p.exists() for p in pickled):
            hint = (
                "; found the Python (pickled) version, which cnnperf never unpickles: use the "
                "binary version, cifar-10-binary.tar.gz"
            )
        raise FileNotFoundError(f"load_cifar10: missing {', '.join(missing)} in {folder}{hint}")
    images, labels = [], []
    for name in names:
        path = folder / name
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % _CIFAR_RECORD:
            raise ValueError(
                f"{path}: size {raw.size} bytes is not a positive multiple of the "
                f"{_CIFAR_RECORD}-byte CIFAR-10 record (1 label + 3072 pixels)"
            )
        records = raw.reshape(-1, _CIFAR_RECORD)  # (n, 3073)
        label = records[:, 0]
        if int(label.max()) > 9:
            bad = int(np.flatnonzero(label > 9)[0])
            raise ValueError(
                f"{path}: record {bad} has label {int(label[bad])}, expected 0..9 (is this "
                f"CIFAR-100, whose records carry 2 label bytes?)"
            )
        images.append(records[:, 1:].reshape(-1, 3, 32, 32))  # (n, 3, 32, 32)
        labels.append(label)
    x = np.concatenate(images).astype(np.float32)
    x *= np.float32(1.0 / 255.0)
    y = np.concatenate(labels).astype(np.int64)
    return Dataset(x, y, _cifar_classes(folder))
