"""Re-offering dead letters an operator fixed: an admin session over the wire.

A dead letter is input the bridge refused (``bridge/dead_letter.py``). Once an operator
has fixed it (an event row edited, a frame repaired), it goes back **through the same
door**: ``AdminSession`` connects to the running engine's bridge as a map server whose id
says what it is (``admin``, or ``admin-...``), sends the fixed events as ordinary batches
and waits for the acks. So the engine validates them exactly as it validates a map
server's (an event still wrong is refused again, and dead-lettered again), journals them
as inputs of source ``admin``, and acks only once they are durable; nothing bypasses the
checks or the journal. A stopped run takes them the same way once resumed serving
(``norn run --resume --out RUN --serve ...``): the journal remembers the admin source's
sequence numbers, so a replay continues where the last one stopped.

The session never answers the actions the engine sends it (it speaks for no map server):
they expire unanswered (``norn_bridge_actions_expired_total``); the admin never reports a
result on a game server's behalf.

**The fix file** (``norn bridge dead-letters show RUN N --export FILE`` writes one): JSON,
one protocol frame or a list of them, as ``{"t": "events", "kind": K, "rows": [[...]]}`` (or
``"t": "results"`` with rows of ``[action_id, status, reason]``); a frame in columns form
keeps its binary columns as ``{"$bytes": BASE64}``. ``seq`` and ``tick`` are ignored: the
admin session numbers its own batches, unstamped. ``frames_from_records`` turns stored
dead letters into such frames: rejected events become rows of their kind, a rejected frame
becomes itself (if it was kept whole).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from norn.bridge import protocol as proto
from norn.engine import clock
from norn.engine.errors import EnvironmentFailure, UserError

#: The server id an admin session uses unless told another (it must start with this).
ADMIN_ID = "admin"
#: Frames per replay (each is one batch, one seq).
frames_max = 1024


def check_admin_id(server_id: str) -> None:
    if not (server_id.startswith(ADMIN_ID) and proto.SERVER_ID_RE.fullmatch(server_id)):
        raise UserError(f"--as {server_id}: an admin session's id starts with {ADMIN_ID!r} "
                        f"and matches {proto.SERVER_ID_RE.pattern} (the journal's source "
                        "must say who offered the input)")


# -- frames: from records and fix files -------------------------------------------------------
def _text(v: Any) -> Any:
    """A stored row keeps text as bytes (columns form); rows carry str."""
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return v  # left as it is: the engine refuses it again, naming the field
    return v


def frames_from_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Frames re-offering the given dead letters (in their order).

    A rejected event (``event_index >= 0``) becomes a row of its kind (consecutive ones of
    one kind share a frame); a rejected frame becomes itself, if it was stored whole.
    """
    frames: list[dict[str, Any]] = []
    for rec in records:
        if rec["event_index"] is not None and rec["event_index"] >= 0:
            if rec["kind"] is None:
                raise UserError(f"dead letter {rec['n']}: an event without its kind")
            row = msgpack.unpackb(rec["raw"], raw=False)
            if not isinstance(row, list):
                raise UserError(f"dead letter {rec['n']}: its event is not a row")
            t = proto.RESULTS if rec["kind"] == proto.RESULT_KIND else proto.EVENTS
            last = frames[-1] if frames else None
            if (last is not None and last.get("_rows_of") == rec["kind"]
                    and len(last["rows"]) < proto.SEQ_MAX):
                last["rows"].append([_text(v) for v in row])
            else:
                f: dict[str, Any] = {"t": t, "rows": [[_text(v) for v in row]],
                                     "_rows_of": rec["kind"]}
                if t == proto.EVENTS:
                    f["kind"] = rec["kind"]
                frames.append(f)
        else:
            if rec["raw_bytes"] != len(rec["raw"]):
                raise UserError(
                    f"dead letter {rec['n']}: the frame was {rec['raw_bytes']} bytes and only "
                    f"{len(rec['raw'])} were kept (dead_letter_raw_bytes_max); export it, "
                    "complete it, and replay the file")
            try:
                msg = msgpack.unpackb(rec["raw"], raw=False, strict_map_key=False)
            except Exception as exc:
                raise UserError(f"dead letter {rec['n']}: not a msgpack frame ({exc}); fix "
                                "it into a file and replay that") from exc
            frames.append(_frame(msg, f"dead letter {rec['n']}"))
    for f in frames:
        f.pop("_rows_of", None)
    return frames


def _frame(msg: Any, where: str) -> dict[str, Any]:
    if not isinstance(msg, dict) or msg.get("t") not in (proto.EVENTS, proto.RESULTS):
        raise UserError(f"{where}: not an events or results frame (a map with t = "
                        f"'events' or 'results'); got {proto.describe(msg, 80)}")
    out = {k: v for k, v in msg.items() if k not in ("seq", "tick")}
    return out


def to_json(obj: Any) -> Any:
    """A frame (or a row) as JSON-able data: bytes as ``{"$bytes": BASE64}``."""
    if isinstance(obj, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(obj)).decode()}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    return obj


def from_json(obj: Any) -> Any:
    """The inverse of ``to_json``."""
    if isinstance(obj, dict):
        if set(obj) == {"$bytes"}:
            return base64.b64decode(obj["$bytes"])
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    return obj


def frames_from_fix(doc: Any, where: str) -> list[dict[str, Any]]:
    """The frames of a fix file's JSON (one frame or a list of them)."""
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise UserError(f"{where}: no frames")
    return [_frame(from_json(x), f"{where}: frame {i}") for i, x in enumerate(items)]


# -- the session ------------------------------------------------------------------------------
@dataclass
class Offered:
    """What became of a replay: the seqs used, what the engine acked and refused."""

    server_id: str
    seqs: list[int] = field(default_factory=list)
    acked: int = 0                      # the highest seq the engine acked (journaled)
    errors: list[dict[str, Any]] = field(default_factory=list)  # error frames received
    events_rejected: int = 0
    tick: int = 0                       # the engine's tick at the welcome

    @property
    def journaled(self) -> bool:
        return bool(self.seqs) and self.acked >= self.seqs[-1]

    def as_dict(self) -> dict[str, Any]:
        return {"server_id": self.server_id, "seqs": self.seqs, "acked": self.acked,
                "journaled": self.journaled, "events_rejected": self.events_rejected,
                "errors": self.errors, "tick": self.tick}


class AdminSession:
    """A one-shot admin connection: hello, the batches, their acks, bye."""

    def __init__(self, endpoint: str, server_id: str = ADMIN_ID, *,
                 curve: tuple[bytes, bytes, bytes] | None = None,
                 timeout_s: float = 30.0) -> None:
        check_admin_id(server_id)
        self.endpoint = endpoint
        self.server_id = server_id
        self.curve = curve
        self.timeout_s = timeout_s

    def offer(self, frames: list[dict[str, Any]]) -> Offered:
        """Send ``frames`` as this session's next batches; wait until they are acked."""
        if not frames:
            raise UserError("nothing to re-offer")
        if len(frames) > frames_max:
            raise UserError(f"{len(frames)} frames > frames_max={frames_max}: replay in parts")
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        if self.curve is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self.curve
        sock.connect(self.endpoint)
        out = Offered(self.server_id)
        deadline = clock.monotonic() + self.timeout_s
        try:
            sock.send(proto.encode_hello(self.server_id, caps=("rows", "columns")))
            welcome = self._recv_until(sock, deadline, lambda m: m.get("t") in (
                proto.WELCOME, proto.ERROR))
            if welcome is None:
                raise EnvironmentFailure(
                    f"{self.endpoint}: no welcome within {self.timeout_s} s (is the engine "
                    "serving there? is this key allowed?)")
            if welcome["t"] == proto.ERROR:
                raise EnvironmentFailure(f"{self.endpoint}: the engine refused the admin "
                                         f"session: {welcome.get('message')}")
            out.tick = int(welcome.get("tick", 0))
            seq = int(welcome["next_seq"])
            out.acked = int(welcome.get("acked", seq - 1))
            credit = max(1, int(welcome.get("credit", 1)))
            pending = list(frames)
            while pending or out.acked < (out.seqs[-1] if out.seqs else 0):
                while pending and seq - out.acked <= credit:
                    sock.send(proto.pack({**pending.pop(0), "seq": seq}))
                    out.seqs.append(seq)
                    seq += 1
                msg = self._recv_until(sock, deadline, lambda m: m.get("t") in (
                    proto.ACK, proto.ERROR))
                if msg is None:
                    break  # timed out: reported as not journaled
                if msg["t"] == proto.ACK:
                    out.acked = max(out.acked, int(msg["seq"]))
                    credit = max(1, int(msg.get("credit", credit)))
                else:
                    out.errors.append({k: msg.get(k) for k in (
                        "name", "message", "seq", "field", "invalid", "events")})
                    out.events_rejected += int(msg.get("invalid") or 0)
                    if msg.get("name") in ("seq_gap", "window_exceeded", "superseded",
                                           "too_many_servers", "hello_required"):
                        break  # the session itself is in trouble: stop, report
            if out.seqs and out.acked >= out.seqs[-1]:
                sock.send(proto.encode_bye())
        finally:
            sock.close(0)
            ctx.term()
        return out

    @staticmethod
    def _recv_until(sock: zmq.Socket, deadline: float, pred: Any) -> dict[str, Any] | None:
        """The next frame satisfying ``pred`` (actions and heartbeats are read and dropped:
        an admin session speaks for no map server)."""
        while (left := deadline - clock.monotonic()) > 0:
            if not sock.poll(max(1, int(left * 1000))):
                return None
            try:
                msg = msgpack.unpackb(sock.recv(), raw=False, strict_map_key=False)
            except Exception:
                continue
            if isinstance(msg, dict) and pred(msg):
                return msg
        return None
