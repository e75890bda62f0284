"""The nightly history: one SQLite file, one row per night x eval x group x scorer x metric.

SQLite because it is in the standard library, is one file a cron job can append to, and can be
queried by anyone (``sqlite3 history.sqlite 'select * from results'``, ``pandas.read_sql``).
The numbers are summaries of that night's Inspect logs, whose paths are stored with the night:
the logs stay the source of truth, the history is an index over them that survives log pruning.

Recording a night replaces everything stored for that night in one transaction, so rerunning a
night (a resumed eval set, a fixed config) never duplicates rows and never keeps stale ones.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from emeval.sanitize.redact import redact_data

SCHEMA_VERSION = 1

KEY_COLUMNS = ["eval", "group", "scorer", "metric"]
"""What identifies a result within a night (a scorer's score key, e.g. alignment_judge / misaligned)."""

SUMMARY_COLUMNS = [*KEY_COLUMNS, "n", "mean", "ci_low", "ci_high"]
"""What a night's summary frame must hold (``emeval.stats.summary.summary_frame`` by eval and group)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS nights (
    night TEXT PRIMARY KEY,          -- YYYY-MM-DD
    recorded_at TEXT NOT NULL,       -- ISO timestamp, UTC
    config_path TEXT NOT NULL,
    config_sha256 TEXT NOT NULL,
    judge TEXT NOT NULL,             -- role=provider/model
    emeval_version TEXT NOT NULL,
    inspect_version TEXT NOT NULL,
    log_dir TEXT NOT NULL,
    logs TEXT NOT NULL,              -- JSON list of log paths
    models TEXT NOT NULL,            -- JSON {group: [model, ...]}
    report TEXT                      -- the night's report folder
);
CREATE TABLE IF NOT EXISTS results (
    night TEXT NOT NULL REFERENCES nights(night) ON DELETE CASCADE,
    eval TEXT NOT NULL,
    "group" TEXT NOT NULL,
    scorer TEXT NOT NULL,
    metric TEXT NOT NULL,            -- a score key; its mean is a rate for 0/1 keys
    n INTEGER NOT NULL,              -- values the mean is over
    mean REAL,                       -- NULL when n = 0
    ci_low REAL,
    ci_high REAL,
    ci_level REAL NOT NULL,          -- e.g. 0.95
    PRIMARY KEY (night, eval, "group", scorer, metric)
);
"""


class HistoryError(RuntimeError):
    """The history file cannot be used (not SQLite, another schema, a night that is not there)."""


@dataclass(frozen=True)
class NightRun:
    """What is stored about a night besides its numbers."""

    night: str
    recorded_at: str
    config_path: str
    config_sha256: str
    judge: str
    emeval_version: str
    inspect_version: str
    log_dir: str
    logs: list[str] = field(default_factory=list)
    models: dict[str, list[str]] = field(default_factory=dict)
    report: str | None = None


class History:
    """The history file; opened per operation, so a crashed run leaves nothing half-written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version not in (0, SCHEMA_VERSION) or (version == 0 and tables):
                raise HistoryError(
                    f"{self.path}: history schema version {version} with tables {sorted(tables)}; "
                    f"this emeval writes version {SCHEMA_VERSION} (use a new history file)"
                )
            con.executescript(SCHEMA)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path)
        except sqlite3.Error as ex:
            raise HistoryError(f"{self.path}: cannot open the history ({ex})") from None
        try:
            con.execute("PRAGMA foreign_keys = ON")
            with con:  # one transaction: commit on success, roll back on error
                yield con
        except sqlite3.DatabaseError as ex:
            raise HistoryError(f"{self.path}: not a usable SQLite history ({ex})") from None
        finally:
            con.close()

    def record(self, run: NightRun, summary: pd.DataFrame, ci_level: float) -> int:
        """Store (or replace) one night; returns the number of result rows written."""
        missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
        if missing:
            raise ValueError(f"summary frame lacks columns {missing} (has {list(summary.columns)})")
        if summary.duplicated(KEY_COLUMNS).any():
            raise ValueError("summary frame holds an eval x group x scorer x metric more than once")
        rows = [  # no configured secret is ever stored (emeval.sanitize.redact)
            redact_data((run.night, str(r.eval), str(r.group), str(r.scorer), str(r.metric), int(r.n), _real(r.mean),
             _real(r.ci_low), _real(r.ci_high), ci_level))
            for r in summary[SUMMARY_COLUMNS].itertuples(index=False)
        ]
        with self._connect() as con:
            con.execute("DELETE FROM results WHERE night = ?", (run.night,))
            con.execute(
                """INSERT INTO nights VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(night) DO UPDATE SET recorded_at = excluded.recorded_at,
                   config_path = excluded.config_path, config_sha256 = excluded.config_sha256,
                   judge = excluded.judge, emeval_version = excluded.emeval_version,
                   inspect_version = excluded.inspect_version, log_dir = excluded.log_dir,
                   logs = excluded.logs, models = excluded.models, report = excluded.report""",
                redact_data((run.night, run.recorded_at, run.config_path, run.config_sha256, run.judge,
                             run.emeval_version, run.inspect_version, run.log_dir, json.dumps(run.logs),
                             json.dumps(run.models), run.report)),
            )
            con.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def nights(self) -> pd.DataFrame:
        """One row per recorded night, oldest first (logs and models decoded from JSON)."""
        with self._connect() as con:
            frame = pd.read_sql_query("SELECT * FROM nights ORDER BY night", con)
        for column in ("logs", "models"):
            frame[column] = frame[column].map(json.loads)
        return frame

    def results(self, until: str | None = None, last: int | None = None) -> pd.DataFrame:
        """Result rows of the nights up to ``until`` (inclusive), only the ``last`` n of them if given."""
        query = 'SELECT * FROM results WHERE (? IS NULL OR night <= ?) ORDER BY night, eval, "group", scorer, metric'
        with self._connect() as con:
            frame = pd.read_sql_query(query, con, params=(until, until))
        if last is not None:
            keep = sorted(frame["night"].unique())[-last:]
            frame = frame[frame["night"].isin(keep)].reset_index(drop=True)
        return frame

    def night(self, night: str) -> pd.DataFrame:
        frame = self.results(until=night)
        return frame[frame["night"] == night].reset_index(drop=True)

    def baseline_for(self, night: str, pinned: str | None) -> str | None:
        """The night to compare ``night`` with: the pinned one, else the last recorded before it."""
        nights = list(self.nights()["night"])
        if pinned is not None:
            if pinned not in nights:
                shown = ", ".join(nights[-5:]) or "none yet"
                raise HistoryError(f"{self.path}: pinned baseline night {pinned} is not recorded (latest: {shown})")
            return pinned
        earlier = [n for n in nights if n < night]
        return earlier[-1] if earlier else None


def _real(value: object) -> float | None:
    """Floats for SQLite, NaN stored as NULL (SQLite has no NaN)."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if number != number else number
