"""Free text beside a decision: what a player said goes to the resolver, the resolver's
reply goes to the journal, and an NPC speaks it; a replay speaks the same words without
any resolver.
"""

from __future__ import annotations

import numpy as np

from norn.actors.midgard.events import make_event_source
from norn.engine.config import make_config
from norn.engine.decisions import (
    NOTE,
    RECORD,
    SOURCE_DEADLINE,
    SOURCE_RESOLVER,
    TEXT,
    TIER_SINGLE,
    DecisionBook,
    DeterministicResolver,
)
from norn.engine.recorder import Recorder
from norn.engine.runner import build_world, make_header, run
from norn.engine.scenario import load_scenario
from norn.replays.verify import verify


def test_applied_text_lines_up_with_the_applied_rows():
    book = DecisionBook()
    ids = book.request(1, 0, np.arange(3), np.zeros((3, 2), np.int16), 2, 0,
                       np.zeros((3, 2), np.float32), 5, said=np.array([b"a", b"b", b"c"]))
    said_ids, said = book.take_said()
    assert said_ids.tolist() == ids.tolist() and said.tolist() == [b"a", b"b", b"c"]
    assert book.take_said()[0].tolist() == []  # handed over once
    book.take_new()
    records = np.zeros(3, RECORD)
    records["request_id"] = ids
    records["source"] = [SOURCE_RESOLVER, SOURCE_DEADLINE, SOURCE_RESOLVER]
    texts = np.array([(ids[2], b"Well met.")], TEXT)
    book.apply(records, texts)
    assert book.applied_text.tolist() == [b"", b"", b"Well met."]


class Talker(DeterministicResolver):
    """The built-in rules, plus a reply that quotes what the player said."""

    def __init__(self) -> None:
        super().__init__(latency_ticks=1)
        self.heard: dict[int, bytes] = {}
        self.decided: set[int] = set()

    def said(self, request_ids, texts) -> None:
        self.heard.update(zip(request_ids.tolist(), texts.tolist(), strict=True))

    def collect(self, tick):
        out = super().collect(tick)
        self.decided |= set(out["request_id"].tolist())
        return out

    def take_notes(self, records):
        mine = records[(records["source"] == SOURCE_RESOLVER)
                       & np.isin(records["request_id"], list(self.heard))]
        notes = np.zeros(len(mine), NOTE)
        notes["request_id"], notes["tier"] = mine["request_id"], TIER_SINGLE
        texts = np.zeros(len(mine), TEXT)
        texts["request_id"] = mine["request_id"]
        texts["text"] = [b"You said: " + self.heard[r][:200] for r in mine["request_id"].tolist()]
        return notes, texts


def _talk_world(tmp_path, resolver):
    scenario = load_scenario("midgard")
    config = make_config(None, seed=4, ticks=40, clock="fast", fsync=False)
    world = build_world(scenario, config)
    world.resolver = resolver
    said_lines = []
    source = make_event_source(scenario.data, config.seed)

    def feed(tick: int) -> None:
        for batch in source(tick):
            assert world.inputs.offer(batch)

    recorder = Recorder.create(tmp_path / "run", make_header(scenario, config, world),
                               fsync=False, snapshot_every=0)

    def on_tick(rec) -> None:
        cols = rec.emitted.kinds.get("npc_say") if rec.emitted is not None else None
        if cols is not None:
            said_lines.extend(cols["text"].tolist())

    run(world, config, recorder, on_tick=on_tick, before_tick=feed)
    recorder.close(world, "done")
    return world, said_lines


def test_a_resolvers_reply_is_spoken_journaled_and_replayed_without_it(tmp_path):
    resolver = Talker()
    _, lines = _talk_world(tmp_path, resolver)
    assert resolver.heard, "the talk system handed the players' words to the resolver"
    replies = [x for x in lines if x.startswith(b"You said: ")]
    assert replies, "an NPC spoke the resolver's reply"
    heard = {b"You said: " + t[:200] for t in resolver.heard.values()}
    assert set(replies) <= heard
    result = verify(tmp_path / "run")
    assert result.matched, result.divergence
