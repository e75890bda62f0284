"""Scale-out with real parts, offline: a real S3 API server (moto's standalone server, a child
process on 127.0.0.1) as the one log store; a local Ray cluster running three shards; a local
process pool; one shard killed with SIGKILL mid-run and run again. Subject and judge are loopback
OpenAI-compatible servers (tests/doubles/loopback.py) answering by script (tests/doubles/faulty_loopback.py), so
every answer and score is known.

The merged result of the shards must equal the single-process run's numbers exactly."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emeval.logs.frame import log_paths, read_logs

from emeval.stats.summary import summary_frame
from emeval.cli.app import app
from emeval.shards import Piece, RunSpec, Shard, ShardError, parse_shard, plan, run_ray, run_shard, task_specs
from doubles.faulty_loopback import judged_answer, last_user_text, scripted_judge, scripted_subject, write_questions
from doubles.loopback import LoopbackServer
from emeval.local.checkpoints import Checkpoint
from emeval.local.sweep import shard_checkpoints

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = 11  # ids q10 and q2: string order is not dataset order, so merging must not depend on either
SEED = 5

pytestmark = pytest.mark.scale_out


# -- the plan (pure) ---------------------------------------------------------------------------------


def test_whole_pairs_are_dealt_round_robin_when_there_are_enough():
    shards = plan(["a.py", "b.py"], ["m1", "m2"], 3, dataset_size=lambda task: pytest.fail("not needed"))
    assert shards == [[Piece("a.py", "m1"), Piece("b.py", "m2")], [Piece("a.py", "m2")], [Piece("b.py", "m1")]]


def test_fewer_pairs_than_shards_cut_each_pair_into_contiguous_sample_ranges():
    shards = plan(["a.py"], ["m1", "m2"], 5, dataset_size={"a.py": 10}.__getitem__)
    # pair (a, m1) has shards 0, 2, 4; pair (a, m2) has shards 1, 3
    assert shards == [
        [Piece("a.py", "m1", (0, 3))], [Piece("a.py", "m2", (0, 5))], [Piece("a.py", "m1", (3, 6))],
        [Piece("a.py", "m2", (5, 10))], [Piece("a.py", "m1", (6, 10))],
    ]
    # every sample of every pair exactly once
    for model in ("m1", "m2"):
        covered = [i for s in shards for p in s if p.model == model for i in range(*p.samples)]
        assert covered == list(range(10))


def test_a_shard_with_no_samples_left_runs_nothing():
    assert plan(["a.py"], ["m"], 3, dataset_size=lambda task: 2) == [
        [], [Piece("a.py", "m", (0, 1))], [Piece("a.py", "m", (1, 2))]]


def test_shard_index_comes_from_the_option_or_the_scheduler():
    assert parse_shard("2/8") == Shard(2, 8)
    assert parse_shard("auto/8", {"SLURM_ARRAY_TASK_ID": "3"}) == Shard(3, 8)
    assert parse_shard("auto/8", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1"}) == Shard(2, 8)
    assert parse_shard("auto/4", {"JOB_COMPLETION_INDEX": "0"}) == Shard(0, 4)
    for bad, env in (("8/8", {}), ("1-8", {}), ("auto/4", {}), ("auto/4", {"JOB_COMPLETION_INDEX": "4"})):
        with pytest.raises(ShardError):
            parse_shard(bad, env)


def test_a_sweep_deals_its_checkpoints_round_robin_in_step_order():
    steps = [0, 10, 20, 30, 40]
    checkpoints = [Checkpoint(f"step_{s}", s, "full", f"/c/{s}") for s in steps]
    dealt = [[c.step for c in shard_checkpoints(checkpoints, i, 3)] for i in range(3)]
    assert dealt == [[0, 30], [10, 40], [20]]  # checkpoint k to shard k mod 3
    assert [c.step for c in shard_checkpoints(checkpoints, 0, 1)] == steps
    assert shard_checkpoints(checkpoints[:1], 1, 2) == []  # more shards than checkpoints: some run nothing


# -- real parts --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(s3_store) -> str:
    """The one log store of this file's runs (tests/shared_fixtures.py: a moto S3 server)."""
    return s3_store


@pytest.fixture(scope="module")
def models(store, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Scripted subject and judge servers, and the environment that names them (set here too)."""
    subject, judge = LoopbackServer(scripted_subject).start(), LoopbackServer(scripted_judge).start()
    env = {"SUBJECT_BASE_URL": subject.base_url, "SUBJECT_API_KEY": "k", "JUDGE_BASE_URL": judge.base_url,
           "JUDGE_API_KEY": "k", "XDG_DATA_HOME": str(tmp_path_factory.mktemp("xdg"))}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield {"questions": write_questions(tmp_path_factory.mktemp("q") / "q.yaml", QUESTIONS)}
    subject.stop()
    judge.stop()


def spec(log_dir: str, questions: str, models: tuple[str, ...] = ("openai-api/subject/m",)) -> RunSpec:
    return RunSpec(
        tuple(task_specs(str(ROOT / "evals/free_form.py"))), models, log_dir,
        task_args={"questions": questions, "seed": SEED, "judge_cache": False},
        model_roles={"grader": "openai-api/judge/j"},
        eval_set_args={"retry_attempts": 1, "max_connections": 4},
    )


def numbers(store_url: str) -> pd.DataFrame:
    """The report's numbers (every summary row) of the logs under one store URL."""
    frame = summary_frame(read_logs([store_url]).samples)
    return frame.sort_values(["eval", "group", "scorer", "metric"]).reset_index(drop=True)


def test_ray_shards_into_s3_merge_to_the_single_process_numbers(store, models, tmp_path):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray not installed (pip install -e '.[test]' or '.[ray]')")
    import ray

    single = run_shard(spec(f"{store}/single", models["questions"]), Shard(0, 1))
    assert single.success, single.error
    # Ray workers are processes of their own: they get this environment (loopback and S3 addresses)
    names = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "NO_PROXY",
             "no_proxy", "SUBJECT_BASE_URL", "SUBJECT_API_KEY", "JUDGE_BASE_URL", "JUDGE_API_KEY", "XDG_DATA_HOME",
             "EMEVAL_DATA_DIR", "INSPECT_CACHE_DIR")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {k: os.environ[k] for k in names if k in os.environ}})
    try:
        sharded = run_ray(spec(f"{store}/sharded", models["questions"]), 3)
    finally:
        ray.shutdown()
    assert [r.shard for r in sharded] == [Shard(i, 3) for i in range(3)]
    assert all(r.success for r in sharded), [r.error for r in sharded]
    shard_logs = log_paths([f"{store}/sharded"])
    assert len(shard_logs) == 3 and all(str(p).startswith(f"{store}/sharded/shard-") for p in shard_logs)

    merged = read_logs([f"{store}/sharded"]).samples
    whole = read_logs([f"{store}/single"]).samples
    per_answer = ["sample_id", "epoch", "scorer", "metric", "answer", "value"]
    assert sorted(merged["sample_id"].unique()) == sorted(whole["sample_id"].unique())
    assert len(merged) == len(whole)  # no answer lost, none twice
    pd.testing.assert_frame_equal(merged[per_answer].sort_values(per_answer[:4]).reset_index(drop=True),
                                  whole[per_answer].sort_values(per_answer[:4]).reset_index(drop=True))
    expected = numbers(f"{store}/single")
    assert (expected["n"] == QUESTIONS).any()
    pd.testing.assert_frame_equal(numbers(f"{store}/sharded"), expected, check_exact=True)

    # the readers take store URLs as given
    result = CliRunner().invoke(app, ["report", f"{store}/sharded", "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "summary.json").is_file()
    result = CliRunner().invoke(app, ["compare", f"{store}/single", f"{store}/sharded", "--overall-only",
                                      "--csv", str(tmp_path / "compare.csv")])
    assert result.exit_code == 0, result.output
    differences = pd.read_csv(tmp_path / "compare.csv")
    assert len(differences) and (differences["difference"].dropna() == 0).all()
    result = CliRunner().invoke(app, ["summary", str(shard_logs[0])])
    assert result.exit_code == 0 and str(shard_logs[0]) in result.output.replace("\n", ""), result.output
    # re-judging writes beside the log in its store; judge agreement reads both judges from there
    result = CliRunner().invoke(app, ["rejudge", str(shard_logs[0]), "--judge", "openai-api/judge/second"])
    assert result.exit_code == 0, result.output
    rejudged = str(shard_logs[0]).rsplit(".", 1)[0] + "-rejudged-judge_openai_api_judge_second.eval"
    assert rejudged.startswith(f"{store}/sharded/") and rejudged in [str(p) for p in log_paths([f"{store}/sharded"])]
    result = CliRunner().invoke(app, ["judge-agreement", rejudged, "--json", str(tmp_path / "agreement.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "agreement.json").read_text())["n"] > 0


def test_local_process_pool_runs_whole_model_pairs(store, models):
    result = CliRunner().invoke(app, [
        "run", "evals/free_form.py", "--model", "openai-api/subject/m1", "--model", "openai-api/subject/m2",
        "--model-role", "grader=openai-api/judge/j", "-T", f"questions={models['questions']}", "-T", f"seed={SEED}",
        "-T", "judge_cache=false", "--log-dir", f"{store}/pool", "--processes", "2", "--retry-attempts", "1",
    ])
    assert result.exit_code == 0, result.output
    frame = read_logs([f"{store}/pool"]).samples
    assert sorted(frame["model"].unique()) == ["openai-api/subject/m1", "openai-api/subject/m2"]
    counts = frame[frame["metric"] == "aligned"].groupby("model")["sample_id"].nunique()
    assert counts.to_dict() == {"openai-api/subject/m1": QUESTIONS, "openai-api/subject/m2": QUESTIONS}
    assert {Path(str(p)).parts[-3] for p in log_paths([f"{store}/pool"])} == {"shard-0-of-2", "shard-1-of-2"}


def test_a_killed_shard_run_again_resumes_without_a_sample_twice(store, models, tmp_path):
    questions = write_questions(tmp_path / "q9.yaml", 9)  # shard 1/3 holds questions 3, 4, 5
    gate = threading.Event()

    async def gated(body: dict) -> str:
        import asyncio

        answer = scripted_subject(body)
        if answer != "Answer 3.":
            while not gate.is_set():
                await asyncio.sleep(0.05)
        return answer

    subject, judge = LoopbackServer(gated).start(), LoopbackServer(scripted_judge).start()
    env = {**os.environ, "SUBJECT_BASE_URL": subject.base_url, "JUDGE_BASE_URL": judge.base_url,
           "XDG_DATA_HOME": str(tmp_path / "xdg")}
    command = [sys.executable, "-m", "emeval.cli.app", "run", "evals/free_form.py", "--model", "openai-api/subject/m",
               "--model-role", "grader=openai-api/judge/j", "-T", f"questions={questions}", "-T", f"seed={SEED}",
               "-T", "judge_cache=false", "--log-dir", f"{store}/killed", "--shard", "1/3", "--retry-attempts", "1"]
    try:
        with open(tmp_path / "first.txt", "w") as out:
            first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 180
                while not (len(judge.requests) >= 2 and len(subject.requests) >= 3):
                    assert first.poll() is None, (tmp_path / "first.txt").read_text()[-3000:]
                    assert time.monotonic() < deadline, "the shard never got going"
                    time.sleep(0.1)
                time.sleep(2)  # question 3 finished: let Inspect record it in its sample buffer
            finally:
                first.send_signal(signal.SIGKILL)
                first.wait()
        asked_before = [scripted_subject(b) for b in subject.requests]
        [crashed] = log_paths([f"{store}/killed"])
        from emeval.logs.read import read_log

        assert read_log(crashed, header_only=True, finished=False).status == "started"
        gate.set()
        again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    finally:
        subject.stop()
        judge.stop()

    [final] = log_paths([f"{store}/killed"])  # the killed run's log was superseded and removed
    assert final != crashed
    frame = read_logs([final]).samples
    aligned = frame[frame["metric"] == "aligned"]
    assert sorted(aligned["sample_id"]) == ["q3:0:0", "q4:0:0", "q5:0:0"]  # its range, each once
    assert sorted(aligned["answer"]) == ["Answer 3.", "Answer 4.", "Answer 5."]
    asked_after = [scripted_subject(b) for b in subject.requests[len(asked_before):]]
    assert "Answer 3." not in asked_after, asked_after  # the finished sample was not asked again
    assert sorted(judged_answer(b)[1] for b in judge.requests).count("Answer 3.") == 2  # nor judged again


def sweep_subject(body: dict) -> str:
    """A served checkpoint ``ckpt-<step>`` (or the base, step 0) answers "Question i?" with
    "Answer <i + step / 10>.", so the judge's scores move from step to step."""
    name = body["model"].rsplit(":", 1)[-1]
    shift = int(name.removeprefix("ckpt-")) // 10 if name.startswith("ckpt-") else 0
    return "Answer " + str(int(last_user_text(body).removeprefix("Question ").removesuffix("?")) + shift) + "."


def test_sweep_shards_into_s3_report_as_one_process(store, models, tmp_path, monkeypatch):
    """Two `emeval sweep --shard i/2` runs into an s3:// sweep, then `--report-only` on the URL: the
    curves, change points and report equal a single-process sweep's (local folder) byte for byte.
    Checkpoints are adapters already loaded on a "vLLM server" (a loopback server), so no model loads."""
    import fsspec

    subject = LoopbackServer(sweep_subject).start()
    for name in ("base", "ckpt-10", "ckpt-20"):  # the server's adapters, loaded before the sweep
        request = urllib.request.Request(f"{subject.base_url}/chat/completions", method="POST", data=json.dumps(
            {"model": name, "messages": [{"role": "user", "content": "Question 0?"}]}).encode(),
            headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()
    monkeypatch.setenv("VLLM_BASE_URL", subject.base_url)
    monkeypatch.setenv("VLLM_API_KEY", "k")
    runner = CliRunner()
    args = ["sweep", "--base", "vllm/base", "--checkpoints", "ckpt-10,ckpt-20", "--evals", "free_form",
            "-T", f"questions={write_questions(tmp_path / 'q.yaml', 3)}", "-T", "judge_cache=false",
            "--judge", "openai-api/judge/j", "--seed", str(SEED), "--retry-attempts", "1"]
    url = f"{store}/sweep"
    try:
        for index, steps in ((0, "0 (base): done, 20 (ckpt-20): done"), (1, "10 (ckpt-10): done")):
            result = runner.invoke(app, [*args, "--out", url, "--shard", f"{index}/2"])
            assert result.exit_code == 0, result.output
            said = " ".join(result.output.split())
            assert f"Shard {index}/2 of the sweep, steps {steps}." in said, said
            assert f"report the sweep: emeval sweep --out {url} --report-only" in said
        again = runner.invoke(app, [*args, "--out", url, "--shard", "1/2"])  # a rerun shard duplicates nothing
        assert again.exit_code == 0 and again.output.count("complete logs found, skipped") == 1, again.output
        fs, root = fsspec.core.url_to_fs(url)
        fs.invalidate_cache()
        assert not fs.exists(f"{root}/curves.csv")  # the shards report nothing
        assert len(fs.glob(f"{root}/logs/*/*.eval")) == 3  # one log per checkpoint, none twice

        reported = runner.invoke(app, ["sweep", "--out", url, "--report-only"])
        assert reported.exit_code == 0, reported.output
        local = tmp_path / "single"
        single = runner.invoke(app, [*args, "--out", str(local)])
        assert single.exit_code == 0, single.output
    finally:
        subject.stop()
    fs.invalidate_cache()
    for name in ("sweep.json", "curves.csv", "changepoints.csv", "report.md", "plots/.emeval-plots.json"):
        assert fs.cat_file(f"{root}/{name}") == (local / name).read_bytes(), name
    curves = pd.read_csv(local / "curves.csv")
    assert sorted(curves["step"].unique()) == [0, 10, 20] and (curves["n"] > 0).all()
    assert curves.groupby("metric")["mean"].nunique().max() > 1  # the steps differ: the comparison can fail
    plots = sorted(p.name for p in (local / "plots").glob("*.png"))
    assert plots and sorted(p.rsplit("/", 1)[-1] for p in fs.glob(f"{root}/plots/*.png")) == plots
    assert fs.cat_file(f"{root}/plots/{plots[0]}")[:8] == b"\x89PNG\r\n\x1a\n"
    said = " ".join(reported.output.split())
    assert f"report: {url}/report.md curves: {url}/curves.csv plots: {url}/plots" in said
    summaries = [line for line in single.output.splitlines() if "transition" in line]
    assert summaries and all(line in reported.output.splitlines() for line in summaries)
