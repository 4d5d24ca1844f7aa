"""Known third-party noise that a vistok user cannot act on, silenced by the `vistok` command.

Each entry names the message it hides and why it is noise; nothing else is filtered. The filters are installed
by `vistok.cli.main` (every command) and by `vistok.trainers.cli.cli_main` (fit/validate from Python), not only
under pytest.
"""

from __future__ import annotations

import logging
import warnings

# (warning category, message regex): Python warnings raised inside libraries, not by the user's code.
WARNINGS = (
    # lightning/pytorch/utilities/_pytree.py on recent torch (a FutureWarning there, a DeprecationWarning
    # elsewhere): Lightning's own use of a deprecated torch API, printed by every `fit`.
    (Warning, r".*isinstance\(treespec, LeafSpec\)` is deprecated"),
    # LightningCLI(args=...) from Python: vistok's CLI passes argv on purpose.
    (UserWarning, r"LightningCLI's args parameter is intended to run from within Python"),
    # ModelCheckpoint under manual optimisation (a discriminator): vistok saves the state after the step on
    # purpose, consistent with the checkpoint's global_step, which is what resuming needs.
    (UserWarning, r"Using ModelCheckpoint with manual optimization and every_n_train_steps"),
)
# Substrings of log records from Lightning's rank-zero loggers: advertising, not information.
LOG_MESSAGES = (
    "try installing [litlogger]",
)
RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not any(text in message for text in LOG_MESSAGES)


_FILTER = _DropKnownNoise()


def silence_known_noise() -> None:
    """Install the filters (idempotent)."""
    for category, pattern in WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
