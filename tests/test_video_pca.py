"""The `make demo-video` recipe's parts: procedural training clips (`sample-moves`) and the per-patch linear paths of
the grid video tokenizer with their PCA start (vistok.data.sample_moves, vistok.nn.linear_path, pca_init)."""

import pytest
import torch
from torch.utils.data import DataLoader

from vistok import Tokenizer
from vistok.data.datamodule import DataModule
from vistok.data.sample_clips import SampleClips
from vistok.data.sample_moves import SampleMoves
from vistok.data.videos import ClipSpec, collate_videos
from vistok.decoders.omni import OmniDecoder
from vistok.metrics.video import evaluate_videos
from vistok.quantizers.fsq import FSQQuantizer
from vistok.tokenizers.omni import OmniEncoder
from vistok.tokenizers.pca_init import patch_pca_init

SPEC = ClipSpec(frames=9, size=32, fps=8)
NET = dict(image_size=32, patch_size=8, temporal_patch=4, width=32, num_heads=2, spatial_blocks=["full"],
           window_size=2, temporal_depth=1, temporal_window=3, token_dim=4)


@pytest.fixture(scope="module")
def clips_root(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _tokenizer(seed: int) -> Tokenizer:
    torch.manual_seed(seed)
    return Tokenizer(OmniEncoder(num_frames=9, linear_path=True, **NET), FSQQuantizer([16, 16, 16, 16]),
                     OmniDecoder(linear_path=True, **NET))


def test_sample_moves_are_fresh_reproducible_moving_clips():
    ds = SampleMoves(SPEC, length=100)
    a, again, b = ds[(3, 11)]["video"], ds[(3, 11)]["video"], ds[(3, 12)]["video"]
    assert a.shape == (3, 9, 32, 32) and a.dtype == torch.float32 and -1 <= a.min() and a.max() <= 1
    assert torch.equal(a, again), "an item is a pure function of its seed (resumable)"
    assert not torch.equal(a, b)
    clips = torch.stack([ds[(i, 1000 + i)]["video"] for i in range(16)])
    step = (clips[:, :, 1:] - clips[:, :, :-1]).abs().mean((1, 3, 4))  # (16, 8) mean change between frames
    assert (step > 0).float().mean() > 0.9, "the camera moves (a frozen frame is rare)"
    assert step.mean() < 0.2, "consecutive frames are close: a smooth move, not a cut"
    assert clips.std(0).mean() > 0.2, "items differ: photos, crops and moves are drawn per item"
    with pytest.raises(ValueError, match="spans 41 frames"):
        SampleMoves(ClipSpec(frames=41, size=32))


def test_the_data_module_trains_on_sample_moves_and_validates_on_the_held_out_clips(clips_root):
    dm = DataModule("sample-moves", "sample-moves", frames=9, image_size=32, fps=8, batch_size=2,
                         train_length=10, seed=0, cache_dir=str(clips_root))
    dm.setup("fit")
    assert isinstance(dm._train_ds, SampleMoves)
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (2, 3, 9, 32, 32)
    val = dm.val_dataloader().dataset
    assert isinstance(val, SampleClips) and val.split == "val"


@pytest.mark.parametrize("seed", [0, 1])
def test_patch_pca_start_beats_a_flat_image_on_held_out_clips_before_any_training(clips_root, seed):
    ds = SampleMoves(SPEC)
    fit = torch.stack([ds[(i, 7919 * seed + i)]["video"] for i in range(192)])
    tok = _tokenizer(seed)
    stats = patch_pca_init(tok, fit)
    assert 0.5 < stats["explained_variance_first"] < 1 and 0.5 < stats["explained_variance_rest"] < 1
    tok.eval()
    # The transformers start at zero: the tokenizer is exactly its per-patch linear paths.
    clip = fit[:2]
    torch.testing.assert_close(tok.encoder(clip), tok.encoder.linear_path(clip).flatten(1, 3))
    val = DataLoader(SampleClips("val", SPEC, cache_dir=clips_root), batch_size=4, collate_fn=collate_videos)
    with torch.no_grad():
        model = evaluate_videos(lambda x: tok.decode(tok.encode(x)), val, progress=False, name="pca")
        flat = evaluate_videos(lambda x: x.mean(dim=(2, 3, 4), keepdim=True).expand_as(x), val, progress=False,
                               name="flat")
    assert model["psnr"] > flat["psnr"] + 2.0, (model["psnr"], flat["psnr"])  # ~18 vs 15 dB here
    assert model["flicker"] < 6.0, model["flicker"]  # the original moves ~2.7 levels a frame
    # Causal still: the first frame's tokens depend on frame 0 alone.
    changed = clip.clone()
    changed[:, :, 1:] = -changed[:, :, 1:]
    assert torch.equal(tok.encode(clip)[:, :16], tok.encode(changed)[:, :16])
