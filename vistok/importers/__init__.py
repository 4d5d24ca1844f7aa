"""Importers of released checkpoints of other projects into vistok exports."""
