"""``emeval sets``: the built-in question sets and their pinned sources (``emeval.benchmarks.questions``)."""

from __future__ import annotations

from emeval.report.terminal import make_console


def sets_command() -> None:
    """List the built-in question sets and their pinned sources."""
    from emeval.benchmarks.questions import BUILTIN_SETS, PACKAGED_SETS

    console = make_console()
    for name, pinned in BUILTIN_SETS.items():
        console.print(f"[bold]{name}[/bold]  {pinned.name} @ {pinned.short_revision}  ({pinned.license})")
    for name, file_name in PACKAGED_SETS.items():
        console.print(f"[bold]{name}[/bold]  {file_name}, shipped with emeval (offline)")
