"""`vistok fit` / `vistok validate`: LightningCLI over the training system (`vistok.trainers.cli`)."""

from __future__ import annotations

import sys


def _lightning(command: str, argv: list[str]) -> None:
    from vistok.trainers.cli import cli_main

    # LightningCLI reads sys.argv itself when run from the shell (given `args`, it warns that they are meant for
    # calls from Python), so the shell's own arguments go that way.
    from_shell = sys.argv[1:] == [command, *argv] or sys.argv[1:] == [command, *argv, "--debug"]
    if from_shell:
        sys.argv = [sys.argv[0], command, *argv]
    cli_main(None if from_shell else [command, *argv])


def fit(argv: list[str]) -> None:
    _lightning("fit", argv)


def validate(argv: list[str]) -> None:
    _lightning("validate", argv)
