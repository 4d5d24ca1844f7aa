"""Token shards: the encode job (`encode_to_shards`, `vistok encode`) and reading them back (`TokenDataset`)."""

from vistok.shards.dataset import TokenDataset, collate_tokens
from vistok.shards.manifest import read_manifest
from vistok.shards.verify import verify_shards
from vistok.shards.writer import EncodeError, EncodeSummary, encode_to_shards

__all__ = ["EncodeError", "EncodeSummary", "TokenDataset", "collate_tokens", "encode_to_shards", "read_manifest",
           "verify_shards"]
