"""Batch transforms: exact values for flips, crops with padding and normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from cnnperf.data import Compose, Normalize, RandomCrop, RandomHorizontalFlip


def batch(n=4, c=2, h=5, w=6):
    return np.arange(n * c * h * w, dtype=np.float32).reshape(n, c, h, w) + 1.0


def test_flip_really_flips_the_chosen_images_and_leaves_input_alone():
    x = batch(n=64)
    original = x.copy()
    y = RandomHorizontalFlip(p=0.5)(x, np.random.default_rng(0))
    np.testing.assert_array_equal(x, original)
    flipped = [bool(np.array_equal(y[i], x[i, :, :, ::-1])) for i in range(len(x))]
    kept = [bool(np.array_equal(y[i], x[i])) for i in range(len(x))]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # each image one or the other
    assert 16 < sum(flipped) < 48
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0)(x), x)


def test_random_crop_with_padding_keeps_size_and_pads_with_zeros():
    x = batch(n=200, c=1, h=4, w=4)
    y = RandomCrop(4, padding=2)(x, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for i in range(len(x)):
        # Each output is some 4x4 window of the zero-padded image.
        windows = [
            (t, l)
            for t in range(5)
            for l in range(5)
            if np.array_equal(y[i], padded[i, :, t : t + 4, l : l + 4])
        ]
        assert windows, f"image {i} is not a window of the padded input"
        offsets.add(windows[0])
    assert len(offsets) == 25  # every offset drawn, including the all-padding corners' edges
    assert (y == 0).any()  # zeros came from the padding (the input has none)


def test_random_crop_without_padding_and_rectangular_sizes():
    x = batch(n=3, c=2, h=5, w=6)
    y = RandomCrop((3, 6))(x, np.random.default_rng(2))
    assert y.shape == (3, 2, 3, 6)
    for i in range(3):
        assert any(np.array_equal(y[i], x[i, :, t : t + 3]) for t in range(3))
    single = RandomCrop(2, padding=(0, 1))(x[0], np.random.default_rng(3))
    assert single.shape == (2, 2, 2)
    with pytest.raises(ValueError, match=r"crop size \(8, 8\) is larger than the input \(5, 6\)"):
        RandomCrop(8, padding=1)(x)


def test_normalize_math_per_channel():
    x = np.random.default_rng(4).random((3, 2, 4, 4)).astype(np.float32)
    y = Normalize(mean=[0.5, 0.25], std=[0.2, 4.0])(x)
    np.testing.assert_allclose(y[:, 0], (x[:, 0] - 0.5) / 0.2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y[:, 1], (x[:, 1] - 0.25) / 4.0, rtol=1e-6, atol=1e-6)
    assert y.dtype == np.float32
    np.testing.assert_allclose(Normalize(0.5, 0.5)(x), (x - 0.5) / 0.5, atol=1e-6)


def test_compose_draws_from_the_given_rng():
    x = batch(n=8)
    t = Compose([RandomCrop(5, padding=1), RandomHorizontalFlip(), Normalize(1.0, 2.0)])
    a = t(x, np.random.default_rng(5))
    b = t(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert "RandomCrop(size=(5, 5), padding=(1, 1))" in repr(t)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Normalize([0.0, 0.0], [1.0, 0.0]), "std must be positive"),
        (lambda: Normalize([0.0, 0.0], [1.0, 1.0, 1.0]), "mean has 2 values but std has 3"),
        (lambda: RandomCrop(0), "size must be an int >= 1 or a pair of them, got 0"),
        (lambda: RandomCrop(3, padding=-1), "padding must be an int >= 0 .* got -1"),
        (lambda: RandomHorizontalFlip(p=1.5), r"p must be a probability in \[0, 1\], got 1.5"),
        (lambda: Compose([1]), "every transform must be callable, got 1"),
    ],
)
def test_constructor_errors_name_the_values(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_call_errors_name_the_shapes():
    with pytest.raises(
        ValueError, match=r"mean has 3 values but the input of shape \(4, 2, 5, 6\) has 2"
    ):
        Normalize([0.0] * 3, [1.0] * 3)(batch())
    with pytest.raises(ValueError, match=r"got shape \(5, 6\)"):
        RandomHorizontalFlip()(np.zeros((5, 6), np.float32))
    with pytest.raises(ValueError, match="expected floating-point images, got dtype uint8"):
        RandomCrop(2)(np.zeros((1, 1, 4, 4), np.uint8))
