"""Time vistok's FlexTok against the official inference code (apple/ml-flextok) on the same weights.

Run in the throwaway environment of scripts/make_flextok_fixtures.py (the official repository's dependencies):

    python scripts/flextok_speed.py --official-repo PATH/TO/ml-flextok [--width 256 --depth 4 --image 128]

It builds the official model with random weights (config in the released format, SDPA with a materialised mask
on a CPU, flex attention on a GPU), saves it as a released-style checkpoint, imports it with
`vistok.importers.flextok`, then times encode and decode at 1, 8 and 25 steps without and with guidance (APG,
scale 7.5) for both, median of `--repeats` runs, and prints a markdown table with the largest difference
between the two outputs (same seed for the posterior sample and the sampling noise).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _fixture_module():
    path = Path(__file__).with_name("make_flextok_fixtures.py")
    spec = importlib.util.spec_from_file_location("make_flextok_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(fn, repeats: int, sync) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


class Rows:
    """Prints each table row as soon as it is measured (a long run shows its progress)."""

    def append(self, row: tuple[str, float, float, str]) -> None:
        name, a, b, note = row
        print(f"| {name} | {a:.3f} | {b:.3f} | {b / a:.2f} | {note} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-repo", required=True)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--image", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    fx = _fixture_module()
    sys.path.insert(0, str(Path(args.official_repo).resolve()))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import diffusers  # noqa: F401  (before the torchvision stand-in)

    fx.stub_torchvision()
    from diffusers import AutoencoderKL
    from flextok.model.layers.attention import FlexAttention
    from hydra.utils import instantiate
    from safetensors.torch import save_file

    from vistok import Tokenizer
    from vistok.importers.flextok import import_checkpoint

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    work = Path(tempfile.mkdtemp(prefix="flextok_speed_"))
    torch.manual_seed(0)
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  block_out_channels=(32, 32, 64, 64), layers_per_block=1, latent_channels=16,
                  norm_num_groups=8).save_pretrained(str(work / "vae"))
    grid = args.image // 16
    config = fx.model_config(str(work / "vae"), args.width, args.width, args.depth, args.depth, 64, args.tokens, grid)
    on_gpu = device.type == "cuda"
    if not on_gpu:  # no compiler for flex attention on a CPU: the SDPA fallback with a materialised mask
        for part in ("encoder", "decoder"):
            for m in config[part]["module_dict"].values():
                if m["_target_"].endswith("BlockWiseSequencePacker"):
                    m["return_materialized_mask"] = True
    else:
        for part in ("encoder", "decoder"):
            for m in config[part]["module_dict"].values():
                m.pop("return_materialized_mask", None)
    model = instantiate(copy.deepcopy(config)).eval()
    for m in model.modules():
        if isinstance(m, FlexAttention):
            m.use_flex_attention = on_gpu
    fx.randomise(model)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(work / "model.safetensors"),
              metadata={k: str(v) for k, v in config.items()})
    tok = Tokenizer.from_pretrained(import_checkpoint(str(work / "model.safetensors"), str(work / "export"),
                                                      vae=str(work / "vae")))
    model.to(device)
    tok.to(device)
    images = (torch.rand(args.batch, 3, args.image, args.image, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    images = images.to(device)
    print(f"FlexTok width {args.width}, depth {args.depth}+{args.depth}, {args.tokens} registers, {args.image} px, "
          f"batch {args.batch}, {device} ({torch.get_num_threads()} threads), median of {args.repeats}")
    print("| call | official (s) | vistok (s) | vistok / official | outputs |")
    print("| --- | --- | --- | --- | --- |", flush=True)
    rows = Rows()
    with torch.no_grad():
        def official_encode():
            torch.manual_seed(7)
            return model.tokenize(images)

        def ours_encode():
            torch.manual_seed(7)
            return tok.encode(images)

        t_off, ids_off = _timed(official_encode, args.repeats, sync)
        t_ours, ids = _timed(ours_encode, args.repeats, sync)
        same = torch.equal(torch.cat(ids_off).cpu(), ids.cpu())
        rows.append(("encode", t_off, t_ours, "ids equal" if same else "ids DIFFER"))
        for steps in (1, 8, 25):
            for scale in (1.0, 7.5):
                def official_decode(steps=steps, scale=scale):
                    gen = torch.Generator(device).manual_seed(3)
                    return model.detokenize(ids_off, vae_image_sizes=args.image // 8, timesteps=steps,
                                            generator=gen, guidance_scale=scale, perform_norm_guidance=True,
                                            verbose=False)

                def ours_decode(steps=steps, scale=scale):
                    return tok.decode(ids, steps=steps, guidance_scale=scale, seed=3)

                t_off, a = _timed(official_decode, args.repeats, sync)
                t_ours, b = _timed(ours_decode, args.repeats, sync)
                diff = float((a.clamp(-1, 1) - b).abs().max())
                rows.append((f"decode {steps} steps, guidance {scale:g}", t_off, t_ours, f"max diff {diff:.1e}"))


if __name__ == "__main__":
    main()
