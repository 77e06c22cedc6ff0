"""What the decision seam must journal beside each choice: tier, reason and free text.

``engine/decisions.py`` journals one ``RECORD`` (request id, choice, source) per applied
result. The LLM tier adds two side tables keyed by request id, kept here until the engine
journals them (the proposed extension is written up in docs/llm.md, "Journal"):

- ``NOTE`` rows: which tier served the result (cache, batch, single, or a fallback the
  resolver chose itself), the reason of a fallback (queue full, budget, provider failed,
  ...), the arm (champion or challenger) and flags (shared with an identical in-flight
  request, text refused by the guardrails).
- ``TEXT`` rows: the free text that goes with a choice (an NPC's spoken reply), at most
  ``text_bytes_max`` bytes of UTF-8, only when it passed the guardrails.

``DecisionNotes.take(records)`` returns, for the RECORD rows a tick applies, the NOTE and
TEXT rows of those that the resolver's result decided (``source == SOURCE_RESOLVER``),
dropping the others (a deadline or invalid fallback speaks the canned line). A replay
feeds the journaled TEXT rows to ``reply_texts`` and never asks a model.
"""

from __future__ import annotations

import threading

import numpy as np

# The engine's decision seam owns the journaled row types and the tier numbers.
from norn.engine.decisions import (
    NOTE,
    SOURCE_RESOLVER,
    TEXT,
    TIER_BATCH,
    TIER_CACHE,
    TIER_FALLBACK,
    TIER_NAMES,
    TIER_RULES,
    TIER_SINGLE,
)
from norn.llm import limits

__all__ = ["NOTE", "TEXT", "TIER_BATCH", "TIER_CACHE", "TIER_FALLBACK", "TIER_NAMES",
           "TIER_RULES", "TIER_SINGLE", "DecisionNotes", "encode_text", "reply_texts",
           "tier_counts"]

REASONS = (
    "",  # 0: none
    "queue_full", "expired", "budget_calls", "budget_tokens", "budget_cost", "rate_limited",
    "provider_failed", "breaker_open", "deadline", "invalid", "missing", "refused_text",
    "results_full", "disabled", "unparseable",
)
REASON = {name: i for i, name in enumerate(REASONS)}
FLAG_SHARED = 1  # answered with an identical request's in-flight answer
FLAG_TEXT_REFUSED = 2  # the choice stands; the text failed the guardrails (canned line)
FLAG_REASKED = 4  # a single call asked again once



def encode_text(text: str, bytes_max: int = limits.reply_text_bytes_max) -> bytes:
    """UTF-8, cut at a character boundary to ``bytes_max`` bytes."""
    raw = text.encode()
    if len(raw) <= bytes_max:
        return raw
    return raw[:bytes_max].decode("utf-8", "ignore").encode()


class DecisionNotes:
    """A bounded side table (request id -> note, text) between resolver and journal."""

    def __init__(self, notes_max: int = limits.notes_max) -> None:
        if not 1 <= notes_max <= limits.notes_max:
            raise ValueError(f"notes_max must be in 1..{limits.notes_max}")
        self.notes_max = notes_max
        self._lock = threading.Lock()
        self._notes: dict[int, tuple[int, int, int, int]] = {}
        self._texts: dict[int, bytes] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._notes)

    def add(self, request_id: int, tier: int, reason: int = 0, arm: int = 0, flags: int = 0,
            text: str | None = None) -> bool:
        with self._lock:
            if request_id not in self._notes and len(self._notes) >= self.notes_max:
                self.dropped += 1
                return False
            self._notes[request_id] = (tier, reason, arm, flags)
            if text:
                self._texts[request_id] = encode_text(text)
            return True

    def take(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """NOTE and TEXT rows for the RECORD rows applied now (resolver-decided ones)."""
        notes, texts = [], []
        with self._lock:
            for rid, src in zip(records["request_id"].tolist(), records["source"].tolist(),
                                strict=True):
                note = self._notes.pop(rid, None)
                text = self._texts.pop(rid, None)
                if note is None or src != SOURCE_RESOLVER:
                    continue
                notes.append((rid, *note))
                if text is not None:
                    texts.append((rid, text))
        return np.array(notes, NOTE), np.array(texts, TEXT)

    def forget(self, request_ids: np.ndarray) -> None:
        with self._lock:
            for rid in np.asarray(request_ids).tolist():
                self._notes.pop(rid, None)
                self._texts.pop(rid, None)


def reply_texts(request_ids: np.ndarray, texts: np.ndarray) -> list[bytes | None]:
    """For applied request ids, the journaled reply text or None (speak the canned line)."""
    by_id = {int(r): bytes(t) for r, t in zip(texts["request_id"], texts["text"], strict=True)}
    return [by_id.get(int(r)) for r in request_ids]


def tier_counts(notes: np.ndarray) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in notes["tier"].tolist():
        k = TIER_NAMES.get(t, str(t))
        out[k] = out.get(k, 0) + 1
    return out
