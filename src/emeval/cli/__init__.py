"""The emeval command: one thin typer file per command."""
