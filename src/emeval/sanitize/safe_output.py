"""Text from a log made safe to write: one helper per output format, used by every emeval writer.

Why: answers, question ids, judge errors and model names come from models, servers and users, so
they are hostile. Every helper first makes the text plain (:func:`plain_text`: secrets redacted,
invisible characters made visible), then escapes it for its format:

* CSV (:func:`csv_cell`, :func:`write_csv`) -- OWASP CSV-injection guidance: a text cell that a
  spreadsheet would evaluate (starting, after any leading whitespace, with ``=``, ``+``, ``-``,
  ``@`` or their full-width forms ``＝＋－＠``; tab and carriage return are already made visible)
  gets a leading ``'``. Numbers stay numbers: numeric columns are never touched, and a text cell
  that is a plain decimal number (``-0.5``, ``+3``, ``1e-3``) is left as it is -- a spreadsheet
  reads it as that number and no formula can hide in it.
* Markdown (:func:`md_text`) -- ``\\ [ ] |`` are backslash-escaped (no link, image or table-cell
  break; emphasis characters are left alone, so ``free_form`` reads as written), ``& < >`` become entities (no raw HTML, no ``<javascript:...>`` autolink),
  and line breaks are joined, so a value fits one table cell.
* HTML -- jinja2's autoescape does the escaping; :func:`plain_text` is its ``finalize``.

Invisible characters -- control characters (C0 but newline and tab, DEL, C1: ``\\x1b[31m`` would
recolour a terminal) and format characters (zero-width spaces and joiners, right-to-left
overrides and isolates, the byte-order mark) -- are written as visible escapes (``\\x1b``,
``\\u202e``) rather than dropped, so two ids that differ only by one stay distinguishable.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup

from emeval.sanitize.redact import redact

KEPT_WHITESPACE = frozenset("\n\t")
FORMULA_STARTS = frozenset("=+-@＝＋－＠")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
MD_SPECIAL = re.compile(r"([\\\[\]|])")


def _visible(char: str) -> str:
    if char in KEPT_WHITESPACE or unicodedata.category(char) not in ("Cc", "Cf"):
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain_text(value: Any) -> Any:
    """A string with secrets redacted and invisible characters made visible; other values as given
    (numbers stay numbers; trusted ``Markup`` built by emeval itself stays markup)."""
    if not isinstance(value, str) or isinstance(value, Markup):
        return value
    return redact("".join(_visible(c) for c in value))


def csv_cell(value: Any) -> Any:
    """One CSV cell that a spreadsheet shows as text, never evaluates."""
    if not isinstance(value, str):
        return value
    text = plain_text(value)
    stripped = text.lstrip()
    if stripped[:1] in FORMULA_STARTS and not PLAIN_NUMBER.fullmatch(stripped):
        return "'" + text
    return text


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell (and column name) through :func:`csv_cell`."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(csv_cell)
    out.columns = [csv_cell(str(c)) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: Path | str) -> None:
    """The one way emeval writes a CSV file."""
    safe_frame(frame).to_csv(path, index=False)


def md_text(value: Any) -> str:
    """Text safe inside Markdown, table cells included: shown as text, never as a link or markup."""
    text = plain_text("" if value is None else str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(MD_SPECIAL.sub(r"\\\1", text).split())
