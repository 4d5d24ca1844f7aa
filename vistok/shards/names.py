"""The one rule for names read from shards or manifests that become paths on disk.

A sample key becomes `<output>/<key>.png` (`vistok decode`), a manifest's shard name becomes
`<directory>/<name>`. Both come from files a user may have been handed, so neither is trusted: a key must be a
relative POSIX path of plain parts (subfolders such as `train/cat/x` are fine) and a shard name a plain file
name. Refused: empty names or parts, `.` and `..` parts, absolute paths, backslashes (a Windows separator),
drive letters, NUL and other control characters. A refused name is an error naming it, never rewritten: two
rewritten keys could land on one file.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def _problem(name: str) -> str | None:
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if _BAD_CHARS.search(name):
        return "holds a backslash or a control character"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' part"
    return None


def key_path(key: str, suffix: str = "") -> Path:
    """`key` + `suffix` as a relative path under an output directory; a ValueError for a key that could name a
    file elsewhere."""
    problem = _problem(key)
    if problem:
        raise ValueError(f"sample key {key!r} is not a safe relative name ({problem}); the shard is damaged or "
                         "hostile, nothing was written outside the output directory")
    return Path(PurePosixPath(key + suffix))


def inside(output: Path, key: str, suffix: str = "") -> Path:
    """`output / key_path(key, suffix)`, also refused when a symlink already inside `output` leads elsewhere."""
    path = output / key_path(key, suffix)
    root = output.resolve()
    if not path.resolve().is_relative_to(root):
        raise ValueError(f"sample key {key!r} is not a safe relative name (it leads outside {output} through a "
                         "symbolic link); nothing was written")
    return path


def check_shard_name(name: object, where: str) -> str:
    """A manifest's shard name: a plain file name in the manifest's directory (the encoder writes no other)."""
    problem = _problem(name) if isinstance(name, str) else f"is {name!r}"
    if problem is None and "/" in name:
        problem = "has a folder part"
    if problem:
        raise ValueError(f"{where}: shard name {name!r} is not a plain file name ({problem}); the manifest is "
                         "damaged or hostile")
    return name
