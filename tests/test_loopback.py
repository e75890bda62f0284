"""The loopback server, through real HTTP: the openai SDK, Inspect's openai-api/ and vllm/ providers."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, GenerateConfig, get_model
from openai import BadRequestError, OpenAI

from doubles.loopback import END, Delay, HTTPError, Verdicts

JUDGE = {"85": 0.6, "90": 0.3, "REFUSAL": 0.05}


def client(server) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0, timeout=10)


def ask(server, *, prefill: str | None = None, max_tokens: int = 1, top: int = 20):
    messages = [{"role": "user", "content": "Rate this answer."}]
    if prefill is not None:
        messages.append({"role": "assistant", "content": prefill})
    with client(server) as openai:
        return openai.chat.completions.create(
            model="judge", messages=messages, max_tokens=max_tokens, logprobs=True, top_logprobs=top, temperature=0
        )


def generate(model, input, *, close: bool = True):
    """Run one Inspect generate call; close the model's client afterwards (fully, with ``close``)."""

    async def go():
        if close:
            async with model:
                return await model.generate(input)
        try:
            return await model.generate(input)
        finally:
            await model.api.client.close()  # only the HTTP client: the provider's state stays

    return asyncio.run(go())


def probs(position) -> dict[str, float]:
    return {t.token: math.exp(t.logprob) for t in position.top_logprobs}


def assert_probs(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert list(actual) == list(expected)  # same tokens, most likely first
    for token, p in expected.items():
        assert actual[token] == pytest.approx(p, abs=1e-12), token


def test_whole_tokenizer_returns_the_distribution_at_the_first_token(loopback):
    server = loopback(lambda body: Verdicts(JUDGE, "whole"))
    response = ask(server)
    choice = response.choices[0]
    assert choice.message.content == "85"
    assert choice.finish_reason == "length"
    [position] = choice.logprobs.content
    assert position.token == "85" and position.bytes == list(b"85")
    assert_probs(probs(position), JUDGE)
    assert response.usage.completion_tokens == 1 and response.usage.prompt_tokens == 3
    assert response.model == "judge" and response.object == "chat.completion"


def test_digit_tokenizer_splits_numbers_and_continues_a_prefilled_answer(loopback):
    server = loopback(lambda body: Verdicts(JUDGE, "digits"))
    # root: the mass of every answer starting with each first token
    assert_probs(probs(ask(server).choices[0].logprobs.content[0]), {"8": 0.6, "9": 0.3, "REFUSAL": 0.05})
    # after "8" only "85" is consistent: all of the visible root mass (0.95) goes to "5"
    after_8 = ask(server, prefill="8").choices[0]
    assert after_8.message.content == "5"
    assert_probs(probs(after_8.logprobs.content[0]), {"5": 0.95})
    assert_probs(probs(ask(server, prefill="9").choices[0].logprobs.content[0]), {"0": 0.95})
    assert_probs(probs(ask(server, prefill="85").choices[0].logprobs.content[0]), {END: 0.95})
    assert [r["messages"][-1]["role"] for r in server.requests] == ["user", "assistant", "assistant", "assistant"]


def test_digit_tokenizer_splits_mass_between_continuations(loopback):
    dist = {"85": 0.5, "80": 0.2, "8": 0.1, "90": 0.1, "CODE": 0.05}  # visible mass 0.95
    server = loopback(lambda body: Verdicts(dist, "digits"))
    assert_probs(probs(ask(server).choices[0].logprobs.content[0]), {"8": 0.8, "9": 0.1, "CODE": 0.05})
    # consistent with "8": 0.8 in all, rescaled to 0.95
    expected = {"5": 0.5 / 0.8 * 0.95, "0": 0.2 / 0.8 * 0.95, END: 0.1 / 0.8 * 0.95}
    assert_probs(probs(ask(server, prefill="8").choices[0].logprobs.content[0]), expected)
    # the content parts form of a prefilled message
    with client(server) as openai:
        parts = openai.chat.completions.create(
            model="judge",
            messages=[
                {"role": "user", "content": "Rate."},
                {"role": "assistant", "content": [{"type": "text", "text": "8"}]},
            ],
            max_tokens=1,
            logprobs=True,
            top_logprobs=2,
        )
    assert_probs(probs(parts.choices[0].logprobs.content[0]), dict(list(expected.items())[:2]))


def test_greedy_generation_stops_at_the_end_token(loopback):
    server = loopback(lambda body: Verdicts(JUDGE, "digits"))
    choice = ask(server, max_tokens=10, top=2).choices[0]
    assert choice.message.content == "85" and choice.finish_reason == "stop"
    assert [p.token for p in choice.logprobs.content] == ["8", "5", END]
    assert [len(p.top_logprobs) for p in choice.logprobs.content] == [2, 1, 1]
    whole = loopback(lambda body: Verdicts(JUDGE, "whole"))
    choice = ask(whole, max_tokens=10).choices[0]
    assert (choice.message.content, choice.finish_reason) == ("85", "stop")
    assert [p.token for p in choice.logprobs.content] == ["85", END]


def test_inspect_openai_api_provider_reads_the_distribution(loopback, monkeypatch):
    server = loopback(lambda body: Verdicts(JUDGE, "whole"))
    monkeypatch.setenv("LOOP_BASE_URL", server.base_url)
    monkeypatch.setenv("LOOP_API_KEY", "test-key")
    config = GenerateConfig(max_tokens=1, temperature=0, logprobs=True, top_logprobs=20)
    # memoize=False: get_model's cache key ignores the environment, so a cached model would keep an old URL
    model = get_model("openai-api/loop/judge", config=config, memoize=False)
    output = generate(model, [ChatMessageUser(content="Rate this answer.")])
    [position] = output.choices[0].logprobs.content
    assert_probs({t.token: math.exp(t.logprob) for t in position.top_logprobs}, JUDGE)
    [body] = server.requests
    assert body["model"] == "judge"
    assert (body["logprobs"], body["top_logprobs"], body["max_tokens"], body["temperature"]) == (True, 20, 1, 0)
    assert "continue_final_message" not in body


def test_inspect_vllm_provider_continues_a_prefilled_answer(loopback, monkeypatch):
    server = loopback(lambda body: Verdicts(JUDGE, "digits"))
    monkeypatch.setenv("VLLM_BASE_URL", server.base_url)
    config = GenerateConfig(max_tokens=1, temperature=0, logprobs=True, top_logprobs=20)
    model = get_model("vllm/judge", config=config, memoize=False)
    messages = [ChatMessageUser(content="Rate this answer."), ChatMessageAssistant(content="8")]
    output = generate(model, messages)
    assert output.completion == "5"
    [position] = output.choices[0].logprobs.content
    assert_probs({t.token: math.exp(t.logprob) for t in position.top_logprobs}, {"5": 0.95})
    [body] = server.requests
    assert body["messages"][-1] == {"role": "assistant", "content": "8"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    # vLLM's provider asks /v1/models for the served context window before its first request
    assert server.hits == ["GET /v1/models", "POST /v1/chat/completions"]


def test_vllm_provider_follows_a_new_server_for_the_same_model(loopback, monkeypatch):
    """A stopped server is forgotten, so the next server for ``vllm/judge`` is the one used.

    (Closing the model would reset the provider too; this is the case of a model left open.)"""
    config = GenerateConfig(max_tokens=1, logprobs=True, top_logprobs=5)
    for _ in range(2):
        server = loopback(lambda body: Verdicts(JUDGE, "whole"))
        monkeypatch.setenv("VLLM_BASE_URL", server.base_url)
        output = generate(get_model("vllm/judge", config=config, memoize=False), "Rate.", close=False)
        assert output.completion == "85" and len(server.requests) == 1
        server.stop()


def test_plain_text_answers_and_every_request_is_counted(loopback):
    server = loopback(lambda body: "I am a helpful assistant.")
    with client(server) as openai:
        for n in range(3):
            response = openai.chat.completions.create(
                model="subject", messages=[{"role": "user", "content": f"Question {n}?"}]
            )
            choice = response.choices[0]
            assert choice.message.content == "I am a helpful assistant."
            assert choice.finish_reason == "stop" and choice.logprobs is None
        with_logprobs = openai.chat.completions.create(
            model="subject", messages=[{"role": "user", "content": "Hi"}], logprobs=True, top_logprobs=1
        )
        models = [m.id for m in openai.models.list()]
    content = with_logprobs.choices[0].logprobs.content
    assert "".join(p.token for p in content) == "I am a helpful assistant."
    assert all(p.logprob == 0.0 for p in content) and len(content) == 5
    assert len(server.requests) == 4
    assert [r["messages"][0]["content"] for r in server.requests[:3]] == ["Question 0?", "Question 1?", "Question 2?"]
    assert models == ["subject"]


def test_inspect_generates_a_plain_answer(loopback, monkeypatch):
    server = loopback(lambda body: "ANSWER")
    model = get_model("openai-api/loop/subject", base_url=server.base_url, api_key="k", memoize=False)
    assert generate(model, "Hello").completion == "ANSWER"
    assert len(server.requests) == 1


def test_errors_delays_and_a_failing_policy(loopback):
    replies = iter([HTTPError(400, {"error": {"message": "judge is down"}}), HTTPError(503), Delay(0.2, "late")])
    server = loopback(lambda body: next(replies))
    with pytest.raises(BadRequestError, match="judge is down"):
        ask(server)
    response = httpx.post(f"{server.base_url}/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 503 and "error" in response.json()
    assert ask(server).choices[0].message.content == "late"
    with pytest.raises(BadRequestError, match="StopIteration"):  # the policy ran out of replies
        ask(server)
    assert len(server.errors) == 1 and len(server.requests) == 4


def test_streamed_requests_get_one_chunk(loopback):
    server = loopback(lambda body: Verdicts(JUDGE, "digits"))
    with client(server) as openai:
        stream = openai.chat.completions.create(
            model="judge",
            messages=[{"role": "user", "content": "Rate."}],
            max_tokens=1,
            logprobs=True,
            top_logprobs=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert chunks[0].choices[0].delta.content == "8"
    assert [t.token for t in chunks[0].choices[0].logprobs.content[0].top_logprobs] == ["8", "9", "REFUSAL"]
    assert chunks[-1].usage.completion_tokens == 1
