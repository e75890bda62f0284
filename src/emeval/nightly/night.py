"""One night of ``emeval nightly``: run the evals (resuming a started night), record the night in the
history, compare it with its baseline, write its report. ``emeval.cli.nightly`` turns the outcome
(or the error) into the exit code."""

from __future__ import annotations

import datetime as dt
import glob
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import inspect_ai
import pandas as pd

from emeval import __version__
from emeval.logs.store import join
from emeval.report.measurable import unmeasured_cells
from emeval.nightly.config import LoadedConfig
from emeval.nightly.history import History, NightRun
from emeval.nightly.regression import compare_nights
from emeval.nightly.run import NightRunError, NightRunResult, run_night
from emeval.shards import Shard
from emeval.nightly.trends import report_sections, trend_plots, write_trend_files

if TYPE_CHECKING:
    from emeval.logs.frame import LogData

@dataclass
class NightOutcome:
    """What one nightly run produced (for the CLI and the tests)."""

    night: str
    baseline: str | None
    comparison: pd.DataFrame
    report_dir: Path
    logs: list[str]
    unmeasured: list[str]
    """Headlines of the night that rest on n = 0 (eval / group: scorer metric)."""

    @property
    def regressed(self) -> pd.DataFrame:
        return self.comparison[self.comparison["status"] == "regressed"] if len(self.comparison) else self.comparison

    @property
    def checked(self) -> int:
        """How many metrics were compared with the baseline (regressed, improved or no change)."""
        return int(self.comparison["status"].isin(["regressed", "improved", "no change"]).sum())


def group_patterns(result: NightRunResult, groups: list[str]) -> dict[str, str]:
    """NAME -> glob on the log location, as ``emeval.logs.frame`` groups logs: ``<night dir>/*/<group>/*``."""
    root = glob.escape(result.night_dir)
    return {group: join(root, "*", group, "*") for group in groups}


def night_samples(result: NightRunResult, data: LogData) -> pd.DataFrame:
    """The night's samples with ``eval`` = the config's eval name (the report names evals by task)."""
    samples = data.samples.copy()
    eval_of_log = {log: run.eval for run in result.runs for log in run.logs}
    samples["eval"] = samples["log"].map(eval_of_log)
    unplaced = samples.loc[samples["eval"].isna(), "log"].unique()
    if len(unplaced):
        raise RuntimeError(f"logs outside the night's eval sets: {', '.join(unplaced)}")
    return samples


def eval_labels(result: NightRunResult, data: LogData) -> dict[str, str]:
    """Config eval name -> the name the night's report gives it (``analysis.eval_keys``: the task, with
    its question set as ``task[set]`` when a task ran on several), so that every section of the report
    and the terminal name an eval alike. Two config evals the report names alike keep their config
    name beside it. The history keeps the config names (its keys, and the config's own)."""
    report_name = data.samples.drop_duplicates("log").set_index("log")["eval"].to_dict()
    names = {run.eval: sorted({report_name[log] for log in run.logs if log in report_name}) for run in result.runs}
    owners = Counter(name for keys in names.values() for name in keys)
    return {
        config_name: keys[0] if len(keys) == 1 and owners[keys[0]] == 1 else f"{'/'.join(keys) or config_name} ({config_name})"
        for config_name, keys in names.items()
    }


def relabel(frame: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """A copy of history-keyed rows with ``eval`` as the report names it (unknown names kept)."""
    return frame.assign(eval=frame["eval"].map(lambda name: labels.get(name, name)))


def summarise(samples: pd.DataFrame) -> pd.DataFrame:
    """The night's summary (emeval.logs.frame), one row per eval x group x scorer x metric.
    Its CI is the answer-level one (``stats.summary.answer_level``): nights compare the same models on
    the same questions, so the noise between nights is that of sampling their answers."""
    from emeval.stats.summary import answer_level, summary_frame

    return answer_level(summary_frame(samples, by=("eval", "group")))


def run_night_shard(loaded: LoadedConfig, night: str, shard: Shard) -> NightRunResult:
    """Run one shard's eval x group units of the night (``run_night``); nothing is recorded: the
    history has one writer, the merge step (``run_nightly(merge=True)``) after every shard."""
    result = run_night(loaded.config, night, shard=shard)
    if result.failures:
        raise NightRunError("eval runs did not finish:\n  " + "\n  ".join(result.failures))
    return result


def run_nightly(loaded: LoadedConfig, night: str, merge: bool = False) -> NightOutcome:
    """Run the night (resuming it if started), record it, compare it, write its report.

    ``merge``: run nothing; record, compare and report the night from the logs its shards wrote
    (``run_night_shard``), refusing a night with a unit missing or unfinished."""
    config = loaded.config
    history = History(config.history)
    pinned = config.baseline.isoformat() if isinstance(config.baseline, dt.date) else None
    if pinned is not None and pinned != night:
        history.baseline_for(night, pinned)  # fail before spending a night of compute on a missing baseline

    result = run_night(config, night, collect_only=merge)
    if result.failures:
        raise NightRunError("eval runs did not finish:\n  " + "\n  ".join(result.failures))

    from emeval.logs.frame import read_logs
    from emeval.stats.bootstrap import LEVEL
    from emeval.report import write_report

    report_dir = Path(config.report_dir).absolute() / night
    data = read_logs(result.logs, group_patterns(result, config.groups))  # once, for the history and the report
    samples = night_samples(result, data)
    summary = summarise(samples)
    history.record(
        NightRun(
            night=night,
            recorded_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            config_path=str(loaded.path.absolute()),
            config_sha256=loaded.sha256,
            judge=f"{config.judge.role}={config.judge.model}",
            emeval_version=__version__,
            inspect_version=inspect_ai.__version__,
            log_dir=result.night_dir,
            logs=result.logs,
            models={g: [m.label for m in config.models_in(g)] for g in config.groups},
            report=str(report_dir),
        ),
        summary,
        LEVEL,
    )
    baseline = history.baseline_for(night, pinned)
    if baseline == night:  # this night is the pinned baseline itself
        baseline = None
    current = history.night(night)
    labels = eval_labels(result, data)
    comparison = relabel(compare_nights(current, history.night(baseline) if baseline else None, config.regression), labels)
    trend_rows = relabel(history.results(until=night, last=config.trend_nights), labels)
    plots = trend_plots(trend_rows, comparison, config.groups, baseline, config.trend_metrics)
    rule = config.regression
    sections = report_sections(
        night, baseline, "pinned" if pinned else "previous night", comparison, plots,
        sorted(trend_rows["night"].unique()), rule,
    )
    write_report(
        data, group_patterns(result, config.groups), report_dir,
        title=f"{config.name}: {night}", extra_sections=sections,
    )
    write_trend_files(report_dir, night, baseline, comparison, trend_rows, rule)
    return NightOutcome(night, baseline, comparison, report_dir, result.logs, unmeasured_cells(relabel(samples, labels)))
