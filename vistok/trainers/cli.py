"""`vistok fit|validate --config ...`: LightningCLI over `TokenizerSystem` and `ImageDataModule`.

The resolved config is saved next to each run (LightningCLI's SaveConfigCallback); a misspelt key fails at
parse time, before any data is read or model built, with jsonargparse's message naming the key.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from vistok.data.datamodule import ImageDataModule
from vistok.trainers.system import TokenizerSystem


class VistokCLI(LightningCLI):
    pass


def cli_main(args: list[str] | None = None) -> VistokCLI:
    return VistokCLI(
        TokenizerSystem,
        ImageDataModule,
        args=args,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"default_root_dir": "runs"},
        parser_kwargs={"default_env": False, "allow_abbrev": False},
    )
