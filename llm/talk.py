"""Free text for NPC talk: the functions the NPC plugin calls (wiring in docs/llm.md).

- ``said_texts(world, request_ids, event_text, npc_maps)``: in ingest, right after the talk
  system files its requests, hand what each player said (the ``npc_talk`` event's bytes)
  and where to the resolver, if it is an ``LlmResolver`` (a no-op for the built-in one).
- ``spoken_lines(request_ids, options, canned, texts)``: in apply, the line each NPC says:
  the journaled reply text of its request when there is one (it passed the guardrails),
  else the canned line of the chosen answer, exactly as today. Bytes, bounded to the
  ``npc_say`` action's ``text`` column.
"""

from __future__ import annotations

import numpy as np

from norn.engine.events import TEXT_DTYPE
from norn.llm.notes import reply_texts


def said_texts(world, request_ids: np.ndarray, event_text: np.ndarray,
               npc_maps: list[str] | None = None) -> None:
    submit_texts = getattr(world.resolver, "submit_texts", None)
    if submit_texts is not None and len(request_ids):
        submit_texts(request_ids, list(event_text), npc_maps)


def spoken_lines(request_ids: np.ndarray, canned: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """``canned``: the canned line already chosen per request (the fallback); ``texts``:
    the tick's journaled TEXT rows (``notes.TEXT``)."""
    out = np.asarray(canned, dtype=TEXT_DTYPE).copy()
    if len(texts):
        for i, t in enumerate(reply_texts(request_ids, texts)):
            if t:
                out[i] = t
    return out
