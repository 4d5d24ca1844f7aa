"""`vistok fit|validate --config ...`: LightningCLI over `TokenizerSystem` and `ImageDataModule`.

The resolved config is saved next to each run (LightningCLI's SaveConfigCallback); a misspelt key fails at
parse time, before any data is read or model built, with jsonargparse's message naming the key: printed first
and alone, with a one-line hint to `--help` (jsonargparse's default prints the whole usage block before it).
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from vistok.data.datamodule import ImageDataModule
from vistok.quiet import silence_known_noise
from vistok.trainers.system import TokenizerSystem


class VistokArgumentParser(LightningArgumentParser):
    """A parse error is the error message and a one-line hint, not the 60-line usage block."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        from jsonargparse._common import debug_mode_active  # jsonargparse's own switch (JSONARGPARSE_DEBUG)

        if not self.exit_on_error or debug_mode_active():
            super().error(message, ex)
        self._logger.error(message)
        parser: ArgumentParser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {message.strip()}\n(`{prog} --help` lists the options)\n")
        raise SystemExit(2)


class VistokCLI(LightningCLI):
    pass


def cli_main(args: list[str] | None = None) -> VistokCLI:
    silence_known_noise()
    parser_kwargs: dict[str, Any] = {"default_env": False, "allow_abbrev": False, "prog": "vistok"}
    return VistokCLI(
        TokenizerSystem,
        ImageDataModule,
        args=args,
        parser_class=VistokArgumentParser,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"default_root_dir": "runs"},
        parser_kwargs=parser_kwargs,
    )
