"""CIFAR-10's binary version: records, layout, validation (and no unpickling)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnperf.data import CIFAR10_CLASSES, load_cifar10


def write_batch(path, n, rng, label_max=9):
    labels = rng.integers(0, label_max + 1, size=n, dtype=np.uint8)
    pixels = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1)  # (n, 3073)
    path.write_bytes(records.tobytes())
    return pixels, labels


def test_load_cifar10_test_batch(tmp_path):
    pixels, labels = write_batch(tmp_path / "test_batch.bin", 3, np.random.default_rng(0))
    ds = load_cifar10(tmp_path, train=False)
    assert ds.images.shape == (3, 3, 32, 32) and ds.images.dtype == np.float32
    assert ds.labels.dtype == np.int64 and ds.classes == CIFAR10_CLASSES
    np.testing.assert_allclose(ds.images * 255, pixels, atol=1e-4)
    np.testing.assert_array_equal(ds.labels, labels)


def test_load_cifar10_train_batches_in_subfolder_with_meta(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(1)
    parts = [write_batch(folder / f"data_batch_{i}.bin", i, rng) for i in range(1, 6)]
    names = [f"class{i}" for i in range(10)]
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    ds = load_cifar10(tmp_path)
    assert len(ds) == 15 and ds.classes == names
    np.testing.assert_array_equal(ds.labels, np.concatenate([labels for _, labels in parts]))
    np.testing.assert_allclose(ds.images[-5:] * 255, parts[-1][0], atol=1e-4)


def test_load_cifar10_rejects_partial_record(tmp_path):
    write_batch(tmp_path / "test_batch.bin", 2, np.random.default_rng(2))
    with open(tmp_path / "test_batch.bin", "ab") as f:
        f.write(b"\0" * 10)
    with pytest.raises(ValueError, match="size 6156 bytes is not a positive multiple of the 3073"):
        load_cifar10(tmp_path, train=False)


def test_load_cifar10_rejects_bad_label(tmp_path):
    write_batch(tmp_path / "test_batch.bin", 4, np.random.default_rng(3), label_max=99)
    with pytest.raises(ValueError, match=r"record \d+ has label \d+, expected 0..9"):
        load_cifar10(tmp_path, train=False)


def test_load_cifar10_missing_files_and_refuses_the_pickled_version(tmp_path):
    write_batch(tmp_path / "data_batch_1.bin", 1, np.random.default_rng(4))
    with pytest.raises(FileNotFoundError, match="missing data_batch_2.bin, .*data_batch_5.bin"):
        load_cifar10(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"\x80\x04 not to be unpickled")
    with pytest.raises(FileNotFoundError, match="never unpickles"):
        load_cifar10(tmp_path, train=False)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_cifar10(tmp_path / "nope")
