"""The one jinja environment every report file is written through: the run report (HTML and
Markdown), the sweep report and the nightly sections.

Why one: every value shown goes through ``finalize=plain_text`` (secrets redacted, invisible
characters made visible), model text reaches Markdown only through the ``md`` filter, and HTML is
autoescaped, in every report alike. A missing value is an error (``StrictUndefined``), never a
silent blank. Templates live in ``templates/``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

from emeval.sanitize.safe_output import md_text, plain_text


def short(value: Any, limit: int = 300) -> str:
    """A value as text of at most ``limit`` characters (an ellipsis marks a cut)."""
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@cache
def environment(autoescape: bool) -> jinja2.Environment:
    """The environment for HTML (``autoescape=True``) or Markdown templates."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("emeval.report", "templates"),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=plain_text,  # every value shown: secrets redacted, invisible characters visible
    )
    env.filters["md"] = md_text
    env.filters["short"] = short
    return env


def render(template: str, **context: Any) -> str:
    """``templates/<template>`` rendered; autoescaped when its name ends in ``.html.j2``."""
    return environment(template.endswith(".html.j2")).get_template(template).render(**context)
