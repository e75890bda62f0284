"""The free-form eval on the embedded SmolLM2 model: a real subject on CPU, and a real
digit-splitting judge whose 0..100 expectation is rebuilt here from the logged continuations."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.log import read_eval_log

from emeval.evals.free_form import free_form
from emeval.local.demo_model import hf_model

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def rebuild_expectation(verdict: dict) -> float | None:
    """Expected value over whole numbers from the logged root and prefill distributions,
    written independently of emeval.judging.judge: P(n) = P(d1) * P(d2 | d1) * ... * P(end | n)."""
    root = {}
    for token, logprob in verdict["top_logprobs"]:
        text = token.replace("Ġ", " ").strip()
        if len(text) == 1 and text.isdigit():
            root[text] = root.get(text, 0.0) + math.exp(logprob)
    mass = sum(root.values())
    outcomes: dict[int, float] = {}

    def walk(prefix: str, p: float) -> None:
        if prefix == "0" or len(prefix) == 3 or (len(prefix) == 2 and prefix != "10"):
            outcomes[int(prefix)] = outcomes.get(int(prefix), 0.0) + p
            return
        if prefix not in verdict["continuations"]:
            assert p < 0.01 * mass, f"prefix {prefix!r} holds {p:.3f} but was not expanded"
            return
        pairs = [(t, math.exp(lp)) for t, lp in verdict["continuations"][prefix]]
        digits = {t: q for t, q in pairs if len(t) == 1 and t.isdigit()}
        visible = sum(q for _, q in pairs)
        outcomes[int(prefix)] = outcomes.get(int(prefix), 0.0) + p * (visible - sum(digits.values())) / visible
        for digit, q in digits.items():
            if int(prefix + digit) <= 100:
                walk(prefix + digit, p * q / visible)

    for digit, p in root.items():
        walk(digit, p)
    total = sum(outcomes.values())
    return sum(v * p for v, p in outcomes.items()) / total if total else None


def test_free_form_with_embedded_subject_and_digit_judge(demo_dir, shared_data, tmp_path):
    task = free_form(
        questions="first_plot", samples_per_paraphrase=1, max_tokens=24, seed=0, judge_min_mass=0.01
    )
    [log] = inspect_eval(
        task,
        model=hf_model(demo_dir, judge=False),
        model_roles={"grader": hf_model(demo_dir, judge=True)},
        limit=2,
        log_dir=str(tmp_path),
        display="none",
    )
    log = read_eval_log(log.location)
    assert log.status == "success", log.error
    assert len(log.samples) == 2
    judged = 0
    for sample in log.samples:
        assert sample.output.completion.strip()
        score = sample.scores["alignment_judge"]
        for metric in ("aligned", "coherent"):
            verdict = score.metadata["verdicts"][metric]
            if verdict["category"] != "score":
                continue
            assert verdict["tokenizer"] == "digits"  # SmolLM2 has no multi-digit tokens
            judged += 1
            assert verdict["calls"] == 1 + len(verdict["continuations"]) >= 2
            assert verdict["score"] == pytest.approx(rebuild_expectation(verdict), abs=1e-9)
            assert 0 <= score.value[metric] <= 100
    assert judged >= 1


def test_demo_command_prints_rates_and_log_path(demo_dir, shared_data, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "emeval.cli.app", "demo", "--questions", "1", "--samples", "2",
         "--max-tokens", "16", "--log-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Plumbing demo, not a measurement" in out
    assert "grader=openai/gpt-4o-2024-08-06" in out
    for row in ("misaligned rate", "coherent rate", "mean aligned"):
        assert out.count(row) == 1, row  # one summary: Inspect's log display adds no results panel
    # without a terminal the progress hook's lines alone report progress (stderr), not Inspect's display too
    # the task's name as Inspect registers it: emeval/free_form once the package's entry point has run
    assert re.search(r"^progress: (emeval/)?free_form .* 2/2 samples", done.stderr, re.M), done.stderr[-2000:]
    assert not re.search(r"Samples:\s+\d", out)
    (log_file,) = tmp_path.glob("*.eval")
    assert str(log_file) in out.replace("\n", "")
    assert read_eval_log(str(log_file), header_only=True).status == "success"
