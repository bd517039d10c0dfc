"""DataLoader: batching, drop_last, seeded shuffling per epoch, resuming, transforms."""

from __future__ import annotations

import numpy as np
import pytest

from cnnperf.data import (
    Compose,
    DataLoader,
    Dataset,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    load_digits,
)


def dataset(n=10):
    images = np.arange(n * 4, dtype=np.float32).reshape(n, 1, 2, 2)
    return Dataset(images, np.arange(n) % 3)


def labels_of(loader):
    return [y.tolist() for _, y in loader]


def epoch_batches(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_batches_in_order_with_and_without_drop_last():
    ds = dataset(10)
    loader = DataLoader(ds, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [x.shape for x, _ in batches] == [(4, 1, 2, 2)] * 2 + [(2, 1, 2, 2)]
    x, y = batches[1]
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.flags.c_contiguous
    np.testing.assert_array_equal(x, ds.images[4:8])
    np.testing.assert_array_equal(y, ds.labels[4:8])
    dropped = DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(y) for _, y in dropped] == [4, 4]
    assert len(DataLoader(ds, batch_size=20, drop_last=True)) == 0
    assert labels_of(DataLoader(ds, batch_size=20)) == [ds.labels.tolist()]


def test_batches_are_copies():
    ds = dataset(4)
    for x, _ in DataLoader(ds, batch_size=2):
        x[:] = -1
    assert ds.images.min() >= 0


def test_accepts_an_images_labels_pair():
    images, labels = np.zeros((3, 1, 1, 1), np.float32), np.array([0, 1, 0])
    assert labels_of(DataLoader((images, labels), batch_size=2)) == [[0, 1], [0]]


def test_shuffle_is_seeded_per_epoch_and_covers_every_sample():
    ds = Dataset(np.zeros((50, 1), np.float32), np.arange(50), [str(i) for i in range(50)])
    a = DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    b = DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    epochs_a = [sum(labels_of(a), []) for _ in range(3)]
    epochs_b = [sum(labels_of(b), []) for _ in range(3)]
    assert epochs_a == epochs_b  # same seed, same batches, epoch by epoch
    assert all(sorted(e) == list(range(50)) for e in epochs_a)
    assert epochs_a[0] != epochs_a[1] != epochs_a[2]  # a new order each epoch
    assert epochs_a[0] != list(range(50))
    assert a.epoch == 3
    other = DataLoader(ds, batch_size=8, shuffle=True, seed=4)
    assert sum(labels_of(other), []) != epochs_a[0]
    # The order of an epoch does not depend on the batch size.
    wide = DataLoader(ds, batch_size=50, shuffle=True, seed=3)
    wide.set_epoch(2)
    assert labels_of(wide) == [epochs_a[2]]


def test_unseeded_loader_draws_a_seed_and_can_be_replayed():
    ds = dataset(12)
    a = DataLoader(ds, batch_size=5, shuffle=True)
    first = labels_of(a)
    b = DataLoader(ds, batch_size=5, shuffle=True, seed=a.seed)
    assert labels_of(b) == first


def make_augmenting(ds, seed):
    transform = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip(), Normalize(0.5, 0.25)])
    return DataLoader(ds, batch_size=64, shuffle=True, seed=seed, transform=transform)


def test_transforms_are_reproducible_from_the_seed():
    ds = load_digits()[:300]
    a, b = make_augmenting(ds, 0), make_augmenting(ds, 0)
    for _ in range(2):
        assert_same_batches(epoch_batches(a), epoch_batches(b))
    c = make_augmenting(ds, 1)
    xa, xc = next(iter(make_augmenting(ds, 0)))[0], next(iter(c))[0]
    assert not np.array_equal(xa, xc)
    assert xa.shape == (64, 1, 8, 8) and xa.dtype == np.float32


def test_resume_in_the_middle_of_an_epoch_gives_the_same_batches():
    ds = load_digits()[:300]
    reference = make_augmenting(ds, 7)
    epoch0 = epoch_batches(reference)
    epoch1 = epoch_batches(reference)

    run = make_augmenting(ds, 7)
    assert_same_batches(epoch_batches(run), epoch0)
    batches = iter(run)
    consumed = [(x.copy(), y.copy()) for _, (x, y) in zip(range(2), batches, strict=False)]
    state = run.state_dict()
    assert state == {"seed": 7, "epoch": 1, "batch": 2, "batch_size": 64, "num_samples": 300}

    resumed = make_augmenting(ds, 999)  # the state's seed replaces this one
    resumed.load_state_dict(state)
    assert resumed.seed == 7 and resumed.epoch == 1
    rest = epoch_batches(resumed)
    assert_same_batches(consumed + rest, epoch1)
    assert resumed.state_dict()["epoch"] == 2 and resumed.state_dict()["batch"] == 0


def test_state_at_epoch_boundaries_and_set_epoch():
    ds = dataset(10)
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=1)
    assert loader.state_dict()["epoch"] == 0 and loader.state_dict()["batch"] == 0
    batches = iter(loader)
    for _ in range(3):
        next(batches)
    # All batches yielded: the state points at the next epoch even before StopIteration.
    assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (1, 0)
    epoch1 = labels_of(loader)
    restored = DataLoader(ds, batch_size=4, shuffle=True, seed=1)
    restored.load_state_dict({"seed": 1, "epoch": 1, "batch": 0})
    assert labels_of(restored) == epoch1
    restored.set_epoch(1)
    assert labels_of(restored) == epoch1
    # A saved position equal to the epoch's length means the epoch is done.
    done = DataLoader(ds, batch_size=4, shuffle=True, seed=1)
    done.load_state_dict(loader.state_dict() | {"epoch": 0, "batch": 3})
    assert done.epoch == 1


def test_load_state_dict_errors():
    loader = DataLoader(dataset(10), batch_size=4, seed=0)
    with pytest.raises(ValueError, match=r"state lacks \['batch'\]"):
        loader.load_state_dict({"seed": 0, "epoch": 0})
    with pytest.raises(ValueError, match="batch_size=5 and 10 samples, but this loader has "):
        loader.load_state_dict(
            {"seed": 0, "epoch": 0, "batch": 1, "batch_size": 5, "num_samples": 10}
        )
    with pytest.raises(ValueError, match="batch 4 out of range for an epoch of 3 batches"):
        loader.load_state_dict(
            {"seed": 0, "epoch": 0, "batch": 4, "batch_size": 4, "num_samples": 10}
        )
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -2"):
        loader.set_epoch(-2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": 2.5}, "batch_size must be an int >= 1, got 2.5"),
        ({"seed": -1}, "seed must be an int >= 0, got -1"),
        ({"transform": "flip"}, "transform must be callable, got 'flip'"),
    ],
)
def test_argument_errors_name_the_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataLoader(dataset(4), **kwargs)


def test_dataset_and_transform_errors():
    with pytest.raises(ValueError, match="dataset must be a Dataset or an .* got list"):
        DataLoader([1, 2, 3])
    with pytest.raises(ValueError, match="got 3 images .* but 2 labels"):
        DataLoader((np.zeros((3, 1), np.float32), np.zeros(2, int)))
    loader = DataLoader(dataset(4), batch_size=2, transform=lambda x, rng: x[:1])
    with pytest.raises(ValueError, match="returned shape .* for a batch of 2 images"):
        next(iter(loader))
