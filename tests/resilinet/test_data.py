"""resilinet.data reads the real file formats: these tests write tiny files in those formats."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lab.errors import UserError
from resilinet.data import (CIFAR_FILES, CIFAR_RECORD, FASHION_MNIST_DIRS, MHEALTH_FILES, Splits,
                            load_dataset, read_idx)


# ---------------------------------------------------------------------------------------------
# Writers for the real formats


def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_fashion_mnist(root: Path, n_train=200, n_test=50, gz=False, side=6, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    for kind, n in (("train", n_train), ("t10k", n_test)):
        write(root / f"{kind}-images-idx3-ubyte{ext}", idx_bytes(rng.integers(0, 256, (n, side, side), dtype=np.uint8)))
        write(root / f"{kind}-labels-idx1-ubyte{ext}", idx_bytes((np.arange(n) % 10).astype(np.uint8)))
    return root


def write_cifar(root: Path, per_batch=20, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for i, name in enumerate(CIFAR_FILES):
        rec = rng.integers(0, 256, (per_batch, CIFAR_RECORD), dtype=np.uint8)
        rec[:, 0] = (np.arange(per_batch) + i) % 10
        (root / name).write_bytes(rec.tobytes())
    return root


def mhealth_rows(n: int, rng: np.random.Generator, labels=None) -> np.ndarray:
    feats = rng.normal(5.0, 3.0, (n, 23))
    labels = rng.integers(0, 13, n) if labels is None else np.asarray(labels)
    return np.column_stack([feats, labels])


def write_mhealth(root: Path, rows_per_file=30, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tables = {}
    for name in MHEALTH_FILES:
        t = mhealth_rows(rows_per_file, rng)
        np.savetxt(root / name, t, fmt=["%.4f"] * 23 + ["%d"], delimiter="\t")
        tables[name] = np.loadtxt(root / name)  # what is on disk, after rounding to 4 decimals
    return tables


def all_x(s: Splits) -> torch.Tensor:
    return torch.cat([s.x_train, s.x_val, s.x_test])


# ---------------------------------------------------------------------------------------------
# IDX reader


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_plain_and_gzip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write(tmp_path / ("a.idx" + (".gz" if gz else "")), idx_bytes(arr))
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


def test_read_idx_reads_big_endian_int32_and_float32(tmp_path):
    ints = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    floats = np.array([1.5, -0.25], dtype=np.float32)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "i", idx_bytes(ints))), ints)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "f", idx_bytes(floats))), floats)


def test_read_idx_names_file_and_magic_on_wrong_kind(tmp_path):
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte: expected IDX magic 0x00000803, got 0x00000801"):
        read_idx(path, expect_magic=0x803)


def test_read_idx_rejects_garbage_truncation_and_bad_gzip(tmp_path):
    with pytest.raises(UserError, match=r"junk.*not an IDX file"):
        read_idx(write(tmp_path / "junk", b"PK\x03\x04 not idx at all"))
    full = idx_bytes(np.zeros((4, 3, 3), np.uint8))
    with pytest.raises(UserError, match=r"short.*header promises 4x3x3 uint8 = 36 data bytes, file holds 30"):
        read_idx(write(tmp_path / "short", full[:-6]))
    with pytest.raises(UserError, match=r"hdr.*truncated IDX header"):
        read_idx(write(tmp_path / "hdr", full[:9]))
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b\x08 definitely not deflate")
    with pytest.raises(UserError, match=r"bad\.gz: cannot read"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(UserError, match=r"absent: file not found"):
        read_idx(tmp_path / "absent")


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_official_test_set_and_90_10_train_val(tmp_path, gz):
    s = load_dataset("fashion-mnist", str(write_fashion_mnist(tmp_path, gz=gz)))
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (180, 20, 50)
    assert s.x_train.shape == (180, 1, 6, 6) and s.input_shape == (1, 6, 6)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert s.n_classes == 10 and s.source == str(tmp_path)
    # the test split is the official test file, in its order
    assert s.y_test.tolist() == [i % 10 for i in range(50)]
    # train and val partition the official training labels
    assert sorted(torch.cat([s.y_train, s.y_val]).tolist()) == sorted(i % 10 for i in range(200))


def test_images_are_standardised_per_channel_on_train_only(tmp_path):
    s = load_dataset("fashion-mnist", str(write_fashion_mnist(tmp_path)))
    assert abs(s.x_train.mean().item()) < 1e-5
    assert abs(s.x_train.std(unbiased=False).item() - 1) < 1e-4
    # val/test use the training statistics: undo them and we get pixel/255 back exactly
    raw = read_idx(tmp_path / "t10k-images-idx3-ubyte").astype(np.float64) / 255
    y = s.x_test.double().numpy()[:, 0]
    a, b = np.polyfit(raw.ravel(), y.ravel(), 1)
    np.testing.assert_allclose(a * raw + b, y, atol=1e-4)
    assert abs(s.x_test.mean().item()) > 1e-6  # not re-standardised on its own


def test_flatten_gives_features(tmp_path):
    s = load_dataset("fashion-mnist", str(write_fashion_mnist(tmp_path)), flatten=True)
    assert s.x_train.shape == (180, 36) and s.input_shape == (36,)


def test_same_seed_same_splits_other_seed_other_splits(tmp_path):
    root = str(write_fashion_mnist(tmp_path))
    a, b, c = (load_dataset("fashion-mnist", root, seed=k) for k in (3, 3, 4))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_train, c.x_train)


def test_limit_caps_train_and_shrinks_val_test_proportionally(tmp_path):
    root = str(write_fashion_mnist(tmp_path))
    s = load_dataset("fashion-mnist", root, limit=90)
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (90, 10, 25)
    assert torch.equal(s.x_train, load_dataset("fashion-mnist", root, limit=90).x_train)
    assert len(load_dataset("fashion-mnist", root, limit=10_000).y_train) == 180


def test_missing_root_names_directory_files_and_apt_package(tmp_path):
    with pytest.raises(UserError, match=r"nowhere: no such directory.*train-images-idx3-ubyte.*apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", str(tmp_path / "nowhere"))


def test_missing_file_is_named(tmp_path):
    write_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]"):
        load_dataset("fashion-mnist", str(tmp_path))


def test_swapped_files_fail_on_magic(tmp_path):
    write_fashion_mnist(tmp_path)
    labels = (tmp_path / "train-labels-idx1-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(labels)
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte: expected IDX magic 0x00000803, got 0x00000801"):
        load_dataset("fashion-mnist", str(tmp_path))


def test_label_count_mismatch_is_named(tmp_path):
    write_fashion_mnist(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(199, np.uint8)))
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte: 199 labels for 200 images"):
        load_dataset("fashion-mnist", str(tmp_path))


def test_auto_falls_back_to_digits_with_a_note(tmp_path, capsys):
    s = load_dataset("auto", str(tmp_path), limit=100)
    assert s.name == "digits" and s.source == "sklearn digits"
    assert "using scikit-learn digits" in capsys.readouterr().err
    assert load_dataset("auto", str(write_fashion_mnist(tmp_path))).name == "fashion-mnist"


def test_real_debian_fashion_mnist_loads():
    if not any(Path(d, "train-images-idx3-ubyte.gz").exists() or Path(d, "train-images-idx3-ubyte").exists()
               for d in FASHION_MNIST_DIRS):
        pytest.skip("dataset-fashion-mnist is not installed")
    s = load_dataset("fashion-mnist", limit=500)
    assert s.input_shape == (1, 28, 28) and s.n_classes == 10
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (500, 56, 93)
    assert abs(s.guess_accuracy() - 0.1) < 0.02


# ---------------------------------------------------------------------------------------------
# CIFAR-10 binary


def test_cifar_pools_all_batches_into_80_10_10(tmp_path):
    write_cifar(tmp_path)
    s = load_dataset("cifar10", str(tmp_path))
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (96, 12, 12)  # 120 pooled
    assert s.input_shape == (3, 32, 32) and s.n_classes == 10


def test_cifar_record_is_label_then_rgb_planes(tmp_path):
    write_cifar(tmp_path)
    rec = np.zeros((20, CIFAR_RECORD), np.uint8)
    rec[0, 0] = 7
    rec[0, 1:1025] = 255  # red plane of the first image of data_batch_1
    (tmp_path / "data_batch_1.bin").write_bytes(rec.tobytes())
    s = load_dataset("cifar10", str(tmp_path))
    x, y = all_x(s), torch.cat([s.y_train, s.y_val, s.y_test])
    # the only image with a full red plane and black green/blue planes is the one we wrote
    red = (x[:, 0] > x[:, 0].mean()).all(dim=(1, 2)) & (x[:, 1:] < 0).all(dim=(1, 2, 3))
    assert red.sum() == 1 and y[red].item() == 7


def test_cifar_accepts_the_unpacked_archive_directory(tmp_path):
    (tmp_path / "cifar-10-batches-bin").mkdir()
    write_cifar(tmp_path / "cifar-10-batches-bin")
    assert load_dataset("cifar10", str(tmp_path)).source == str(tmp_path / "cifar-10-batches-bin")


def test_cifar_wrong_record_size_is_named(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3.bin").write_bytes(b"\0" * 1234)
    with pytest.raises(UserError, match=r"data_batch_3\.bin: size 1234 is not a multiple of 3073-byte records"):
        load_dataset("cifar10", str(tmp_path))


def test_cifar_missing_batch_and_missing_root(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch.bin").unlink()
    with pytest.raises(UserError, match=r"test_batch\.bin: file not found"):
        load_dataset("cifar10", str(tmp_path))
    with pytest.raises(UserError, match=r"nope: no such directory.*data_batch_1\.bin"):
        load_dataset("cifar10", str(tmp_path / "nope"))


# ---------------------------------------------------------------------------------------------
# mHealth


def test_mhealth_drops_null_class_and_maps_activities_to_0_11(tmp_path):
    tables = write_mhealth(tmp_path)
    s = load_dataset("mhealth", str(tmp_path))
    pooled = np.concatenate(list(tables.values()))
    non_null = pooled[pooled[:, -1] != 0]
    y = torch.cat([s.y_train, s.y_val, s.y_test])
    assert len(y) == len(non_null) and s.n_classes == 12 and s.input_shape == (23,)
    assert y.min() >= 0 and y.max() <= 11
    assert sorted(y.tolist()) == sorted((non_null[:, -1] - 1).astype(int).tolist())
    n = len(non_null)
    assert len(s.y_val) == len(s.y_test) == round(0.1 * n)


def test_mhealth_features_standardised_with_train_statistics(tmp_path):
    tables = write_mhealth(tmp_path)
    s = load_dataset("mhealth", str(tmp_path))
    np.testing.assert_allclose(s.x_train.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(s.x_train.std(0, unbiased=False).numpy(), 1, atol=1e-4)
    # the whole pooled set, mapped back through the train statistics, is the clean float data
    pooled = np.concatenate(list(tables.values()))
    feats = np.sort(pooled[pooled[:, -1] != 0][:, :-1], axis=0)
    x = all_x(s).double().numpy()
    a, b = np.polyfit(np.sort(x[:, 0]), feats[:, 0], 1)
    np.testing.assert_allclose(a * np.sort(x[:, 0]) + b, feats[:, 0], atol=1e-3)
    assert not np.allclose(feats, np.trunc(feats))  # floats, not truncated


def test_mhealth_legacy_truncates_drops_first_rows_and_keeps_raw_scale(tmp_path):
    rng = np.random.default_rng(1)
    kept = []
    for name in MHEALTH_FILES:  # first row of each file is the only label-12 row
        t = mhealth_rows(21, rng, labels=[12] + [1 + i % 11 for i in range(20)])
        t[1, 0] = -1.7  # truncation is toward zero: -1, not -2
        np.savetxt(tmp_path / name, t, fmt="%.4f")
        kept.append(t[1:])
    s = load_dataset("mhealth", str(tmp_path), legacy_mhealth=True)
    x, y = all_x(s), torch.cat([s.y_train, s.y_val, s.y_test])
    assert 11 not in y.tolist()  # every first row is gone
    assert len(y) == 10 * 20 - 1  # ... and the first pooled non-null row, as the original did
    expected = np.trunc(np.concatenate(kept)[1:, :-1])  # integer features, not standardised
    np.testing.assert_array_equal(np.sort(x.double().numpy(), 0), np.sort(expected, 0))
    clean = load_dataset("mhealth", str(tmp_path))
    assert len(clean.y_train) + len(clean.y_val) + len(clean.y_test) == 10 * 21


def test_mhealth_wrong_line_width_names_file_and_line(tmp_path):
    write_mhealth(tmp_path)
    path = tmp_path / "mHealth_subject4.log"
    lines = path.read_text().splitlines()
    lines[2] = "\t".join(lines[2].split()[:-2])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"mHealth_subject4\.log: line 3 has 22 columns, expected 24"):
        load_dataset("mhealth", str(tmp_path))


def test_mhealth_uniformly_wrong_width_and_bad_label(tmp_path):
    write_mhealth(tmp_path)
    np.savetxt(tmp_path / "mHealth_subject2.log", np.ones((5, 23)))
    with pytest.raises(UserError, match=r"mHealth_subject2\.log: lines have 23 columns, expected 24"):
        load_dataset("mhealth", str(tmp_path))
    np.savetxt(tmp_path / "mHealth_subject2.log", np.full((5, 24), 13.0))
    with pytest.raises(UserError, match=r"mHealth_subject2\.log: .*labels must be integers 0\.\.12"):
        load_dataset("mhealth", str(tmp_path))


def test_mhealth_missing_file_and_non_number(tmp_path):
    write_mhealth(tmp_path)
    (tmp_path / "mHealth_subject10.log").write_text("1 2 x" + " 0" * 21 + "\n")
    with pytest.raises(UserError, match=r"mHealth_subject10\.log: line 1: 'x' is not a number"):
        load_dataset("mhealth", str(tmp_path))
    (tmp_path / "mHealth_subject10.log").unlink()
    with pytest.raises(UserError, match=r"mHealth_subject10\.log: file not found"):
        load_dataset("mhealth", str(tmp_path))


# ---------------------------------------------------------------------------------------------
# digits, the prior, and bad arguments


def test_digits_as_images_or_flat_features():
    s = load_dataset("digits")
    assert s.x_train.shape == (1437, 1, 8, 8) and (len(s.y_val), len(s.y_test)) == (180, 180)
    assert load_dataset("digits", flatten=True).input_shape == (64,)


def test_guess_accuracy_is_sum_of_squared_training_prior(tmp_path):
    rng = np.random.default_rng(0)
    for name in MHEALTH_FILES:  # skewed: mostly activity 1
        np.savetxt(tmp_path / name, mhealth_rows(40, rng, labels=[1] * 30 + [2] * 8 + [3] * 2), fmt="%.3f")
    s = load_dataset("mhealth", str(tmp_path))
    p = torch.bincount(s.y_train, minlength=12).double() / len(s.y_train)
    assert s.class_prior().shape == (12,)
    assert abs(s.class_prior().sum().item() - 1) < 1e-6
    torch.testing.assert_close(s.class_prior().double(), p, atol=1e-7, rtol=0)
    assert s.guess_accuracy() == pytest.approx(float((p ** 2).sum()), abs=1e-12)
    assert 0.5 < s.guess_accuracy() < 0.7  # ~ .75^2 + .2^2 + .05^2


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="mnist"), "unknown dataset 'mnist'"),
    (dict(name="digits", seed=-1), "seed must be a non-negative integer"),
    (dict(name="digits", limit=0), "limit must be a positive integer"),
    (dict(name="cifar10"), "cifar10 needs a data directory"),
    (dict(name="mhealth"), "mhealth needs a data directory"),
])
def test_bad_arguments_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        load_dataset(**kwargs)
