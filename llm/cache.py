"""Tier 2: the decision cache. An exact key, then a near neighbour inside the exact bucket.

Entries live in fixed arrays of ``entries_max`` rows (bucket, exact key, standardised
features, answer, a logical stamp). A lookup of a batch is:

1. exact: the request's exact key (use case, prompt version, options, categorical fields,
   signs, polarity, binned numbers; see ``usecases``) names one entry or none;
2. near: among the entries of the request's *bucket* only (everything categorical equal),
   the one at the smallest Chebyshev distance of the standardised features, if that
   distance is within the use case's calibrated ``threshold``. The distances of all the
   batch's requests in one bucket to all its entries are one array expression.

Bounds: ``entries_max`` entries in all and ``bucket_entries_max`` per bucket (so a lookup
never scans more than that many rows). Eviction is deterministic: the entries with the
smallest stamps go first (least recently used; the stamp is a counter of cache
operations, never a clock), so the same sequence of operations always leaves the same
cache. The cache is not world state: what it answers is journaled like any result.

``calibrate`` picks each use case's threshold on the *calibrate* half of the shipped
labelled set (``cache_labelled.json``: paraphrases that should hit; opposite polarity,
other item, other map, big magnitude changes that must miss): the largest radius that
merges no pair labelled "miss". ``evaluate`` reports hits and false hits on the held-out
half with the real lookup code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from norn.engine.decisions import CONTEXT, OPTIONS, REQUEST
from norn.llm import limits
from norn.llm.usecases import BUILTIN, UseCase

LABELLED_PATH = Path(__file__).with_name("cache_labelled.json")
THRESHOLD_MAX = 1.0  # never merge further than one typical spread, whatever the data says
MISS, EXACT, NEAR = 0, 1, 2


@dataclass
class CacheStats:
    lookups: int = 0
    exact: int = 0
    near: int = 0
    inserts: int = 0
    evictions: int = 0
    by_use_case: dict[str, list[int]] = field(default_factory=dict)  # [lookups, exact, near]

    def as_dict(self) -> dict[str, Any]:
        hits = self.exact + self.near
        return {
            "lookups": self.lookups, "exact": self.exact, "near": self.near,
            "hit_rate": round(hits / self.lookups, 4) if self.lookups else None,
            "inserts": self.inserts, "evictions": self.evictions,
            "by_use_case": {k: {"lookups": v[0], "exact": v[1], "near": v[2]}
                            for k, v in sorted(self.by_use_case.items())},
        }


class DecisionCache:
    def __init__(self, entries_max: int = 1 << 16, bucket_entries_max: int | None = None) -> None:
        if not 1 <= entries_max <= limits.cache_entries_max:
            raise ValueError(f"entries_max must be in 1..{limits.cache_entries_max}")
        if bucket_entries_max is None:
            bucket_entries_max = min(4096, entries_max)
        if not 1 <= bucket_entries_max <= entries_max:
            raise ValueError("bucket_entries_max must be in 1..entries_max")
        self.entries_max = entries_max
        self.bucket_entries_max = bucket_entries_max
        F = limits.cache_features_max
        self.bucket = np.zeros(entries_max, np.uint64)
        self.exact = np.zeros(entries_max, np.uint64)
        self.feats = np.zeros((entries_max, F), np.float32)
        self.choice = np.zeros(entries_max, np.int16)
        self.stamp = np.full(entries_max, np.iinfo(np.int64).max, np.int64)  # free: never min
        self.live = np.zeros(entries_max, bool)
        self.texts: list[str] = [""] * entries_max
        self._by_exact: dict[int, int] = {}
        self._by_bucket: dict[int, list[int]] = {}
        self._free = list(range(entries_max - 1, -1, -1))  # pop() gives the lowest slot
        self._clock = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return self.entries_max - len(self._free)

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    # -- lookup ---------------------------------------------------------------------------
    def lookup(
        self, uc: UseCase, bucket: np.ndarray, exact: np.ndarray, feats: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each request: (slot or -1, MISS/EXACT/NEAR). Hits refresh their stamps."""
        n = len(bucket)
        slots = np.full(n, -1, np.int64)
        how = np.zeros(n, np.uint8)
        for i in range(n):
            s = self._by_exact.get(int(exact[i]))
            if s is not None:
                slots[i], how[i] = s, EXACT
        if uc.threshold > 0:
            todo = np.flatnonzero(slots < 0)
            if len(todo):
                order = np.argsort(bucket[todo], kind="stable")
                todo = todo[order]
                ub, start = np.unique(bucket[todo], return_index=True)
                ends = np.append(start[1:], len(todo))
                k = feats.shape[1]
                for b, lo, hi in zip(ub, start, ends, strict=True):
                    cand = self._by_bucket.get(int(b))
                    if not cand:
                        continue
                    cand_a = np.asarray(cand, np.int64)
                    q = todo[lo:hi]
                    d = np.abs(feats[q][:, None, :k] - self.feats[cand_a][None, :, :k])
                    dist = d.max(axis=2) if k else np.zeros((len(q), len(cand_a)), np.float32)
                    best = np.argmin(dist, axis=1)  # first minimum: lowest position in bucket
                    ok = dist[np.arange(len(q)), best] <= uc.threshold
                    slots[q[ok]] = cand_a[best[ok]]
                    how[q[ok]] = NEAR
        hit = slots >= 0
        for s in slots[hit]:
            self.stamp[s] = self._tick()
        st = self.stats
        st.lookups += n
        ne, nn = int(np.count_nonzero(how == EXACT)), int(np.count_nonzero(how == NEAR))
        st.exact += ne
        st.near += nn
        u = st.by_use_case.setdefault(uc.name, [0, 0, 0])
        u[0] += n
        u[1] += ne
        u[2] += nn
        return slots, how

    # -- insert ---------------------------------------------------------------------------
    def insert(
        self,
        bucket: np.ndarray,
        exact: np.ndarray,
        feats: np.ndarray,
        choice: np.ndarray,
        texts: list[str] | None = None,
    ) -> None:
        """Store answers; an existing exact key is overwritten. Evicts the stalest first."""
        k = feats.shape[1]
        if k > limits.cache_features_max:
            raise ValueError(f"{k} features > cache_features_max={limits.cache_features_max}")
        for i in range(len(bucket)):
            e, b = int(exact[i]), int(bucket[i])
            s = self._by_exact.get(e)
            if s is None:
                members = self._by_bucket.get(b)
                if members is not None and len(members) >= self.bucket_entries_max:
                    self._evict(min(members, key=lambda m: self.stamp[m]))
                if not self._free:
                    self._evict(int(np.argmin(self.stamp)))
                s = self._free.pop()
                self._by_exact[e] = s
                self._by_bucket.setdefault(b, []).append(s)
                self.bucket[s], self.exact[s], self.live[s] = b, e, True
            self.feats[s, :k] = feats[i]
            self.feats[s, k:] = 0
            self.choice[s] = int(choice[i])
            self.texts[s] = texts[i] if texts is not None else ""
            self.stamp[s] = self._tick()
            self.stats.inserts += 1

    def _evict(self, s: int) -> None:
        b, e = int(self.bucket[s]), int(self.exact[s])
        del self._by_exact[e]
        members = self._by_bucket[b]
        members.remove(s)
        if not members:
            del self._by_bucket[b]
        self.live[s] = False
        self.stamp[s] = np.iinfo(np.int64).max
        self.texts[s] = ""
        self._free.append(s)
        self._free.sort(reverse=True)  # the lowest free slot is reused first
        self.stats.evictions += 1

    def entries(self) -> list[tuple[int, int, int, str]]:
        """(slot, exact key, choice, text) of every live entry, by slot (for tests)."""
        return [(int(s), int(self.exact[s]), int(self.choice[s]), self.texts[s])
                for s in np.flatnonzero(self.live)]


# -- the labelled set -------------------------------------------------------------------------
def side_request(uc: UseCase, side: dict[str, Any]) -> np.ndarray:
    """One REQUEST row from a labelled case's side (options, context)."""
    r = np.zeros(1, REQUEST)
    opts = side["options"]
    r["kind"] = uc.kind
    r["n_options"] = len(opts)
    r["options"][0, : len(opts)] = opts
    ctx = side["context"]
    if len(ctx) > CONTEXT or len(opts) > OPTIONS:
        raise ValueError("labelled case wider than a decision request")
    r["context"][0, : len(ctx)] = ctx
    return r


def _words(side: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(side.get("said", ""), side.get("where", ""), side.get("item", ""))]


@lru_cache(maxsize=4)
def load_labelled(path: str | None = None) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(Path(path or LABELLED_PATH).read_text())["cases"])


def _distance(uc: UseCase, case: dict[str, Any]) -> float:
    ba, _, fa = uc.keys(side_request(uc, case["a"]), _words(case["a"]))
    bb, _, fb = uc.keys(side_request(uc, case["b"]), _words(case["b"]))
    if ba[0] != bb[0]:
        return float("inf")
    return float(np.abs(fa[0] - fb[0]).max()) if fa.shape[1] else 0.0


def calibrate(
    cases: tuple[dict[str, Any], ...] | None = None, use_cases: tuple[UseCase, ...] = BUILTIN
) -> dict[str, float]:
    """Per use case: the largest radius merging no "miss" pair of the calibrate split."""
    cases = cases if cases is not None else load_labelled()
    out = {}
    for uc in use_cases:
        mine = [c for c in cases if c["use_case"] == uc.name and c["split"] == "calibrate"]
        neg = [_distance(uc, c) for c in mine if c["expect"] == "miss"]
        pos = [_distance(uc, c) for c in mine if c["expect"] == "hit"]
        wall = min([d for d in neg if np.isfinite(d)], default=float("inf"))
        fits = [d for d in pos if d < wall and np.isfinite(d)]
        t = max(fits, default=0.0)
        if np.isfinite(wall):
            t = min(t, np.nextafter(np.float32(wall), np.float32(0)))
        out[uc.name] = float(min(t, THRESHOLD_MAX))
    return out


@lru_cache(maxsize=1)
def calibrated_use_cases() -> tuple[UseCase, ...]:
    """The built-in use cases with their thresholds calibrated on the shipped set."""
    th = calibrate()
    return tuple(uc.with_threshold(th.get(uc.name, 0.0)) for uc in BUILTIN)


def evaluate(
    cases: tuple[dict[str, Any], ...] | None = None,
    use_cases: tuple[UseCase, ...] | None = None,
    split: str = "holdout",
) -> dict[str, dict[str, Any]]:
    """Hits and false hits of the real cache on one split, per use case and reason."""
    cases = cases if cases is not None else load_labelled()
    use_cases = use_cases if use_cases is not None else calibrated_use_cases()
    report: dict[str, dict[str, Any]] = {}
    for uc in use_cases:
        mine = [c for c in cases if c["use_case"] == uc.name and c["split"] == split]
        if not mine:
            continue
        r = {"threshold": round(uc.threshold, 4), "should_hit": 0, "hits": 0,
             "should_miss": 0, "false_hits": 0, "by_why": {}}
        for c in mine:
            cache = DecisionCache(entries_max=4, bucket_entries_max=4)
            b, e, f = uc.keys(side_request(uc, c["a"]), _words(c["a"]))
            cache.insert(b, e, f, np.zeros(1, np.int16))
            b2, e2, f2 = uc.keys(side_request(uc, c["b"]), _words(c["b"]))
            slot, _ = cache.lookup(uc, b2, e2, f2)
            hit = bool(slot[0] >= 0)
            w = r["by_why"].setdefault(c["why"], {"cases": 0, "hits": 0, "expect": c["expect"]})
            w["cases"] += 1
            w["hits"] += hit
            if c["expect"] == "hit":
                r["should_hit"] += 1
                r["hits"] += hit
            else:
                r["should_miss"] += 1
                r["false_hits"] += hit
        report[uc.name] = r
    return report
