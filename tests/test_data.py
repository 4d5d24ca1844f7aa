import io
import logging
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from vistok.data import DataModule, ImageFolderDataset, collate_images, load_rgb, to_rgb, webdataset_images
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


def test_training_data_and_encode_decode_webdataset_samples_alike(tmp_path):
    """One sample decoder (vistok.data.webdataset_sample) behind webdataset_images and `vistok encode`."""
    from vistok.data.webdataset_sample import decode_sample
    from vistok.shards.inputs import InputStream, plan_inputs

    photo = load_rgb(photo_dir() / "astronaut.png").resize((48, 40))
    png = io.BytesIO()
    photo.save(png, format="PNG")
    members = {"a.png": png.getvalue(), "a.cls": b"3\n", "b.txt": b"no image", "c.jpg": b"not a jpeg",
               "d.png": png.getvalue(), "d.label": b"cat"}
    url = tmp_path / "in-000.tar"
    with tarfile.open(url, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    img, label = decode_sample({"__key__": "a", "png": members["a.png"], "cls": b"3\n"})
    assert img.size == (48, 40) and img.mode == "RGB" and label == 3
    assert decode_sample({"__key__": "d", "png": members["d.png"], "label": b"cat"})[1] is None
    with pytest.raises(ValueError, match=r"no image \(jpg/jpeg/png/webp/bmp\) in sample b"):
        decode_sample({"__key__": "b", "txt": b"no image"})
    with pytest.raises(ValueError, match=r"cannot read image c\.jpg"):
        decode_sample({"__key__": "c", "jpg": b"not a jpeg"})

    train = list(webdataset_images(str(url), 32))  # unreadable samples skipped with a warning
    assert [(s["key"], s.get("label")) for s in train] == [("a", 3), ("d", None)]
    with pytest.raises(ValueError, match="no image .* in sample b"):
        list(webdataset_images(str(url), 32, strict=True))
    chunks = list(InputStream(plan_inputs([str(url)], 10), [0], 32, 8))
    meta = [m for c in chunks for m in c["meta"]]
    skipped = {s["source"].split("#")[1]: s["reason"] for c in chunks for s in c["skipped"]}
    assert [(m["source"].split("#")[1], m.get("label")) for m in meta] == [("a", 3), ("d", None)]
    assert skipped["b"].startswith("no image") and skipped["c"].startswith("cannot read image c.jpg")
    torch.testing.assert_close(torch.cat([c["images"] for c in chunks if c["images"] is not None]),
                               torch.stack([s["image"] for s in train]))


def test_sample_photos_hold_out_validation_and_are_real_images():
    val = SamplePhotoCrops("val", 32, 16)
    a, b = val[3]["image"], val[3]["image"]
    assert torch.equal(a, b)  # validation crops are fixed
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.01
    train = SamplePhotoCrops("train", 32, 16)
    photos = SamplePhotoCrops("photos", 32, 16)
    assert set(val.names) == {"coffee.png", "rocket.jpg"} and not set(val.names) & set(train.names)
    assert set(photos.names) == {"coffee.png", "rocket.jpg", "grace_hopper.jpg"}
    assert not set(photos.names) & set(train.names) and len(train.names) >= 10
    assert torch.equal(photos[5]["image"], photos[5]["image"])


def test_training_crops_range_from_patches_to_whole_photos_and_favour_colour():
    """Random-resized crops: some are native-resolution patches (sharp, little of the scene), some whole
    photos (a small one resized from the full picture); colour photos are drawn 3x as often."""
    import random

    from PIL import Image

    from vistok.data.sample import COLOUR_PHOTOS, random_resized_crop

    rng = random.Random(0)
    img = Image.new("RGB", (400, 300))
    boxes = []
    original = Image.Image.resize

    def spy(self, size, resample=None, box=None, reducing_gap=None):
        boxes.append(box)
        return original(self, size, resample, box, reducing_gap)

    Image.Image.resize = spy
    try:
        for _ in range(400):
            random_resized_crop(img, 32, rng, (0.005, 1.0))
    finally:
        Image.Image.resize = original
    areas = [(b[2] - b[0]) * (b[3] - b[1]) / (400 * 300) for b in boxes]
    assert min(areas) < 0.02 and max(areas) > 0.9
    train = SamplePhotoCrops("train", 32, 16)
    share = sum(w for n, w in zip(train.names, train.weights) if n in COLOUR_PHOTOS) / sum(train.weights)
    assert share > 0.6  # 7 colour photos x 3 against 8 grayscale ones


def test_datamodule_refuses_a_missing_source_before_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.train"):
        DataModule(train=str(tmp_path / "missing"))


def test_listing_reports_every_entry_it_does_not_read_and_follows_directory_symlinks_once(tmp_path, monkeypatch,
                                                                                           caplog):
    """Issue 11, item 4: symlinked and unreadable folders, broken and looping symlinks, FIFOs."""
    import os

    from vistok.data.images import scan_images

    photo = load_rgb(photo_dir() / "chelsea.png").resize((40, 30))
    root = tmp_path / "data"
    _save(root / "a" / "x.png", photo)
    _save(root / "elsewhere" / "y.png", photo)
    outside = _save(tmp_path / "outside" / "z.png", photo).parent
    _save(root / "locked" / "w.png", photo)
    (root / "linked").symlink_to(outside, target_is_directory=True)  # followed
    (root / "a" / "again").symlink_to(root / "elsewhere", target_is_directory=True)  # same folder twice
    (root / "a" / "up").symlink_to(root, target_is_directory=True)  # loop
    (root / "dangling.png").symlink_to(tmp_path / "missing.png")
    (root / "self.png").symlink_to(root / "self.png")
    os.mkfifo(root / "pipe.png")
    (root / "notes.txt").write_text("not an image")
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root ignores file modes, so deny the listing here
    listing = scan_images(root)
    assert [str(f.relative_to(root)) for f in listing.files] == ["a/x.png", "elsewhere/y.png", "linked/z.png"]
    reasons = dict(listing.skipped)
    assert set(reasons) == {"a/again", "a/up", "dangling.png", "self.png", "pipe.png", "locked"}
    assert "already listed" in reasons["a/again"] and "'elsewhere'" in reasons["a/again"]
    assert "already listed" in reasons["a/up"] and "broken symlink" in reasons["dangling.png"]
    assert "loop" in reasons["self.png"] and "FIFO" in reasons["pipe.png"]
    assert "Permission denied" in reasons["locked"] and listing.ignored == 1
    with caplog.at_level(logging.WARNING, logger="vistok.data"):
        ds = ImageFolderDataset(root, 32)
    assert len(ds) == 3 and all(name in caplog.text for name in ("pipe.png", "dangling.png", "locked"))
    with pytest.raises(OSError, match="cannot read"):
        ImageFolderDataset(root, 32, strict=True)


def test_huge_image_is_refused_from_its_header_before_decoding(tmp_path):
    """Issue 11, item 12: a small file that would decode to gigabytes is skipped, naming it; configurable."""
    big = _save(tmp_path / "big.png", Image.new("L", (9000, 8000)))
    assert big.stat().st_size < 200_000
    with pytest.raises(OSError, match=r"big.png: 9000x8000 pixels \(72.0 megapixels\) exceed the limit of 64 "):
        load_rgb(big)
    ds = ImageFolderDataset(tmp_path, 32)
    assert ds[0] is None
    assert ImageFolderDataset(tmp_path, 32, max_pixels=10**8).max_pixels == 10**8
    assert load_rgb(photo_dir() / "chelsea.png", max_pixels=None).size == (451, 300)
    with pytest.raises(OSError, match="exceed the limit of 0.001 megapixels"):
        load_rgb(photo_dir() / "chelsea.png", max_pixels=1000)


def _fit(root, steps=3, batch_size=1):
    import lightning.pytorch as pl

    from vistok.tokenizers import build_tokenizer
    from vistok.trainers.system import TokenizerSystem

    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu", devices=1)
    dm = DataModule(train=str(root), val=None, batch_size=batch_size)
    trainer.fit(TokenizerSystem(build_tokenizer("titok-tiny")), dm)
    return trainer


def test_training_skips_a_batch_whose_images_were_all_skipped_and_refuses_an_all_corrupt_folder(tmp_path):
    """Issue 11, item 9."""
    photo = load_rgb(photo_dir() / "chelsea.png").resize((40, 30))
    _save(tmp_path / "good" / "a.png", photo)
    (tmp_path / "good" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    trainer = _fit(tmp_path / "good")
    assert trainer.global_step == 3  # batches of one corrupt image were skipped, the good image trained
    for name in ("b.png", "c.png"):
        (tmp_path / "bad" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "bad" / name).write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"none of the 2 images under .*bad can be read \(first: cannot read image"):
        _fit(tmp_path / "bad")
