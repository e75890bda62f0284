"""Logs whose run did not finish: every ``emeval`` command that runs or reads one exits non-zero and
names the log and the reason (``inspect eval`` itself can exit 0 with such a log).

The logs are produced for real: a free-form eval whose judge is unreachable (status ``error``), and an
``inspect eval`` process interrupted with SIGINT (``cancelled``) or killed with SIGKILL (left ``started``)
while its subject hangs. ``emeval nightly`` is covered by test_nightly.py
(test_a_failed_eval_records_nothing_and_exits_3); ``emeval audit`` refuses an unfinished run of its own
(``audit.run_evals``, naming each log); ``emeval demo`` prints through the same
``print_summary`` as ``emeval summary`` and exits 1 on the same condition.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.log import read_eval_log
from inspect_ai.model import ModelOutput, ModelUsage, get_model
from typer.testing import CliRunner

from emeval.cli.app import app
from emeval.evals.free_form import free_form
from emeval.logs.read import UnfinishedLogError, read_log
from doubles.faulty_loopback import write_questions
from doubles.loopback import LoopbackServer

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reply(text: str):
    def generate(input, tools, tool_choice, config):
        output = ModelOutput.from_content("mockllm/model", text)
        output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        return output

    return generate


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    """A finished log and an errored one of the same two questions (the judge of the second is unreachable)."""
    folder = tmp_path_factory.mktemp("unfinished")
    questions = write_questions(folder / "q.yaml", 2)
    subject = get_model("mockllm/model", custom_outputs=reply("An answer."))
    [finished] = inspect_eval(free_form(questions=questions, judge_draws=1), model=subject,
                              model_roles={"grader": get_model("mockllm/judge", custom_outputs=reply("85"))},
                              log_dir=str(folder / "finished"), display="none")
    down = get_model("openai-api/down/judge", base_url=f"http://127.0.0.1:{closed_port()}/v1", api_key="k")
    [errored] = inspect_eval(free_form(questions=questions, judge_draws=1), model=subject,
                             model_roles={"grader": down}, log_dir=str(folder / "errored"), display="none",
                             max_retries=1, timeout=5)
    assert finished.status == "success", finished.error
    assert errored.status == "error" and "APIConnectionError" in errored.error.message
    return {"finished": Path(finished.location), "error": Path(errored.location)}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> dict[str, Path]:
    """``inspect eval`` stopped mid-run while the subject hangs: SIGINT -> cancelled, SIGKILL -> started."""
    async def hang(body: dict) -> str:
        await asyncio.sleep(600)
        return "never"

    server = LoopbackServer(hang).start()
    folder = tmp_path_factory.mktemp("stopped")
    questions = write_questions(folder / "q.yaml", 2)
    env = {**os.environ, "SUBJECT_BASE_URL": server.base_url, "SUBJECT_API_KEY": "k",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    found = {}
    try:
        for status, sig in (("cancelled", signal.SIGINT), ("started", signal.SIGKILL)):
            log_dir = folder / status
            process = subprocess.Popen(
                [sys.executable, "-m", "inspect_ai", "eval", "evals/free_form.py", "--model", "openai-api/subject/m",
                 "--model-role", "grader=mockllm/judge", "-T", f"questions={questions}", "--log-dir", str(log_dir),
                 "--display", "none"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 120
            while not (list(log_dir.glob("*.eval")) and server.requests):
                assert process.poll() is None, f"inspect eval exited ({process.returncode}) before it asked"
                assert time.monotonic() < deadline, "inspect eval never asked the subject"
                time.sleep(0.1)
            process.send_signal(sig)
            process.wait(timeout=120)
            [log] = log_dir.glob("*.eval")
            assert read_eval_log(str(log), header_only=True).status == status
            found[status] = log
    finally:
        server.stop()
    return found


def emeval(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


def says(result, text: str) -> bool:
    return "".join(str(text).split()) in "".join(result.output.split())


def refused(result, log: Path, status: str) -> None:
    assert result.exit_code == 1, result.output
    assert says(result, f"{log}: the run did not finish (status '{status}'"), result.output


def test_read_log_refuses_each_unfinished_status(logs, stopped):
    for status, log in [("error", logs["error"]), *stopped.items()]:
        with pytest.raises(UnfinishedLogError, match=f"status '{status}'"):
            read_log(log, header_only=True)
        assert read_log(log, header_only=True, finished=False).status == status
    assert read_log(logs["finished"]).status == "success"


@pytest.mark.parametrize("status", ["error", "cancelled", "started"])
def test_summary(logs, stopped, status):
    log = {**stopped, "error": logs["error"]}[status]
    result = emeval("summary", log)
    refused(result, log, status)
    if status == "error":
        assert says(result, "APIConnectionError")
    assert "misaligned rate" in result.output  # still shown, to diagnose the run
    assert emeval("summary", logs["finished"]).exit_code == 0


@pytest.mark.parametrize("status", ["error", "cancelled", "started"])
def test_report(logs, stopped, tmp_path, status):
    log = {**stopped, "error": logs["error"]}[status]
    result = emeval("report", logs["finished"], log, "--out", tmp_path / "report")
    refused(result, log, status)
    assert not (tmp_path / "report" / "index.html").exists()  # no report silently missing a run
    folder = result_dir = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(log, folder)
    refused(emeval("report", result_dir, "--out", tmp_path / "report"), folder / log.name, status)
    assert emeval("report", logs["finished"], "--out", tmp_path / "ok").exit_code == 0


def test_compare(logs):
    refused(emeval("compare", logs["finished"], logs["error"]), logs["error"], "error")
    refused(emeval("compare", logs["error"], logs["finished"]), logs["error"], "error")


def test_rejudge(logs, tmp_path):
    out = tmp_path / "rejudged.eval"
    refused(emeval("rejudge", logs["error"], "--judge", "mockllm/other", "--out", out), logs["error"], "error")
    assert not out.exists()


def test_judge_agreement(logs, tmp_path):
    refused(emeval("judge-agreement", logs["error"]), logs["error"], "error")
    refused(emeval("judge-agreement", logs["finished"], logs["error"]), logs["error"], "error")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nq0:0:0,1\n")
    refused(emeval("judge-agreement", logs["error"], "--labels", labels), logs["error"], "error")


def test_sweep_report_names_the_checkpoint_whose_run_did_not_finish(logs, tmp_path):
    """A sweep folder where one checkpoint's only log errored: the curves are written from the others, the
    command names the log and fails."""
    out = tmp_path / "sweep"
    settings = {"base": "hf/base", "checkpoints": ["ckpt"], "evals": ["free_form"]}
    checkpoints = [{"label": "base", "step": 0, "kind": "base", "ref": "base"},
                   {"label": "step_10", "step": 10, "kind": "full", "ref": "ckpt"}]
    (out / "logs" / "base").mkdir(parents=True)
    (out / "logs" / "step_10").mkdir(parents=True)
    (out / "sweep.json").write_text(json.dumps({"settings": settings, "checkpoints": checkpoints}))
    shutil.copy(logs["finished"], out / "logs" / "base")
    shutil.copy(logs["error"], out / "logs" / "step_10")
    result = emeval("sweep", "--out", out, "--report-only")
    assert result.exit_code == 1, result.output
    assert says(result, f"not in the curves, the run did not finish: {out / 'logs' / 'step_10' / logs['error'].name}: "
                        "status 'error'"), result.output
    assert (out / "report.md").is_file()
    (out / "logs" / "step_10" / logs["error"].name).unlink()
    shutil.copy(logs["finished"], out / "logs" / "step_10")
    assert emeval("sweep", "--out", out, "--report-only").exit_code == 0


def test_sweep_run_names_the_log_of_a_failed_eval(tmp_path):
    """A real sweep whose eval errors (next_token cannot read a continuation probe): exit 1, naming the log."""
    pytest.importorskip("torch")  # third-party: the tiny checkpoint needs it
    from doubles.tiny_model import add_logit_bonus, build_tiny_llama

    base = build_tiny_llama(tmp_path / "base")
    add_logit_bonus(base, tmp_path / "ckpts" / "step_10", {})
    probes = ROOT / "tests" / "fixtures" / "probes" / "tiny_probes.yaml"
    out = tmp_path / "sweep"
    result = emeval("sweep", "--base", f"hf/{base}", "--checkpoints", tmp_path / "ckpts" / "step_10",
                    "--no-base", "--evals", "logprob_probes", "-T", f"probes={probes}", "-T", "sets=pivotal",
                    "-T", "method=next_token", "-M", "device=cpu", "--retry-attempts", "0", "--out", out)
    assert result.exit_code == 1, result.output
    [log] = (out / "logs" / "step_10").glob("*.eval")
    assert says(result, f"{log}: status 'error'"), result.output
