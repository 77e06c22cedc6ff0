"""Prompts and answers: one format for batches and single calls, validated item by item.

A call carries one or more requests of one use case. The user message lists them as one
JSON line after ``REQUESTS:`` (id, option labels with their utilities, named facts and,
for talk, what the player said, where and the item at hand); the answer is one JSON object
with **one required key per request id**, each holding ``{"choice": label}`` (and
``"say": text`` for free text). Backends that enforce a JSON schema get it as
``response_format``/a tool schema; the others get it in the prompt after ``SCHEMA:``.

``validate`` checks each item on its own: missing, not an object, a label outside the
request's options (invalid: never guessed), and free text through the guardrails (refused
text keeps its valid choice; the canned line is spoken). Nothing here raises on model
output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from norn.llm import limits
from norn.llm.guardrails import Guardrails
from norn.llm.usecases import UseCase

REQUESTS_MARK = "REQUESTS:"
SCHEMA_MARK = "SCHEMA:"
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)

# item outcomes
OK, MISSING, INVALID, REFUSED = "ok", "missing", "invalid", "refused"


@dataclass
class Work:
    """One request on its way through the tiers (the worker's own record)."""

    req: np.void
    uc: UseCase
    said: str = ""
    where: str = ""
    item: str = ""
    bucket: int = 0
    exact: int = 0
    feats: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    tick: int = 0  # the tick it was submitted in
    arm: int = 0  # 0 champion, 1 challenger
    followers: list[Work] = field(default_factory=list)  # identical requests sharing it

    @property
    def rid(self) -> int:
        return int(self.req["request_id"])

    @property
    def labels(self) -> list[str]:
        return self.uc.labels_of(self.req)

    @property
    def fallback(self) -> int:
        return int(self.req["fallback"])


@dataclass
class ItemAnswer:
    status: str
    choice: int = -1
    text: str = ""
    reason: str = ""


def item_view(w: Work) -> dict[str, Any]:
    r = w.req
    n = int(r["n_options"])
    ctx = r["context"]
    view: dict[str, Any] = {
        "id": str(w.rid),
        "options": [{"label": lab, "utility": round(float(ctx[i]), 3)}
                    for i, lab in enumerate(w.labels[:n])],
    }
    if w.uc.facts:
        view["facts"] = {name: round(float(ctx[i]), 3) for i, name in w.uc.facts}
    if w.uc.text:
        view["player_said"] = w.said
        view["place"] = w.where
        if w.item:
            view["item"] = w.item
    return view


def item_schema(w: Work) -> dict[str, Any]:
    props: dict[str, Any] = {"choice": {"type": "string", "enum": w.labels}}
    if w.uc.text:
        props["say"] = {"type": "string", "maxLength": w.uc.text_bytes_max}
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


def answer_schema(items: list[Work]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {str(w.rid): item_schema(w) for w in items},
        "required": [str(w.rid) for w in items],
        "additionalProperties": False,
    }


def render(
    uc: UseCase, items: list[Work], schema_in_prompt: bool, reask: str | None = None
) -> list[dict[str, str]]:
    """Chat messages for one call (system, user). Bounded by ``prompt_chars_max``."""
    views = orjson.dumps([item_view(w) for w in items]).decode()
    keys = ", ".join(f'"{w.rid}"' for w in items)
    shape = '{"choice": <one of its option labels>' + (', "say": <what the NPC says>}'
                                                         if uc.text else "}")
    user = (
        f"Answer every request below. Reply with one JSON object whose keys are exactly the "
        f"request ids ({keys}); each value is {shape}.\n{REQUESTS_MARK}\n{views}\n"
    )
    if schema_in_prompt:
        user += f"{SCHEMA_MARK}\n{orjson.dumps(answer_schema(items)).decode()}\n"
    if reask:
        user += f"Your previous answer was rejected ({reask}). Answer again, exactly as asked.\n"
    msgs = [{"role": "system", "content": uc.instructions}, {"role": "user", "content": user}]
    size = sum(len(m["content"]) for m in msgs)
    if size > limits.prompt_chars_max:
        raise ValueError(f"prompt of {size} chars > prompt_chars_max={limits.prompt_chars_max}")
    return msgs


def estimate_tokens(uc: UseCase, n_items: int) -> int:
    """A coarse token estimate of one call (instructions plus items), for caps and budgets."""
    return 60 + len(uc.instructions) // 4 + n_items * uc.tokens_per_item


def parse(content: str) -> dict[str, Any] | None:
    """The JSON object of an answer (code fences tolerated), or None."""
    if not content or not content.strip():
        return None
    text = _FENCE.sub("", content.strip())
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        lo, hi = text.find("{"), text.rfind("}")
        if lo < 0 or hi <= lo:
            return None
        try:
            obj = orjson.loads(text[lo : hi + 1])
        except orjson.JSONDecodeError:
            return None
    return obj if isinstance(obj, dict) else None


def validate(items: list[Work], obj: dict[str, Any] | None, guard: Guardrails) -> list[ItemAnswer]:
    out = []
    for w in items:
        if obj is None:
            out.append(ItemAnswer(INVALID, reason="unparseable"))
            continue
        a = obj.get(str(w.rid))
        if a is None:
            out.append(ItemAnswer(MISSING, reason="missing_id"))
            continue
        if isinstance(a, str):  # a bare label is accepted as the choice
            a = {"choice": a}
        if not isinstance(a, dict):
            out.append(ItemAnswer(INVALID, reason="not_an_object"))
            continue
        choice = guard.choice(a.get("choice"), w.labels)
        if choice is None:
            out.append(ItemAnswer(INVALID, reason="not_an_option"))
            continue
        if not w.uc.text:
            out.append(ItemAnswer(OK, choice))
            continue
        v = guard.text(a.get("say"))
        if v.ok:
            out.append(ItemAnswer(OK, choice, v.text))
        else:
            out.append(ItemAnswer(REFUSED, choice, reason=v.reason))
    return out


def extract_requests(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request views of a rendered prompt (what the offline provider and fake read)."""
    for m in reversed(messages):
        content = m.get("content")
        if isinstance(content, list):  # Anthropic content blocks
            content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
        if not isinstance(content, str) or REQUESTS_MARK not in content:
            continue
        line = content.split(REQUESTS_MARK, 1)[1].lstrip("\n").split("\n", 1)[0]
        try:
            views = orjson.loads(line)
        except orjson.JSONDecodeError:
            return []
        return views if isinstance(views, list) else []
    return []

