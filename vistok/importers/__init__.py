"""Importers of released checkpoints from other projects into vistok exports (one module per family)."""
