"""`vistok` entry point: `vistok <command> ...` over the table of `vistok.commands`.

This module only dispatches and turns user errors into one line; every command lives in its own module of
`vistok.commands`, and nothing there imports this module.
"""

from __future__ import annotations

import os
import sys


def _is_user_error(e: BaseException) -> bool:
    """Errors about the user's input, files or settings (one line); anything else is a bug (traceback)."""
    from vistok.shards.writer import EncodeError

    if isinstance(e, (OSError, ValueError, EncodeError)):
        return True
    try:
        from lightning.fabric.utilities.exceptions import MisconfigurationException
    except ImportError:  # pragma: no cover
        return False
    return isinstance(e, MisconfigurationException)


def main(argv: list[str] | None = None) -> None:
    """`vistok <command> ...`. A user error (missing or bad file, bad setting) prints one line
    `vistok <command>: error: ...` on stderr and exits 1; `--debug` (anywhere) or VISTOK_DEBUG=1 shows the
    traceback instead. Other exceptions are bugs and keep their traceback."""
    from vistok.commands import BY_NAME, usage

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("VISTOK_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv[0] in ("-V", "--version"):
        from vistok import __version__

        print(f"vistok {__version__}")
        return
    command, rest = argv[0], argv[1:]
    if command not in BY_NAME:
        print(f"vistok: error: unknown command {command!r} (`vistok --help` lists the commands)", file=sys.stderr)
        raise SystemExit(2)
    from vistok.quiet import silence_known_noise

    silence_known_noise()
    try:
        BY_NAME[command].load()(rest)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"vistok {command}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as e:
        if debug or not _is_user_error(e):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"vistok {command}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
