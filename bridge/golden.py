"""Golden test vectors: example frames another implementation can check itself against.

``bridge/vectors/NAME.msgpack`` holds the exact bytes of each example; ``index.json`` lists
them with their direction, a JSON rendering of the decoded message (binary fields as hex)
and, for event batches, the engine columns the edge must produce against the vectors'
world (with the rejected events, their field and reason). ``PROTOCOL.md`` shows the same
bytes in hex. Everything is generated here, so one switch regenerates all of it:

    python -m norn.bridge.golden --write

and ``tests/test_bridge_protocol.py`` fails when the committed files differ from what
this code produces (a change in the wire format shows up as a reviewed diff). The same
switch writes PROTOCOL.md's kind tables (events, action results' reasons, actions) from
the one declaration of protocol v1's kinds, ``engine/rathena.py``, and the tables of the
kinds the default world's plugins declare (``world_kind_tables``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from norn.bridge import protocol as proto
from norn.bridge.codec import (
    EventDecoder,
    encode_actions,
    encode_columns,
    encode_rows,
    encode_sync,
)
from norn.bridge.config import BridgeConfig
from norn.engine import rathena
from norn.engine.kinds import Field, Kinds

VECTORS_DIR = Path(__file__).parent / "vectors"
PROTOCOL_MD = Path(__file__).parent / "PROTOCOL.md"
#: The C++ client's table of protocol v1's kinds, generated from the same declaration.
CPP_KINDS = Path(__file__).parent / "cpp" / "include" / "norn" / "kinds_v1.hpp"

#: The world the vectors are decoded against (index = map_id).
WORLD_MAPS: tuple[tuple[str, int, int], ...] = (
    ("prontera", 312, 392),
    ("izlude", 260, 260),
    ("geffen", 240, 240),
)


def world_decoder() -> EventDecoder:
    return EventDecoder([n for n, _, _ in WORLD_MAPS], [(w, h) for _, w, h in WORLD_MAPS])


def _u(dt: str, values: list[Any]) -> np.ndarray:
    return np.array(values, dtype=dt)


def build_vectors() -> list[dict[str, Any]]:
    """Every vector as {name, direction, type, description, bytes}."""
    cfg = BridgeConfig()
    v: list[dict[str, Any]] = []

    def add(name: str, direction: str, description: str, data: bytes) -> None:
        v.append({"name": name, "direction": direction,
                  "type": msgpack.unpackb(data, raw=False)["t"],
                  "description": description, "bytes": data})

    c2e, e2c = "map_server->engine", "engine->map_server"
    add("hello", c2e, "Handshake from map server 'map01', hosting every map.",
        proto.encode_hello("map01"))
    add("hello_maps", c2e, "Handshake from 'map02', hosting prontera and izlude only.",
        proto.encode_hello("map02", maps=["prontera", "izlude"]))
    add("welcome", e2c, "Answer to 'hello': nothing acked yet, start at seq 1, credit 64.",
        proto.encode_welcome(
            server_id="map01", acked=0, next_seq=1, credit=cfg.unacked_batches_max, tick=42,
            heartbeat_ms=cfg.heartbeat_ms, peer_timeout_ms=cfg.peer_timeout_ms,
            limits_=cfg.wire_limits(), maps=list(WORLD_MAPS),
            reward_zeny_max=1_000_000, reward_amount_max=30_000))
    add("events_columns_mob_kill", c2e,
        "Three mob kills as columns (seq 1); maps dictionary ['prontera', 'geffen'].",
        encode_columns(proto.EVENTS, 1, "mob_kill", {
            "char_id": _u("<u4", [150000, 150001, 150002]),
            "mob_id": _u("<i4", [1002, 1002, 1113]),
            "instance_id": _u("<i4", [0, 0, 7]),
            "map": _u("<i2", [0, 0, 1]),
            "x": _u("<i2", [150, 151, 20]),
            "y": _u("<i2", [180, 181, 33]),
        }, ["prontera", "geffen"]))
    add("events_rows_login", c2e, "Two logins as rows (seq 2); maps by name.",
        encode_rows(proto.EVENTS, 2, "login", [
            [150000, 2000000, "prontera", 156, 191, 1],
            [150001, 2000001, "izlude", 128, 114, 12],
        ]))
    add("events_columns_map_change", c2e,
        "A warp from prontera to izlude as columns (seq 3): two map fields, one dictionary.",
        encode_columns(proto.EVENTS, 3, "map_change", {
            "char_id": _u("<u4", [150000]),
            "from_map": _u("<i2", [0]),
            "to_map": _u("<i2", [1]),
            "x": _u("<i2", [28]),
            "y": _u("<i2", [60]),
        }, ["prontera", "izlude"]))
    add("events_columns_npc_talk", c2e,
        "Two NPC talks as columns (seq 4): text as text_len (<u2) plus UTF-8 bytes.",
        encode_columns(proto.EVENTS, 4, "npc_talk", {
            "char_id": _u("<u4", [150000, 150001]),
            "npc_id": _u("<i8", [110000001, 110000002]),
            "text": ["Hello!", "Thé prices rose"],
        }))
    add("events_rows_invalid", c2e,
        "Three player moves as rows (seq 5): an unknown map and an x outside izlude are "
        "rejected (error + dead letter); the valid move is applied.",
        encode_rows(proto.EVENTS, 5, "player_move", [
            [150000, "prontera", 157, 190],
            [150001, "atlantis", 1, 1],
            [150002, "izlude", 300, 10],
        ]))
    add("results_columns", c2e, "Two action results as columns (seq 6): done, and failed "
        "with reason 4 (not_here).",
        encode_columns(proto.RESULTS, 6, None, {
            "action_id": _u("<i8", [(42 << 24) | 0, (42 << 24) | 1]),
            "status": _u("u1", [0, 1]),
            "reason": _u("<i2", [0, 4]),
        }))
    add("results_rows", c2e, "One action result as rows (seq 7): failed, reason 5 (expired).",
        encode_rows(proto.RESULTS, 7, None, [[(43 << 24) | 0, 1, 5]]))
    add("ack", e2c, "Cumulative ack: every batch up to seq 7 is journaled; credit 64.",
        proto.encode_ack(7, cfg.unacked_batches_max))
    add("hb_engine", e2c, "Engine heartbeat at tick 1234, acked seq 7.",
        proto.encode_server_hb(1234, 7))
    add("hb_map_server", c2e, "Map server heartbeat; it last saw tick 1234.",
        proto.encode_client_hb(1234))
    tick = 43
    base = tick << 24
    add("actions", e2c,
        "Tick 43's actions, expiring at tick 93: a broadcast to every map (map -1) and one to "
        "izlude, a reward, and a hazard (float32 intensity).",
        encode_actions(tick, tick + cfg.action_ttl_ticks, {
            "broadcast": {"action_id": _u("<i8", [base, base + 1]),
                          "map_id": _u("<i2", [-1, 1]),
                          "text": np.array([b"Storm warning!", b"Izlude market open"],
                                           dtype="S255")},
            "set_hazard": {"action_id": _u("<i8", [base + 2]), "map_id": _u("<i2", [2]),
                           "hazard_type": _u("<i2", [3]), "intensity": _u("<f4", [0.5]),
                           "on": _u("u1", [1])},
            "give_reward": {"action_id": _u("<i8", [base + 3]),
                            "char_id": _u("<u4", [150000]), "item_id": _u("<i4", [501]),
                            "amount": _u("<i4", [5]), "zeny": _u("<i4", [1000])},
        }, [n for n, _, _ in WORLD_MAPS]))
    add("error_invalid_events", e2c, "The engine's answer to 'events_rows_invalid'.",
        proto.encode_error(
            proto.ErrorCode.INVALID_EVENTS,
            "2 of 3 player_move events rejected; the 1 valid ones are applied",
            seq=5, field="map", invalid=2,
            events=[[1, "map", "unknown map"], [2, "x", "outside the map's width"]]))
    add("error_window_exceeded", e2c,
        "Seq 75 arrived while acked is 7 and the credit 64 (seqs up to 71 allowed); the "
        "engine has accepted up to 70, so expected_seq is 71: rewind there, send within "
        "the credit. Not consumed.",
        proto.encode_error(
            proto.ErrorCode.WINDOW_EXCEEDED,
            f"seq 75 > acked 7 + unacked_batches_max {cfg.unacked_batches_max}; resend from "
            "71 within the credit", seq=75, expected_seq=71))
    add("error_seq_gap", e2c, "Seq 9 arrived while 8 was expected: resend from 8.",
        proto.encode_error(proto.ErrorCode.SEQ_GAP, "got seq 9, expected 8; resend from it",
                           seq=9, expected_seq=8))
    add("bye", c2e, "A map server closing its session.", proto.encode_bye())
    # lockstep (section 14)
    add("hello_lockstep", c2e, "Handshake from 'map03' asking for a lockstep session.",
        proto.encode_hello("map03", caps=("columns", "rows", proto.LOCKSTEP_CAP)))
    add("events_columns_stamped", c2e,
        "Two player moves as columns (seq 8) stamped for tick 120: applied at tick 120.",
        encode_columns(proto.EVENTS, 8, "player_move", {
            "char_id": _u("<u4", [150000, 150001]),
            "map": _u("<i2", [0, 0]),
            "x": _u("<i2", [158, 40]),
            "y": _u("<i2", [190, 41]),
        }, ["prontera"], tick=120))
    add("results_rows_stamped", c2e,
        "A result stamped for tick 120 (seq 9): the action of tick 118 was done.",
        encode_rows(proto.RESULTS, 9, None, [[(118 << 24) | 0, 0, 0]], tick=120))
    add("progress", c2e, "Lockstep progress: every batch stamped <= 120 has seq <= 9.",
        proto.encode_progress(120, 9))
    add("error_tick_order", e2c, "Seq 10 stamped tick 119 after progress declared 120.",
        proto.encode_error(
            proto.ErrorCode.TICK_ORDER,
            "seq 10 stamped tick 119, but earlier batches were stamped up to 120 and progress "
            "declared ticks <= 120 complete (up to seq 9); applied at tick 120, or the next "
            "tick if that has passed",
            seq=10, field="tick"))
    add("error_tick_ahead", e2c,
        "Seq 11 stamped tick 7000 while the engine is at tick 120 (6000 ahead at most).",
        proto.encode_tick_ahead(11, 7000, 120, cfg.stamp_ahead_ticks_max))
    add("error_overloaded", e2c,
        "A frame dropped unread: 4096 frames of this connection already wait.",
        proto.encode_overloaded(4096, 52_428_800, cfg.peer_inbound_frames_max,
                                cfg.peer_inbound_bytes_max))
    # the join sync (section 16)
    add("hello_sync", c2e, "Handshake from 'map04' hosting prontera, izlude and geffen, asking "
        "for the join sync: the state to mirror on those maps comes before any action.",
        proto.encode_hello("map04", caps=("columns", "rows", proto.SYNC_CAP),
                           maps=[n for n, _, _ in WORLD_MAPS]))
    sync_frames = encode_sync(42, {
        "spawn_npc": {"npc_id": _u("<i8", [(3 << 32) | 5, 7]), "map_id": _u("<i2", [0, 2]),
                      "x": _u("<i2", [150, 120]), "y": _u("<i2", [180, 95]),
                      "sprite": _u("<i2", [105, 64]),
                      "name": np.array([b"Prontera Knights", b"Geffen Mages"], dtype="S24")},
        "set_price": {"market_id": _u("<i4", [0]), "map_id": _u("<i2", [0]),
                      "item_id": _u("<i4", [501]), "price_zeny": _u("<i4", [52]),
                      "stock": _u("<i4", [120])},
        "set_weather": {"map_id": _u("<i2", [2]), "weather": _u("<i2", [4]),
                        "on": _u("u1", [1])},
        "set_hazard": {"map_id": _u("<i2", [1]), "hazard_type": _u("<i2", [0]),
                       "intensity": _u("<f4", [0.75]), "on": _u("u1", [1])},
    }, [n for n, _, _ in WORLD_MAPS])
    assert len(sync_frames) == 1
    add("sync", e2c,
        "The join sync at tick 42 in one part: two NPCs (one with generation 3, so an npc_id "
        "above 2^32) with sprite and name, a shop price with its stock, snow on geffen and a "
        "fire on izlude. Replaces what the server mirrors; actions of mirrored kinds of "
        "ticks <= 42 are answered done unexecuted.",
        sync_frames[0])
    return v


def _jsonable(x: Any) -> Any:
    if isinstance(x, bytes):
        return {"bin": x.hex()}
    if isinstance(x, dict):
        return {k: _jsonable(val) for k, val in x.items()}
    if isinstance(x, list):
        return [_jsonable(i) for i in x]
    return x


def engine_view(data: bytes) -> dict[str, Any] | None:
    """What the edge makes of an events/results vector: engine columns and rejections."""
    msg = msgpack.unpackb(data, raw=False)
    if msg["t"] not in (proto.EVENTS, proto.RESULTS):
        return None
    dec = world_decoder().decode(msg)
    cols = {}
    for k, col in dec.columns.items():
        if col.dtype.kind == "S":
            cols[k] = [b.decode() for b in col.tolist()]
        else:
            cols[k] = col.tolist()
    return {
        "kind": dec.kind,
        "columns": cols,
        "rejected": [[int(i), f, r] for i, f, r in
                     zip(dec.invalid.tolist(), dec.invalid_fields, dec.invalid_reasons,
                         strict=True)],
    }


def build_index() -> dict[str, Any]:
    vectors = build_vectors()
    entries = []
    for vec in vectors:
        e = {k: vec[k] for k in ("name", "direction", "type", "description")}
        e["file"] = f"{vec['name']}.msgpack"
        e["bytes"] = len(vec["bytes"])
        e["hex"] = vec["bytes"].hex()
        e["decoded"] = _jsonable(msgpack.unpackb(vec["bytes"], raw=False))
        ev = engine_view(vec["bytes"])
        if ev is not None:
            e["engine"] = ev
        entries.append(e)
    return {
        "protocol_version": proto.PROTOCOL_VERSION,
        "world": {"maps": [list(m) for m in WORLD_MAPS],
                  "note": "map_id = index in maps; events are decoded against this world"},
        "vectors": entries,
    }


def hex_block(data: bytes) -> str:
    """16 bytes per line, space separated (as PROTOCOL.md shows them)."""
    h = data.hex()
    pairs = [h[i : i + 2] for i in range(0, len(h), 2)]
    return "\n".join(" ".join(pairs[i : i + 16]) for i in range(0, len(pairs), 16))


_DOC_BLOCK = re.compile(r"(<!-- vector: (\w+) -->\n```text\n)([^`]*?)(```)")
_KIND_BLOCK = re.compile(r"(<!-- kinds: (\w+) -->\n)(.*?)(<!-- /kinds -->)", re.S)


def _num(v: int | float) -> str:
    """A bound as PROTOCOL.md writes it: 2^31-1 for the big ones."""
    if v == float("inf"):
        return "∞"
    v = int(v)
    for k in (31, 32, 62, 63, 64):
        if v == 2**k - 1:
            return f"2^{k}-1"
        if v == -(2**k):
            return f"-2^{k}"
    return str(v)


def field_doc(f: Field) -> str:
    """One field as the kind tables show it: wire name, wire type, bounds, meaning."""
    out = f"`{f.wire}` {f.wire_type()}"
    if f.kind == "int":
        info = np.iinfo(f.dtype)
        if f.closed:
            out += " (" + ", ".join(f"{c} = {n}" for c, n in f.codes) + ")"
        elif (f.lo, f.hi) != (info.min, info.max):
            out += f" [{_num(f.lo)}, {_num(f.hi)}]"
    elif f.kind == "float":
        if f.hi == float("inf"):
            out += f" ≥ {_num(f.lo)}" if f.lo != float("-inf") else ""
        else:
            out += f" [{_num(f.lo)}, {_num(f.hi)}]"
    elif f.kind == "text" and f.lo:
        out += f" ({f.lo}..{f.hi} bytes)"
    if f.doc:
        out += f" ({f.doc})"
    return out


def kind_tables(kinds: Kinds) -> dict[str, str]:
    """PROTOCOL.md's tables of ``kinds`` by marker: ``events``, ``reasons``, ``actions``."""
    ev = ["| kind | fields (wire type, bounds) |", "|---|---|"]
    for name, k in kinds.events.items():
        if k.arrives != "events":
            continue
        row = ", ".join(field_doc(f) for f in k.fields)
        if k.inside is not None:
            wire = {f.name: f.wire for f in k.fields}
            row += f"; (`{wire[k.inside[1]]}`, `{wire[k.inside[2]]}`) inside `{wire[k.inside[0]]}`"
        ev.append(f"| `{name}` | {row} |")
    rs = ["| reason | name | meaning |", "|---|---|---|"]
    for r in rathena.ResultReason:
        rs.append(f"| {int(r)} | {r.name.lower()} | {rathena.REASON_DOCS[r]} |")
    ac = ["| kind | fields (wire type, bounds) |", "|---|---|"]
    for name, k in kinds.actions.items():
        row = ", ".join(field_doc(f) for f in k.wire_fields)
        if k.cell is not None:
            wire = {f.name: f.wire for f in k.fields}
            row += (f"; (`{wire[k.cell[1]]}`, `{wire[k.cell[2]]}`) a walkable cell of "
                    f"`{wire[k.cell[0]]}`")
        ac.append(f"| `{name}` | {row} |")
    return {"events": "\n".join(ev) + "\n", "reasons": "\n".join(rs) + "\n",
            "actions": "\n".join(ac) + "\n"}


def default_world_kinds() -> Kinds:
    """The kinds of the default world (protocol v1's, then those its plugins declare), from
    a small generated Rune-Midgarts: which kinds a world has does not depend on its size."""
    from norn.actors.midgard.generate import generate
    from norn.engine.config import make_config
    from norn.engine.runner import build_world

    sc = generate(maps=4, npcs=8, markets=4, factions=2, hazards=0, seed=1)
    return build_world(sc, make_config(None, seed=1, fsync=False, snapshot_every=0)).kinds


def world_kind_tables(kinds: Kinds) -> dict[str, str]:
    """The tables of the kinds a world's plugins declare beyond protocol v1, with the plugins
    that consume or emit them: markers ``world_events`` and ``world_actions``."""
    v1 = Kinds.protocol_v1()
    ev = ["| kind | consumed by | fields (wire type, bounds) | meaning |", "|---|---|---|---|"]
    for name, k in kinds.events.items():
        if name in v1.events or k.arrives != "events":
            continue
        row = ", ".join(field_doc(f) for f in k.fields)
        if k.inside is not None:
            wire = {f.name: f.wire for f in k.fields}
            row += f"; (`{wire[k.inside[1]]}`, `{wire[k.inside[2]]}`) inside `{wire[k.inside[0]]}`"
        who = ", ".join(kinds.consumers.get(name, []))
        ev.append(f"| `{name}` | {who} | {row} | {k.doc} |")
    ac = ["| kind | emitted by | fields (wire type, bounds) | meaning |", "|---|---|---|---|"]
    for name, k in kinds.actions.items():
        if name in v1.actions:
            continue
        row = ", ".join(field_doc(f) for f in k.wire_fields)
        if k.cell is not None:
            wire = {f.name: f.wire for f in k.fields}
            row += (f"; (`{wire[k.cell[1]]}`, `{wire[k.cell[2]]}`) a walkable cell of "
                    f"`{wire[k.cell[0]]}`")
        who = ", ".join(kinds.emitters.get(name, []))
        ac.append(f"| `{name}` | {who} | {row} | {k.doc} |")
    return {"world_events": "\n".join(ev) + "\n", "world_actions": "\n".join(ac) + "\n"}


# -- value tables: what every code means (PROTOCOL.md section 16) ------------------------------
_VALUE_BLOCK = re.compile(r"(<!-- values: (\w+) -->\n)(.*?)(<!-- /values -->)", re.S)
DEFAULT_SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "midgard.toml"


def value_tables(kinds: Kinds, scenario: Path = DEFAULT_SCENARIO) -> dict[str, str]:
    """PROTOCOL.md's value tables, by marker: the sync's rows (``sync``, from the wire
    schema of the default world's kinds), rAthena weather codes (``weather``), and from the
    default scenario its hazard types (``hazard_types``), NPC sprites (``sprites``) and
    markets (``markets``)."""
    from norn.actors.midgard import load
    from norn.actors.midgard.static import build_static
    from norn.engine.scenario import parse_scenario

    schema = proto.WireSchema.of(kinds)
    sy = ["| kind | columns of a sync row (wire type, bounds) | shows |", "|---|---|---|"]
    for name in proto.MIRRORED_KINDS:
        if name not in schema.actions or name.startswith(("despawn", "move")):
            continue
        fields = proto.sync_fields(schema, name)
        doc = ", ".join(f"`{f.name}` " + _wire_doc(f) for f in fields)
        sy.append(f"| `{name}` | {doc} | {kinds.actions[name].doc} |")
    we = ["| code | rAthena mapflag |", "|---|---|"]
    for flag, code in sorted(rathena.WEATHER_CODES.items(), key=lambda kv: kv[1]):
        we.append(f"| {code} | `{flag}` |")
    sc = parse_scenario(scenario.read_text(), str(scenario))
    st = build_static(load(sc.data, sc.source), sc.source)
    inv = {v: k for k, v in rathena.WEATHER_CODES.items()}
    hz = ["| hazard_type | name | shown as |", "|---|---|---|"]
    from norn.actors.hazard import H

    for k, name in enumerate(st.htype_names):
        code = int(st.htype_weather[k])
        shown = [] if st.htype[k, H["is_weather"]] > 0 else ["`set_hazard`"]
        if code:
            shown.append(f"`set_weather` {code} ({inv[code]})")
        hz.append(f"| {k} | {name} | {', '.join(shown) or '-'} |")
    sp = ["| faction | NPC name shown | sprite |", "|---|---|---|"]
    for f, name in enumerate(st.faction_names):
        shown = name.encode()[: proto.NPC_NAME_BYTES_MAX].decode(errors="ignore")
        sp.append(f"| {f} | {shown} | {int(st.faction_sprite[f])} |")
    mk = ["| market_id | map (its rAthena `marketshop`) | item_id | item |", "|---|---|---|---|"]
    for k, (m, i) in enumerate(zip(st.market_map.tolist(), st.market_item.tolist(),
                                   strict=True)):
        mk.append(f"| {k} | {st.map_names[m]} | {int(st.item_ids[i])} | {st.item_names[i]} |")
    return {name: "\n".join(rows) + "\n" for name, rows in (
        ("sync", sy), ("weather", we), ("hazard_types", hz), ("sprites", sp), ("markets", mk))}


def _wire_doc(f: proto.WireField) -> str:
    if f.kind == "map":
        return "map"
    if f.kind == "text":
        return f"text ({f.lo}..{f.hi} bytes)"
    out = {"|u1": "u1", "<u2": "u2", "<i2": "i2", "<u4": "u4", "<i4": "i4", "<i8": "i8",
           "<f4": "f4"}[f.dtype.str]
    if f.codes:
        return out + " (" + ", ".join(str(c) for c in f.codes) + ")"
    if f.kind == "float":
        return out + (f" ≥ {_num(f.lo)}" if f.lo != float("-inf") else "")
    return out + f" [{_num(f.lo)}, {_num(f.hi)}]"


def doc_value_tables(text: str) -> dict[str, str]:
    """Marker name -> the value table PROTOCOL.md shows there."""
    return {m.group(2): m.group(3) for m in _VALUE_BLOCK.finditer(text)}


def render_values(text: str, values: dict[str, str]) -> str:
    return _VALUE_BLOCK.sub(lambda m: m.group(1) + values.get(m.group(2), m.group(3))
                            + m.group(4), text)


def render_protocol_md(text: str, vectors: dict[str, bytes], kinds: Kinds | None = None,
                       world: dict[str, str] | None = None) -> str:
    """Fill the hex block after each ``<!-- vector: NAME -->`` marker, and each kind table
    between ``<!-- kinds: NAME -->`` and ``<!-- /kinds -->`` (protocol v1's kinds; with
    ``world``, the default world's own kinds too: ``world_kind_tables``)."""
    tables = kind_tables(kinds or Kinds.protocol_v1()) | (world or {})
    text = _DOC_BLOCK.sub(
        lambda m: m.group(1) + hex_block(vectors[m.group(2)]) + "\n" + m.group(4), text
    )
    return _KIND_BLOCK.sub(
        lambda m: m.group(1) + tables.get(m.group(2), m.group(3)) + m.group(4), text)


def doc_kind_tables(text: str) -> dict[str, str]:
    """Marker name -> the kind table PROTOCOL.md shows there."""
    return {m.group(2): m.group(3) for m in _KIND_BLOCK.finditer(text)}


def doc_vectors(text: str) -> dict[str, str]:
    """NAME -> hex shown in the document (whitespace removed)."""
    return {m.group(2): re.sub(r"\s+", "", m.group(3)) for m in _DOC_BLOCK.finditer(text)}


_CPP_TYPES = {"|u1": "u1", "<u2": "u2", "<i2": "i2", "<u4": "u4", "<i4": "i4", "<i8": "i8",
              "<f4": "f4"}


def _cpp_field(f: proto.WireField) -> str:
    if f.kind == "map":
        wtype = "map"
    elif f.kind == "text":
        wtype = "text"
    else:
        wtype = _CPP_TYPES[f.dtype.str]
    lo, hi = f.lo, f.hi
    if f.codes:  # a closed set of codes: they must be contiguous for a [lo, hi] check
        lo, hi = min(f.codes), max(f.codes)
        assert list(f.codes) == list(range(lo, hi + 1)), f"{f.name}: codes not contiguous"
    if f.kind == "float":  # floats: a lower bound; hi 'none' (INT64_MAX) = unbounded
        lo = int(lo) if lo != float("-inf") else -(2**63)
        hi = 2**63 - 1 if hi == float("inf") else int(hi)
    lo_s = "INT64_MIN" if lo == -(2**63) else f"{int(lo)}LL"
    hi_s = "INT64_MAX" if hi == 2**63 - 1 else f"{int(hi)}LL"
    return f'{{"{f.name}", WType::{wtype}, {lo_s}, {hi_s}}}'


def sync_row_kinds(schema: proto.WireSchema) -> list[str]:
    """The action kinds a join sync has rows of (section 16): the mirrored kinds that show a
    thing (not the ones that only move or remove one), in the action table's order."""
    return [k for k in schema.actions if k in proto.MIRRORED_KINDS
            and not k.startswith(("despawn", "move"))]


def cpp_sync_lines(schema: proto.WireSchema) -> list[str]:
    """The join sync's part of ``kinds_v1.hpp``: each sync row kind's columns, and which
    action kinds are mirrored (an action of one, from a tick <= a sync's, is reflected)."""
    out = ["// The join sync (PROTOCOL.md section 16): a sync row's columns are its action",
           "// kind's, less action_id, then the sync's own (an NPC's name, a shop's stock)."]
    names = sync_row_kinds(schema)
    for name in names:
        ident = "k" + "".join(w.capitalize() for w in name.split("_")) + "SyncFields"
        out.append(f"inline constexpr Field {ident}[] = {{")
        out += [f"    {_cpp_field(f)}," for f in proto.sync_fields(schema, name)]
        out.append("};")
    out.append("inline constexpr Kind kSyncKinds[] = {")
    for name in names:
        ident = "k" + "".join(w.capitalize() for w in name.split("_")) + "SyncFields"
        nf = len(proto.sync_fields(schema, name))
        out.append(f'    {{"{name}", {ident}, {nf}, -1, -1, -1}},')
    out.append("};")
    out.append(f"inline constexpr int kSyncKindCount = {len(names)};")
    out.append("/// Per ActionKind: a mirrored kind, whose effect a join sync reflects.")
    flags = ", ".join("true" if k in proto.MIRRORED_KINDS else "false" for k in schema.actions)
    out.append(f"inline constexpr bool kActionMirrored[] = {{{flags}}};")
    out.append("/// Per ActionKind: a line an NPC says, reflected by a sync that does not show it.")
    flags = ", ".join("true" if k in proto.SPOKEN_KINDS else "false" for k in schema.actions)
    out.append(f"inline constexpr bool kActionSpoken[] = {{{flags}}};")
    return out


def cpp_kinds_header(schema: proto.WireSchema = proto.WIRE_V1) -> str:
    """``bridge/cpp/include/norn/kinds_v1.hpp``: every kind's wire fields, for the C++ client."""
    out = [
        "// Generated by `python -m norn.bridge.golden --write` from protocol v1's kinds",
        "// (engine/rathena.py), like PROTOCOL.md's tables. Do not edit: tests fail on drift.",
        "#pragma once",
        "",
        '#include "norn/schema.hpp"',
        "",
        "namespace norn::v1 {",
        "",
    ]

    def table(prefix: str, kinds: dict[str, tuple[proto.WireField, ...]],
              inside: dict[str, tuple[str, str, str]]) -> list[str]:
        lines = []
        for name, fields in kinds.items():
            ident = "k" + "".join(w.capitalize() for w in name.split("_")) + prefix + "Fields"
            lines.append(f"inline constexpr Field {ident}[] = {{")
            lines += [f"    {_cpp_field(f)}," for f in fields]
            lines.append("};")
        return lines

    out += table("Event", schema.events, schema.coords)
    out.append("")
    out += table("Action", schema.actions, {})
    out.append("")
    out.append("inline constexpr Field kResultFields[] = {")
    out += [f"    {_cpp_field(f)}," for f in schema.result]
    out.append("};")
    out.append("")

    def kinds_array(prefix: str, kinds: dict[str, tuple[proto.WireField, ...]],
                    inside: dict[str, tuple[str, str, str]]) -> list[str]:
        lines = [f"inline constexpr Kind k{prefix}Kinds[] = {{"]
        for name, fields in kinds.items():
            ident = "k" + "".join(w.capitalize() for w in name.split("_")) + prefix + "Fields"
            names = [f.name for f in fields]
            where = inside.get(name)
            idx = [names.index(n) for n in where] if where else [-1, -1, -1]
            lines.append(f'    {{"{name}", {ident}, {len(fields)}, {idx[0]}, {idx[1]}, {idx[2]}}},')
        lines.append("};")
        lines.append(f"inline constexpr int k{prefix}KindCount = {len(kinds)};")
        lines.append(f"enum class {prefix}Kind : int {{")
        lines += [f"    {name} = {i}," for i, name in enumerate(kinds)]
        lines.append("};")
        return lines

    out += kinds_array("Event", schema.events, schema.coords)
    out.append("")
    out += kinds_array("Action", schema.actions, {})
    out.append("")
    out.append('inline constexpr Kind kResultKind = {"action_result", kResultFields, '
               f"{len(schema.result)}, -1, -1, -1}};")
    out.append("")
    out += cpp_sync_lines(schema)
    out += ["", "}  // namespace norn::v1", ""]
    return "\n".join(out)


def write_all(out_dir: Path = VECTORS_DIR, doc: Path = PROTOCOL_MD) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    if CPP_KINDS.parent.exists():
        CPP_KINDS.write_text(cpp_kinds_header())
    vectors = build_vectors()
    for vec in vectors:
        (out_dir / f"{vec['name']}.msgpack").write_bytes(vec["bytes"])
    (out_dir / "index.json").write_text(json.dumps(build_index(), indent=1) + "\n")
    if doc.exists():
        kinds = default_world_kinds()
        text = render_protocol_md(doc.read_text(), {v["name"]: v["bytes"] for v in vectors},
                                  world=world_kind_tables(kinds))
        doc.write_text(render_values(text, value_tables(kinds)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m norn.bridge.golden")
    parser.add_argument("--write", action="store_true",
                        help="regenerate bridge/vectors/, PROTOCOL.md's hex blocks and kind tables")
    args = parser.parse_args(argv)
    if args.write:
        write_all()
        print(f"wrote {VECTORS_DIR} and the hex blocks and kind tables of {PROTOCOL_MD}")
    else:
        for vec in build_vectors():
            print(f"{vec['name']}: {len(vec['bytes'])} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
