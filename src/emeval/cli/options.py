"""Option values more than one command reads, turned into typer's usage errors (exit 2) when malformed."""

from __future__ import annotations

from typing import Any

import typer


def groups_option(options: list[str]) -> dict[str, str]:
    """``--group NAME=PATTERN`` options (``emeval.logs.frame.parse_groups``)."""
    from emeval.logs.frame import parse_groups

    try:
        return parse_groups(options)
    except ValueError as ex:
        raise typer.BadParameter(str(ex)) from None


def name_values_option(option: str, items: list[str]) -> dict[str, Any]:
    """``key=value`` options (``-T``, ``-M``, ...) read by Inspect's own parser, as ``inspect eval`` reads them."""
    from emeval.inputs.task_args import parse_name_values

    try:
        return parse_name_values(items)
    except ValueError as ex:
        raise typer.BadParameter(str(ex), param_hint=option) from None
