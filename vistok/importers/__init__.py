"""Importers of the anchors' released checkpoints: each family's layout mapped onto vistok's modules.

One module per family (`titok.py` for TiTok, TA-TiTok and One-D-Piece; `flextok.py`; `omnitokenizer.py`;
`larp.py`), each with an `import_checkpoint(...)` that reads what the authors release (safetensors, or a torch
file read with `weights_only=True`), places every tensor or refuses naming the ones it cannot, and writes a normal
vistok export directory (`vistok.saving`). `vistok import FAMILY ...` (`vistok.commands.importing`) calls them.
"""
