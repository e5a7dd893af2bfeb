"""ImageNet in the standard class-folder layout, decoded with Pillow (no download, no torchvision).

    ROOT/train/<class>/<image>.JPEG     e.g. ROOT/train/n01440764/n01440764_10026.JPEG
    ROOT/val/<class>/<image>.JPEG       the 50k validation images, sorted into class folders

Class indices follow the sorted class-folder names of train/ (as Keras' flow_from_directory,
which the official code, Experiment/common_CNN_imagenet.py, reads with); val/ may hold a subset
of them. Each image is converted to RGB and resized to `size` x `size` with nearest-neighbour
interpolation (Keras' load_img default). As in the official code, val/ is the test split; our
validation split (model selection) is a seeded 10% of train/, where the official code selected
on val/ itself.

Every image is decoded into memory ([N, 3, size, size] uint8): fine for the subsets `limit`
picks (the cap is applied to the file lists before decoding), not for the full 1.28M images
(about 100 GB at 160 px), which would need a streaming loader.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lab.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff")   # Keras' list, any case
SPLIT_DIRS = ("train", "val")


def _class_files(split_dir: Path) -> dict[str, list[Path]]:
    """{class folder name: its image files, sorted}, classes sorted by name."""
    if not split_dir.is_dir():
        raise UserError(f"{split_dir}: no such directory; expected ImageNet's layout ROOT/train/<class>/*.JPEG "
                        f"and ROOT/val/<class>/*.JPEG")
    classes = sorted(d for d in split_dir.iterdir() if d.is_dir())
    files = {d.name: sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) for d in classes}
    if not any(files.values()):
        raise UserError(f"{split_dir}: no class folders holding images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _decode(path: Path, size: int) -> np.ndarray:
    """[3, size, size] uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size, size), Image.NEAREST)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{path}: cannot decode as an image ({e})") from None


def _pick(items: list, keep: int, rng: np.random.Generator) -> list:
    return items if keep >= len(items) else [items[i] for i in sorted(rng.permutation(len(items))[:keep])]


def load_imagenet(root: str | Path, rng: np.random.Generator, size: int = 160, limit: int | None = None):
    """(x_train, y_train, x_val, y_val, x_test, y_test), n_classes, source; x uint8 [N, 3, size, size]."""
    root = Path(root)
    train, test = (_class_files(root / d) for d in SPLIT_DIRS)
    classes = list(train)
    unknown = sorted(set(test) - set(classes))
    if unknown:
        raise UserError(f"{root / 'val'}: class folders {unknown[:3]} are not in {root / 'train'}")
    pairs = [(f, i) for i, c in enumerate(classes) for f in train[c]]
    test_pairs = [(f, classes.index(c)) for c in test for f in test[c]]
    perm = rng.permutation(len(pairs))
    n_val = max(1, len(pairs) // 10)
    val_pairs, train_pairs = [pairs[i] for i in perm[:n_val]], [pairs[i] for i in perm[n_val:]]
    if limit is not None and limit < len(train_pairs):
        factor = limit / len(train_pairs)
        train_pairs = _pick(train_pairs, limit, rng)
        val_pairs = _pick(val_pairs, max(1, round(len(val_pairs) * factor)), rng)
        test_pairs = _pick(test_pairs, max(1, round(len(test_pairs) * factor)), rng)
    parts = []
    for split in (train_pairs, val_pairs, test_pairs):
        x = np.stack([_decode(f, size) for f, _ in split]) if split else np.zeros((0, 3, size, size), np.uint8)
        parts += [x, np.array([y for _, y in split], dtype=np.int64)]
    return tuple(parts), len(classes), str(root)
