"""Fine-tune a released TiTok / TA-TiTok / One-D-Piece into a flexible-length tokenizer: any prefix of its tokens
decodes.

Usage:
    python scripts/finetune_flexible.py --family titok --checkpoint titok_s128/ --dropout nested \\
        --data "/data/imagenet/train-{000000..000999}.tar" --steps 20000 --batch-size 32 --output runs/titok_s128_flex

The released weights are read by the importer (`vistok.importers.titok.load_official(..., dropout=...)`), which
builds the faithful model with a token dropout:
- `nested` (FlexTok's nested dropout, power-of-two lengths): dropped tokens become one learned embedding
  (`token_fill="mask"`); that embedding is the only new tensor, it starts as `TokenFill` starts it;
- `tail` (One-D-Piece's tail drop, one length per batch, uniform in 1..N): the decoder sees only the kept prefix
  (`token_fill="truncate"`, as the released decoders already do).
Training is TiTok's stage 2 on the new objective: by default the encoder and codebook stay frozen (the full-length
tokens stay those of the released model; `--train-encoder` fine-tunes them too, which the tail drop's ordering
benefits from) and the decoder learns to decode prefixes under L2 (plus `--perceptual-weight` x LPIPS-VGG when its
weights are installed). No GAN and no EMA: a short fine-tune, not the full recipe (configs/*_stage2.yaml for
that; the export holds the trained weights).

Writes `<output>/checkpoints/last.ckpt` (resumable with `vistok fit`'s tools) and the vistok export
`<output>/export` (`Tokenizer.from_pretrained`; `vistok export --format titok` refuses it when the nested-dropout
embedding is a part the official code does not have).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse(argv: list[str]) -> argparse.Namespace:
    from vistok.importers.titok import DROPOUTS, FAMILIES

    p = argparse.ArgumentParser(prog="finetune_flexible.py", description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=FAMILIES, required=True)
    p.add_argument("--checkpoint", required=True, help="the released weights: a file or a directory")
    p.add_argument("--config", help="the official YAML / config.json (optional: read from the weights otherwise)")
    p.add_argument("--dropout", choices=DROPOUTS, default="nested")
    p.add_argument("--data", default="sample", help="training images: webdataset shards, a folder or 'sample'")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=float, default=0.05, help="a fraction of the run (< 1) or steps")
    p.add_argument("--train-encoder", action="store_true", help="fine-tune the encoder and codebook too")
    p.add_argument("--perceptual-weight", type=float, default=0.0, help="LPIPS-VGG weight (0: off)")
    p.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed on a GPU")
    p.add_argument("--devices", default="auto")
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    if a.steps < 1 or a.batch_size < 1:
        p.error("--steps and --batch-size must be positive")
    return a


def main(argv: list[str] | None = None) -> Path:
    a = parse(sys.argv[1:] if argv is None else argv)
    import lightning.pytorch as pl

    from vistok.data.datamodule import DataModule
    from vistok.importers.titok import load_official
    from vistok.saving import save_pretrained
    from vistok.trainers.perceptual import PerceptualSettings
    from vistok.trainers.system import TokenizerSystem

    out = Path(a.output)
    model = load_official(a.family, a.checkpoint, a.config, dropout=a.dropout).train()
    system = TokenizerSystem(
        model, lr=a.lr, warmup=a.warmup, betas=(0.9, 0.999),  # TiTok stage 2's optimiser
        lr_scales=None if a.train_encoder else {"encoder.": 0.0, "quantizer.": 0.0},
        loss_weights={"l2": 1.0, "quantizer": 1.0 if a.train_encoder else 0.0},
        perceptual=PerceptualSettings(kind="lpips", weight=a.perceptual_weight) if a.perceptual_weight else None)
    data = DataModule(train=a.data, val=None, image_size=model.image_size, batch_size=a.batch_size,
                      num_workers=a.num_workers)
    trainer = pl.Trainer(max_steps=a.steps, precision=a.precision, devices=a.devices, default_root_dir=str(out),
                         logger=pl.loggers.CSVLogger(str(out), name="", version=""), gradient_clip_val=1.0,
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=str(out / "checkpoints"), save_last=True)],
                         enable_progress_bar=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(system, datamodule=data)
    if trainer.is_global_zero:
        export = save_pretrained(model.eval(), out / "export", overwrite=True,
                                 source=f"{a.family} {Path(a.checkpoint).name} fine-tuned with {a.dropout} dropout, "
                                        f"{trainer.global_step} steps")
        print(f"finetune_flexible: {trainer.global_step} steps; export {export}")
    return out / "export"


if __name__ == "__main__":
    main()
