"""Guardrails: membership, clamps, length, a lexicon on word boundaries, lore."""

from __future__ import annotations

import pytest

from norn.llm import limits
from norn.llm.guardrails import (
    FORBIDDEN,
    TOO_LONG,
    UNKNOWN_ITEM,
    UNKNOWN_MAP,
    Guardrails,
    load_lexicon,
)

G = Guardrails(known_maps=("prontera", "prt_fild08"), known_items=("Red Potion",))


@pytest.mark.parametrize("text", [
    "The orcs burned the village.",
    "Kill the wolves near Prontera and bring me their pelts.",
    "Blood was spilled at prt_fild08 last night.",
    "Take this [Red Potion], you will need it.",
    "I promptly answered the king's summons.",  # 'prompt' is banned; 'promptly' is a word
    "She is a classic beauty of Geffen.",
])
def test_ordinary_fantasy_text_passes(text):
    v = G.text(text)
    assert v.ok, v
    assert v.text == text


@pytest.mark.parametrize("text,word", [
    ("As an AI language model, I cannot.", "as an ai"),
    ("Read the system   prompt again.", "system prompt"),
    ("Visit www dot something.", "www"),
])
def test_the_lexicon_matches_whole_words_and_phrases(text, word):
    v = G.text(text)
    assert not v.ok and v.reason == FORBIDDEN and v.detail.lower() == word


def test_lore_unknown_maps_and_items_are_refused():
    assert G.text("Go to xyz_fild99 at once.").reason == UNKNOWN_MAP
    assert G.text("Bring me a [Golden Banana].").reason == UNKNOWN_ITEM


def test_length_at_the_bound_and_one_past():
    n = limits.reply_text_bytes_max
    assert G.text("a" * n).ok
    assert G.text("a" * (n + 1)).reason == TOO_LONG
    assert G.text("é" * (n // 2)).ok  # bytes, not characters
    assert G.text("é" * (n // 2 + 1)).reason == TOO_LONG


def test_empty_and_non_text_are_refused_and_text_becomes_one_line():
    assert not G.text("").ok and not G.text("   ").ok and not G.text(None).ok
    assert G.text("Hello\n  there").text == "Hello there"
    assert not G.text("bell\x07").ok


def test_option_membership_never_guesses():
    labels = ["greet", "trade", "refuse"]
    assert G.choice("trade", labels) == 1
    assert G.choice(" Trade ", labels) == 1
    assert G.choice("quest", labels) is None
    assert G.choice(2, labels) is None


def test_numeric_clamps():
    assert G.clamp(5, 0, 1) == 1.0
    assert G.clamp(-3.5, -1, 1) == -1.0
    assert G.clamp(0.25, 0, 1) == 0.25
    assert G.clamp(float("nan"), 0, 1) is None
    assert G.clamp("3", 0, 1) is None
    assert G.clamp(True, 0, 1) is None


def test_lexicon_and_lore_bounds_at_the_bound_and_one_past():
    Guardrails(lexicon=tuple(f"w{i}" for i in range(limits.lexicon_terms_max)))
    with pytest.raises(ValueError, match="lexicon_terms_max"):
        Guardrails(lexicon=tuple(f"w{i}" for i in range(limits.lexicon_terms_max + 1)))
    Guardrails(lexicon=(), known_maps=tuple(f"m{i}" for i in range(limits.lore_names_max)))
    with pytest.raises(ValueError, match="lore_names_max"):
        Guardrails(lexicon=(), known_maps=tuple(f"m{i}" for i in range(limits.lore_names_max + 1)))
    assert "burn" not in load_lexicon() and "kill" not in load_lexicon()
