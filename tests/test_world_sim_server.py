"""The simulated rAthena server and the living world: it executes the new action kinds and
answers them, and, when the engine declares the new event kinds, sends the calendar and
reacts (kills the bosses it spawned, digs at the sites it marked) with valid events."""

from __future__ import annotations

import numpy as np

from norn.bridge import protocol as proto
from norn.bridge.codec import ActionsFrame, EventDecoder, encode_columns
from norn.bridge.sim_server import DAY_STEPS, SIM_MAPS, WOE_STEPS, SimWorld, sim_schema

KINDS = ("daily_reset", "woe_start", "woe_end", "dig", "mvp_kill")
R = proto.ResultReason


def frame(kind: str, maps: list[str], **cols) -> ActionsFrame:
    n = len(next(iter(cols.values())))
    cols = {"action_id": np.arange(n, dtype=np.int64),
            **{k: np.asarray(v) for k, v in cols.items()}}
    return ActionsFrame(1, 50, maps, {kind: cols})


def everyone_on(w: SimWorld, name: str) -> int:
    m = w.map_index[name]
    w.online[:] = True
    w.map[:] = m
    w.x[:], w.y[:] = 10, 10
    return m


def test_the_living_world_actions_are_executed_and_answered():
    w = SimWorld(5, 1)
    _, _, reason = w.execute(frame(
        "spawn_monster", ["gef_fild10", "atlantis"], spawn_id=[7, 8], mob_id=[1087, 1087],
        map=np.array([0, 1], "i2"), x=np.array([50, 1], "i2"), y=np.array([60, 1], "i2"),
        amount=np.array([1, 1], "i2")))
    assert reason.tolist() == [R.OK, R.UNKNOWN_MAP]
    assert w.bosses == {7: (w.map_index["gef_fild10"], 1087, 50, 60)}
    _, _, reason = w.execute(frame("despawn_monster", ["gef_fild10"], spawn_id=[7, 7],
                                   map=np.array([0, 0], "i2")))
    assert reason.tolist() == [R.OK, R.NOT_HERE] and not w.bosses
    _, _, reason = w.execute(frame("mark_dig_site", ["pay_fild01"], site_id=[3],
                                   map=np.array([0], "i2"), x=np.array([5], "i2"),
                                   y=np.array([6], "i2"), on=np.array([1], "u1")))
    assert reason.tolist() == [R.OK] and w.sites == {3: (w.map_index["pay_fild01"], 5, 6)}
    _, _, reason = w.execute(frame("set_mapflag", ["prontera"], map=np.array([0], "i2"),
                                   flag=np.array([6], "i2"), value=np.array([200], "i4"),
                                   on=np.array([1], "u1")))
    assert reason.tolist() == [R.OK] and w.flags == {(w.map_index["prontera"], 6): 200}
    assert w.executed == {"spawn_monster": 1, "despawn_monster": 1, "mark_dig_site": 1,
                          "set_mapflag": 1}


def test_without_the_new_event_kinds_the_stream_is_protocol_v1_only():
    w = SimWorld(50, 2)
    everyone_on(w, "gef_fild10")
    w.execute(frame("spawn_monster", ["gef_fild10"], spawn_id=[7], mob_id=[1087],
                    map=np.array([0], "i2"), x=np.array([50], "i2"), y=np.array([60], "i2"),
                    amount=np.array([1], "i2")))
    sent = set()
    for s in range(DAY_STEPS):
        sent |= {k for k, _ in w.step(s)} | {k for k, _ in w.react(s)}
    assert sent <= set(proto.WIRE_EVENT_SCHEMAS) and not w.reactions


def test_the_server_kills_its_bosses_digs_its_sites_and_keeps_the_calendar():
    w = SimWorld(20, 3, event_kinds=KINDS)
    dec = EventDecoder([n for n, _, _ in SIM_MAPS], [(a, b) for _, a, b in SIM_MAPS],
                       schema=sim_schema(KINDS))
    names = [n for n, _, _ in SIM_MAPS]
    sent: dict[str, list[dict]] = {}
    for s in range(WOE_STEPS[1] + 1):
        if s == 5:  # everyone goes to the fields; the engine spawns a boss, marks a site
            m = everyone_on(w, "gef_fild10")
            w.execute(frame("spawn_monster", ["gef_fild10"], spawn_id=[7], mob_id=[1087],
                            map=np.array([0], "i2"), x=np.array([50], "i2"),
                            y=np.array([60], "i2"), amount=np.array([1], "i2")))
            w.execute(frame("mark_dig_site", ["gef_fild10"], site_id=[3], map=np.array([0], "i2"),
                            x=np.array([40], "i2"), y=np.array([41], "i2"),
                            on=np.array([1], "u1")))
        for kind, cols in w.step(s) + w.react(s):
            msg = proto.unpack(encode_columns(proto.EVENTS, 1, kind, cols, names,
                                              schema=sim_schema(KINDS)), 1 << 24)
            out = dec.decode(msg)
            assert len(out.invalid) == 0, (kind, out.invalid_reasons[:3])
            sent.setdefault(kind, []).append(cols)
    kill = sent["mvp_kill"][0]
    assert kill["spawn_id"].tolist() == [7] and kill["mob_id"].tolist() == [1087]
    assert kill["map"].tolist() == [m] and (kill["x"].tolist(), kill["y"].tolist()) == ([50], [60])
    assert not w.bosses and len(sent["mvp_kill"]) == 1  # killed once
    at_site = [c for c in sent["dig"] if (c["x"] == 40).any() and (c["y"] == 41).any()]
    assert at_site  # players dig where the site was marked
    assert [c["day"].tolist() for c in sent["daily_reset"]] == [[1], [2], [3]]
    assert len(sent["woe_start"]) == len(sent["woe_end"]) == 1
    assert w.reactions["mvp_kill"] == 1 and w.generated["mvp_kill"] == 1
