"""The console every emeval command prints through: tables stay whole outside a wide terminal.

Why: rich fits a table to the console width, and outside a terminal (cron, CI, ``nohup``, a pipe)
that width is 80 columns or ``COLUMNS``; columns then shrink to single letters and metric names
to ``misaligne…``. Here a table is never cut:

- not a terminal: the table is printed at the width it needs (no wrapping, no ellipsis; lines may
  be long, which logs and pipes keep as they are), and other text is not hard-wrapped;
- a terminal wide enough for every column's longest word: rich's own table, wrapped to fit;
- a terminal narrower than that: the table as plain Markdown (``| a | b |``) that the terminal
  wraps without losing a character.

No ``COLUMNS`` setting is needed anywhere.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

WIDEST = 400
"""Outside a terminal, a table wider than this wraps inside its cells (never below its longest words)."""


class ReadableConsole(Console):
    """A rich ``Console`` whose ``print`` keeps tables whole (see the module doc)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if len(objects) == 1 and isinstance(objects[0], Table) and not kwargs:
            self._print_table(objects[0])
            return
        if not self.is_terminal and all(isinstance(o, str) for o in objects):
            kwargs.setdefault("soft_wrap", True)  # plain lines only: a panel's text must still wrap inside it
        super().print(*objects, **kwargs)

    def _print_table(self, table: Table) -> None:
        needed = Measurement.get(self, self.options.update_width(10**6), table)
        if self.is_terminal:
            if needed.minimum <= self.width:
                super().print(table)
            else:
                super().print(markdown_table(table), soft_wrap=True, markup=False, highlight=False)
            return
        width = needed.maximum if needed.maximum <= WIDEST else max(needed.minimum, WIDEST)
        previous = self._width
        self._width = max(width, self.width)
        try:
            super().print(table)
        finally:
            self._width = previous


def make_console(**kwargs: Any) -> ReadableConsole:
    """The console for a command's output (arguments as ``rich.console.Console``'s)."""
    return ReadableConsole(**kwargs)


def _plain(cell: Any) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def markdown_table(table: Table) -> str:
    """The table as a Markdown pipe table (title as a heading line), its cells as plain text."""

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    headers = [_plain(c.header) for c in table.columns]
    cells = [[_plain(v) for v in c.cells] for c in table.columns]
    lines = [f"{_plain(table.title)}", ""] if table.title else []
    lines += [row(headers), row(["---"] * len(headers))]
    lines += [row([column[i] for column in cells]) for i in range(table.row_count)]
    if table.caption:
        lines += ["", _plain(table.caption)]
    return "\n".join(lines)
