"""The embedded default provider: no model, no network, the same answer schema.

It reads the request views of the rendered prompt (``prompts.extract_requests``) and
answers every id: the option with the highest utility (ties to the first, exactly the
built-in ``DeterministicResolver``'s rule) and, for free text, a short in-character line
chosen by a hash of what the player said (a line the rules wrote for a label it has no
lines for, a quest offer, it says as given). Its answers go through the same parsing,
validation, guardrails, cache and journal as a real model's, so ``make run`` and the tests
exercise the whole tier everywhere. The fake server (``fake_server``) answers with it too.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import xxhash

from norn.llm.prompts import extract_requests
from norn.llm.providers import Call, Completion

LINES = {
    "greet": (
        "Well met, traveller. {place} is calm today.",
        "Ah, a new face in {place}. Welcome.",
        "Good day to you. Mind the roads outside {place}.",
    ),
    "trade": (
        "Looking to trade? I have fair prices, by the standards of {place}.",
        "Coin talks. Let us see what you carry.",
        "I buy and sell. Show me your goods.",
    ),
    "refuse": (
        "Not now, stranger. I have troubles of my own.",
        "Leave me be. These are dark days in {place}.",
        "I have nothing to say to you.",
    ),
    "quest": (
        "You look capable. There is work for you, if you want it.",
        "Help us and {place} will remember your name.",
        "Monsters prowl near {place}. Will you deal with them?",
    ),
}


def say_line(label: str, said: str, place: str) -> str:
    if label not in LINES and said:  # a line the rules wrote to be voiced (a quest offer)
        return said
    lines = LINES.get(label, LINES["greet"])
    pick = xxhash.xxh3_64_intdigest(said.encode()) % len(lines)
    return lines[pick].format(place=place.capitalize() if place else "this town")


def best_label(view: dict[str, Any]) -> str:
    opts = view.get("options") or [{"label": ""}]
    best, best_u = 0, float("-inf")
    for i, o in enumerate(opts):
        u = float(o.get("utility", 0.0))
        if u > best_u:
            best, best_u = i, u
    return str(opts[best].get("label", ""))


def deterministic_answer(views: list[dict[str, Any]], want_text: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in views:
        label = best_label(v)
        item: dict[str, Any] = {"choice": label}
        if want_text or "player_said" in v:
            item["say"] = say_line(label, str(v.get("player_said", "")), str(v.get("place", "")))
        out[str(v.get("id"))] = item
    return out


class OfflineProvider:
    """Provider kind ``offline``: answers at once, costs nothing, never fails."""

    kind = "offline"

    def __init__(self, name: str = "offline", model: str = "norn-offline-1") -> None:
        self.name = name
        self.model = model

    async def complete(self, call: Call) -> Completion:
        t0 = time.perf_counter()
        views = extract_requests(call.messages)
        want_text = bool(call.schema) and any(
            "say" in (p.get("properties") or {})
            for p in (call.schema.get("properties") or {}).values()
            if isinstance(p, dict)
        )
        content = orjson.dumps(deterministic_answer(views, want_text)).decode()
        chars = sum(len(m["content"]) for m in call.messages)
        return Completion(content=content, tokens_in=chars // 4, tokens_out=len(content) // 4,
                          model=self.model, latency_s=time.perf_counter() - t0)

    async def aclose(self) -> None:
        return None
