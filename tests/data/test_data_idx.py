"""IDX files (MNIST, Fashion-MNIST): the reader's checks and the loaders' file layout."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest

from cnnperf.data import FASHION_MNIST_CLASSES, load_fashion_mnist, load_mnist, read_idx

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


def idx_bytes(array: np.ndarray, code: int | None = None) -> bytes:
    code = CODES[array.dtype.type] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_labels_and_images(tmp_path, gzipped):
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    images = np.arange(5 * 3 * 2, dtype=np.uint8).reshape(5, 3, 2)
    for name, array in (("labels", labels), ("images", images)):
        data = idx_bytes(array)
        # The name says nothing: gzip is detected from the magic bytes.
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if gzipped else data)
        got = read_idx(path)
        assert got.dtype == np.uint8 and got.shape == array.shape
        np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32])
def test_read_idx_big_endian_types_come_back_native(tmp_path, dtype):
    array = np.array([[-2, 7], [300 if dtype != np.int8 else 100, 1]], dtype=dtype)
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(array))
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)
    got[0, 0] = 1  # writable


def read_error(tmp_path, data: bytes, gz: bool = False) -> str:
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_read_idx_rejects_wrong_magic(tmp_path):
    data = idx_bytes(np.zeros(3, np.uint8))
    message = read_error(tmp_path, b"\x01" + data[1:])
    assert "not an IDX file: magic number starts with bytes 0x01 0x00" in message


def test_read_idx_rejects_unknown_type_code(tmp_path):
    message = read_error(tmp_path, idx_bytes(np.zeros(3, np.uint8), code=0x0A))
    assert "unknown IDX type code 0x0a" in message


def test_read_idx_rejects_truncated_payload(tmp_path):
    data = idx_bytes(np.zeros((2, 3, 4), np.uint8))
    message = read_error(tmp_path, data[:-5])
    assert "truncated IDX data: dims (2, 3, 4) of uint8 need 24 bytes" in message
    assert "file has 19" in message


def test_read_idx_rejects_trailing_bytes(tmp_path):
    message = read_error(tmp_path, idx_bytes(np.zeros(4, np.int32)) + b"\0", gz=True)
    assert "trailing bytes" in message and "need 16 bytes" in message


def test_read_idx_rejects_truncated_header_and_tiny_files(tmp_path):
    data = idx_bytes(np.zeros((2, 2), np.uint8))
    assert "truncated IDX header: 2 dimensions need 12 bytes, file has 9" in read_error(
        tmp_path, data[:9]
    )
    assert "shorter than the header" in read_error(tmp_path, b"\0\0")
    assert "0 dimensions" in read_error(tmp_path, b"\0\0\x08\0")


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    message = read_error(tmp_path, packed[: len(packed) // 2])
    assert "corrupt or truncated gzip data" in message


def write_mnist(root, prefix, n, gz, rng, spelling="-"):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    for kind, array, dims in (("images", images, "idx3"), ("labels", labels, "idx1")):
        data = idx_bytes(array)
        path = root / f"{prefix}-{kind}{spelling}{dims}-ubyte{suffix}"
        path.write_bytes(gzip.compress(data) if gz else data)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_train_and_test(tmp_path, gz):
    rng = np.random.default_rng(0)
    train_images, train_labels = write_mnist(tmp_path, "train", 6, gz, rng)
    test_images, _ = write_mnist(tmp_path, "t10k", 3, gz, rng)
    train = load_mnist(tmp_path)
    assert train.images.shape == (6, 1, 28, 28) and train.images.dtype == np.float32
    assert train.labels.dtype == np.int64 and train.classes == [str(i) for i in range(10)]
    np.testing.assert_allclose(train.images[:, 0] * 255, train_images, atol=1e-4)
    np.testing.assert_array_equal(train.labels, train_labels)
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    test = load_mnist(tmp_path, train=False)
    np.testing.assert_allclose(test.images[:, 0] * 255, test_images, atol=1e-4)


def test_load_fashion_mnist_raw_subfolder_and_dot_spelling(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_mnist(raw, "t10k", 2, True, np.random.default_rng(1), spelling=".")
    ds = load_fashion_mnist(tmp_path, train=False)
    assert len(ds) == 2 and ds.classes == FASHION_MNIST_CLASSES


def test_load_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte\\[.gz\\]"):
        load_mnist(tmp_path)
    rng = np.random.default_rng(2)
    write_mnist(tmp_path, "train", 4, False, rng)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="holds 4 images but .* holds 3 labels"):
        load_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(4, 10, np.uint8)))
    with pytest.raises(ValueError, match="label 10 out of range for 10 classes"):
        load_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((4, 1), np.uint8)))
    with pytest.raises(ValueError, match=re.escape("expected uint8 labels of shape (n,)")):
        load_mnist(tmp_path)
