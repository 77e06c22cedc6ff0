"""LlmResolver behind the Resolver seam: tiers, faults, bounds, canaries, journal, replay.

Every test waits with the seam's own ``wait`` (lockstep's), never on the wall clock."""

from __future__ import annotations

import numpy as np
import pytest

from norn.engine.decisions import RESULT, SOURCE_DEADLINE, SOURCE_RESOLVER, DecisionBook
from norn.llm.deploy import challenger_mask
from norn.llm.fake_server import FakeServer
from norn.llm.notes import (
    FLAG_SHARED,
    FLAG_TEXT_REFUSED,
    REASON,
    TIER_BATCH,
    TIER_CACHE,
    TIER_FALLBACK,
    TIER_SINGLE,
    reply_texts,
)
from norn.llm.prompts import estimate_tokens
from norn.llm.resolver import LlmResolver, format_summary
from norn.llm.settings import Deployment, Registry, Variant, save_settings
from norn.llm.usecases import KIND_NPC_TALK, KIND_TOY_REST, TOY_REST
from tests.llm_helpers import http_settings, requests, settle


@pytest.fixture(scope="module")
def server():
    with FakeServer() as s:
        yield s


@pytest.fixture(autouse=True)
def no_faults(server):
    server.set_plan([])
    yield


def _notes(res, results):
    recs = np.zeros(len(results), dtype=[("request_id", "<i8"), ("choice", "u1"),
                                          ("source", "u1")])
    recs["request_id"] = results["request_id"]
    recs["choice"] = results["choice"]
    recs["source"] = SOURCE_RESOLVER
    return res.notes.take(recs)


def _calls(server):
    import httpx

    return httpx.get(server.url + "/_fake/stats").json()


def test_one_use_case_group_goes_out_as_one_batched_call(server):
    with LlmResolver(http_settings(server.url), seed=1) as res:
        reqs = requests(n=12)
        res.submit(1, reqs)
        out = settle(res)
    assert sorted(out["request_id"]) == sorted(reqs["request_id"])
    assert (out["choice"] == 1).all()  # the higher utility, as the rules would
    stats = _calls(server)
    assert stats["calls"] == 1 and stats["items"][-1] == 12
    notes, _ = _notes(res, out)
    assert set(notes["tier"]) == {TIER_BATCH}
    assert res.summary()["calls_saved"] == 11


def test_batches_are_capped_by_items_and_by_tokens(server):
    s = http_settings(server.url)
    s.use_cases["toy_rest"].batch_items_max = 5
    with LlmResolver(s) as res:
        res.submit(1, requests(n=12))
        settle(res)
        assert sorted(_calls(server)["items"]) == [2, 5, 5]  # concurrent: any order
    s = http_settings(server.url)
    s.use_cases["toy_rest"].batch_tokens_max = 400
    per = (400 - estimate_tokens(TOY_REST, 0)) // TOY_REST.tokens_per_item
    assert per == 3  # what fits in 400 estimated tokens
    with LlmResolver(s) as res:
        res.submit(1, requests(n=8))
        settle(res)
        items = _calls(server)["items"][-3:]
    assert sorted(items) == [2, 3, 3]


def test_the_cache_answers_repeats_without_a_call(server):
    with LlmResolver(http_settings(server.url)) as res:
        a = requests(n=3, tick=1)
        res.submit(1, a)
        settle(res, 2)
        b = requests(n=3, tick=2)
        b["context"] = a["context"]  # the same situations, new requests
        c = requests(n=1, tick=2, first=3)
        c["context"] = a["context"][:1]
        c["context"][0, 1] += 0.01  # a paraphrase: a near neighbour
        res.submit(2, np.concatenate([b, c]))
        out = settle(res, 3)
        notes, _ = _notes(res, out)
        st = res.status()["use_cases"]["toy_rest"]
    assert _calls(server)["calls"] == 1
    assert set(notes["tier"]) == {TIER_CACHE}
    assert st["cache_exact"] == 3 and st["cache_near"] == 1


def test_identical_requests_in_flight_share_one_answer(server):
    with LlmResolver(http_settings(server.url)) as res:
        r = requests(n=4)
        r["context"] = r["context"][0]
        res.submit(1, r)
        out = settle(res)
        notes, _ = _notes(res, out)
    assert len(out) == 4 and _calls(server)["items"][-1] == 1
    assert int(np.count_nonzero(notes["flags"] & FLAG_SHARED)) == 3
    assert sorted(notes["tier"].tolist()) == [TIER_CACHE] * 3 + [TIER_SINGLE]


def test_missing_ids_are_retried_singly(server):
    server.set_plan([{"fault": "missing_ids", "calls": [0]}])
    with LlmResolver(http_settings(server.url)) as res:
        reqs = requests(n=5)
        res.submit(1, reqs)
        out = settle(res)
        notes, _ = _notes(res, out)
        st = res.status()["use_cases"]["toy_rest"]
    assert len(out) == 5 and (out["choice"] == 1).all()
    assert st["retried_singly"] == 1 and st["calls_batch"] == 1 and st["calls_single"] == 1
    assert sorted(notes["tier"].tolist()) == [TIER_BATCH] * 4 + [TIER_SINGLE]


def test_a_single_call_is_asked_again_once_then_falls_back_with_the_reason(server):
    server.set_plan([{"fault": "invalid_json", "calls": [0]}])
    with LlmResolver(http_settings(server.url)) as res:
        res.submit(1, requests(n=1))
        out = settle(res)
        assert res.status()["use_cases"]["toy_rest"]["reasks"] == 1
        assert out["choice"][0] == 1  # the re-ask was answered
    server.set_plan([{"fault": "wrong_choice"}])
    with LlmResolver(http_settings(server.url)) as res:
        reqs = requests(n=1)
        res.submit(1, reqs)
        out = settle(res)
        notes, _ = _notes(res, out)
    assert out["choice"][0] == reqs["fallback"][0]
    assert notes["tier"][0] == TIER_FALLBACK and notes["reason"][0] == REASON["invalid"]


def test_a_failing_provider_falls_back_along_the_chain_then_to_the_rules(server):
    server.set_plan([{"fault": "server_error"}])
    with LlmResolver(http_settings(server.url, fallbacks=("offline",), retries=1)) as res:
        res.submit(1, requests(n=3))
        out = settle(res)
        notes, _ = _notes(res, out)
    assert (out["choice"] == 1).all() and set(notes["tier"]) == {TIER_BATCH}
    with LlmResolver(http_settings(server.url, retries=1)) as res:
        res.submit(1, requests(n=3))
        out = settle(res)
        notes, _ = _notes(res, out)
    assert (out["choice"] == 0).all()
    assert set(notes["reason"]) == {REASON["provider_failed"]}


def test_the_queue_at_its_bound_and_one_past_degrades_to_fallback(server):
    # the worker starts after the submissions, so nothing drains the queue meanwhile
    with LlmResolver(http_settings(server.url, queue_requests_max=4), start=False) as res:
        res.submit(1, requests(n=4))
        res.submit(1, requests(n=1, first=4))  # one past: answered at once with the fallback
        first = res.collect(1)
        assert len(first) == 1 and first["choice"][0] == 0
        assert res.counters["queue_full"] == 1
        notes, _ = _notes(res, first)
        assert notes["reason"][0] == REASON["queue_full"]
        res.start()
        rest = settle(res, 2)
    assert len(rest) == 4


def test_results_at_their_bound_and_one_past_are_counted_not_kept(server):
    with LlmResolver(http_settings(server.url, results_max=3)) as res:
        res.submit(1, requests(n=3))
        res.wait(2, 20)  # three results wait for collect: the bound
        res.submit(2, requests(n=1, tick=2, first=3))
        res.wait(3, 20)
        assert res.counters["results_dropped"] == 1  # the book gives it its deadline fallback
        assert len(res.collect(3)) == 3


def test_budgets_and_rate_limits_degrade_to_the_fallback_with_a_reason(server):
    s = http_settings(server.url)
    s.use_cases["toy_rest"].budget.calls_max = 1
    with LlmResolver(s) as res:
        res.submit(1, requests(n=2))
        settle(res, 2)
        res.submit(2, requests(n=2, tick=2, first=2))
        out = settle(res, 3)
        notes, _ = _notes(res, out)
    assert set(notes["reason"]) == {REASON["budget_calls"]} and (out["choice"] == 0).all()
    s = http_settings(server.url)
    s.use_cases["toy_rest"].budget.rate_per_s = 0.001
    s.use_cases["toy_rest"].budget.burst = 1
    s.use_cases["toy_rest"].batch_items_max = 1
    with LlmResolver(s) as res:
        res.submit(1, requests(n=2))
        out = settle(res)
        notes, _ = _notes(res, out)
    assert sorted(notes["reason"].tolist()) == [0, REASON["rate_limited"]]


def test_expired_requests_are_never_sent(server):
    with LlmResolver(http_settings(server.url)) as res:
        res.collect(100)  # the world is at tick 100
        res.submit(100, requests(n=2, tick=1, deadline=50))
        assert len(settle(res, 101)) == 0
        assert res.status()["use_cases"]["toy_rest"]["expired"] == 2
    assert _calls(server)["calls"] == 0


def test_free_text_is_journaled_beside_the_choice_and_refused_text_speaks_the_canned_line(
        server):
    s = http_settings(server.url, kind="anthropic", structured="tool", use_case="npc_talk")
    with LlmResolver(s) as res:
        reqs = requests(kind=KIND_NPC_TALK, n=2, n_options=4)
        res.said(reqs["request_id"], [b"Hello there!", b"Do you sell potions?"],
                         ["prontera", "prontera"])
        res.submit(1, reqs)
        out = settle(res)
        notes, texts = _notes(res, out)
    assert len(texts) == 2
    said = reply_texts(out["request_id"], texts)
    assert all(t and len(t) <= 255 for t in said)
    server.set_plan([{"fault": "forbidden_text"}])
    s.use_cases["npc_talk"].reask = False
    with LlmResolver(s) as res:
        reqs = requests(kind=KIND_NPC_TALK, n=1, n_options=4)
        res.submit(1, reqs)
        out = settle(res)
        notes, texts = _notes(res, out)
    assert len(texts) == 0 and notes["flags"][0] & FLAG_TEXT_REFUSED
    assert out["choice"][0] == np.argmax(reqs["context"][0, :4])  # the choice stands
    assert reply_texts(out["request_id"], texts) == [None]  # the canned line


def test_the_canary_split_is_a_hash_reproducible_and_close_to_its_share():
    ids = (np.int64(7) << 24) | np.arange(20_000)
    a = challenger_mask(5, "npc_talk", ids, 100)
    assert np.array_equal(a, challenger_mask(5, "npc_talk", ids, 100))
    assert 0.08 < a.mean() < 0.12
    assert not np.array_equal(a, challenger_mask(6, "npc_talk", ids, 100))
    assert not challenger_mask(5, "npc_talk", ids, 0).any()
    assert challenger_mask(5, "npc_talk", ids, 1000).all()
    with pytest.raises(ValueError):
        challenger_mask(5, "npc_talk", ids, 1001)


def test_a_bad_canary_is_rolled_back_over_its_baking_window_and_the_flip_is_kept(
        server, tmp_path):
    s = http_settings(server.url, kind="openai")
    uc = s.use_cases["toy_rest"]
    uc.variants["offline"] = Variant(provider="offline")
    uc.aliases = {"champion": "offline", "challenger": "fake"}
    uc.deployment = Deployment(mode="canary", share_permille=500, bake_min_samples=10,
                               bake_window=50)
    uc.batch_items_max = 1
    uc.reask = False
    path = tmp_path / "llm.json"
    save_settings(s, path)
    server.set_plan([{"fault": "invalid_json"}])  # the challenger answers garbage
    with LlmResolver(settings_path=path, seed=3) as res:
        for t in range(1, 8):
            res.submit(t, requests(n=12, tick=t, first=100 * t))
            settle(res, t + 1)
        flips = res.take_flips()
        status = res.status()
    assert [f.reason.split(":")[0] for f in flips] == ["rollback"]
    assert "parse_failure" in flips[0].reason and flips[0].tick >= 1
    saved = Registry.open(path).settings.use_cases["toy_rest"]
    assert saved.challenger() is None and saved.rolled_back == ["fake"]
    assert saved.deployment.mode == "all-at-once"
    assert status["use_cases"]["toy_rest"]["fallbacks"]["unparseable"] >= 5


def test_every_call_goes_to_the_inference_log(server, tmp_path):
    from norn.llm import log

    db = tmp_path / "log.duckdb"
    with LlmResolver(http_settings(server.url, log_path=str(db)), run_id="r1") as res:
        res.submit(1, requests(n=3))
        settle(res)
    rows = log.query(db)
    assert len(rows) == 1
    r = rows[0]
    assert (r["use_case"], r["variant"], r["tier"], r["items"], r["outcome"]) == (
        "toy_rest", "fake", "batch", 3, "ok")
    assert r["tokens_in"] > 0 and r["cost_usd"] > 0 and r["run"] == "r1"
    assert "REQUESTS:" in r["prompt"] and r["output"].startswith("{")


def test_through_the_decision_book_resubmissions_are_applied_once(server):
    book = DecisionBook()
    with LlmResolver(http_settings(server.url)) as res:
        ids = book.request(1, KIND_TOY_REST, np.arange(4), np.tile([0, 1], (4, 1)), 2, 0,
                           np.tile([0.1, 0.9], (4, 1)), 5)
        new = book.take_new()
        res.submit(1, new)
        res.submit(1, new)  # a restore resubmits what is pending
        got = settle(res, 2)
        recs = book.settle(2, got)
        book.apply(recs)
    assert sorted(recs["request_id"]) == sorted(ids)
    assert (recs["source"] == SOURCE_RESOLVER).all() and len(book.pending) == 0
    late = book.settle(3, np.array([(ids[0], 1)], RESULT))
    assert len(late) == 0 and book.counters["late"] == 1
    # and with nothing answering, the deadline applies the fallback
    b2 = DecisionBook()
    b2.request(1, KIND_TOY_REST, np.arange(2), np.tile([0, 1], (2, 1)), 2, 0,
               np.tile([0.1, 0.9], (2, 1)), 3)
    b2.take_new()
    assert (b2.settle(4, np.empty(0, RESULT))["source"] == SOURCE_DEADLINE).all()


def test_submit_and_collect_never_wait_for_a_hung_provider(server):
    server.set_plan([{"fault": "timeout", "hang_s": 1.0}])
    s = http_settings(server.url)
    s.providers["fake"].timeout_s = 0.3
    with LlmResolver(s) as res:
        for t in range(1, 30):  # the tick thread goes on; nothing has come back yet
            res.submit(t, requests(n=2, tick=t, first=2 * t))
            assert len(res.collect(t)) == 0 or t > 1
        out = settle(res, 31)
    assert len(out) == 58 and res.summary()["by_tier"]["fallback"] == 58


def test_the_summary_line_names_tiers_calls_and_fallbacks(server):
    with LlmResolver(http_settings(server.url)) as res:
        res.submit(1, requests(n=3))
        settle(res)
        line = format_summary(res.summary())
    assert line.startswith("LLM tier: cache 0, batched 3, single 0, fallback 0 (none); 1 model")


def test_an_operator_change_to_the_file_is_picked_up_and_kept_as_a_flip(server, tmp_path):
    import threading
    import time

    s = http_settings(server.url, registry_poll_s=0.05)
    s.use_cases["toy_rest"].variants["offline"] = Variant(provider="offline")
    path = tmp_path / "llm.json"
    save_settings(s, path)
    with LlmResolver(settings_path=path) as res:
        res.collect(9)
        time.sleep(0.01)  # a new mtime on coarse file systems
        Registry.open(path).deploy("toy_rest", "canary", "offline", 250)
        flips = []
        for _ in range(400):  # the worker polls every 0.05 s; bounded wait, nothing timed
            flips += res.take_flips()
            if flips:
                break
            threading.Event().wait(0.01)
    assert [(f.mode, f.challenger, f.share_permille, f.reason, f.tick) for f in flips] == [
        ("canary", "offline", 250, "operator", 9)]
