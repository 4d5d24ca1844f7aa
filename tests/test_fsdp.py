"""Issue 25 item 2: a tokenizer sharded with FSDP2 (`torch.distributed.fsdp.fully_shard`) on 2 gloo CPU processes.

Lightning 2.6 refuses its FSDPStrategy without a GPU, so this runs plain PyTorch, the recipe of
docs (`_incoming/ddp.md`): each transformer block is its own FSDP unit, then the whole tokenizer; the VQ
codebook (buffers, not sharded) is all-reduced by `set_distributed`; the EMA is kept per shard; the checkpoint
is a sharded `torch.distributed.checkpoint` directory (model, optimizer, EMA, codebook) plus each rank's RNG
state. Proves: the loss falls, both ranks hold the same codebook and the same gathered EMA, and a run
resumed from the checkpoint takes the same next steps (identical losses) as the uninterrupted one; without
each rank's RNG state (VQ's dead-code replacement samples from torch's global generator) the second resumed
step already differs.
"""

from __future__ import annotations

import json

import torch
import torch.distributed as dist

STEPS, SAVE_AT = 8, 5


def _build():
    from vistok.decoders.vit import ViTPixelDecoder
    from vistok.quantizers.vq import VQQuantizer
    from vistok.tokenizers.titok import TiTokEncoder
    from vistok.tokenizers.tokenizer import Tokenizer

    torch.manual_seed(0)
    return Tokenizer(
        encoder=TiTokEncoder(image_size=16, patch_size=4, width=32, depth=2, num_heads=2, num_tokens=8, token_dim=4),
        quantizer=VQQuantizer(dim=4, codebook_size=32),
        decoder=ViTPixelDecoder(image_size=16, patch_size=4, width=32, depth=2, num_heads=2, num_tokens=8,
                                token_dim=4))


def _shard(tok):
    from torch.distributed.fsdp import fully_shard

    from vistok.trainers.distributed import sync_quantizers

    for m in tok.modules():
        if type(m).__name__ == "TransformerBlock":
            fully_shard(m)
    fully_shard(tok)
    assert sync_quantizers(tok, True) == 1
    return tok


def _batch(step: int, rank: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * step + rank)  # each rank its own half of the global batch
    return torch.rand(4, 3, 16, 16, generator=g) * 2 - 1


def _step(tok, opt, ema, step, rank):
    out = tok(_batch(step, rank))
    loss = ((out.recon - _batch(step, rank)) ** 2).mean() + out.losses["quantizer"]
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        for name, p in tok.named_parameters():
            ema[name].lerp_(p.detach(), 0.1)  # each rank updates its own shard
    total = loss.detach().clone()
    dist.all_reduce(total)
    return float(total) / 2


def _state(tok, opt, ema):
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model, optim = get_state_dict(tok, opt)
    return {"model": model, "optim": optim, "ema": ema}


def _rank(rank: int, init: str, out: str) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    tok = _shard(_build())
    opt = torch.optim.AdamW(tok.parameters(), lr=3e-3)
    ema = {n: p.detach().clone() for n, p in tok.named_parameters()}  # DTensor shards
    losses = []
    for step in range(STEPS):
        if step == SAVE_AT:
            dcp.save(_state(tok, opt, ema), checkpoint_id=f"{out}/ckpt")
            # per rank, beside the shards (as vistok's checkpoints keep each rank's RNG states): VQ's dead-code
            # replacement draws its samples from torch's global generator
            torch.save(torch.get_rng_state(), f"{out}/ckpt/rng-rank{rank}.pt")
        losses.append(_step(tok, opt, ema, step, rank))
    codebook = {k: v for k, v in tok.state_dict().items() if "codebook" in k or "embed" in k and "vq" in k}
    full_ema = {n: v.full_tensor() for n, v in ema.items()}
    # resume: a fresh sharded model, the checkpoint loaded in place, the same steps again
    tok2 = _shard(_build())
    opt2 = torch.optim.AdamW(tok2.parameters(), lr=3e-3)
    ema2 = {n: p.detach().clone() for n, p in tok2.named_parameters()}
    state = _state(tok2, opt2, ema2)
    dcp.load(state, checkpoint_id=f"{out}/ckpt")
    set_state_dict(tok2, opt2, model_state_dict=state["model"], optim_state_dict=state["optim"])
    torch.set_rng_state(torch.load(f"{out}/ckpt/rng-rank{rank}.pt"))
    resumed = [_step(tok2, opt2, ema2, step, rank) for step in range(SAVE_AT, STEPS)]
    sharded = sum(type(p).__name__ == "DTensor" for p in tok.parameters())
    torch.save({"codebook": {k: torch.as_tensor(v.full_tensor() if hasattr(v, "full_tensor") else v)
                             for k, v in codebook.items()}, "ema": full_ema}, f"{out}/rank{rank}.pt")
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"losses": losses, "resumed": resumed, "sharded": sharded,
                   "params": sum(1 for _ in tok.parameters())}, f)
    dist.destroy_process_group()


def test_fsdp2_two_cpu_processes_train_save_and_resume_exactly(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_rank, args=(f"file://{tmp_path / 'store'}", str(tmp_path)), nprocs=2, start_method="spawn")
    a, b = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert a["sharded"] == a["params"] > 0, "every parameter is a DTensor shard"
    assert a["losses"] == b["losses"]
    assert a["losses"][-1] < a["losses"][0], a["losses"]
    assert a["resumed"] == a["losses"][SAVE_AT:], (a["resumed"], a["losses"])  # bit for bit
    sa, sb = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert sa["codebook"] and all(torch.equal(sa["codebook"][k], sb["codebook"][k]) for k in sa["codebook"])
    assert all(torch.equal(sa["ema"][k], sb["ema"][k]) for k in sa["ema"])
