"""Importers of released checkpoints of other projects into vistok exports (one module per family), each with
`import_checkpoint(checkpoint, output, config=None, overwrite=False) -> Path`."""
