"""Datasets for ResiliNet (spec section 4): read the original file formats, split, standardise.

    splits = load_dataset("fashion-mnist", limit=2000)   # Debian's dataset-fashion-mnist
    splits.x_train.shape     # [2000, 1, 28, 28] float32, standardised per channel on train
    splits.guess_accuracy()  # ~0.1: what a cloud cut off from the IoT gets by guessing the prior

Datasets, their files and their splits (all random splits are deterministic for `seed`):
- "fashion-mnist": IDX files train-/t10k-{images-idx3,labels-idx1}-ubyte, plain or .gz. The
  official 10k test set is the test split; the official 60k train set is split 90/10 into
  train/val (54k/6k). The paper does not use Fashion-MNIST: it is our embedded CNN dataset.
- "cifar10": the BINARY version, data_batch_{1..5}.bin and test_batch.bin, each record one label
  byte then 3072 pixel bytes (R, G, B planes of 32x32). As in the paper the 60k images are pooled
  and split at random 80/10/10. Pickle batches are never loaded.
- "mhealth": UCI MHEALTHDATASET, mHealth_subject{1..10}.log, whitespace-separated rows of 23
  sensor features and one activity label. Label 0 (null class) is dropped and activities 1..12
  become classes 0..11; the pooled rows are split at random 80/10/10.
- "imagenet": ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG (imagenet.py), decoded with
  Pillow and resized to `image_size`; val/ is the test split, 10% of train/ the validation split.
- "digits": scikit-learn's bundled 8x8 digits (0..16 grey levels), random 80/10/10. A stand-in
  that needs no files.
- "auto": fashion-mnist when its files are found, else digits (with a note on stderr).

Images are scaled to [0, 1] and then standardised per channel with the training split's mean and
std; tabular features are standardised per feature the same way. `standardise=False` (the
official CIFAR and ImageNet input, `--preset paper`) stops after the [0, 1] scaling. `limit` caps
the training split (val and test shrink by the same factor) by a seeded subsample, for quick CPU
runs; a smaller limit gives a subset of a larger one.
"""
from __future__ import annotations

import gzip
import sys
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from lab.errors import UserError

from .imagenet import load_imagenet

if TYPE_CHECKING:
    from .config import Config

DATASETS = ("fashion-mnist", "cifar10", "mhealth", "imagenet", "digits", "auto")

# Debian's dataset-fashion-mnist installs to the first directory; the others are common places.
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "/usr/share/fashion-mnist",
                      "/usr/local/share/datasets/fashion-mnist", "data/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte + R, G, B planes
MHEALTH_FILES = tuple(f"mHealth_subject{i}.log" for i in range(1, 11))
MHEALTH_COLUMNS = 24  # 23 features + activity label


@dataclass
class Splits:
    name: str                     # "fashion-mnist" | "cifar10" | "mhealth" | "digits"
    x_train: torch.Tensor         # float32 [N, C, H, W] images or [N, F] features
    y_train: torch.Tensor         # int64 [N] class labels
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    input_shape: tuple[int, ...]  # per example: (1, 28, 28), (3, 32, 32), (23,), (64,) ...
    source: str                   # directory read from, or "sklearn digits"

    def class_prior(self) -> torch.Tensor:
        """Training label frequencies, float32 [n_classes], summing to 1."""
        counts = torch.bincount(self.y_train, minlength=self.n_classes).double()
        return (counts / counts.sum()).float()

    def guess_accuracy(self) -> float:
        """Accuracy of guessing a class drawn from the training prior: sum_c p_c^2 (spec 5)."""
        counts = torch.bincount(self.y_train, minlength=self.n_classes).double()
        p = counts / counts.sum()
        return float((p * p).sum())


# ---------------------------------------------------------------------------------------------
# Reading the file formats

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in .gz; any failure is a UserError."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read ({e})") from None


def read_idx(path: str | Path, expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (plain or .gz) into an array of its shape and dtype.

    Format: two zero bytes, a dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dims, one big-endian uint32 per dim, then the
    data, big-endian, row-major. E.g. Fashion-MNIST images: magic 0x00000803, dims 60000 28 28.
    `expect_magic` (e.g. 0x803) rejects a file of the wrong kind with a clear message.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise UserError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        raise UserError(f"{path}: expected IDX magic 0x{expect_magic:08x}, got 0x{magic:08x}")
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\0\0" or code not in _IDX_DTYPES:
        raise UserError(f"{path}: not an IDX file (magic 0x{magic:08x}; expected 00 00, a dtype "
                        f"code in {sorted(_IDX_DTYPES)}, ndim)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dims need {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        shape = "x".join(map(str, dims))
        raise UserError(f"{path}: header promises {shape} {dtype.name} = {expected} data bytes, "
                        f"file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _check_dir(root: Path, what: str, files: tuple[str, ...], hint: str = "") -> None:
    if not root.is_dir():
        state = "is not a directory" if root.exists() else "no such directory"
        raise UserError(f"{root}: {state}; expected the {what} files there: {', '.join(files)}{hint}")


def _find_idx(root: Path, base: str) -> Path | None:
    for p in (root / base, root / f"{base}.gz"):
        if p.is_file():
            return p
    return None


def _fashion_mnist_root(root: str | None) -> Path | None:
    """The directory holding all four Fashion-MNIST files, or None when none is found."""
    for d in ([root] if root is not None else FASHION_MNIST_DIRS):
        if all(_find_idx(Path(d), b) for b in FASHION_MNIST_FILES):
            return Path(d)
    return None


_APT_HINT = " (on Debian/Ubuntu: apt-get install dataset-fashion-mnist)"


def _load_fashion_mnist(root: str | None, rng: np.random.Generator):
    found = _fashion_mnist_root(root)
    expected = ", ".join(f"{b}[.gz]" for b in FASHION_MNIST_FILES)
    if found is None and root is None:
        raise UserError(f"Fashion-MNIST not found in any of {', '.join(FASHION_MNIST_DIRS)}; "
                        f"pass a directory with {expected}{_APT_HINT}")
    if found is None:
        _check_dir(Path(root), "Fashion-MNIST", FASHION_MNIST_FILES, " (plain or .gz)" + _APT_HINT)
        missing = [b for b in FASHION_MNIST_FILES if _find_idx(Path(root), b) is None]
        raise UserError(f"{root}: missing {', '.join(m + '[.gz]' for m in missing)}; "
                        f"expected {expected}{_APT_HINT}")

    def pair(kind: str):
        xp, yp = _find_idx(found, f"{kind}-images-idx3-ubyte"), _find_idx(found, f"{kind}-labels-idx1-ubyte")
        x, y = read_idx(xp, expect_magic=0x803), read_idx(yp, expect_magic=0x801)
        if len(x) != len(y):
            raise UserError(f"{yp}: {len(y)} labels for {len(x)} images in {xp.name}")
        if len(y) and y.max() > 9:
            raise UserError(f"{yp}: labels must be 0..9, found {y.max()}")
        return x[:, None], y  # [N, 1, H, W] uint8

    x, y = pair("train")
    x_test, y_test = pair("t10k")
    n_val = len(x) // 10
    perm = rng.permutation(len(x))
    val, train = perm[:n_val], perm[n_val:]
    return (x[train], y[train], x[val], y[val], x_test, y_test), 10, str(found), 255.0


def _load_cifar10(root: str | None, rng: np.random.Generator):
    if root is None:
        raise UserError(f"cifar10 needs a data directory (root) holding the binary batches: "
                        f"{', '.join(CIFAR_FILES)} (cifar-10-binary.tar.gz)")
    d = Path(root)
    if (d / "cifar-10-batches-bin").is_dir():  # the directory the archive unpacks to
        d = d / "cifar-10-batches-bin"
    _check_dir(d, "CIFAR-10 binary", CIFAR_FILES)
    records = []
    for name in CIFAR_FILES:
        raw = _read_bytes(d / name)
        if len(raw) == 0 or len(raw) % CIFAR_RECORD:
            raise UserError(f"{d / name}: size {len(raw)} is not a multiple of {CIFAR_RECORD}-byte "
                            f"records (1 label byte + 3072 pixel bytes)")
        rec = np.frombuffer(raw, np.uint8).reshape(-1, CIFAR_RECORD)
        if rec[:, 0].max() > 9:
            raise UserError(f"{d / name}: label bytes must be 0..9, found {rec[:, 0].max()}")
        records.append(rec)
    rec = np.concatenate(records)  # the paper pools train and test: 60k images
    x, y = rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0]
    return _random_split(x, y, rng), 10, str(d), 255.0


def _read_mhealth_log(path: Path) -> np.ndarray:
    """[rows, 24] float64; every line must hold 23 features and an activity label 0..12."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" is reported below
            table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except ValueError as e:  # ragged or non-numeric: find the first bad line for the message
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            fields = line.split()
            if fields and len(fields) != MHEALTH_COLUMNS:
                raise UserError(f"{path}: line {i} has {len(fields)} columns, expected "
                                f"{MHEALTH_COLUMNS} (23 features + activity label)") from None
            for f in fields:
                try:
                    float(f)
                except ValueError:
                    raise UserError(f"{path}: line {i}: {f!r} is not a number") from None
        raise UserError(f"{path}: cannot parse ({e})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    if table.size == 0:
        raise UserError(f"{path}: no data rows; expected lines of {MHEALTH_COLUMNS} numbers")
    if table.shape[1] != MHEALTH_COLUMNS:
        raise UserError(f"{path}: lines have {table.shape[1]} columns, expected {MHEALTH_COLUMNS} "
                        f"(23 features + activity label)")
    labels = table[:, -1]
    bad = (labels != np.round(labels)) | (labels < 0) | (labels > 12) | ~np.isfinite(table).all(1)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{path}: data row {i + 1} has label {labels[i]:g} or a non-finite feature; "
                        f"labels must be integers 0..12")
    return table


def _load_mhealth(root: str | None, rng: np.random.Generator, legacy: bool):
    """Legacy (the original Keras pipeline, clearShallowAtEase data_handler_health.py): each
    file's first row is dropped (read as a header, though the files have none); features are
    truncated toward zero to integers (it saved them with "%d"); null rows are dropped; the first
    remaining pooled row is dropped as well (the pooled file was read back with the same
    header-skipping reader); features are NOT standardised."""
    if root is None:
        raise UserError(f"mhealth needs a data directory (root) holding {', '.join(MHEALTH_FILES)} "
                        f"(UCI MHEALTHDATASET)")
    d = Path(root)
    if (d / "MHEALTHDATASET").is_dir():  # the directory the UCI archive unpacks to
        d = d / "MHEALTHDATASET"
    _check_dir(d, "mHealth", MHEALTH_FILES)
    tables = [_read_mhealth_log(d / name) for name in MHEALTH_FILES]
    if legacy:
        tables = [t[1:] for t in tables]
    table = np.concatenate(tables)
    table = table[table[:, -1] != 0]  # null class
    if legacy:
        table = np.trunc(table[1:])
    x, y = table[:, :-1], table[:, -1].astype(np.int64) - 1  # activities 1..12 -> 0..11
    return _random_split(x, y, rng), 12, str(d), None


def _load_digits(rng: np.random.Generator):
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    bunch = load_digits()
    x = bunch.images.reshape(-1, 1, 8, 8)  # grey levels 0..16
    return _random_split(x, bunch.target, rng), 10, "sklearn digits", 16.0


def _random_split(x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
    """Random 80/10/10 train/val/test split."""
    n = len(x)
    n_val = n_test = int(round(0.1 * n))
    perm = rng.permutation(n)
    val, test, train = perm[:n_val], perm[n_val:n_val + n_test], perm[n_val + n_test:]
    return x[train], y[train], x[val], y[val], x[test], y[test]


# ---------------------------------------------------------------------------------------------
# Public entry point


def load_splits(cfg: Config, seed: int) -> Splits:
    """The splits a run's config names (the MLP chain reads images flattened)."""
    d = cfg.data
    if d.root is None and d.name in NEEDS_ROOT:
        raise UserError(f"data.name={d.name} needs data.root=DIR pointing at {NEEDS_ROOT[d.name]} "
                        f"(or use --preset cpu for the embedded Fashion-MNIST)")
    return load_dataset(d.name, d.root, seed=seed, limit=d.limit, flatten=cfg.model.arch == "mlp",
                        legacy_mhealth=d.legacy_mhealth, standardise=d.standardise, image_size=d.image_size)


NEEDS_ROOT = {"mhealth": "the UCI MHEALTHDATASET folder", "cifar10": "CIFAR-10's binary batches",
              "imagenet": "a folder with train/<class>/*.JPEG and val/<class>/*.JPEG"}


def _read(name: str, root: str | None, rng: np.random.Generator, legacy_mhealth: bool, image_size: int,
          limit: int | None):
    """(train, val, test arrays), n_classes, source, pixel scale (None: tabular) of dataset `name`."""
    if name == "fashion-mnist":
        return _load_fashion_mnist(root, rng)
    if name == "cifar10":
        return _load_cifar10(root, rng)
    if name == "mhealth":
        return _load_mhealth(root, rng, legacy_mhealth)
    if name == "imagenet":
        if root is None:
            raise UserError(f"imagenet needs a data directory (root): {NEEDS_ROOT['imagenet']}")
        return (*load_imagenet(root, rng, image_size, limit), 255.0)
    return _load_digits(rng)


def load_dataset(name: str, root: str | None = None, *, seed: int = 0, limit: int | None = None,
                 flatten: bool = False, legacy_mhealth: bool = False, standardise: bool = True,
                 image_size: int = 160) -> Splits:
    """Load `name` from `root` (see the module docstring for formats, splits and defaults).

    `limit` caps the training examples; `flatten` gives [N, F] features (for the MLP chain on
    images); `legacy_mhealth` reproduces the original Health preprocessing (see _load_mhealth);
    `standardise=False` leaves images in [0, 1] (the official CIFAR / ImageNet input) and tabular
    features raw; `image_size` is ImageNet's side length after resizing.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise UserError(f"limit must be a positive integer, got {limit!r}")
    if name == "auto":
        name = "fashion-mnist" if _fashion_mnist_root(root) else "digits"
        if name == "digits":
            where = root if root is not None else ", ".join(FASHION_MNIST_DIRS)
            print(f"note: Fashion-MNIST not found in {where}; using scikit-learn digits instead"
                  f"{_APT_HINT}", file=sys.stderr)

    split_rng, limit_rng = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    parts, n_classes, source, scale = _read(name, root, split_rng, legacy_mhealth, image_size, limit)

    xs, ys = list(parts[0::2]), list(parts[1::2])  # [train, val, test]
    if min(len(y) for y in ys) == 0:
        raise UserError(f"{source}: too few examples ({sum(map(len, ys))}) for non-empty "
                        f"train/val/test splits")
    if limit is not None and limit < len(ys[0]):
        factor = limit / len(ys[0])
        for i in range(3):
            keep = max(1, round(len(ys[i]) * factor)) if i else limit
            idx = limit_rng.permutation(len(ys[i]))[:keep]
            xs[i], ys[i] = xs[i][idx], ys[i][idx]

    xs = [x.astype(np.float32) for x in xs]
    if scale is not None:  # images: [0, 1], then per-channel standardisation on train
        for x in xs:
            x /= np.float32(scale)
    if standardise and not (name == "mhealth" and legacy_mhealth):
        _standardise(xs, axes=(0, 2, 3) if scale is not None else (0,))
    if flatten:
        xs = [x.reshape(len(x), -1) for x in xs]

    t = [torch.from_numpy(np.ascontiguousarray(x)) for x in xs]
    labels = [torch.from_numpy(np.asarray(y, dtype=np.int64)) for y in ys]
    return Splits(name, t[0], labels[0], t[1], labels[1], t[2], labels[2], n_classes,
                  tuple(t[0].shape[1:]), source)


def _standardise(xs: list[np.ndarray], axes: tuple[int, ...]) -> None:
    """In place: subtract the training split's mean and divide by its std (a constant
    feature or channel keeps std 1, so it becomes 0 rather than NaN)."""
    mean = xs[0].mean(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
    for x in xs:
        x -= mean
    std = np.sqrt(np.square(xs[0]).mean(axis=axes, keepdims=True, dtype=np.float64))
    std[std == 0] = 1.0
    for x in xs:
        x /= std.astype(np.float32)
