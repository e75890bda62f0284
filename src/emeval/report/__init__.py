"""Reports from Inspect logs: ``write_report`` writes index.html, report.md, samples.csv and summary.json.

``write_report`` is loaded on first use, so importing the CLI does not pull in pandas and matplotlib.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_report"]


def __getattr__(name: str) -> Any:
    if name == "write_report":
        from emeval.report.builder import write_report

        return write_report
    raise AttributeError(f"module 'emeval.report' has no attribute {name!r}")
