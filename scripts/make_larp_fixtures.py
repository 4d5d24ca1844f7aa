"""Write the LARP fixtures under tests/fixtures/larp/ from the official code (hywang66/LARP).

Run once, in a throwaway environment holding torch, timm==1.0.9 (LARP's blocks; later timm changed a LayerNorm
eps), einops, easydict, huggingface_hub, safetensors, numpy, pyyaml and pillow (the packages its model code
imports; lpips, torchvision and its training utilities are stubbed):

    python scripts/make_larp_fixtures.py --official-repo PATH/TO/LARP

The official `LARPTokenizer` is built at a tiny size from the repository's own tokenizer config (the values of
cfgs/larp_tokenizer.yaml with smaller widths) with random weights (float parameters perturbed, so that a wrong
mapping shows) and written as the released tokenizers are: `save_pretrained` of its Hugging Face mixin
(`model.safetensors` + `config.json`). Its AR prior is a GPTC with 1 layer of width 64 (registered here as
"gptc-fixture"; the released "gptc-S" is 12 x 384). Beside it: a clip, and the official outputs with the VQ
deterministic (`set_vq_eval_deterministic`) in eval mode: the bottleneck's projection (`projected_z`), the
token ids, the decoded frames, and the prior's first-round logits (with the prior's attention dropout set to 0:
the official attention passes its dropout probability to SDPA whatever the mode, so its eval output is random).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_env import stub_packages  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "larp"

TINY = dict(bottleneck_token_num=8, input_size=16, frame_num=8, temporal_patch_size=4, patch_size=4,
            decoder_temporal_patch_size=4, decoder_patch_size=4, in_channels=3, encoder_hidden_size=32,
            decoder_hidden_size=32, encoder_num_heads=2, decoder_num_heads=2, encoder_depth=1, decoder_depth=1)
BOTTLENECK_DIM, CODEBOOK = 4, 32


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", type=Path, required=True, help="a checkout of the official repository")
    parser.add_argument("--output", type=Path, default=OUT)
    opts = parser.parse_args(argv)
    stub_packages("torchvision", "lpips", "utils", "ar", "wandb")
    sys.path.insert(0, str(opts.official_repo))
    import models
    import yaml
    from models.gptc import GPTC, GPTCConfig

    models.models["gptc-fixture"] = lambda **kwargs: GPTC(GPTCConfig(n_layer=1, n_head=1, n_embd=64, **kwargs))
    cfg = yaml.safe_load((opts.official_repo / "cfgs" / "larp_tokenizer.yaml").read_text())["model"]["args"]
    cfg.update(TINY)
    cfg["bottleneck"]["args"]["bottleneck_dim"] = BOTTLENECK_DIM
    cfg["bottleneck"]["args"]["regularizer"]["args"]["codebook_size"] = CODEBOOK
    cfg["prior_model"]["name"] = "gptc-fixture"
    torch.manual_seed(0)
    model = models.make({"name": "larp_tokenizer", "args": cfg}).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))  # the zero-initialised output layer too
    model.set_vq_eval_deterministic(True)
    for block in model.prior_model.blocks:  # its SDPA call drops attention weights even in eval mode
        block.attn.p_attn_drop = 0.0
    video = torch.rand(2, 3, 8, 16, 16, generator=gen) * 2 - 1
    with torch.no_grad():
        enc = model.encode(video)
        decoded = model.decode(enc["encoded"])
        prior_out = model.prior_model.ar_predict(enc["regularized_z"])
        logits, _ = model.calculate_logits_and_ar_pred_cont(prior_out)
    opts.output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(opts.output / "tokenizer")
    (opts.output / "tokenizer" / "README.md").unlink(missing_ok=True)  # the mixin's generic card
    torch.save({"video": video, "projected_z": enc["projected_z"], "ids": enc["bottleneck_rep"],
                "decoded": decoded, "prior_logits": logits}, opts.output / "io.pt")
    size = sum(f.stat().st_size for f in opts.output.rglob("*") if f.is_file())
    print(f"{sum(p.numel() for p in model.parameters())} parameters, {size / 1e3:.0f} kB in {opts.output}")


if __name__ == "__main__":
    main()
