"""Token shards: the encode job (`encode_to_shards`, `vistok encode`), reading them back (`TokenDataset`, both the
packed and the per-sample format) and the flat export for AR training (`shards_to_memmap`, `MemmapTokens`)."""

from vistok.shards.dataset import TokenDataset, collate_tokens
from vistok.shards.manifest import read_manifest
from vistok.shards.memmap import MemmapTokens, shards_to_memmap
from vistok.shards.verify import verify_shards
from vistok.shards.writer import EncodeError, EncodeSummary, encode_to_shards

__all__ = ["EncodeError", "EncodeSummary", "MemmapTokens", "TokenDataset", "collate_tokens", "encode_to_shards",
           "read_manifest", "shards_to_memmap", "verify_shards"]
