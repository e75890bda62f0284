"""Inspect logs, the only record of a run: the store they live in, reading them, and one tidy frame of answers."""
