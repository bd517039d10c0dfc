"""``cnnperf.training.trainer``: settings, data specs, image folders, augmentation, callbacks."""

from __future__ import annotations

import numpy as np
import pytest

from cnnperf.training.trainer import (
    TrainConfig,
    TrainingRun,
    load_data,
    parse_data_spec,
    run_training,
)


def test_resolved_fills_optimizer_defaults():
    assert TrainConfig().resolved().lr == 0.1
    adam = TrainConfig(optimizer="adam").resolved()
    assert (adam.lr, adam.weight_decay) == (1e-3, 0.0)
    assert TrainConfig(optimizer="adamw", lr=0.5, weight_decay=0).resolved().weight_decay == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=0), "epochs must be an int >= 1, got 0"),
        (dict(batch_size=2.5), "batch_size must be an int >= 1, got 2.5"),
        (dict(lr=0.0), "lr must be a finite number > 0, got 0.0"),
        (dict(weight_decay=float("inf")), "weight_decay must be a finite number >= 0, got inf"),
        (dict(momentum=1.0), "momentum must be < 1, got 1.0"),
        (dict(label_smoothing=-0.1), "label_smoothing must be a finite number >= 0, got -0.1"),
        (
            dict(model="lenet5"),
            "unknown model 'lenet5'; choose from lenet, vgg_small, resnet_small",
        ),
        (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'; choose from sgd, adam, adamw"),
        (dict(scheduler="warmup"), "unknown scheduler 'warmup'; choose from none, step, cosine"),
        (dict(limit=0), "limit must be an int >= 1, got 0"),
        (dict(data="cifar100:/x"), "data 'cifar100:/x': unknown kind 'cifar100'"),
    ],
)
def test_bad_settings_name_the_value(kwargs, message):
    with pytest.raises(ValueError) as exc:
        TrainConfig(**kwargs).resolved()
    assert message in str(exc.value)


def test_parse_data_spec_keeps_colons_in_paths():
    assert parse_data_spec("folder:C:/data/x") == ("folder", "C:/data/x")


def _write_images(root, classes, per_class, size, rng):
    from PIL import Image

    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_folder_data_with_train_and_test_folders_and_with_a_split(tmp_path):
    pytest.importorskip("PIL")  # the images extra, installed with the test extra
    rng = np.random.default_rng(0)
    _write_images(tmp_path / "a" / "train", ["cat", "dog"], 3, 10, rng)
    _write_images(tmp_path / "a" / "val", ["cat", "dog"], 2, 10, rng)
    train, test = load_data(f"folder:{tmp_path / 'a'}", image_size=8)
    assert (len(train), len(test)) == (6, 4) and train.classes == ["cat", "dog"]
    assert train.images.shape[1:] == (3, 8, 8)
    _write_images(tmp_path / "b", ["x", "y"], 5, 9, rng)
    train, test = load_data(f"folder:{tmp_path / 'b'}")
    assert (len(train), len(test)) == (8, 2) and test.class_counts().tolist() == [1, 1]


def test_augmented_rgb_folder_run_with_callbacks(tmp_path):
    pytest.importorskip("PIL")
    _write_images(tmp_path / "img", ["a", "b", "c"], 6, 8, np.random.default_rng(1))
    batches, epochs, notes = [], [], []
    config = TrainConfig(
        data=f"folder:{tmp_path / 'img'}",
        model="resnet_small",
        epochs=2,
        batch_size=5,
        augment=True,
        scheduler="step",
        checkpoint_dir=str(tmp_path / "ck"),
    )
    result = run_training(
        config,
        on_batch=lambda *a: batches.append(a),
        on_epoch=epochs.append,
        log=notes.append,
    )
    assert result.classes == ["a", "b", "c"] and result.model.arch["in_channels"] == 3
    assert len(result.preprocess["mean"]) == 3
    per_epoch = -(-result.num_train // 5)
    assert len(batches) == 2 * per_epoch
    epoch, batch, total, loss, acc, ips = batches[-1]
    assert (epoch, batch, total) == (1, per_epoch - 1, per_epoch)
    assert loss > 0 and 0 <= acc <= 1 and ips > 0
    assert [r["epoch"] for r in epochs] == [1, 2] and epochs == result.history
    assert notes == []
    # the transform: random crops, flips (3 channels), then the normalisation
    names = [type(t).__name__ for t in TrainingRun(config).loader.transform.transforms]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "Normalize"]


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.tobytes()  # uint8: no byte order


@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist", "cifar10"])
def test_mnist_and_cifar_files_train_end_to_end(kind, tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / kind
    root.mkdir()
    for split, n in (("train", 24), ("t10k", 12)):
        if kind == "cifar10":  # five training batches of 6 images (30), one test batch of 12
            train_files = [f"data_batch_{i}.bin" for i in range(1, 6)]
            for name in train_files if split == "train" else ["test_batch.bin"]:
                m = 6 if split == "train" else n
                records = rng.integers(0, 256, (m, 1 + 3 * 32 * 32), dtype=np.uint8)
                records[:, 0] %= 10  # the label byte
                (root / name).write_bytes(records.tobytes())
        else:
            images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            labels = rng.integers(0, 10, n, dtype=np.uint8)
            (root / f"{split}-images-idx3-ubyte").write_bytes(_idx(images))
            (root / f"{split}-labels-idx1-ubyte").write_bytes(_idx(labels))
    config = TrainConfig(
        data=f"{kind}:{root}", model="lenet", epochs=1, batch_size=8,
        checkpoint_dir=str(tmp_path / "ck"),
    )  # fmt: skip
    result = run_training(config)
    channels, size = (3, 32) if kind == "cifar10" else (1, 28)
    assert result.model.arch["in_channels"] == channels
    assert result.model.arch["input_size"] == [size, size]
    assert (result.num_train, result.num_test) == (30 if kind == "cifar10" else 24, 12)
    assert len(result.classes) == 10
