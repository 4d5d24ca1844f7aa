import io
import logging
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from vistok.data import ImageDataModule, ImageFolderDataset, collate_images, load_rgb, to_rgb, webdataset_images
from vistok.data.sample import SamplePhotoCrops, photo_dir


def _save(path, img, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


@pytest.mark.parametrize(
    "mode,make",
    [
        ("L", lambda: Image.new("L", (40, 30), 128)),
        ("P", lambda: Image.new("RGB", (40, 30), (10, 200, 30)).convert("P")),
        ("RGBA", lambda: Image.new("RGBA", (40, 30), (255, 0, 0, 0))),
        ("LA", lambda: Image.new("LA", (40, 30), (0, 255))),
        ("CMYK", lambda: Image.new("CMYK", (40, 30), (0, 0, 0, 0))),
        ("I;16", lambda: Image.fromarray(np.full((30, 40), 65535, dtype=np.uint16))),
    ],
)
def test_every_mode_becomes_rgb(mode, make):
    img = make()
    assert img.mode == mode
    rgb = to_rgb(img)
    assert rgb.mode == "RGB" and rgb.size == (40, 30)
    if mode == "RGBA":  # fully transparent red is composited on white
        assert rgb.getpixel((0, 0)) == (255, 255, 255)
    if mode == "I;16":  # 16-bit white stays white, not clipped garbage
        assert rgb.getpixel((0, 0)) == (255, 255, 255)


def test_corrupt_image_in_folder_is_skipped_and_reported(tmp_path, caplog):
    photo = load_rgb(photo_dir() / "chelsea.png")
    _save(tmp_path / "a" / "cat.jpg", photo)
    _save(tmp_path / "b" / "gray.png", photo.convert("L"))
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    ds = ImageFolderDataset(tmp_path, 32)
    assert len(ds) == 3
    with caplog.at_level(logging.WARNING, logger="vistok.data"):
        batch = collate_images([ds[i] for i in range(len(ds))])
    assert batch["image"].shape == (2, 3, 32, 32) and batch["skipped"] == 1
    assert "broken.png" in caplog.text
    strict = ImageFolderDataset(tmp_path, 32, strict=True)
    broken = [i for i, f in enumerate(strict.files) if f.name == "broken.png"][0]
    with pytest.raises(OSError, match="broken.png"):
        strict[broken]


def test_webdataset_shards_are_read(tmp_path):
    photo = load_rgb(photo_dir() / "astronaut.png")
    url = tmp_path / "train-000000.tar"
    with tarfile.open(url, "w") as tar:
        for i in range(5):
            buf = io.BytesIO()
            photo.crop((i * 10, 0, i * 10 + 64, 64)).save(buf, format="JPEG")
            for name, data in ((f"s{i}.jpg", buf.getvalue()), (f"s{i}.cls", str(i).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    samples = list(webdataset_images(str(url), 32))
    assert [s["key"] for s in samples] == [f"s{i}" for i in range(5)]
    assert [s["label"] for s in samples] == list(range(5))
    assert samples[0]["image"].shape == (3, 32, 32)


def test_sample_photos_hold_out_validation_and_are_real_images():
    val = SamplePhotoCrops("val", 32, 16)
    a, b = val[3]["image"], val[3]["image"]
    assert torch.equal(a, b)  # validation crops are fixed
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.01
    train = SamplePhotoCrops("train", 32, 16)
    assert set(val.names) == {"coffee.png", "rocket.jpg"} and not set(val.names) & set(train.names)
    assert len(train.names) >= 10


def test_datamodule_refuses_a_missing_source_before_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.train"):
        ImageDataModule(train=str(tmp_path / "missing"))


def test_channel_permutation_shuffles_colour_channels_of_the_same_crop():
    plain = SamplePhotoCrops("train", 32, 64)
    shuffled = SamplePhotoCrops("train", 32, 64, permute_channels=True)
    changed = 0
    for i in range(64):
        torch.manual_seed(i)
        a = plain[i]["image"]
        torch.manual_seed(i)
        b = shuffled[i]["image"]
        # Same crop, channels in some order: each channel of b is one of a's channels.
        assert all(any(torch.equal(b[c], a[d]) for d in range(3)) for c in range(3))
        changed += not torch.equal(a, b)
    assert changed > 20  # 5 of 6 permutations change a colour crop
    assert plain.permute_channels is False
