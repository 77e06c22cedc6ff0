"""The LLM tier in a world: a recorded run verifies without any provider, the use cases
match the actors' decision kinds, and every limit holds at its bound and one past."""

from __future__ import annotations

import pytest

from norn.engine.config import make_config
from norn.engine.recorder import Recorder
from norn.engine.runner import build_world, make_header, run
from norn.engine.scenario import parse_scenario
from norn.llm import limits
from norn.llm.fake_server import FakeServer
from norn.llm.log import InferenceLog
from norn.llm.notes import DecisionNotes, encode_text
from norn.llm.resolver import LlmResolver
from norn.llm.settings import LlmSettings
from norn.llm.usecases import KIND_NPC_BEHAVIOUR, KIND_NPC_TALK, KIND_TOY_REST, UseCase, UseCases
from norn.replays.verify import verify
from tests.llm_helpers import http_settings


def test_use_case_kinds_are_the_actors_decision_kinds():
    from norn.actors.npc import DECISION_BEHAVIOUR, DECISION_TALK
    from norn.actors.toy import DECISION_REST
    from norn.llm import usecases
    from norn.rules.utility import STATE_NAMES

    assert (KIND_TOY_REST, KIND_NPC_BEHAVIOUR, KIND_NPC_TALK) == (
        DECISION_REST, DECISION_BEHAVIOUR, DECISION_TALK)
    assert usecases.STATE_NAMES == STATE_NAMES


def test_a_run_through_the_llm_tier_replays_without_any_provider(tmp_path):
    text = 'name = "toy-llm"\nmodel = "toy"\n[toy]\nwalkers = 200\ncapacity = 250\n'
    scenario = parse_scenario(text, "toy-llm.toml")
    config = make_config(None, seed=5, ticks=40, snapshot_every=20, fsync=False,
                         clock="lockstep")
    world = build_world(scenario, config)
    with FakeServer() as server:
        server.set_plan([{"fault": "server_error", "every": 4}, {"fault": "missing_ids",
                                                                 "every": 5}])
        world.resolver = LlmResolver(http_settings(server.url, retries=0), seed=5)
        rec = Recorder.create(tmp_path / "run", make_header(scenario, config, world),
                              fsync=False, snapshot_every=20)
        summary = run(world, config, rec)
        rec.close(world, "completed")
        llm = world.resolver.summary()
        world.resolver.close()
        calls = server.stats["calls"]
    assert calls > 0 and summary.decisions["resolved"] > 0
    assert llm["by_tier"]["batch"] + llm["by_tier"]["single"] > 0
    # the replay: a fresh world, the journal's results, no resolver answering anything
    result = verify(tmp_path / "run")
    assert result.matched and result.ticks == 40


def test_limits_at_the_bound_and_one_past():
    LlmSettings(queue_requests_max=limits.queue_requests_max, results_max=limits.results_max,
                calls_in_flight_max=limits.calls_in_flight_max, retries=limits.retries_max)
    for key, over in (("queue_requests_max", limits.queue_requests_max + 1),
                      ("results_max", limits.results_max + 1),
                      ("calls_in_flight_max", limits.calls_in_flight_max + 1),
                      ("retries", limits.retries_max + 1),
                      ("cache_entries_max", limits.cache_entries_max + 1),
                      ("log_text_chars_max", limits.log_text_chars_max + 1),
                      ("text_bytes_max", limits.reply_text_bytes_max + 1),
                      ("retry_after_max_s", limits.retry_after_s_max + 1),
                      ("call_timeout_s", limits.timeout_s_max + 1)):
        with pytest.raises(ValueError, match=key):
            LlmSettings(**{key: over})
    DecisionNotes(notes_max=limits.notes_max)
    with pytest.raises(ValueError, match="notes_max"):
        DecisionNotes(notes_max=limits.notes_max + 1)
    InferenceLog(None, buffer_max=limits.log_buffer_max)
    with pytest.raises(ValueError, match="buffer_max"):
        InferenceLog(None, buffer_max=limits.log_buffer_max + 1)
    name = "u" * limits.use_case_name_chars_max
    UseCase(name=name, kind=99, prompt_version="1", instructions="")
    with pytest.raises(ValueError, match="use_case_name_chars_max"):
        UseCase(name=name + "u", kind=99, prompt_version="1", instructions="")
    many = tuple(UseCase(name=f"u{i}", kind=100 + i, prompt_version="1", instructions="")
                 for i in range(limits.use_cases_max + 1))
    UseCases(many[:-1])
    with pytest.raises(ValueError, match="use_cases_max"):
        UseCases(many)


def test_notes_and_texts_are_bounded():
    notes = DecisionNotes(notes_max=2)
    assert notes.add(1, 3) and notes.add(2, 3) and not notes.add(3, 3)
    assert notes.dropped == 1
    assert len(encode_text("é" * 200)) <= limits.reply_text_bytes_max
    assert encode_text("é" * 200).decode()  # cut on a character boundary
    log = InferenceLog(None, buffer_max=1)
    log.path = "x"  # a buffer without a file: the bound alone
    log.add(prompt="a")
    log.add(prompt="b")
    assert len(log.buffer) == 1 and log.dropped == 1


def test_player_texts_are_bounded():
    res = LlmResolver(start=False)
    import numpy as np

    ids = np.arange(limits.texts_pending_max + 1)
    res.said(ids, ["hi"] * len(ids))
    assert len(res._texts) == limits.texts_pending_max
    assert res.counters["texts_dropped"] == 1
