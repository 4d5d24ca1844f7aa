"""Train a tiny GPT-style prior on token shards: the consumer side of `vistok encode`, on the CPU.

Usage:
    vistok encode --model EXPORT_DIR --input IMAGES --output shards/ --num-tokens 32
    python scripts/train_ar_example.py --shards shards/ --steps 300
    python scripts/train_ar_example.py --shards 'shards/tokens-{000000..000009}-000.tar' \\
        --vocab-size 1004 --bos-id 1000 --pad-id 1002

With a shard directory, the vocabulary size and the bos/pad ids come from the tokenizer's tokens.json
recorded in manifest.json; with bare urls pass `--vocab-size` (tokens.json "vocab_size") and the ids.
Each sequence is [bos, t_1, ..., t_K]; the model predicts t_{i+1} from the prefix (padding is masked out of
the loss). The script prints the loss every `--log-every` steps and, at the end, the first and last average.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from vistok.shards import TokenDataset


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, N, D/H)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab_size: int, max_len: int, width: int = 128, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab_size, width), nn.Parameter(torch.zeros(1, max_len, width))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[Block(width, heads) for _ in range(depth)])
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, vocab_size))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids) + self.pos[:, : ids.shape[1]]  # (B, N, width)
        return self.head(self.blocks(x))  # (B, N, V)


def batches(loader: DataLoader):
    while True:
        yield from loader


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--shards", required=True, help="shard directory (with manifest.json) or webdataset urls")
    p.add_argument("--vocab-size", type=int, default=None, help="tokens.json vocab_size (codebook + specials)")
    p.add_argument("--bos-id", type=int, default=None)
    p.add_argument("--pad-id", type=int, default=None)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)

    ds = TokenDataset(a.shards, shuffle=1000, shard_shuffle=True, pad_id=a.pad_id, seed=a.seed)
    spec = ds.spec or {}
    vocab = a.vocab_size or spec.get("vocab_size")
    bos = a.bos_id if a.bos_id is not None else spec.get("special_tokens", {}).get("bos")
    if vocab is None or bos is None:
        sys.exit("--vocab-size and --bos-id are needed when --shards is not a shard directory with manifest.json")
    max_len = (spec.get("max_tokens") or 256) + 1
    loader = DataLoader(ds, batch_size=a.batch_size, collate_fn=ds.collate, drop_last=False)
    model = TinyGPT(vocab, max_len, a.width, a.depth)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps)))
    print(f"tiny GPT: {sum(p.numel() for p in model.parameters()):,} parameters, vocab {vocab}, bos {bos}")
    history, start = [], time.perf_counter()
    for step, batch in zip(range(1, a.steps + 1), batches(loader)):
        tokens, mask = batch["tokens"], batch["mask"]  # (B, K), (B, K)
        inp = torch.cat([torch.full_like(tokens[:, :1], bos), tokens[:, :-1]], 1)  # (B, K): bos, t_1..t_{K-1}
        logits = model(inp)  # (B, K, V)
        loss = F.cross_entropy(logits[mask], tokens[mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append(loss.item())
        if step % a.log_every == 0 or step == 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  ({time.perf_counter() - start:.1f} s)")
    n = max(1, min(20, len(history) // 5))
    first, last = sum(history[:n]) / n, sum(history[-n:]) / n
    print(f"loss fell from {first:.3f} to {last:.3f} over {len(history)} steps "
          f"(uniform over the vocabulary: {math.log(vocab):.3f})")
    return {"first": first, "last": last, "steps": len(history)}


if __name__ == "__main__":
    main()
