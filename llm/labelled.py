"""The generator of ``cache_labelled.json``, the cache's labelled set (kept for review).

``python -m norn.llm.labelled > llm/cache_labelled.json`` rewrites it. Each case is a pair
of requests (a, b) of one use case with what the cache must do when ``a`` is cached and
``b`` is looked up: ``hit`` for paraphrases (the same situation up to small numeric noise,
or the same words said with other case, spacing or end punctuation; and, as an honest
limit, other *words* meaning the same, which an exact-words bucket cannot match), ``miss``
for opposites (utilities' preference reversed, mood or reputation of the other sign),
another item, another map, another current state and big magnitude changes (two typical
spreads or more on one field). Halves: ``calibrate`` (thresholds) and ``holdout`` (report).
"""

from __future__ import annotations

import json
import sys

import numpy as np

SEED = 20240612

TALK_WORDS = (
    ("Hello there!", "hello there", "Greetings, friend."),
    ("Do you sell potions?", "do you sell potions", "Got any potions for sale?"),
    ("Any work for me?", "any work for me", "Do you have a job for me?"),
    ("What news from the north?", "What news from the north", "Heard anything from up north?"),
)
PLACES = ("prontera", "geffen", "payon", "morocc")
ITEMS = ("Red Potion", "Fly Wing", "Apple", "Iron Ore")


def _jitter(rng: np.random.Generator, ctx: list[float], idx: range, amp: float) -> list[float]:
    out = list(ctx)
    for i in idx:
        out[i] = round(out[i] + float(rng.uniform(-amp, amp)), 4)
    return out


def _behaviour(rng: np.random.Generator, k: int) -> list[dict]:
    opts = [[0, 1], [3, 5], [4, 2], [1, 3]][k % 4]
    u0 = round(float(rng.uniform(0.3, 0.7)), 4)
    ctx = [u0, round(u0 - float(rng.uniform(0.02, 0.05)), 4)]
    ctx += [round(float(v), 4) for v in rng.uniform(0.1, 0.9, 4)]  # needs
    ctx += [round(float(rng.uniform(0.0, 0.3)), 4), round(float(rng.uniform(0.0, 0.3)), 4)]
    ctx += [round(float(rng.uniform(0.1, 0.6)) * (1 if k % 2 else -1), 4)]  # mood
    ctx += [round(float(rng.uniform(0.5, 1.0)), 4), round(float(rng.uniform(0.1, 0.9)), 4)]
    ctx += [float(opts[0])]  # current state
    a = {"options": opts, "context": ctx}
    para = _jitter(rng, ctx, range(0, 11), 0.035)
    para[1] = round(min(para[1], para[0] - 0.005), 4)  # keep the preference
    para[8] = ctx[8] if np.sign(para[8]) != np.sign(ctx[8]) else para[8]
    rev = list(ctx)
    rev[0], rev[1] = ctx[1], ctx[0]
    moodflip = list(ctx)
    moodflip[8] = -ctx[8]
    big = list(ctx)
    f = 2 + k % 9
    big[f] = round(big[f] + (0.6 if big[f] < 0.4 else -0.6), 4) if f != 8 else big[f] * 2.5
    state = list(ctx)
    state[11] = float(opts[1])
    return [
        {"why": "paraphrase", "expect": "hit", "a": a, "b": {"options": opts, "context": para}},
        {"why": "opposite_polarity", "expect": "miss", "a": a,
         "b": {"options": opts, "context": rev}},
        {"why": "opposite_polarity", "expect": "miss", "a": a,
         "b": {"options": opts, "context": moodflip}},
        {"why": "magnitude", "expect": "miss", "a": a, "b": {"options": opts, "context": big}},
        {"why": "other_state", "expect": "miss", "a": a,
         "b": {"options": opts, "context": state}},
    ]


def _talk(rng: np.random.Generator, k: int) -> list[dict]:
    n = 4 if k % 3 else 3
    opts = list(range(n))
    u = [round(float(v), 4) for v in rng.uniform(0.2, 0.8, 4)]
    mood = round(float(rng.uniform(0.1, 0.6)) * (1 if k % 2 else -1), 4)
    rep = round(float(rng.uniform(0.05, 0.5)) * (1 if k % 4 < 2 else -1), 4)
    ctx = [*u, mood, rep, round(float(rng.uniform(0.0, 0.3)), 4), float(k % 2)]
    said, surface, other_words = TALK_WORDS[k % len(TALK_WORDS)]
    where, item = PLACES[k % len(PLACES)], ITEMS[k % len(ITEMS)]
    a = {"options": opts, "context": ctx, "said": said, "where": where, "item": item}

    def b(**kw):
        return {**a, **kw}

    para = _jitter(rng, ctx, range(0, 7), 0.035)
    order = np.argsort(-np.asarray(ctx[:n]), kind="stable")
    if not np.array_equal(np.argsort(-np.asarray(para[:n]), kind="stable"), order):
        para[:4] = ctx[:4]
    for i in (4, 5):
        if np.sign(para[i]) != np.sign(ctx[i]):
            para[i] = ctx[i]
    best = int(order[0])
    second = int(order[1])
    rev = list(ctx)
    rev[best], rev[second] = ctx[second], ctx[best]
    if rev[best] == rev[second]:
        rev[second] += 0.01
    moodflip = list(ctx)
    moodflip[4] = -ctx[4]
    repflip = list(ctx)
    repflip[5] = -ctx[5]
    big = list(ctx)
    big[6] = round(big[6] + 0.6, 4)
    return [
        {"why": "paraphrase", "expect": "hit", "a": a, "b": b(context=para, said=surface)},
        {"why": "paraphrase_words", "expect": "hit", "a": a, "b": b(said=other_words)},
        {"why": "opposite_polarity", "expect": "miss", "a": a, "b": b(context=rev)},
        {"why": "opposite_polarity", "expect": "miss", "a": a, "b": b(context=moodflip)},
        {"why": "opposite_polarity", "expect": "miss", "a": a, "b": b(context=repflip)},
        {"why": "other_item", "expect": "miss", "a": a,
         "b": b(item=ITEMS[(k + 1) % len(ITEMS)])},
        {"why": "other_map", "expect": "miss", "a": a,
         "b": b(where=PLACES[(k + 1) % len(PLACES)])},
        {"why": "magnitude", "expect": "miss", "a": a, "b": b(context=big)},
    ]


def _toy(rng: np.random.Generator, k: int) -> list[dict]:
    go = round(float(rng.uniform(0.3, 0.7)), 4)
    ctx = [go, round(go - float(rng.uniform(0.02, 0.05)), 4)]
    if k % 2:
        ctx = [ctx[1], ctx[0]]
    a = {"options": [0, 1], "context": ctx}
    para = _jitter(rng, ctx, range(2), 0.035)
    if np.sign(para[0] - para[1]) != np.sign(ctx[0] - ctx[1]):
        para = list(ctx)
    big = [min(ctx[0] + 0.6, 1.5), min(ctx[1] + 0.6, 1.5)]
    return [
        {"why": "paraphrase", "expect": "hit", "a": a, "b": {"options": [0, 1], "context": para}},
        {"why": "opposite_polarity", "expect": "miss", "a": a,
         "b": {"options": [0, 1], "context": [ctx[1], ctx[0]]}},
        {"why": "magnitude", "expect": "miss", "a": a, "b": {"options": [0, 1], "context": big}},
    ]


def build() -> dict:
    rng = np.random.default_rng(SEED)
    cases = []
    for name, make, n in (("npc_behaviour", _behaviour, 24), ("npc_talk", _talk, 24),
                          ("toy_rest", _toy, 24)):
        for k in range(n):
            for c in make(rng, k):
                cases.append({"use_case": name, "split": "calibrate" if k % 2 else "holdout",
                              **c})
    return {"about": __doc__.strip().splitlines()[0], "seed": SEED, "cases": cases}


if __name__ == "__main__":
    json.dump(build(), sys.stdout, indent=None, separators=(",", ":"))
    sys.stdout.write("\n")
