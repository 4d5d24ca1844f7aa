"""`vistok fit|validate --config ...`: LightningCLI over `TokenizerSystem` and a data module.

The data module is `vistok.data.datamodule.DataModule` (images, video clips, or both in turn; its `kind` follows
the training source) unless the config names another LightningDataModule with `class_path` (subclass mode); a
`data:` block without `class_path` is `DataModule`'s arguments.

The resolved config is saved next to each run (LightningCLI's SaveConfigCallback); a misspelt key fails at
parse time, before any data is read or model built, with jsonargparse's message naming the key: printed first
and alone, with a one-line hint to `--help` (jsonargparse's default prints the whole usage block before it).

One run, one directory: `trainer.default_root_dir` (default `runs`) is the run directory. The CSV/TensorBoard
logger writes straight into it (its `save_dir` follows the root, no `name`/`version_N` level), and checkpoint
callbacks without a `dirpath` write to `<root>/checkpoints`, so a rerun with the same root and
`--ckpt_path last` (or an explicit path) resumes the run in place:
`<root>/{config.yaml, metrics.csv, hparams.yaml, checkpoints/last.ckpt, reconstructions/}`.

Each number once: the encoder's `num_tokens`, `token_dim`, `image_size` and channels are linked (jsonargparse
`link_arguments`, applied at parse time) to the decoder's and the token dropout's, so a config states them in
the encoder only and `--model.tokenizer.init_args.encoder.init_args.num_tokens=16` changes all of them. A
linked value written on the decoder or dropout anyway is replaced by the encoder's; a link whose target the
chosen class lacks (a decoder without `token_dim`, no token dropout) is skipped. In Python, `Tokenizer` refuses
parts that disagree, naming both sides.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import lightning.pytorch as pl
from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from vistok.data.datamodule import DataModule
from vistok.quiet import silence_known_noise
from vistok.trainers.system import TokenizerSystem

# (encoder argument, the decoder's / token dropout's arguments that must equal it)
TOKENIZER = "model.tokenizer.init_args"
LINKS = (
    ("encoder.init_args.num_tokens", ("decoder.init_args.num_tokens", "token_dropout.init_args.num_tokens")),
    ("encoder.init_args.token_dim", ("decoder.init_args.token_dim",)),
    ("encoder.init_args.image_size", ("decoder.init_args.image_size",)),
    ("encoder.init_args.in_channels", ("decoder.init_args.out_channels", "decoder.init_args.image_channels")),
    ("encoder.init_args.num_frames", ("decoder.init_args.num_frames",)),
    ("encoder.init_args.latent_channels", ("decoder.init_args.latent_channels",)),  # FlexTok's VAE latents
)
# (data argument, the encoder argument it takes its value from): stated once, in the model
DATA_LINKS = (("image_size", "image_size"), ("frames", "num_frames"))

# Data settings of earlier configs, named in a parse error with what replaced them.
RENAMED = {
    "video_datamodule": "(images and clips have one data module now: drop `class_path` and `init_args` from `data:` "
                        "and state `kind: video`)\n",
    "'video_size'": "(`data.video_size` is `data.image_size` now, and `vistok fit` fills it in from the encoder)\n",
}

# Loggers whose directory is save_dir/name/version: made to write into the run directory itself.
DIRECTORY_LOGGERS = ("CSVLogger", "TensorBoardLogger")


def _loggers(logger: Any) -> list[Any]:
    if isinstance(logger, list):
        return [x for x in logger if hasattr(x, "class_path")]
    return [logger] if hasattr(logger, "class_path") else []


def _local(path: str) -> bool:
    return "://" not in str(path)


class VistokArgumentParser(LightningArgumentParser):
    """A parse error is the error message and a one-line hint, not the 60-line usage block."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        from jsonargparse._common import debug_mode_active  # jsonargparse's own switch (JSONARGPARSE_DEBUG)

        if not self.exit_on_error or debug_mode_active():
            super().error(message, ex)
        self._logger.error(message)
        parser: ArgumentParser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        hint = next((h for key, h in RENAMED.items() if key in message), "")
        sys.stderr.write(f"{prog}: error: {message.strip()}\n{hint}(`{prog} --help` lists the options)\n")
        raise SystemExit(2)


class VistokCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        if self.subclass_mode_data:  # `data:` without a class_path: DataModule's arguments
            parser.set_defaults({"data": {"class_path": f"{DataModule.__module__}.{DataModule.__name__}"}})
        for source, targets in LINKS:
            for target in targets:
                parser.link_arguments(f"{TOKENIZER}.{source}", f"{TOKENIZER}.{target}", apply_on="parse")

    def _run_root(self) -> str:
        config = self.config[self.subcommand] if self.subcommand else self.config
        return str(config.trainer.default_root_dir or "runs")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        link_data_to_model(config)
        root = self._run_root()
        for logger in _loggers(config.trainer.logger):
            init = logger.init_args
            if logger.class_path.rsplit(".", 1)[-1] in DIRECTORY_LOGGERS:  # save_dir is required: overridden
                init.save_dir, init.name, init.version = root, "", ""
            elif "save_dir" in init and init.get("save_dir") in (None, "", "."):
                init.save_dir = root  # e.g. WandbLogger's offline files

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        root = self._run_root()
        for cb in self.trainer.checkpoint_callbacks:
            if getattr(cb, "dirpath", "") is None:  # not set by the user: the run's own directory
                path = os.path.join(root, "checkpoints")
                cb.dirpath = os.path.realpath(os.path.expanduser(path)) if _local(path) else path

    def _parse_ckpt_path(self) -> None:  # Lightning reads --ckpt_path here, at parse time: check it first
        subcommand = self.config.get("subcommand")
        check_resume_checkpoint(self.config[subcommand].get("ckpt_path") if subcommand else None)
        super()._parse_ckpt_path()

    def after_fit(self) -> None:
        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        ckpt = next((cb.last_model_path for cb in trainer.checkpoint_callbacks if getattr(cb, "last_model_path", "")),
                    None)
        where = f"checkpoint {ckpt}" if ckpt else "no checkpoint written"
        print(f"vistok fit: {trainer.global_step} steps; {where}; run directory {self._run_root()}")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if getattr(v, "numel", lambda: 1)() == 1 and k.split("/")[-1] in ("loss", "psnr", "flow", "recon")}
        if metrics:
            print("final metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())))


def check_resume_checkpoint(ckpt_path: Any) -> None:
    """`--ckpt_path FILE` must be a checkpoint that loads without unpickling objects (Lightning reads it with
    `weights_only`): a pickled one is refused in one line saying what it holds, not an UnpicklingError traceback.
    "last", "best" and remote paths are Lightning's to resolve."""
    import torch

    from vistok.loading import _load_error

    if not isinstance(ckpt_path, str) or ckpt_path in ("last", "best", "hpc", "registry") or not _local(ckpt_path):
        return
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such checkpoint file")
    try:
        torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise ValueError(f"--ckpt_path {ckpt_path}: cannot resume from it ({_load_error(e)}); resume from a "
                         "checkpoint written by `vistok fit`") from None


def link_data_to_model(config: Any) -> None:
    """Each number once: the data block's image size and clip length are the encoder's. A data value left out
    (null) is filled in from the model; one stated that disagrees fails here, before any data is read or model
    built, naming both places."""
    data = config.get("data")
    init = data.get("init_args") if data is not None and "class_path" in data else data
    try:
        model = config.model.tokenizer
        # A VAE (vistok.decoders.kl_vae.KLAutoencoder) states image_size itself; a Tokenizer in its encoder.
        vae = str(model.class_path).endswith(".KLAutoencoder")
        encoder = model.init_args if vae else model.init_args.encoder.init_args
    except AttributeError:  # a model given some other way: nothing to link
        return
    if init is None or encoder is None:
        return
    for key, source in DATA_LINKS:
        value = encoder.get(source)
        if key not in init or value is None:
            continue
        if isinstance(value, (list, tuple)):  # (height, width): the data modules crop squares
            if len(set(value)) != 1:
                if init.get(key) is None:
                    raise ValueError(f"data.{key}: the model takes {value[0]}x{value[1]} images and the data "
                                     "modules crop squares; state data.{key} or give the encoder a square size")
                continue
            value = value[0]
        stated = init.get(key)
        if stated is None:
            init[key] = value
        elif stated != value:
            raise ValueError(f"data.{key} ({stated}) disagrees with the model's encoder {source} ({value}): state it "
                             f"once, in model.tokenizer.init_args.encoder.init_args.{source}, and leave data.{key} out")


def default_wandb_offline(environ: dict[str, str] = os.environ) -> None:
    """A WandbLogger never reaches the network unless the user asked for it: with neither `WANDB_API_KEY` nor
    `WANDB_MODE` set, runs are written offline (`<run dir>/wandb/offline-run-*`; `wandb sync` uploads them)."""
    if not environ.get("WANDB_API_KEY") and not environ.get("WANDB_MODE"):
        environ["WANDB_MODE"] = "offline"


def cli_main(args: list[str] | None = None) -> VistokCLI:
    silence_known_noise()
    default_wandb_offline()
    parser_kwargs: dict[str, Any] = {"default_env": False, "allow_abbrev": False, "prog": "vistok"}
    return VistokCLI(
        TokenizerSystem,
        pl.LightningDataModule,
        subclass_mode_data=True,  # a config may name its own data module; plain `data:` blocks are DataModule's
        args=args,
        parser_class=VistokArgumentParser,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"default_root_dir": "runs"},
        parser_kwargs=parser_kwargs,
    )
