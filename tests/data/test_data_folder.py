"""Image folders (one subfolder per class) read with Pillow."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from cnnperf.data import load_image_folder


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "set"
    pictures = {}
    # Class folders named so that sorted order differs from creation order.
    for name, count in (("dog", 2), ("cat", 1), ("bird", 2)):
        for i in range(count):
            array = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
            path = root / name / f"{i}.png"
            save(path, array)
            pictures[path] = array
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "README").write_text("a file at the top is not a class")
    (root / ".hidden").mkdir()
    return root, pictures


def test_load_image_folder_classes_labels_and_pixels(folder):
    root, pictures = folder
    ds = load_image_folder(root)
    assert ds.classes == ["bird", "cat", "dog"]
    assert ds.labels.tolist() == [0, 0, 1, 2, 2]
    assert ds.images.shape == (5, 3, 4, 6) and ds.images.dtype == np.float32
    expected = pictures[root / "bird" / "1.png"].transpose(2, 0, 1)  # (c, h, w)
    np.testing.assert_allclose(ds.images[1] * 255, expected, atol=1e-4)


def test_load_image_folder_grayscale_resize_and_nested(folder):
    root, _ = folder
    save(root / "cat" / "more" / "big.JPG", np.full((9, 9, 3), 200, np.uint8))
    ds = load_image_folder(root, size=(3, 5), grayscale=True)
    assert ds.images.shape == (6, 1, 3, 5) and ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    # A folder's own files come before its subfolders': cat/0.png, then cat/more/big.JPG.
    np.testing.assert_allclose(ds.images[3], 200 / 255, atol=3 / 255)
    assert ds.images.min() >= 0.0 and ds.images.max() <= 1.0
    assert load_image_folder(root, size=2).images.shape[2:] == (2, 2)


def test_load_image_folder_errors(tmp_path, folder):
    root, _ = folder
    save(root / "dog" / "wide.png", np.zeros((4, 7, 3), np.uint8))
    with pytest.raises(ValueError, match=r"wide.png is 4x7 .* is 4x6; pass size=\(h, w\)"):
        load_image_folder(root)
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"cannot read image .*broken.png"):
        load_image_folder(root, size=4)
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*empty holds no images"):
        load_image_folder(root, size=4)
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class folders in"):
        load_image_folder(empty)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"size must be None, a positive int or \(h, w\), got 0"):
        load_image_folder(root, size=0)


def test_load_image_folder_without_pillow_says_how_to_install(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r'pip install "cnnperf\[images\]"'):
        load_image_folder(folder[0])
