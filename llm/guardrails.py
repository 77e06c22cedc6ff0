"""Guardrails: local, deterministic validators applied to every model answer.

In order: option membership (a label not among the request's options is invalid, never
guessed), numeric clamps (a number is brought into its rule's bounds), and for free text:
length (bytes of UTF-8, the bound of the game's chat), one line of printable text, a
forbidden lexicon matched on **word boundaries** (so ordinary fantasy text such as "the
orcs burned the village" passes, and a banned word inside a longer word does not trip),
and lore constraints: a map-id-shaped word (``prt_fild08``) or a bracketed item link
(``[Red Potion]``) must name a known map or item. A failed text is *refrained*: the
caller keeps the valid choice and speaks the canned line instead; single calls may ask
the model again once, with the reason.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from norn.llm import limits

LEXICON_PATH = Path(__file__).with_name("guardrail_lexicon.json")
_MAP_ID = re.compile(r"\b[a-z]{2,}_[a-z0-9_]*\d[a-z0-9_]*\b")
_ITEM_LINK = re.compile(r"\[([^\[\]]{1,64})\]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# refusal reasons (stable strings: they go to the inference log and the notes)
OK = "ok"
EMPTY = "empty"
TOO_LONG = "too_long"
CONTROL = "control_characters"
FORBIDDEN = "forbidden_word"
UNKNOWN_MAP = "unknown_map"
UNKNOWN_ITEM = "unknown_item"
NOT_AN_OPTION = "not_an_option"
NOT_A_NUMBER = "not_a_number"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    text: str = ""
    detail: str = ""


def load_lexicon(path: Path | None = None) -> tuple[str, ...]:
    terms = json.loads(Path(path or LEXICON_PATH).read_text())["terms"]
    return tuple(terms)


class Guardrails:
    def __init__(
        self,
        lexicon: tuple[str, ...] | None = None,
        known_maps: tuple[str, ...] = (),
        known_items: tuple[str, ...] = (),
        text_bytes_max: int = limits.reply_text_bytes_max,
    ) -> None:
        lexicon = load_lexicon() if lexicon is None else lexicon
        if len(lexicon) > limits.lexicon_terms_max:
            raise ValueError(f"{len(lexicon)} terms > lexicon_terms_max={limits.lexicon_terms_max}")
        if len(known_maps) + len(known_items) > limits.lore_names_max:
            raise ValueError(f"more than lore_names_max={limits.lore_names_max} known names")
        if not 1 <= text_bytes_max <= limits.reply_text_bytes_max:
            raise ValueError(f"text_bytes_max must be in 1..{limits.reply_text_bytes_max}")
        self.text_bytes_max = text_bytes_max
        self.known_maps = {m.lower() for m in known_maps}
        self.known_items = {i.lower() for i in known_items}
        terms = sorted({t.strip().lower() for t in lexicon if t.strip()}, key=len, reverse=True)
        # \b on both ends: whole words and phrases only; inner spaces match any spacing
        alts = "|".join(r"\s+".join(map(re.escape, t.split())) for t in terms)
        self._forbidden = re.compile(rf"\b(?:{alts})\b", re.IGNORECASE) if alts else None

    # -- choices and numbers ---------------------------------------------------------------
    @staticmethod
    def choice(label: object, labels: list[str]) -> int | None:
        """The index of ``label`` among ``labels``; None when it is not one of them."""
        if not isinstance(label, str):
            return None
        try:
            return labels.index(label.strip().lower())
        except ValueError:
            return None

    @staticmethod
    def clamp(value: object, lo: float, hi: float) -> float | None:
        """A finite number brought into [lo, hi]; None when it is not a number at all."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        v = float(value)
        if not math.isfinite(v):
            return None
        return min(max(v, lo), hi)

    # -- free text ---------------------------------------------------------------------------
    def text(self, raw: object) -> Verdict:
        if not isinstance(raw, str):
            return Verdict(False, EMPTY)
        text = " ".join(raw.split())  # one line, single spaces
        if not text:
            return Verdict(False, EMPTY)
        if _CONTROL.search(raw.replace("\n", " ").replace("\t", " ")):
            return Verdict(False, CONTROL)
        if len(text.encode()) > self.text_bytes_max:
            return Verdict(False, TOO_LONG, detail=f"{len(text.encode())} bytes")
        if self._forbidden is not None:
            m = self._forbidden.search(text)
            if m:
                return Verdict(False, FORBIDDEN, detail=m.group(0))
        for m in _MAP_ID.finditer(text.lower()):
            if m.group(0) not in self.known_maps:
                return Verdict(False, UNKNOWN_MAP, detail=m.group(0))
        for m in _ITEM_LINK.finditer(text):
            if m.group(1).strip().lower() not in self.known_items:
                return Verdict(False, UNKNOWN_ITEM, detail=m.group(1))
        return Verdict(True, OK, text)
