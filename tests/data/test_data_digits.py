"""The bundled digits set, Dataset and the seeded train/test split."""

from __future__ import annotations

import numpy as np
import pytest

from cnnperf.data import Dataset, digits_split, load_digits, train_test_split


def test_digits_shape_dtype_range_and_classes():
    ds = load_digits()
    assert len(ds) == 1797
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == np.float32
    assert ds.labels.shape == (1797,) and ds.labels.dtype == np.int64
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    # Pixel counts 0..16 divided by 16: every value is a multiple of 1/16.
    np.testing.assert_array_equal(ds.images * 16, np.round(ds.images * 16))
    assert ds.classes == [str(i) for i in range(10)]
    counts = ds.class_counts()
    assert counts.sum() == 1797 and counts.min() >= 170 and counts.max() <= 190
    assert counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_first_image_is_a_zero():
    ds = load_digits()
    image, label = ds[0]
    assert label == 0 and image.shape == (1, 8, 8)
    # The first row of the file, row 1 of the image: 0,0,13,15,10,15,5,0 (divided by 16).
    np.testing.assert_array_equal(image[0, 1] * 16, [0, 0, 13, 15, 10, 15, 5, 0])


def test_load_digits_returns_independent_copies():
    a = load_digits()
    a.images[:] = 5.0
    assert load_digits().images.max() == 1.0


def test_digits_split_is_deterministic_stratified_and_disjoint():
    train, test = digits_split(test_fraction=0.2, seed=0)
    again_train, again_test = digits_split(test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(train.images, again_train.images)
    np.testing.assert_array_equal(test.labels, again_test.labels)
    assert len(train) + len(test) == 1797 and len(test) == 359
    # Stratified: each class contributes round(count * 0.2) test images.
    expected = np.round(load_digits().class_counts() * 0.2).astype(int)
    np.testing.assert_array_equal(test.class_counts(), expected)
    # Disjoint and complete: the images (as bytes) of both parts make up the whole set.
    all_rows = sorted(x.tobytes() + bytes([y]) for x, y in load_digits())
    parts = sorted(x.tobytes() + bytes([y]) for part in (train, test) for x, y in part)
    assert parts == all_rows
    other_train, _ = digits_split(test_fraction=0.2, seed=1)
    assert not np.array_equal(other_train.labels, train.labels)


def test_train_test_split_unstratified_and_errors():
    ds = Dataset(np.zeros((10, 1), np.float32), np.array([0] * 9 + [1]))
    train, test = train_test_split(ds, test_fraction=0.3, seed=2, stratify=False)
    assert (len(train), len(test)) == (7, 3)
    with pytest.raises(ValueError, match=r"test_fraction must be a number in \(0, 1\), got 1.5"):
        train_test_split(ds, test_fraction=1.5)
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        train_test_split(ds, seed=-1)
    with pytest.raises(ValueError, match="leaves 0 test and 10 train samples"):
        train_test_split(ds, test_fraction=0.01)


def test_dataset_indexing_and_subset():
    ds = Dataset(np.arange(8, dtype=np.float64).reshape(4, 1, 1, 2), [1, 0, 2, 1], list("abc"))
    assert ds.images.dtype == np.float32 and ds.num_classes == 3
    image, label = ds[-1]
    assert label == 1 and image.tolist() == [[[6.0, 7.0]]]
    sub = ds[np.array([2, 0])]
    assert isinstance(sub, Dataset) and sub.labels.tolist() == [2, 1] and sub.classes == list("abc")
    assert ds[ds.labels == 1].labels.tolist() == [1, 1]
    assert len(ds[:0]) == 0
    with pytest.raises(IndexError, match="index 4 out of range for 4 samples"):
        ds[4]
    assert "Dataset(images=(4, 1, 1, 2) float32" in repr(ds)


@pytest.mark.parametrize(
    ("images", "labels", "classes", "message"),
    [
        (np.zeros((3, 1, 2, 2)), np.zeros(2, int), None, "got 3 images .* but 2 labels"),
        (np.zeros(3), np.zeros(3, int), None, r"at least 2 dims, got shape \(3,\)"),
        (np.zeros((2, 1), np.uint8), np.zeros(2, int), None, "floating point, got dtype uint8"),
        (np.zeros((2, 1)), np.zeros((2, 3), int), None, r"labels must have shape \(n,\)"),
        (np.zeros((2, 1)), np.array([0.0, 1.0]), None, "labels must be integers"),
        (np.zeros((2, 1)), np.array([0, 3]), ["a", "b"], r"\[0, 2\) .* in \[0, 3\]"),
        (np.zeros((2, 1)), np.array([-1, 0]), None, r"in \[-1, 0\]"),
        (np.zeros((2, 1)), np.array([0, 1]), ["a", "a"], "unique"),
    ],
)
def test_dataset_errors_name_the_values(images, labels, classes, message):
    with pytest.raises(ValueError, match=message):
        Dataset(images, labels, classes)
