"""ImageNet's class-folder layout (imagenet.py) on a tiny folder written here, and the official input scaling."""
import numpy as np
import pytest
from PIL import Image

from lab.errors import UserError
from resilinet.cli import main
from resilinet.data import load_dataset

CLASSES = ("n02", "n01", "n03")   # written out of order: indices follow the sorted names


def write_imagenet(root, n_train=6, n_val=2, seed=0):
    """ROOT/{train,val}/<class>/*.JPEG; class k's images have red channel ~ 40 + 80 k; sizes vary."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for name in CLASSES:
            k = sorted(CLASSES).index(name)
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(12, 30, size=2)
                img = rng.integers(0, 30, size=(h, w, 3), dtype=np.uint8)
                img[..., 0] = 40 + 80 * k
                Image.fromarray(img).save(root / split / name / f"{name}_{i}.JPEG", quality=95)
    return root


def test_class_folders_become_sorted_labels_and_images_are_resized_rgb(tmp_path):
    s = load_dataset("imagenet", str(write_imagenet(tmp_path)), image_size=16, standardise=False)
    assert s.n_classes == 3 and s.input_shape == (3, 16, 16)
    assert len(s.y_train) + len(s.y_val) == 18 and len(s.y_test) == 6 and len(s.y_val) == 1
    assert 0.0 <= float(s.x_train.min()) and float(s.x_train.max()) <= 1.0
    for x, y in ((s.x_train, s.y_train), (s.x_test, s.y_test)):   # red channel says the class
        red = x[:, 0].mean(dim=(1, 2)) * 255
        assert np.allclose(red.numpy(), 40 + 80 * y.numpy(), atol=6)


def test_limit_is_applied_before_decoding(tmp_path, monkeypatch):
    import resilinet.imagenet as imagenet

    root = write_imagenet(tmp_path, n_train=10, n_val=4)
    decoded = []
    real = imagenet._decode
    monkeypatch.setattr(imagenet, "_decode", lambda path, size: decoded.append(path) or real(path, size))
    s = load_dataset("imagenet", str(root), image_size=8, limit=10)
    assert len(s.y_train) == 10 and len(decoded) == len(s.y_train) + len(s.y_val) + len(s.y_test) < 42


def test_bad_folders_and_files_are_named(tmp_path):
    with pytest.raises(UserError, match="train: no such directory"):
        load_dataset("imagenet", str(tmp_path))
    root = write_imagenet(tmp_path / "a")
    (root / "val" / "n09").mkdir()
    (root / "val" / "n09" / "x.JPEG").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(UserError, match=r"class folders \['n09'\] are not in"):
        load_dataset("imagenet", str(root))
    (root / "train" / "n09").mkdir()
    (root / "train" / "n09" / "x.JPEG").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(UserError, match=r"x.JPEG: cannot decode as an image"):
        load_dataset("imagenet", str(root), image_size=8)


def test_train_runs_on_an_imagenet_folder_with_the_official_mobilenet(tmp_path, capsys):
    root = write_imagenet(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["train", "--quiet", "--preset", "paper", "--out", str(out), "model.arch=mobilenet",
                 "data.name=imagenet", f"data.root={root}", "data.image_size=32", "model.width=0.25",
                 "train.epochs=1", "train.batch_size=8", "train.augment=false"]) == 0
    assert "clean accuracy" in capsys.readouterr().out


def test_images_unstandardised_stay_in_0_1_as_the_official_input():
    raw = load_dataset("digits", standardise=False)
    assert float(raw.x_train.min()) == 0.0 and float(raw.x_train.max()) == 1.0
    std = load_dataset("digits")
    assert abs(float(std.x_train.mean())) < 1e-3
