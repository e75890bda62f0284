"""Judges: methods that turn a judge's tokens into 0-100 scores, prompts, scorers, agreement, re-judging."""
