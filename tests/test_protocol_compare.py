"""Results side by side (`vistok eval --compare`, `vistok.metrics.protocol`): a comparison between results whose
protocols differ warns, naming each differing field; the model card records each metric's protocol."""

from __future__ import annotations

import copy
import json

import pytest

from vistok.metrics.protocol import compare, load_result, protocol_differences


def _result(images: int = 6, sha: str = "2ecbe4ce", side: int = 32) -> dict:
    return {"input": "sample", "num_images": images, "rows": [
        {"method": "tokenizer", "tokens": 1, "psnr": 14.0, "ssim": 0.3, "rfid": 90.0, "lpips_vgg": 0.5},
        {"method": "tokenizer", "tokens": 8, "psnr": 16.5, "ssim": 0.4, "rfid": 80.0, "lpips_vgg": 0.4}],
        "protocol": {
            "rfid": {"network": "Inception-v3", "weights_sha256": "aa",
                     "resolution": f"{side}x{side} resized to 299x299", "images": images,
                     "reference_stats": f"the {images} original images"},
            "lpips_vgg": {"net": "vgg", "weights_sha256": sha, "resolution": f"{side}x{side} (native, no resize)",
                          "images": images},
            "psnr": {"input": "8-bit images", "resolution": f"{side}x{side}", "images": images}}}


def test_the_same_protocol_compares_without_warnings():
    a = _result()
    table, differences = compare(a, copy.deepcopy(a), ("mine", "theirs"))
    assert differences == []
    assert "mine" in table and "theirs" in table and "16.5" in table  # the row at the largest token count


def test_each_differing_protocol_field_is_named():
    a, b = _result(images=6, sha="2ecbe4ce"), _result(images=50, sha="ffff0000", side=64)
    b["protocol"]["rfid"]["reference_stats"] = "imagenet_val.npz (50000 images)"
    differences = protocol_differences(a, b)
    assert "lpips_vgg.weights_sha256: '2ecbe4ce' vs 'ffff0000'" in differences
    assert "rfid.images: 6 vs 50" in differences and "psnr.resolution: '32x32' vs '64x64'" in differences
    assert any(d.startswith("rfid.reference_stats: 'the 6 original images' vs 'imagenet_val.npz") for d in differences)
    del b["protocol"]["lpips_vgg"]
    assert "lpips_vgg: measured only in A" in protocol_differences(a, b)
    old = _result()
    del old["protocol"]
    assert "record(s) no protocol" in protocol_differences(a, old)[0]


def test_video_protocol_fields_frames_and_fps_are_compared():
    a = {"clips": 4, "frames": 17, "psnr": 20.0, "fvd": 300.0,
         "protocol": {"fvd": {"network": "I3D", "weights_sha256": "cc", "frames": 16, "fps": 8.0, "clips": 4}}}
    b = copy.deepcopy(a)
    b["protocol"]["fvd"].update(fps=24.0, clips=64)
    assert protocol_differences(a, b) == ["fvd.fps: 8.0 vs 24.0", "fvd.clips: 4 vs 64"]
    assert protocol_differences(a, _result())[0] == "kind: video vs image"


def test_load_result_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.json or video_metrics.json"):
        load_result(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"metrics.json: not a JSON results file"):
        load_result(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a `vistok eval` result"):
        load_result(tmp_path / "metrics.json")


def test_eval_compare_warns_and_the_model_card_records_the_protocol(tmp_path, capsys):
    from vistok.cli import main
    from vistok.tokenizers import build_tokenizer

    tok = build_tokenizer("titok-tiny")
    model = tok.save_pretrained(tmp_path / "model")
    common = ["eval", "--model", str(model), "--no-fid", "--baselines", "none", "--num-tokens", "8",
              "--batch-size", "4"]
    main([*common, "--limit", "4", "--output", str(tmp_path / "a")])
    capsys.readouterr()
    main([*common, "--limit", "6", "--output", str(tmp_path / "b"), "--compare", str(tmp_path / "a")])
    out, err = capsys.readouterr()
    assert "compared with" in out and "this run" in out
    assert "warning: protocols differ: lpips_vgg.images: 6 vs 4" in err
    assert "warning: protocols differ: psnr.images: 6 vs 4" in err

    # The card of an export given that evaluation: its numbers and each metric's protocol.
    export = tok.save_pretrained(tmp_path / "export", evaluation=[load_result(tmp_path / "b")])
    card = (export / "README.md").read_text()
    metrics = card.split("## Metrics", 1)[1].split("## Use", 1)[0]
    assert "sample (6 images;" in metrics and "psnr " in metrics and "Protocol, per metric:" in metrics
    assert "- lpips_vgg: " in metrics and "weights_sha256=2ecbe4ce" in metrics and "images=6" in metrics
    assert "- psnr: input=8-bit images; resolution=32x32; images=6" in metrics
    plain = (tok.save_pretrained(tmp_path / "plain") / "README.md").read_text()
    assert "Not measured at export" in plain and "vistok export --eval" in plain
