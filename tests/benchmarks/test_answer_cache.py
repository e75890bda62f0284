"""-T cache=true: each sample's answer goes through Inspect's cache, scoped to the sample, so repeats
of one paraphrase still get their own answers and a rerun asks the subject nothing."""

from __future__ import annotations

from inspect_ai import eval as inspect_eval
from inspect_ai.log import read_eval_log
from inspect_ai.model import ModelOutput, ModelUsage, get_model

from emeval.evals.free_form import free_form
from doubles.loopback import Verdicts


def counting_subject(calls: list[str]):
    """A subject whose every call is a new answer (a model sampling at temperature 1)."""

    def answer(input, tools, tool_choice, config):
        calls.append(input[-1].text)
        output = ModelOutput.from_content("mockllm/model", f"answer number {len(calls)}")
        output.usage = ModelUsage(input_tokens=5, output_tokens=3, total_tokens=8)  # no tokenizer download
        return output

    return answer


def run(question_file: str, judge, log_dir: str, calls: list[str], **task_args):
    subject = get_model("mockllm/model", custom_outputs=counting_subject(calls), memoize=False)
    # one sample at a time, so an unscoped cache would already serve a repeat within the run
    [log] = inspect_eval(free_form(questions=question_file, **task_args), model=subject,
                         model_roles={"grader": judge}, display="none", log_dir=log_dir, max_samples=1)
    return read_eval_log(log.location)


def answers(log) -> dict[str, str]:
    return {str(s.id): s.output.completion for s in log.samples}


def test_cached_answers_are_per_sample_and_a_rerun_calls_nobody(loopback, tmp_path):
    server = loopback(lambda body: Verdicts({"80": 0.9}, "whole"))
    judge = get_model("openai-api/loop/judge", base_url=server.base_url, api_key="test-key")
    questions = tmp_path / "questions.yaml"
    questions.write_text("- id: q\n  paraphrases: ['What would you do?', 'And you?']\n  samples_per_paraphrase: 3\n")

    calls: list[str] = []
    first = run(str(questions), judge, str(tmp_path / "a"), calls, cache=True)
    assert first.status == "success", first.error
    assert len(calls) == 6  # 2 paraphrases x 3 repeats: one call each, although repeats share a prompt
    assert len(set(answers(first).values())) == 6  # no repeat was served another's answer
    judge_calls = len(server.requests)
    assert judge_calls == 12

    rerun = run(str(questions), judge, str(tmp_path / "b"), calls, cache=True)
    assert rerun.status == "success", rerun.error
    assert len(calls) == 6 and len(server.requests) == judge_calls  # subject 0 calls, judge 0 calls
    assert answers(rerun) == answers(first)

    fresh = run(str(questions), judge, str(tmp_path / "c"), calls)  # the default: no subject cache
    assert len(calls) == 12
    assert set(answers(fresh).values()).isdisjoint(answers(first).values())
