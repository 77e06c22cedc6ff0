"""Providers and the router: the real httpx client against the project's fake server on a
real loopback socket, with every fault it can inject."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from norn.llm.fake_server import FakeServer
from norn.llm.guardrails import Guardrails
from norn.llm.prompts import (
    INVALID,
    MISSING,
    OK,
    REFUSED,
    Work,
    answer_schema,
    parse,
    render,
    validate,
)
from norn.llm.providers import (
    AnthropicProvider,
    Call,
    OpenAIProvider,
    ProviderError,
    parse_retry_after,
    schema_in_prompt,
)
from norn.llm.router import CLOSED, HALF_OPEN, OPEN, Budget, CircuitBreaker, Router, TokenBucket
from norn.llm.usecases import NPC_TALK, TOY_REST
from tests.llm_helpers import requests

G = Guardrails(known_maps=("prontera",))


@pytest.fixture(scope="module")
def server():
    with FakeServer() as s:
        yield s


@pytest.fixture(autouse=True)
def no_faults(server):
    server.set_plan([])
    yield


def _items(uc=TOY_REST, n=3):
    rows = requests(kind=uc.kind, n=n, n_options=4 if uc.text else 2)
    return [Work(rows[i], uc, "Hello there!", "prontera") for i in range(n)]


def _call(provider, items, uc=TOY_REST, timeout_s=2.0):
    async def go():
        try:
            msgs = render(uc, items, schema_in_prompt(provider))
            return await provider.complete(Call(msgs, answer_schema(items), timeout_s=timeout_s))
        finally:
            await provider.aclose()

    return asyncio.run(go())


def _openai(server, structured="json_schema", **kw):
    return OpenAIProvider("fake", server.url + "/v1", "fake-1", structured=structured, **kw)


def _anthropic(server, structured="tool", **kw):
    return AnthropicProvider("fake", server.url, "claude-fake", structured=structured,
                             api_key="k", **kw)


@pytest.mark.parametrize("make,structured", [
    (_openai, "json_schema"), (_openai, "json_object"), (_openai, "none"),
    (_anthropic, "tool"), (_anthropic, "none"),
])
def test_a_batch_answers_every_id_in_the_schema_over_a_real_socket(server, make, structured):
    items = _items(NPC_TALK, 3)
    comp = _call(make(server, structured), items, NPC_TALK)
    answers = validate(items, parse(comp.content), G)
    assert [a.status for a in answers] == [OK, OK, OK]
    # the rule of the fake (and the offline provider): the highest utility, ties first
    assert [a.choice for a in answers] == [int(np.argmax(w.req["context"][:4])) for w in items]
    assert all(a.text for a in answers)
    assert comp.tokens_in > 0 and comp.tokens_out > 0


def test_json_schema_goes_as_response_format_elsewhere_the_schema_is_in_the_prompt(server):
    items = _items()
    assert "SCHEMA:" not in render(TOY_REST, items, schema_in_prompt(_openai(server)))[1][
        "content"]
    assert "SCHEMA:" in render(TOY_REST, items, schema_in_prompt(
        _openai(server, "json_object")))[1]["content"]
    assert not schema_in_prompt(_anthropic(server))


@pytest.mark.parametrize("fault,status,kind", [
    ("rate_limited", 429, "rate_limited"),
    ("server_error", 500, "server"),
    ("overloaded", 529, "server"),
    ("malformed", None, "protocol"),
])
def test_http_faults_become_one_error_type_with_its_class(server, fault, status, kind):
    server.set_plan([{"fault": fault, "retry_after_s": 7}])
    with pytest.raises(ProviderError) as err:
        _call(_openai(server), _items())
    assert err.value.kind == kind
    assert err.value.status == status
    if fault == "rate_limited":
        assert err.value.retry_after_s == 7


def test_a_hung_server_is_a_timeout_never_a_hang(server):
    server.set_plan([{"fault": "timeout", "hang_s": 1.0}])
    with pytest.raises(ProviderError) as err:
        _call(_openai(server, timeout_s=0.2), _items())
    assert err.value.kind == "timeout"


def test_a_closed_port_is_a_connect_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = OpenAIProvider("dead", f"http://127.0.0.1:{port}/v1", "m", timeout_s=1.0)
    with pytest.raises(ProviderError) as err:
        _call(p, _items())
    assert err.value.kind == "connect"


@pytest.mark.parametrize("fault,statuses", [
    ("empty", [INVALID] * 3),
    ("invalid_json", [INVALID] * 3),
    ("missing_ids", [OK, OK, MISSING]),
    ("wrong_choice", [INVALID] * 3),
])
def test_bad_content_is_judged_item_by_item_never_guessed(server, fault, statuses):
    server.set_plan([{"fault": fault}])
    items = _items()
    comp = _call(_openai(server), items)
    assert [a.status for a in validate(items, parse(comp.content), G)] == statuses


def test_out_of_character_text_is_refused_but_the_choice_stands(server):
    server.set_plan([{"fault": "forbidden_text"}])
    items = _items(NPC_TALK, 2)
    answers = validate(items, parse(_call(_anthropic(server), items, NPC_TALK).content), G)
    assert [a.status for a in answers] == [REFUSED, REFUSED]
    assert all(a.choice >= 0 and a.reason == "forbidden_word" for a in answers)


def test_retry_after_is_read_as_seconds_or_a_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# -- the router ------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self):
        return self.t

    async def sleep(self, s):
        self.slept.append(s)
        self.t += s


def _route(server, plan, chain=("fake",), providers=None, **kw):
    server.set_plan(plan)
    clock = FakeClock()
    provs = providers or {"fake": _openai(server), "backup": _anthropic(server)}
    router = Router(provs, clock=clock, sleep=clock.sleep, **kw)
    items = _items()

    async def go():
        try:
            msgs = render(TOY_REST, items, False)
            return await router.complete(list(chain), Call(msgs, answer_schema(items)),
                                         deadline=clock() + 60)
        finally:
            await router.aclose()

    return asyncio.run(go()), router, clock


def test_429_waits_the_retry_after_then_succeeds(server):
    res, _, clock = _route(server, [{"fault": "rate_limited", "calls": [0], "retry_after_s": 3}])
    assert res.completion is not None
    assert [a.outcome for a in res.attempts] == ["rate_limited", "ok"]
    assert clock.slept == [3.0]


def test_a_retry_after_beyond_the_maximum_goes_to_the_next_provider(server):
    res, _, clock = _route(server, [{"fault": "rate_limited", "calls": [0],
                                     "retry_after_s": 50}], chain=("fake", "backup"),
                           retry_after_max_s=10)
    assert res.provider == "backup" and clock.slept == []


def test_5xx_is_retried_with_exponential_backoff_then_falls_to_the_next_provider(server):
    res, router, clock = _route(server, [{"fault": "server_error", "calls": [0, 1, 2]}],
                                chain=("fake", "backup"), retries=2, backoff_s=0.5)
    assert [(a.provider, a.outcome) for a in res.attempts] == [
        ("fake", "server"), ("fake", "server"), ("fake", "server"), ("backup", "ok")]
    assert clock.slept == [0.5, 1.0]
    assert router.breakers["fake"].failures == 3


def test_client_errors_are_not_retried(server):
    p = OpenAIProvider("fake", server.url + "/nope", "m")
    res, _, clock = _route(server, [], providers={"fake": p}, retries=3)
    assert [a.outcome for a in res.attempts] == ["client"]
    assert res.completion is None and res.reason == "all_failed" and clock.slept == []


def test_the_breaker_opens_refuses_then_probes_half_open():
    clock = FakeClock()
    b = CircuitBreaker(failures_to_open=3, open_s=30, clock=clock)
    for _ in range(2):
        b.record(False)
    assert b.state == CLOSED and b.allow()
    b.record(False)
    assert b.state == OPEN and not b.allow()
    clock.t += 30
    assert b.state == HALF_OPEN
    assert b.allow() and not b.allow()  # one probe at a time
    b.record(False)
    assert b.state == OPEN and b.opens == 2
    clock.t += 30
    assert b.allow()
    b.record(True)
    assert b.state == CLOSED and b.failures == 0


def test_an_open_breaker_skips_its_provider(server):
    res, router, _ = _route(server, [{"fault": "server_error"}], chain=("fake",), retries=0,
                            failures_to_open=1)
    assert res.completion is None
    assert router.breakers["fake"].state == OPEN


def test_token_bucket_and_budgets_refuse_with_the_exhausted_resource():
    clock = FakeClock()
    tb = TokenBucket(rate_per_s=2, burst=2, clock=clock)
    assert tb.take() and tb.take() and not tb.take()
    clock.t += 0.5
    assert tb.take() and not tb.take()
    b = Budget(calls_max=2, tokens_max=100, cost_max_usd=0.01, clock=clock)
    assert b.admit(50) is None
    b.charge(1, 60, 0.0)
    assert b.admit(50) == "budget_tokens"
    assert b.admit(40) is None
    b.charge(1, 10, 0.02)
    assert b.admit(1) == "budget_calls"
    w = Budget(cost_max_usd=0.01, window_s=60, clock=clock)
    w.charge(1, 1, 0.02)
    assert w.admit(1) == "budget_cost"
    clock.t += 60
    assert w.admit(1) is None  # a new window
