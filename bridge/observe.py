"""The bridge's part in a run's metrics and readiness.

``observe_bridge(server, probes)`` registers, on the run's ``Probes``
(``engine/observe.py``), a sample function read at each scrape and the ``bridge``
readiness check (bound, its thread alive and not crashed). The samples are the session's
counters (``norn_bridge_<counter>_total``, one per ``session.COUNTERS`` entry), its queue
depths and bounds (held batches and bytes, inbound frames and bytes), and per map server:
whether its session is up, its acked seq, the bytes held for it, and its rejections by
error code (from the dead-letter store's counts, which count a rejection whether or not the
store still had room). Server labels are capped by the metrics module; the server ids are
bounded by ``server_records_max`` anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from norn.bridge import protocol as proto
from norn.bridge.session import COUNTERS
from norn.engine.observe import Probes, Sample

#: Counters docs/operations.md alerts on, with their help text; the rest get a generic one.
HELP = {
    "frames_in": "frames received from map servers",
    "events_accepted": "events accepted (validated) from map servers",
    "events_rejected": "events rejected by validation (dead-lettered)",
    "frames_rejected": "frames rejected whole (dead-lettered)",
    "dead_lettered": "rejections kept in the dead-letter store",
    "actions_sent": "world actions sent to map servers",
    "actions_expired": "actions that expired before a map server answered them",
    "actions_dropped": "actions dropped at a full outbox or action queue",
    "results_received": "action results received from map servers",
    "queue_full": "batches held back because the input queue (or the server's share) was full",
    "rate_limited": "batches held back by events_per_s_max",
    "frames_overloaded": "frames dropped unread because a connection sent too much",
    "peers_timed_out": "sessions marked down after peer_timeout_ms of silence",
    "internal_errors": "frames whose handling raised (a bug; dead-lettered)",
    "dead_letter_errors": "failed writes of the dead-letter store",
}
#: Gauges of ``BridgeServer.stats()``.
GAUGES = {
    "peers_up": "map server sessions up",
    "peers_down": "server records whose session is down",
    "server_records": "server records held (bounded by server_records_max)",
    "held_batches": "decoded batches waiting to enter the input queue",
    "held_bytes": "bytes of batches held until journaled (bounded by held_bytes_max)",
    "inbound_frames": "frames read but not processed yet (bounded by inbound_frames_max)",
    "inbound_bytes": "bytes read but not processed yet (bounded by inbound_bytes_max)",
}
#: Bounds exported beside the gauges they bound, for alerts on ratios.
BOUNDS = ("held_bytes_max", "inbound_frames_max", "inbound_bytes_max", "servers_max",
          "server_records_max", "dead_letter_records_max")


def _code(code: int) -> str:
    try:
        return proto.ErrorCode(code).name.lower()
    except ValueError:
        return str(code)


def bridge_samples(server: Any) -> Callable[[], Iterator[Sample]]:
    """The sample function over a ``BridgeServer`` (called from the metrics thread)."""

    def samples() -> Iterator[Sample]:
        st = server.stats()
        yield Sample("norn_bridge_up", float(server.serving), "gauge",
                     "1 while the bridge is bound and its thread runs")
        for name in (*COUNTERS, "dead_letter_dropped"):
            if isinstance(st.get(name), int):
                yield Sample(f"norn_bridge_{name}", st[name], "counter",
                             HELP.get(name, f"bridge counter {name} (docs/operations.md)"))
        for name, doc in GAUGES.items():
            if isinstance(st.get(name), int):
                yield Sample(f"norn_bridge_{name}", st[name], "gauge", doc)
        for name in BOUNDS:
            yield Sample(f"norn_bridge_{name}", getattr(server.config, name), "gauge",
                         f"the bridge's {name} (config)")
        for sid, up in server.peer_up().items():
            yield Sample("norn_bridge_server_up", float(up), "gauge",
                         "1 while this map server's session is up", (("server", sid),))
        for sid, (_, acked) in server.peer_seqs().items():
            yield Sample("norn_bridge_server_acked_seq", acked, "gauge",
                         "the last seq of this map server acked (journaled)", (("server", sid),))
        for sid, held in server.peer_held_bytes().items():
            yield Sample("norn_bridge_server_held_bytes", held, "gauge",
                         "bytes of this map server's batches held until journaled",
                         (("server", sid),))
        for (sid, code), n in sorted(server.rejections().items()):
            yield Sample("norn_bridge_rejected", n, "counter",
                         "events and frames rejected, by map server ('-': before any hello) "
                         "and error code", (("server", sid), ("reason", _code(code))))

    return samples


def bridge_check(server: Any) -> Callable[[], str | None]:
    """The ``bridge`` readiness check: None while it serves, else why not."""

    def check() -> str | None:
        if server.serving:
            return None
        if server.crashed is not None:
            return f"the bridge thread crashed: {server.crashed!r}"
        return "the bridge is not serving (not bound, or stopped)"

    return check


def observe_bridge(server: Any, probes: Probes) -> None:
    """Register the bridge's samples and its readiness check on a run's probes."""
    probes.add_samples(bridge_samples(server))
    probes.add_check("bridge", bridge_check(server))
