"""Lightning training: the thin system, losses, callbacks and the LightningCLI entry point."""
