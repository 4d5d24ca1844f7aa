"""Video data (issue 14, items 4 and 7): reading mp4/webm/gif/avi with PyAV, clip sampling, pad vs skip, frame
rate resampling, bad files skipped with their name and reason, webdataset video shards, image/video mixing,
and the embedded sample clips. Every video here is written by the test with PyAV."""

from __future__ import annotations

import hashlib
import io
import logging
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vistok.data.datamodule import DataModule
from vistok.data.images import load_rgb
from vistok.data.mixing import MixedBatches, mix_position
from vistok.data.sample import HELD_OUT_PHOTOS, TRAIN_PHOTOS, photo_dir
from vistok.data.sample_clips import GIF, SampleClips, clip_dir, render_move
from vistok.data.video_io import probe_video, read_video, write_video
from vistok.data.videos import ClipSpec, ClipTooShort, VideoFolderDataset, collate_videos, load_clip, webdataset_videos


def levels(n: int, step: int = 12, h: int = 32, w: int = 48) -> np.ndarray:
    """n flat grey frames, frame i at level i * step: the frame index survives lossy coding."""
    return np.stack([np.full((h, w, 3), i * step, np.uint8) for i in range(n)])


def index_of(frames: np.ndarray | torch.Tensor, step: int = 12) -> list[int]:
    """The frame index each decoded frame of `levels` shows."""
    if isinstance(frames, torch.Tensor):  # (3, T, H, W) in [-1, 1]
        means = ((frames + 1) * 127.5).mean((0, 2, 3)).tolist()
    else:
        means = frames.reshape(len(frames), -1).mean(1).tolist()
    return [round(m / step) for m in means]


@pytest.fixture(scope="module")
def pan() -> np.ndarray:
    """12 frames of a camera pan over a real photo, 64 wide and 48 high."""
    photo = load_rgb(photo_dir() / "chelsea.png")
    return render_move(photo, "pan", random.Random(1), 12, 64)[:, 8:56]


@pytest.fixture(scope="module")
def clips_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("ext,tolerance", [(".mp4", 8), (".webm", 10), (".avi", 12), (".mkv", 8), (".gif", 24)])
def test_each_container_reads_back_the_frames_it_was_written_with(tmp_path, pan, ext, tolerance):
    path = write_video(tmp_path / f"pan{ext}", pan, fps=10)
    info = probe_video(path)
    assert (info.width, info.height) == (64, 48) and info.count() == 12
    frames, fps = read_video(path)
    assert frames.shape == (12, 48, 64, 3) and frames.dtype == np.uint8 and fps == pytest.approx(10)
    err = np.abs(frames.astype(float) - pan.astype(float)).mean((1, 2, 3))  # (12,) levels
    assert err.max() < tolerance  # GIF: FFmpeg's fixed 8-bit palette, coarse colours
    # the order is kept: every decoded frame is nearest to its own original
    dist = np.abs(frames[:, None].astype(float) - pan[None].astype(float)).mean((2, 3, 4))
    assert (dist.argmin(1) == np.arange(12)).all()
    # and the bytes path reads the same frames (webdataset members are bytes)
    again, _ = read_video(path.read_bytes(), name=path.name)
    assert np.array_equal(again, frames)


def test_bundled_animated_gif_is_read_with_alpha_on_white():
    frames, fps = read_video(photo_dir() / GIF)
    assert frames.shape == (24, 25, 14, 3) and fps == pytest.approx(100 / 7)
    diffs = np.abs(np.diff(frames.astype(float), axis=0)).mean((1, 2, 3))
    assert (diffs > 0).all()  # a real animation: every frame differs from the last


def test_clip_sampling_shapes_stride_and_shared_crop(tmp_path):
    path = write_video(tmp_path / "ramp.mp4", levels(20), fps=10)
    spec = ClipSpec(frames=4, size=16, stride=3)
    clip = load_clip(path, spec)  # evaluation: the first frames
    assert clip.shape == (3, 4, 16, 16) and clip.dtype == torch.float32
    assert index_of(clip) == [0, 3, 6, 9]
    starts = set()
    for seed in range(12):  # training: a random start, stride kept, inside the video
        idx = index_of(load_clip(path, spec, random.Random(seed), flip=True))
        assert np.diff(idx).tolist() == [3, 3, 3] and 0 <= idx[0] and idx[-1] <= 19
        starts.add(idx[0])
    assert len(starts) >= 4
    # one crop box (and flip) for every frame of a clip: a static scene stays static after cropping
    still = np.repeat(np.asarray(load_rgb(photo_dir() / "astronaut.png").resize((64, 48)))[None], 6, axis=0)
    clip = load_clip(write_video(tmp_path / "still.mp4", still, fps=10), ClipSpec(6, 24), random.Random(3), True)
    assert (clip[:, 1:] - clip[:, :-1]).abs().mean() < 0.02


def test_short_video_is_padded_with_its_last_frame_or_skipped(tmp_path, caplog):
    path = write_video(tmp_path / "short" / "five.mp4", levels(5), fps=10)
    padded = load_clip(path, ClipSpec(frames=8, size=16))
    assert index_of(padded) == [0, 1, 2, 3, 4, 4, 4, 4]
    with pytest.raises(ClipTooShort, match=r"five.mp4 is too short: 5 of the 8 frames"):
        load_clip(path, ClipSpec(frames=8, size=16, short="skip"))
    ds = VideoFolderDataset(tmp_path / "short", ClipSpec(frames=8, size=16, short="skip"))
    with caplog.at_level(logging.WARNING, logger="vistok.data"):
        batch = collate_videos([ds[0]])
    assert batch["skipped"] == 1 and batch["video"].shape[0] == 0 and "five.mp4 is too short" in caplog.text
    with pytest.raises(ValueError, match="short must be one of"):
        ClipSpec(short="loop")


def test_frame_rates_are_resampled_to_the_configured_fps(tmp_path):
    # variable frame rate: each frame has its own timestamp; at 10 fps every target takes the nearest frame
    times = [0, 0.1, 0.15, 0.4, 0.5, 0.9, 1.0, 1.05, 1.3, 1.6]
    path = write_video(tmp_path / "vfr.mp4", levels(10), fps=10, times=times)
    frames, fps = read_video(path, fps=10)
    assert fps == 10 and index_of(frames) == [0, 1, 2, 3, 3, 4, 4, 4, 5, 5, 6, 7, 8, 8, 8, 9, 9]
    # 30 fps read at 10 fps: every third frame, the same clip duration as a 10 fps file
    fast = write_video(tmp_path / "fast.mp4", levels(18, step=14), fps=30)
    assert index_of(read_video(fast, fps=10)[0], step=14) == [0, 3, 6, 9, 12, 15]
    assert index_of(load_clip(fast, ClipSpec(frames=3, size=16, fps=5)), step=14) == [0, 6, 12]
    # a GIF with per-frame delays (the bundled one: 70 ms) read at 10 fps keeps its duration (1.68 s)
    gif, _ = read_video(photo_dir() / GIF, fps=10)
    assert len(gif) == 17


def test_corrupt_truncated_and_unsupported_files_are_skipped_with_name_and_reason(tmp_path, pan, caplog):
    root = tmp_path / "videos"
    write_video(root / "good.mp4", pan, fps=10)
    data = write_video(tmp_path / "whole.mp4", pan, fps=10).read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: lost
    (root / "noise.webm").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)))
    (root / "empty.avi").write_bytes(b"")
    (root / "still.gif").write_bytes(b"GIF89a not really")
    (root / "notes.txt").write_text("not a video")  # not an input: ignored
    ds = VideoFolderDataset(root, ClipSpec(frames=8, size=16))
    assert sorted(p.name for p in ds.files) == ["empty.avi", "good.mp4", "noise.webm", "still.gif", "truncated.mp4"]
    with caplog.at_level(logging.WARNING, logger="vistok.data"):
        batch = collate_videos([ds[i] for i in range(len(ds))])
    assert batch["video"].shape == (1, 3, 8, 16, 16) and batch["skipped"] == 4 and batch["key"] == ["good"]
    for name in ("truncated.mp4", "noise.webm", "empty.avi", "still.gif"):
        line = next(r.getMessage() for r in caplog.records if name in r.getMessage())
        assert "cannot" in line and line.split(name, 1)[1].strip(" :")  # a reason follows the name
    strict = VideoFolderDataset(root, ClipSpec(frames=8, size=16), strict=True)
    bad = [i for i, f in enumerate(strict.files) if f.name == "truncated.mp4"][0]
    with pytest.raises(OSError, match="truncated.mp4"):
        strict[bad]
    # a file cut inside its data (WebM keeps its header first) decodes what is there: a short clip, padded
    webm = write_video(tmp_path / "pan.webm", pan, fps=10).read_bytes()
    (tmp_path / "cut.webm").write_bytes(webm[: int(len(webm) * 0.6)])
    clip = load_clip(tmp_path / "cut.webm", ClipSpec(frames=12, size=16))
    assert clip.shape == (3, 12, 16, 16)
    assert (clip[:, -1] == clip[:, -2]).all()  # padded with the last decoded frame
    with pytest.raises(FileNotFoundError, match="no videos"):
        VideoFolderDataset(_empty(tmp_path), ClipSpec())


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir(exist_ok=True)
    (tmp_path / "empty" / "a.txt").write_text("x")
    return tmp_path / "empty"


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_webdataset_shards_of_video_files(tmp_path, pan, caplog):
    mp4 = write_video(tmp_path / "a.mp4", pan, fps=10).read_bytes()
    gif = (photo_dir() / GIF).read_bytes()
    shard = _tar(tmp_path / "videos-000000.tar", {
        "clip1.mp4": mp4, "clip1.cls": b"3",
        "clip2.gif": gif, "clip2.cls": b"5",
        "broken.mp4": b"not a video at all", "broken.cls": b"1",
        "nothing.txt": b"no video member",
    })
    spec = ClipSpec(frames=8, size=16, fps=10)
    with caplog.at_level(logging.WARNING, logger="vistok.data"):
        samples = list(webdataset_videos(str(shard), spec))
    assert [s["key"] for s in samples] == ["clip1", "clip2"] and [s["label"] for s in samples] == [3, 5]
    assert all(s["video"].shape == (3, 8, 16, 16) for s in samples)
    assert "broken.mp4" in caplog.text and "videos-000000.tar" in caplog.text and "no video" in caplog.text
    batch = collate_videos(samples)
    assert batch["video"].shape == (2, 3, 8, 16, 16) and batch["label"].tolist() == [3, 5]
    with pytest.raises(OSError, match="broken.mp4"):
        list(webdataset_videos(str(shard), spec, strict=True))


def test_sample_clips_are_deterministic_realistic_and_hold_out_the_image_split(tmp_path, clips_root):
    root = clip_dir(cache_dir=clips_root)
    other = clip_dir(cache_dir=tmp_path / "again")  # written again from scratch: the same bytes
    digest = lambda d: {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted(d.rglob("*.mp4"))}
    assert digest(root) == digest(other) and len(digest(root)) == 4 * (len(TRAIN_PHOTOS) + len(HELD_OUT_PHOTOS))
    train = {p.name.split("-")[0] for p in (root / "train").glob("*.mp4")}
    held = {p.name.split("-")[0] for p in (root / "val").glob("*.mp4")}
    assert held == {Path(n).stem for n in HELD_OUT_PHOTOS} and not train & held
    assert (root / "train" / GIF).is_file()
    val = SampleClips("val", ClipSpec(frames=17, size=32, fps=8), cache_dir=clips_root)
    assert len(val) == 12
    clips = torch.stack([val[i]["video"] for i in range(len(val))])  # (12, 3, 17, 32, 32)
    again = SampleClips("val", ClipSpec(frames=17, size=32, fps=8), cache_dir=clips_root)
    assert torch.equal(clips, torch.stack([again[i]["video"] for i in range(len(again))]))
    step = ((clips[:, :, 1:] - clips[:, :, :-1]).abs() * 127.5).mean((1, 3, 4))  # (12, 16) levels per step
    assert (step > 0.05).all()  # the camera never stands still
    assert step.mean() < 12  # ... and moves a few pixels per frame, not a slideshow
    far = ((clips[:, :, -1] - clips[:, :, 0]).abs() * 127.5).mean((1, 2, 3))
    assert (far > step.mean(1)).all()  # motion accumulates: the last frame is further from the first
    colour = clips.std((2, 3, 4)).mean()  # real photos: textured, not flat
    assert colour > 0.15
    train_ds = SampleClips("train", ClipSpec(frames=9, size=32, fps=8), length=50, cache_dir=clips_root)
    a, b = train_ds[(3, 12345)], train_ds[(3, 12345)]
    assert torch.equal(a["video"], b["video"]) and a["video"].shape == (3, 9, 32, 32)
    assert not torch.equal(a["video"], train_ds[(3, 999)]["video"])


def test_mixed_batches_follow_the_ratio_and_resume_where_they_stopped(clips_root):
    assert [mix_position(n, 1, 2) for n in range(5)] == [(0, 0), (1, 0), (1, 1), (1, 2), (2, 2)]

    def module() -> DataModule:
        dm = DataModule("sample-clips", None, frames=5, image_size=16, fps=8, batch_size=2, images="sample",
                             image_batch_size=3, mix=(1, 2), train_length=24, seed=7, cache_dir=str(clips_root))
        dm.setup("fit")
        return dm

    loader = module().train_dataloader()
    assert isinstance(loader, MixedBatches) and len(loader) == 12  # min(24 // 2, 24 // 3 // 2) = 4 patterns
    batches = list(loader)
    assert len(batches) == 12
    kinds = ["video" if "video" in b else "image" for b in batches]
    assert kinds == ["video", "image", "image"] * 4
    assert all(b["video"].shape == (2, 3, 5, 16, 16) for b in batches if "video" in b)
    assert all(b["image"].shape == (3, 3, 16, 16) for b in batches if "image" in b)
    assert all(b["skipped"] == 0 for b in batches)
    resumed = module()
    resumed.load_state_dict({"seed": 7, "epoch": 0, "batches": 5})
    rest = list(resumed.train_dataloader())
    assert len(rest) == 7
    for got, want in zip(rest, batches[5:]):
        kind = "video" if "video" in want else "image"
        assert got["key"] == want["key"] and torch.equal(got[kind], want[kind])
    with pytest.raises(ValueError, match="data.mix"):
        DataModule(mix=(1, 0))
    with pytest.raises(FileNotFoundError, match="data.train"):
        DataModule(train="/no/such/videos")


def test_one_data_module_takes_its_kind_from_the_source_and_refuses_fields_of_the_other_kind(tmp_path, pan):
    """Images and clips come from the same module: the training source's name (or `kind`) decides, and a field
    that only means something for the other kind fails before any work, naming it."""
    from PIL import Image

    assert DataModule("sample", None).batch_kinds == {"image"}
    assert DataModule("sample-clips", None).batch_kinds == {"video"}
    assert DataModule("sample-clips", None, images="sample").batch_kinds == {"video", "image"}
    videos, stills = tmp_path / "videos", tmp_path / "stills"
    videos.mkdir(), stills.mkdir()
    write_video(videos / "pan.mp4", pan, fps=10)
    Image.fromarray(pan[0]).save(stills / "frame.png")
    assert DataModule(str(videos), None).kind == "video" and DataModule(str(stills), None).kind == "image"
    urls = str(tmp_path / "shard-{000..001}.tar")
    assert DataModule(urls, None).kind == "image" and DataModule(urls, None, kind="video").kind == "video"
    assert DataModule(urls, None, images="sample").kind == "video"  # only video training mixes images in
    clips = DataModule(str(videos), None, frames=5, image_size=16, batch_size=1)
    clips.setup("fit")
    batch = next(iter(clips.train_dataloader()))
    assert batch["video"].shape == (1, 3, 5, 16, 16)
    with pytest.raises(ValueError, match="data.images"):
        DataModule("sample", None, images="sample")
    with pytest.raises(ValueError, match="data.fps"):
        DataModule("sample", None, fps=8)
    with pytest.raises(ValueError, match="data.kind"):
        DataModule("sample", None, kind="audio")
    with pytest.raises(FileNotFoundError, match="data.images"):
        DataModule("sample-clips", None, images=str(tmp_path / "missing"))


def test_lightning_trains_on_alternating_video_and_image_batches(clips_root, tmp_path):
    import lightning.pytorch as pl

    class Counter(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: list[tuple[str, tuple[int, ...]]] = []

        def training_step(self, batch, _):
            x = batch["video"] if "video" in batch else batch["image"]
            self.seen.append(("video" if "video" in batch else "image", tuple(x.shape)))
            return (self.w * x.mean()).sum() + self.w.pow(2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = DataModule("sample-clips", None, frames=5, image_size=16, fps=8, batch_size=2, images="sample",
                         image_batch_size=4, mix=(2, 1), train_length=40, seed=0, cache_dir=str(clips_root))
    model = Counter()
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert [k for k, _ in model.seen] == ["video", "video", "image"] * 2
    assert model.seen[0][1] == (2, 3, 5, 16, 16) and model.seen[2][1] == (4, 3, 16, 16)
