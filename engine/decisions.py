"""The decision seam (DESIGN §5): requests the rules cannot settle, and their results.

Systems file requests during ``act`` (``DecisionBook.request``). In ``decide`` the new
requests are submitted to the resolver, which must never block. In ``apply`` the results
that have arrived are matched to pending requests, validated against each request's
options (an invalid choice becomes the fallback, never a guess), requests at their
deadline get their fallback, and the applied set is exposed as ``book.applied`` for the
plugins' appliers (which clamp by their rules) and journaled with its tick. A replay feeds
the journaled applied sets back instead of asking any resolver, so it is exact without it.

Request ids are ``tick << 24 | position in the tick's request order``: deterministic and
increasing, so the pending book stays sorted by id and lookups are ``searchsorted``.

Beside each choice a resolver may give two things the journal keeps with the tick: a
``NOTE`` (which tier answered, why a fallback) and a ``TEXT`` (free text that goes with the
choice, e.g. an NPC's spoken reply, checked by the resolver's guardrails). A system filing
a request may hand the resolver what a player said (``said``): prompt material only,
never state, never journaled (the event that carried it is). Appliers read the texts of
the tick's applied results in ``book.applied_text``.
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from norn.engine import limits
from norn.engine.errors import BoundError
from norn.engine.kinds import EventKind, int_field, text_field

OPTIONS = limits.decision_options_max
CONTEXT = limits.decision_context_max

REQUEST = np.dtype(
    [
        ("request_id", "<i8"),
        ("kind", "<i2"),
        ("n_options", "u1"),
        ("fallback", "u1"),
        ("actor", "<i8"),
        ("created_tick", "<i4"),
        ("deadline_tick", "<i4"),
        ("options", "<i2", (OPTIONS,)),
        ("context", "<f4", (CONTEXT,)),
    ]
)
RESULT = np.dtype([("request_id", "<i8"), ("choice", "u1")])

SOURCE_RESOLVER = 0  # the resolver's choice, valid
SOURCE_DEADLINE = 1  # no result by the deadline: fallback
SOURCE_INVALID = 2  # the resolver's choice was not one of the options: fallback
APPLIED = np.dtype(
    [
        ("request_id", "<i8"),
        ("kind", "<i2"),
        ("actor", "<i8"),
        ("option", "<i2"),  # the chosen option's value (not its index)
        ("choice", "u1"),
        ("source", "u1"),
    ]
)
RECORD = np.dtype([("request_id", "<i8"), ("choice", "u1"), ("source", "u1")])
#: Which tier answered (1 rules, 2 cache, 3 batch, 4 single, 5 a fallback the resolver
#: chose itself) and why (a resolver's reason code), per applied result it decided.
NOTE = np.dtype([("request_id", "<i8"), ("tier", "u1"), ("reason", "u1"), ("arm", "u1"),
                 ("flags", "u1")])
TIER_RULES, TIER_CACHE, TIER_BATCH, TIER_SINGLE, TIER_FALLBACK = 1, 2, 3, 4, 5
TIER_NAMES = {TIER_RULES: "rules", TIER_CACHE: "cache", TIER_BATCH: "batch",
              TIER_SINGLE: "single", TIER_FALLBACK: "fallback"}
#: Free text that goes with an applied result (UTF-8, ``text_bytes_max`` bytes at most).
TEXT = np.dtype([("request_id", "<i8"), ("text", f"S{limits.text_bytes_max}")])
EMPTY_NOTES = np.empty(0, dtype=NOTE)
EMPTY_TEXTS = np.empty(0, dtype=TEXT)

REQUEST_SEQ_BITS = 24

#: Deployment modes of a decision tier's model variants (``DEPLOY.mode``).
DEPLOY_MODES = ("all", "bluegreen", "canary")
#: A change of which model variant serves a use case (an operator's flip, a promotion, an
#: automatic rollback), journaled as an input so the journal says from which tick a variant
#: served. No state depends on it; replays read it like any input. Never from the wire.
DEPLOY = EventKind(
    "llm_deploy",
    (
        text_field("use_case", lo=1, doc="the decision use case"),
        int_field("mode", np.uint8, 0, len(DEPLOY_MODES) - 1,
                  doc="0 all-at-once, 1 blue-green, 2 canary"),
        int_field("share_permille", np.int16, 0, 1000, doc="the challenger's share"),
        text_field("champion", doc="model variant serving the rest"),
        text_field("challenger", doc="model variant on trial ('' for none)"),
        text_field("reason", doc="operator, promote, or rollback: why"),
    ),
    "the decision tier changed which model variant serves a use case",
    arrives="none",
)


class Resolver(Protocol):
    """Settles decision requests off the tick. No method may block the tick."""

    def said(self, request_ids: np.ndarray, texts: np.ndarray) -> None:
        """What players said for requests filed this tick (before ``submit``); may ignore."""
        ...

    def submit(self, tick: int, requests: np.ndarray) -> None: ...

    def collect(self, tick: int) -> np.ndarray:
        """Results (RESULT dtype) that have arrived since the last call."""
        ...

    def take_notes(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """NOTE and TEXT rows for the applied ``records`` this resolver decided."""
        ...

    def wait(self, tick: int, timeout_s: float) -> None:
        """Lockstep only: wait until results due by ``tick`` have arrived."""
        ...


class DeterministicResolver:
    """The built-in resolver: picks the option with the highest utility, ties to the lowest.

    A request's context holds its options' utilities in its first ``n_options`` entries
    (the convention of Norn's rules). The answer is a pure function of the request and is
    released ``latency_ticks`` after submission, so the asynchronous path is exercised
    while every run stays reproducible.
    """

    def __init__(self, latency_ticks: int = 1) -> None:
        self.latency_ticks = latency_ticks
        self._lock = threading.Lock()
        self._inflight: list[tuple[int, np.ndarray]] = []

    def said(self, request_ids: np.ndarray, texts: np.ndarray) -> None:
        return None  # rules need no prompt

    def take_notes(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return EMPTY_NOTES, EMPTY_TEXTS  # the rules tier writes no notes or texts

    def submit(self, tick: int, requests: np.ndarray) -> None:
        if not len(requests):
            return
        n = requests["n_options"].astype(np.int64)
        util = requests["context"][:, :OPTIONS].astype(np.float64)
        util[np.arange(OPTIONS)[None, :] >= n[:, None]] = -np.inf
        res = np.empty(len(requests), dtype=RESULT)
        res["request_id"] = requests["request_id"]
        res["choice"] = np.argmax(util, axis=1)  # first maximum: ties go to the lowest index
        with self._lock:
            self._inflight.append((tick + self.latency_ticks, res))

    def collect(self, tick: int) -> np.ndarray:
        with self._lock:
            due = [r for t, r in self._inflight if t <= tick]
            self._inflight = [(t, r) for t, r in self._inflight if t > tick]
        return np.concatenate(due) if due else np.empty(0, dtype=RESULT)

    def wait(self, tick: int, timeout_s: float) -> None:
        return None  # results are computed at submit time


class DecisionBook:
    """Pending requests (world state), this tick's new requests and applied results."""

    def __init__(self, pending_max: int = limits.decisions_pending_max) -> None:
        self.pending_max = pending_max
        self.pending = np.empty(0, dtype=REQUEST)
        self._new: list[np.ndarray] = []
        self._new_count = 0
        self._said: list[tuple[np.ndarray, np.ndarray]] = []
        self.applied = np.empty(0, dtype=APPLIED)
        self.applied_text = np.empty(0, dtype=TEXT.fields["text"][0])
        self.counters = {"requested": 0, "resolved": 0, "deadline": 0, "invalid": 0, "late": 0}

    def request(
        self,
        tick: int,
        kind: int,
        actors: np.ndarray,
        options: np.ndarray,
        n_options: np.ndarray,
        fallback: np.ndarray,
        context: np.ndarray,
        deadline_ticks: int,
        said: np.ndarray | None = None,
    ) -> np.ndarray:
        """File a batch of requests; returns their ids.

        Shapes: options (n, <=8), context (n, <=16). ``said`` (n texts, optional): what a
        player said, handed to the resolver with the requests (prompt material only).
        """
        n = len(actors)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        if not 1 <= deadline_ticks <= limits.decision_deadline_ticks_max:
            raise BoundError(
                "decision_deadline_ticks_max", limits.decision_deadline_ticks_max, deadline_ticks
            )
        total = len(self.pending) + self._new_count + n
        if total > self.pending_max:
            raise BoundError("decisions_pending_max", self.pending_max, total, "decision requests")
        options = np.atleast_2d(options)
        context = np.atleast_2d(context)
        if options.shape[1] > OPTIONS:
            raise BoundError("decision_options_max", OPTIONS, options.shape[1], "options")
        if context.shape[1] > CONTEXT:
            raise BoundError("decision_context_max", CONTEXT, context.shape[1], "context floats")
        n_options = np.broadcast_to(np.asarray(n_options, dtype=np.int64), (n,))
        fallback = np.broadcast_to(np.asarray(fallback, dtype=np.int64), (n,))
        if (n_options < 1).any() or (n_options > options.shape[1]).any():
            raise ValueError("n_options must be in [1, options per request]")
        if (fallback < 0).any() or (fallback >= n_options).any():
            raise ValueError("fallback must index one of the request's options")
        rec = np.zeros(n, dtype=REQUEST)
        seq = np.arange(self._new_count, self._new_count + n, dtype=np.int64)
        rec["request_id"] = (np.int64(tick) << REQUEST_SEQ_BITS) | seq
        rec["kind"] = kind
        rec["actor"] = actors
        rec["n_options"] = n_options
        rec["fallback"] = fallback
        rec["created_tick"] = tick
        rec["deadline_tick"] = tick + deadline_ticks
        rec["options"][:, : options.shape[1]] = options
        rec["context"][:, : context.shape[1]] = context
        self._new.append(rec)
        self._new_count += n
        self.counters["requested"] += n
        if said is not None:
            said = np.asarray(said, dtype=TEXT.fields["text"][0])
            if len(said) != n:
                raise ValueError(f"said: {len(said)} texts for {n} requests")
            self._said.append((rec["request_id"].copy(), said))
        return rec["request_id"].copy()

    def take_said(self) -> tuple[np.ndarray, np.ndarray]:
        """The texts filed with this tick's requests: (request ids, texts); then forgotten."""
        if not self._said:
            return np.empty(0, np.int64), self.applied_text[:0]
        ids = np.concatenate([i for i, _ in self._said])
        texts = np.concatenate([t for _, t in self._said])
        self._said.clear()
        return ids, texts

    def take_new(self) -> np.ndarray:
        """Move this tick's new requests into the pending book; return them for submission."""
        if not self._new:
            return np.empty(0, dtype=REQUEST)
        new = np.concatenate(self._new)
        self._new.clear()
        self._new_count = 0
        self.pending = np.concatenate([self.pending, new])
        return new

    def settle(self, tick: int, results: np.ndarray) -> np.ndarray:
        """Live path: validate arrived results, fall back at deadlines; returns RECORD rows."""
        if not len(results) and not len(self.pending):  # nothing filed, nothing arrived
            return np.empty(0, dtype=RECORD)
        ids = self.pending["request_id"]
        pos = np.searchsorted(ids, results["request_id"])
        pos_c = np.minimum(pos, max(len(ids) - 1, 0))
        known = (
            (pos < len(ids)) & (ids[pos_c] == results["request_id"])
            if len(ids)
            else (np.zeros(len(results), dtype=bool))
        )
        self.counters["late"] += int(np.count_nonzero(~known))
        results = results[known]
        pos = pos[known]
        # one result per request: the first that arrived
        _, first = np.unique(pos, return_index=True)
        results, pos = results[first], pos[first]
        choice = results["choice"].astype(np.int64)
        valid = choice < self.pending["n_options"][pos]
        rec_res = np.empty(len(results), dtype=RECORD)
        rec_res["request_id"] = results["request_id"]
        rec_res["choice"] = np.where(valid, choice, self.pending["fallback"][pos])
        rec_res["source"] = np.where(valid, SOURCE_RESOLVER, SOURCE_INVALID)
        answered = np.zeros(len(ids), dtype=bool)
        answered[pos] = True
        expired = ~answered & (self.pending["deadline_tick"] <= tick)
        rec_dl = np.empty(int(expired.sum()), dtype=RECORD)
        rec_dl["request_id"] = ids[expired]
        rec_dl["choice"] = self.pending["fallback"][expired]
        rec_dl["source"] = SOURCE_DEADLINE
        records = np.concatenate([rec_res, rec_dl])
        return records[np.argsort(records["request_id"], kind="stable")]

    def apply(self, records: np.ndarray, texts: np.ndarray = EMPTY_TEXTS) -> None:
        """Apply RECORD rows (live-settled or replayed from the journal), with their TEXTs.

        ``applied_text[i]`` is the text of ``applied[i]`` (empty when it has none).
        """
        if not len(records):  # most ticks: the general path's ~25 numpy calls cost ~0.1 ms
            self.applied = np.empty(0, dtype=APPLIED)
            self.applied_text = np.zeros(0, dtype=TEXT.fields["text"][0])
            return
        ids = self.pending["request_id"]
        pos = np.searchsorted(ids, records["request_id"])
        ok = (pos < len(ids)) & (
            ids[np.minimum(pos, max(len(ids) - 1, 0))] == records["request_id"]
        )
        if len(records) and (not len(ids) or not ok.all()):
            bad = records["request_id"][~ok][0] if len(ids) else records["request_id"][0]
            raise ValueError(f"decision result for unknown request id {int(bad)}")
        req = self.pending[pos]
        applied = np.empty(len(records), dtype=APPLIED)
        applied["request_id"] = records["request_id"]
        applied["kind"] = req["kind"]
        applied["actor"] = req["actor"]
        applied["choice"] = records["choice"]
        applied["source"] = records["source"]
        applied["option"] = req["options"][np.arange(len(req)), records["choice"].astype(np.int64)]
        self.applied = applied
        self.applied_text = np.zeros(len(records), dtype=TEXT.fields["text"][0])
        if len(texts):
            at = np.searchsorted(records["request_id"], texts["request_id"])
            at_c = np.minimum(at, max(len(records) - 1, 0))
            hit = (at < len(records)) & (records["request_id"][at_c] == texts["request_id"])
            self.applied_text[at[hit]] = texts["text"][hit]
        keep = np.ones(len(ids), dtype=bool)
        keep[pos] = False
        self.pending = self.pending[keep]
        src = records["source"]
        self.counters["resolved"] += int(np.count_nonzero(src == SOURCE_RESOLVER))
        self.counters["deadline"] += int(np.count_nonzero(src == SOURCE_DEADLINE))
        self.counters["invalid"] += int(np.count_nonzero(src == SOURCE_INVALID))
