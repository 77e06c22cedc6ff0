"""The wire protocol without sockets: golden vectors, codecs, validation, bounds per field."""

from __future__ import annotations

import json
import sys

import msgpack
import numpy as np
import pytest

from norn.bridge import golden
from norn.bridge import protocol as proto
from norn.bridge.codec import (
    EventDecoder,
    columns_to_rows,
    decode_actions,
    encode_actions,
    encode_columns,
    encode_rows,
    pack_text,
    unpack_text,
)
from norn.bridge.config import BridgeConfig
from norn.engine.actions import ACTION_SCHEMAS
from norn.engine.errors import ConfigError
from norn.engine.events import EVENT_SCHEMAS

MAPS = [n for n, _, _ in golden.WORLD_MAPS]


def decoder(**kw) -> EventDecoder:
    return EventDecoder(MAPS, [(w, h) for _, w, h in golden.WORLD_MAPS], **kw)


# -- golden vectors --------------------------------------------------------------------------------
def test_committed_vectors_match_the_code():
    """Regenerate with `python -m norn.bridge.golden --write` and review the diff."""
    for vec in golden.build_vectors():
        path = golden.VECTORS_DIR / f"{vec['name']}.msgpack"
        assert path.read_bytes() == vec["bytes"], f"{path} drifted from the code"
    committed = json.loads((golden.VECTORS_DIR / "index.json").read_text())
    assert committed == json.loads(json.dumps(golden.build_index()))


@pytest.mark.parametrize("entry", json.loads((golden.VECTORS_DIR / "index.json").read_text())[
    "vectors"], ids=lambda e: e["name"])
def test_vector_decodes_and_reencodes_identically(entry):
    data = (golden.VECTORS_DIR / entry["file"]).read_bytes()
    assert data.hex() == entry["hex"]
    msg = proto.unpack(data, 1 << 20)
    assert golden._jsonable(msg) == entry["decoded"]
    assert proto.pack(msg) == data  # canonical form round-trips byte for byte
    if "engine" in entry:
        assert golden.engine_view(data) == entry["engine"]
    if entry["type"] == proto.ACTIONS:
        frame = decode_actions(msg)
        assert frame.count() == 4


def test_protocol_md_shows_every_vector_in_hex():
    shown = golden.doc_vectors(golden.PROTOCOL_MD.read_text())
    vectors = {v["name"]: v["bytes"].hex() for v in golden.build_vectors()}
    assert set(shown) == set(vectors), "every vector has a hex block in PROTOCOL.md"
    for name, hexed in vectors.items():
        assert shown[name] == hexed, f"PROTOCOL.md hex for {name} is stale"


def test_protocol_md_documents_every_kind_code_and_limit():
    doc = golden.PROTOCOL_MD.read_text()
    for kind in proto.WIRE_EVENT_SCHEMAS:
        assert f"| `{kind}` |" in doc
    for kind in ACTION_SCHEMAS:
        assert f"| `{kind}` |" in doc
    for code in proto.ErrorCode:
        assert f"| {int(code)} | {code.name.lower()} |" in doc
    for reason in proto.ResultReason:
        assert f"| {int(reason)} | {reason.name.lower()} |" in doc
    for key in BridgeConfig().wire_limits():
        assert f"`{key}`" in doc


# -- schemas ---------------------------------------------------------------------------------------
def test_wire_schemas_mirror_engine_schemas():
    accepted = set(proto.WIRE_EVENT_SCHEMAS)
    assert accepted == set(EVENT_SCHEMAS) - {"action_result", "admin_hazard"}
    assert set(proto.WIRE_ACTION_SCHEMAS) == set(ACTION_SCHEMAS)


# -- columns and rows give the same engine columns -------------------------------------------------
def random_events(kind: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Valid wire columns of ``kind`` (map fields index MAPS, inside the map for coords)."""
    cols = {}
    for f in proto.WIRE_EVENT_SCHEMAS[kind]:
        if f.kind == "map":
            cols[f.name] = rng.integers(0, len(MAPS), n).astype("<i2")
        elif f.kind == "text":
            cols[f.name] = np.array([("héllo " * int(k)).encode()[:255]
                                     for k in rng.integers(0, 60, n)], dtype="S255")
        else:
            hi = min(f.hi, 239) if f.name in ("x", "y") else min(f.hi, 2**40)
            cols[f.name] = rng.integers(f.lo, hi + 1, n).astype(f.dtype)
    return cols


@pytest.mark.parametrize("kind", list(proto.WIRE_EVENT_SCHEMAS))
def test_columns_and_rows_decode_to_the_same_engine_columns(kind):
    rng = np.random.default_rng(7)
    cols = random_events(kind, 200, rng)
    as_cols = proto.unpack(encode_columns(proto.EVENTS, 1, kind, cols, MAPS), 1 << 24)
    rows = columns_to_rows(proto.EVENTS, kind, cols, MAPS)
    as_rows = proto.unpack(encode_rows(proto.EVENTS, 1, kind, rows), 1 << 24)
    a, b = decoder().decode(as_cols), decoder().decode(as_rows)
    assert len(a.invalid) == 0 and len(b.invalid) == 0, (a.invalid_reasons, b.invalid_reasons)
    assert a.kind == b.kind == kind
    for name, dt in EVENT_SCHEMAS[kind]:
        assert a.columns[name].dtype == np.dtype(dt)
        np.testing.assert_array_equal(a.columns[name], b.columns[name])


def test_results_columns_and_rows():
    ids = np.array([1 << 24, (1 << 24) + 1], dtype=np.int64)
    cols = {"action_id": ids, "status": np.array([0, 1]), "reason": np.array([0, 4])}
    a = decoder().decode(proto.unpack(encode_columns(proto.RESULTS, 3, None, cols), 1 << 20))
    rows = columns_to_rows(proto.RESULTS, None, cols, [])
    b = decoder().decode(proto.unpack(encode_rows(proto.RESULTS, 3, None, rows), 1 << 20))
    assert a.kind == b.kind == "action_result"
    for k in ("action_id", "status", "reason"):
        np.testing.assert_array_equal(a.columns[k], b.columns[k])


def test_columnar_decoding_does_not_loop_per_event():
    """The Python work to decode a columnar batch is the same for 10 and 50,000 events."""
    rng = np.random.default_rng(1)

    def calls(n: int) -> int:
        msg = proto.unpack(encode_columns(proto.EVENTS, 1, "mob_kill",
                                          random_events("mob_kill", n, rng), MAPS), 1 << 24)
        dec = decoder()
        count = 0

        def prof(frame, event, arg):
            nonlocal count
            if event in ("call", "c_call"):
                count += 1

        sys.setprofile(prof)
        try:
            out = dec.decode(msg)
        finally:
            sys.setprofile(None)
        assert out.accepted == n
        return count

    assert calls(10) == calls(50_000)


# -- per-event validation --------------------------------------------------------------------------
def one(kind: str, **overrides) -> dict[str, np.ndarray]:
    cols = random_events(kind, 1, np.random.default_rng(0))
    for k, v in overrides.items():
        cols[k] = np.array([v], dtype=cols[k].dtype) if not isinstance(v, np.ndarray) else v
    return cols


def decode_rows(kind: str, rows: list, **kw):
    return decoder(**kw).decode(proto.unpack(encode_rows(proto.EVENTS, 1, kind, rows), 1 << 24))


def int_bound_cases():
    for kind, fields in proto.WIRE_EVENT_SCHEMAS.items():
        for f in fields:
            if f.kind != "int":
                continue
            info = np.iinfo(f.dtype)
            yield kind, f.name, f.lo, f.hi, f.lo - 1 if f.lo > info.min else None, (
                f.hi + 1 if f.hi < info.max else None)


@pytest.mark.parametrize("kind,field,lo,hi,below,above", list(int_bound_cases()))
def test_every_integer_field_at_its_bounds_and_one_past(kind, field, lo, hi, below, above):
    fields = [f.name for f in proto.WIRE_EVENT_SCHEMAS[kind]]
    base = columns_to_rows(proto.EVENTS, kind, one(kind), MAPS)[0]
    j = fields.index(field)
    if field in ("x", "y"):
        hi = 239  # inside every test map; the map bound itself is tested below
        above = 999 if kind in proto.WIRE_EVENT_COORDS else above  # outside every map
    rows = []
    for v in (lo, hi):
        r = list(base)
        r[j] = v
        rows.append(r)
    bad = [v for v in (below, above) if v is not None]
    for v in bad:
        r = list(base)
        r[j] = v
        rows.append(r)
    dec = decode_rows(kind, rows)
    assert dec.accepted == 2, dec.invalid_reasons
    assert dec.invalid.tolist() == list(range(2, 2 + len(bad)))
    assert set(dec.invalid_fields) <= {field}


def test_map_bounds_at_width_and_height():
    w, h = 260, 260  # izlude
    dec = decode_rows("player_move", [
        [150000, "izlude", w - 1, h - 1], [150000, "izlude", w, 0], [150000, "izlude", 0, h],
    ])
    assert dec.accepted == 1
    assert dec.invalid_fields == ["x", "y"]


def test_map_change_coordinates_checked_against_the_destination():
    dec = decode_rows("map_change", [
        [150000, "prontera", "izlude", 300, 10],   # inside prontera, outside izlude
        [150000, "izlude", "prontera", 300, 10],
    ])
    assert dec.invalid.tolist() == [0]
    np.testing.assert_array_equal(dec.columns["to_map_id"], [0])


def test_unknown_map_and_dictionary_index():
    cols = one("player_move", map=np.array([5], dtype="<i2"))
    dec = decoder().decode(proto.unpack(encode_columns(proto.EVENTS, 1, "player_move", cols,
                                                       MAPS), 1 << 20))
    assert dec.invalid_fields == ["map"] and "dictionary" in dec.invalid_reasons[0]
    cols = one("player_move", map=np.array([0], dtype="<i2"))
    dec = decoder().decode(proto.unpack(encode_columns(proto.EVENTS, 1, "player_move", cols,
                                                       ["atlantis"]), 1 << 20))
    assert dec.invalid_fields == ["map"] and dec.invalid_reasons == ["unknown map"]


@pytest.mark.parametrize("columnar", [True, False])
def test_text_at_the_bound_and_one_past_and_bad_utf8(columnar):
    texts = [b"a" * 255, b"a" * 256, b"ok", b"nul\x00here", b"\xff\xfe bad", "é".encode() * 127,
             b"", "日本語".encode()]
    n = len(texts)
    if columnar:
        lens = np.array([len(t) for t in texts], dtype="<u2")
        msg = {"t": "events", "seq": 1, "kind": "npc_talk", "n": n, "cols": {
            "char_id": np.full(n, 150000, "<u4").tobytes(),
            "npc_id": np.ones(n, "<i8").tobytes(),
            "text_len": lens.tobytes(), "text": b"".join(texts)}}
        dec = decoder().decode(proto.unpack(proto.pack(msg), 1 << 20))
    else:
        # rows carry str; invalid UTF-8 cannot even be a msgpack str, so use valid ones
        texts[4] = b"fine"
        dec = decode_rows("npc_talk", [[150000, 1, t.decode()] for t in texts])
    bad = [1, 3, 4] if columnar else [1, 3]
    assert dec.invalid.tolist() == bad
    assert dec.invalid_fields == ["text"] * len(bad)
    assert "longer than 255 bytes" in dec.invalid_reasons[0]
    assert "NUL" in dec.invalid_reasons[1]
    if columnar:
        assert "UTF-8" in dec.invalid_reasons[2]
    kept = [t for i, t in enumerate(texts) if i not in bad]
    assert dec.columns["text"].tolist() == kept


def test_text_limit_from_config_at_bound_and_one_past():
    dec = decode_rows("npc_talk", [[150000, 1, "x" * 10], [150000, 1, "x" * 11]],
                      text_bytes_max=10)
    assert dec.invalid.tolist() == [1]


def test_text_value_split_across_a_character_is_invalid():
    data = "é".encode()  # two bytes split between two events
    msg = {"t": "events", "seq": 1, "kind": "npc_talk", "n": 2, "cols": {
        "char_id": np.full(2, 150000, "<u4").tobytes(), "npc_id": np.ones(2, "<i8").tobytes(),
        "text_len": np.array([1, 1], "<u2").tobytes(), "text": data}}
    dec = decoder().decode(msg)
    assert dec.accepted == 0


@pytest.mark.parametrize("bad", ["150000", 1.5, None, [1], True, 2**64 - 1, -(2**63), {"a": 1}])
def test_rows_with_wrong_types_reject_that_event_only(bad):
    dec = decode_rows("quest_done", [[150000, 7], [bad, 7], [150001, 8]])
    assert dec.invalid.tolist() == [1]
    assert dec.invalid_fields == ["char_id"]
    np.testing.assert_array_equal(dec.columns["char_id"], [150000, 150001])


def test_rows_of_the_wrong_shape():
    dec = decode_rows("quest_done", [[150000, 7], [150000], "x", [150000, 7, 9], [150001, 8]])
    assert dec.invalid.tolist() == [1, 2, 3]
    assert dec.invalid_fields == ["(row)"] * 3


def test_raw_event_bytes_are_the_event_as_a_row():
    cols = one("player_move", x=np.array([300], dtype="<i2"))  # outside every map but prontera
    cols["map"] = np.array([2], dtype="<i2")  # geffen 240 wide
    dec = decoder().decode(proto.unpack(encode_columns(proto.EVENTS, 1, "player_move", cols,
                                                       MAPS), 1 << 20))
    assert dec.invalid.tolist() == [0]
    row = msgpack.unpackb(dec.raw_event(0), raw=False)
    assert row[1] == "geffen" and row[2] == 300


# -- batch-level errors ----------------------------------------------------------------------------
def batch_error(msg) -> proto.ProtocolError:
    with pytest.raises(proto.ProtocolError) as ei:
        decoder(events_per_batch_max=100).decode(msg)
    return ei.value


def test_batch_level_errors_name_the_field():
    good = proto.unpack(encode_columns(proto.EVENTS, 1, "quest_done", {
        "char_id": np.array([150000]), "quest_id": np.array([5])}), 1 << 20)
    e = batch_error({**good, "kind": "teleport"})
    assert e.code == proto.ErrorCode.UNKNOWN_KIND and e.field == "kind"
    e = batch_error({**good, "kind": "admin_hazard"})
    assert e.code == proto.ErrorCode.UNKNOWN_KIND
    e = batch_error({**good, "cols": {**good["cols"], "quest_id": b"\x00" * 3}})
    assert e.code == proto.ErrorCode.BAD_FIELD and e.field == "quest_id"
    e = batch_error({**good, "cols": {"char_id": good["cols"]["char_id"]}})
    assert e.code == proto.ErrorCode.BAD_FIELD and "missing ['quest_id']" in e.message
    e = batch_error({**good, "cols": {**good["cols"], "extra": b""}})
    assert "unexpected ['extra']" in e.message
    e = batch_error({**good, "rows": []})
    assert e.code == proto.ErrorCode.BAD_FIELD
    e = batch_error({**good, "n": 101})
    assert e.code == proto.ErrorCode.BATCH_TOO_LARGE
    e = batch_error({**good, "n": -1})
    assert e.code == proto.ErrorCode.BAD_FIELD and e.field == "n"
    e = batch_error({"t": "events", "seq": 1, "kind": "quest_done", "rows": [[150000, 1]] * 101})
    assert e.code == proto.ErrorCode.BATCH_TOO_LARGE
    e = batch_error({"t": "events", "seq": 1, "kind": "player_move", "n": 0, "maps": ["x" * 65],
                     "cols": {k: b"" for k in ("char_id", "map", "x", "y")}})
    assert e.field == "maps"


def test_events_per_batch_at_the_bound_accepted():
    rows = [[150000, 1]] * 100
    assert decoder(events_per_batch_max=100).decode(
        {"t": "events", "seq": 1, "kind": "quest_done", "rows": rows}).accepted == 100


def test_map_dict_at_the_bound_and_one_past():
    def msg(k):
        return {"t": "events", "seq": 1, "kind": "player_move", "n": 0, "maps": ["m"] * k,
                "cols": {k2: b"" for k2 in ("char_id", "map", "x", "y")}}
    assert decoder(map_dict_max=4).decode(msg(4)).n == 0
    with pytest.raises(proto.ProtocolError):
        decoder(map_dict_max=4).decode(msg(5))


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x93\x01", b"\x01", b"\x81\xa1t\x05",
                                  b"\xdb\xff\xff\xff\xffabc", b"\xc6\x7f\xff\xff\xff\x00",
                                  b"\xdd\xff\xff\xff\xff", b"\xd4\x01\x01"])
def test_unpack_refuses_malformed_frames(data):
    with pytest.raises(proto.ProtocolError) as ei:
        proto.unpack(data, 1 << 20)
    assert ei.value.code == proto.ErrorCode.MALFORMED


def test_unpack_frame_bytes_at_the_bound_and_one_past():
    data = proto.encode_bye()
    assert proto.unpack(data, len(data))["t"] == "bye"
    with pytest.raises(proto.ProtocolError) as ei:
        proto.unpack(data, len(data) - 1)
    assert ei.value.code == proto.ErrorCode.FRAME_TOO_LARGE


# -- text and actions codecs -----------------------------------------------------------------------
def test_pack_and_unpack_text_round_trip():
    vals = np.array([b"", b"abc", "héllo".encode(), b"x" * 255], dtype="S255")
    lens, data = pack_text(vals)
    assert lens.tolist() == [0, 3, 6, 255]
    assert unpack_text(lens.astype(np.int64), data, 255).tolist() == vals.tolist()
    lens2, data2 = pack_text(["", "abc", "héllo", "x" * 255])
    assert data2 == data and lens2.tolist() == lens.tolist()


def test_actions_round_trip_with_broadcast_and_float():
    base = 9 << 24
    kinds = {
        "broadcast": {"action_id": np.array([base, base + 1]), "map_id": np.array([-1, 2], "i2"),
                      "text": np.array([b"all", b"geffen"], dtype="S255")},
        "set_hazard": {"action_id": np.array([base + 2]), "map_id": np.array([1], "i2"),
                       "hazard_type": np.array([3], "i2"),
                       "intensity": np.array([0.25], "f4"), "on": np.array([1], "u1")},
    }
    frame = decode_actions(proto.unpack(encode_actions(9, 59, kinds, MAPS), 1 << 20))
    assert frame.tick == 9 and frame.expires_tick == 59 and frame.count() == 3
    assert frame.maps == ["izlude", "geffen"]
    assert frame.map_names("broadcast").tolist() == ["", "geffen"]
    assert frame.kinds["broadcast"]["text"].tolist() == [b"all", b"geffen"]
    assert frame.kinds["set_hazard"]["intensity"].tolist() == [0.25]
    assert frame.map_names("set_hazard").tolist() == ["izlude"]


# -- config ----------------------------------------------------------------------------------------
def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="frame_bytes_max"):
        BridgeConfig(frame_bytes_max=10)
    with pytest.raises(ConfigError, match="unknown key"):
        BridgeConfig(frames_max=1)
    with pytest.raises(ConfigError, match="events_per_s_max"):
        BridgeConfig(events_per_s_max=10, events_per_batch_max=11)
    with pytest.raises(ConfigError, match="text_bytes_max"):
        BridgeConfig(text_bytes_max=256)  # past the engine's hard ceiling
    assert BridgeConfig(text_bytes_max=255).text_bytes_max == 255
    with pytest.raises(ConfigError, match="curve"):
        BridgeConfig(curve_allowed_keys=("x" * 40,))
