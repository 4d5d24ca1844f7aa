"""Write the OmniTokenizer fixtures under tests/fixtures/omni/ from the official code (FoundationVision/OmniTokenizer).

Run once, in a throwaway environment holding torch, einops, beartype, timm, pillow, tqdm and requests (the
packages its model code imports; the training stack it also imports is stubbed):

    python scripts/make_omni_fixtures.py --official-repo PATH/TO/OmniTokenizer

For each case the official encoder, decoder, pre/post-VQ projections and EMA codebook are built at a tiny size
with random weights (every parameter and float buffer perturbed, so that a wrong mapping shows), and saved as a
Lightning checkpoint in the released layout (`state_dict` with the `encoder.`, `decoder.`, `pre_vq_conv.`,
`post_vq_conv.`, `codebook.` prefixes, `hyper_parameters.args` an argparse.Namespace), beside the inputs and the
official outputs (pre-quantization latents, token ids, decoded frames) for a 9-frame clip and an image.
Cases: `rope` (stage 2/3 of the official recipe, the released joint checkpoints), `rel` (stage 1, the SDPA
path: the relative bias is computed but not used) and `rel_eager` (the non-SDPA path, bias and ALiBi added).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_env import namespace_package, stub_packages  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "omni"

TINY = dict(resolution=16, image_channels=3, patch_embed="linear", patch_size=4, temporal_patch_size=4,
            spatial_depth=4, temporal_depth=2, embedding_dim=16, dim_head=8, heads=2, enc_block="ttww",
            dec_block="tttt", twod_window_size=2, causal_in_temporal_transformer=True, causal_in_peg=True,
            n_codes=32, codebook_dim=4, l2_code=True, commitment_weight=1.0, no_random_restart=True,
            restart_thres=1.0, use_external_codebook=False, use_vae=False, attn_dropout=0.0, ff_dropout=0.0,
            ff_mult=4.0, norm_type="batch", sequence_length=9, defer_temporal_pool=False,
            defer_spatial_pool=False, gen_upscale=None, initialize_vit=False)
CASES = {"rope": dict(spatial_pos="rope"), "rel": dict(spatial_pos="rel"), "rel_eager": dict(spatial_pos="rel")}


def build(omni, args: argparse.Namespace) -> nn.ModuleDict:
    from einops.layers.torch import Rearrange
    from OmniTokenizer.modules.codebook import Codebook

    common = dict(image_size=args.resolution, image_channel=args.image_channels, norm_type=args.norm_type,
                  window_size=args.twod_window_size, spatial_pos=args.spatial_pos, patch_embed=args.patch_embed,
                  patch_size=args.patch_size, temporal_patch_size=args.temporal_patch_size,
                  temporal_depth=args.temporal_depth,
                  causal_in_temporal_transformer=args.causal_in_temporal_transformer,
                  causal_in_peg=args.causal_in_peg, dim=args.embedding_dim, dim_head=args.dim_head,
                  heads=args.heads, ff_mult=args.ff_mult)
    return nn.ModuleDict(dict(
        encoder=omni.OmniTokenizer_Encoder(block=args.enc_block, spatial_depth=len(args.enc_block), **common),
        decoder=omni.OmniTokenizer_Decoder(block=args.dec_block, spatial_depth=len(args.dec_block), **common),
        pre_vq_conv=nn.Sequential(Rearrange("b c t h w -> b t h w c"), nn.Linear(args.embedding_dim,
                                  args.codebook_dim), Rearrange("b t h w c -> b c t h w")),
        post_vq_conv=nn.Sequential(Rearrange("b c t h w -> b t h w c"), nn.Linear(args.codebook_dim,
                                   args.embedding_dim), Rearrange("b t h w c -> b c t h w")),
        codebook=Codebook(args.n_codes, args.codebook_dim, no_random_restart=True),
    ))


@torch.no_grad()
def perturb(model: nn.Module, generator: torch.Generator) -> None:
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if not t.is_floating_point() or name.startswith("codebook."):
            continue
        scale = 0.1 if t.ndim == 1 else 0.0
        t.add_(scale * torch.randn(t.shape, generator=generator))
    cb = model["codebook"]
    codes = torch.nn.functional.normalize(torch.randn(cb.embeddings.shape, generator=generator), dim=1)
    cb.embeddings.copy_(codes * (1 + 0.2 * torch.rand(codes.shape[0], 1, generator=generator)))
    cb.z_avg.copy_(cb.embeddings)
    cb.N.copy_(torch.rand(cb.N.shape, generator=generator) + 0.5)


@torch.no_grad()
def run(model: nn.ModuleDict, x: torch.Tensor, is_image: bool) -> dict[str, torch.Tensor]:
    """The official VQGAN.encode / decode computation, step by step."""
    pre = model["pre_vq_conv"](model["encoder"](x, is_image))  # (B, d, T', h, w)
    z = torch.nn.functional.normalize(pre, p=2, dim=1)
    ids = model["codebook"](z)["encodings"]  # (B, T', h, w)
    codes = torch.nn.functional.embedding(ids, model["codebook"].embeddings)  # (B, T', h, w, d)
    codes = codes.permute(0, 4, 1, 2, 3)
    decoded = model["decoder"](model["post_vq_conv"](codes), is_image)
    return {"pre_vq": pre, "ids": ids, "decoded": decoded}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", type=Path, required=True, help="a checkout of the official repository")
    parser.add_argument("--output", type=Path, default=OUT)
    opts = parser.parse_args(argv)
    stub_packages("torchvision", "pytorch_lightning", "lightning", "fairscale", "imageio")
    sys.path.insert(0, str(opts.official_repo))
    namespace_package("OmniTokenizer", opts.official_repo / "OmniTokenizer")
    import OmniTokenizer.omnitokenizer as omni
    import torch.nn.functional as F

    opts.output.mkdir(parents=True, exist_ok=True)
    for case, extra in CASES.items():
        torch.manual_seed(0)
        args = argparse.Namespace(**TINY, **extra)
        model = build(omni, args).eval()
        perturb(model, torch.Generator().manual_seed(1))
        gen = torch.Generator().manual_seed(2)
        video = torch.rand(1, 3, 9, 16, 16, generator=gen) * 2 - 1
        image = torch.rand(1, 3, 16, 16, generator=gen) * 2 - 1
        sdpa = F.scaled_dot_product_attention
        if case == "rel_eager":  # the official code takes its non-SDPA path when F has no SDPA
            del F.scaled_dot_product_attention
        try:
            outputs = {f"video_{k}": v for k, v in run(model, video, False).items()}
            outputs.update({f"image_{k}": v for k, v in run(model, image, True).items()})
        finally:
            F.scaled_dot_product_attention = sdpa
        state = {k: v.clone() for k, v in model.state_dict().items()}
        ckpt = {"state_dict": state, "hyper_parameters": {"args": args}, "pytorch-lightning_version": "1.5.4",
                "epoch": 0, "global_step": 0}
        torch.save(ckpt, opts.output / f"{case}.ckpt")
        torch.save({"video": video, "image": image, **{k: v.contiguous() for k, v in outputs.items()}},
                   opts.output / f"{case}_io.pt")
        size = sum((opts.output / f).stat().st_size for f in (f"{case}.ckpt", f"{case}_io.pt"))
        print(f"{case}: {sum(p.numel() for p in model.parameters())} parameters, {size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
