"""`vistok verify`: a token-shard directory checked against its manifest (`vistok.shards.verify`)."""

from __future__ import annotations

from vistok.commands.args import parser


def main(argv: list[str]) -> None:
    p = parser("vistok verify", "Check a token-shard directory (hashes, sample counts, ids) against "
               "its manifest.json; exits 1 when anything is wrong.")
    p.add_argument("shards", help="directory written by `vistok encode`")
    a = p.parse_args(argv)
    from vistok.shards.verify import verify_shards

    problems, counts = verify_shards(a.shards)
    for line in problems:
        print(line)
    state = f"{len(problems)} problem(s)" if problems else "OK"
    print(f"{a.shards}: {counts['shards']} shards, {counts['samples']} samples, {counts['skipped']} inputs "
          f"skipped by the encoder: {state}")
    if problems:
        raise SystemExit(1)
