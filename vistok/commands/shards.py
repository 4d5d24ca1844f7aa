"""`vistok shards <action>`: tools over a token-shard directory. `to-memmap SHARDS OUT`: one flat token file,
offsets, labels and a metadata table for nanoGPT-style AR training (`vistok.shards.memmap`)."""

from __future__ import annotations

from vistok.commands.args import parser


def main(argv: list[str]) -> None:
    p = parser("vistok shards", "Tools over token shards written by `vistok encode`.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    m = actions.add_parser("to-memmap", allow_abbrev=False,
                           help="export to one flat token file (+ offsets, labels, metadata table); resumable",
                           description="Write every sample's ids end to end into OUT/tokens.bin (the shards' dtype), "
                                       "with offsets.npy, labels.npy, samples.jsonl and memmap.json. Checks every "
                                       "shard and id on the way; rerun the same command to resume an interrupted "
                                       "export or to check a finished one.")
    m.add_argument("shards", metavar="SHARDS", help="directory written by `vistok encode` (complete)")
    m.add_argument("out", metavar="OUT", help="directory for the export (new, or one this command started)")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    from vistok.shards.memmap import shards_to_memmap

    doc = shards_to_memmap(a.shards, a.out, progress=not a.quiet)
    print(f"{a.out}: {doc['samples']} samples, {doc['tokens']} tokens ({doc['dtype']}) in "
          f"{doc['files']['tokens.bin']['bytes']} bytes; offsets.npy, labels.npy, samples.jsonl; checked")
