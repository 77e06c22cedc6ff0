"""Deployments: which variant serves a request, and the canary's automatic rollback.

``challenger_mask(seed, use_case, request_ids, share_permille)``: a request goes to the
challenger when ``splitmix(seed, use case, request id) mod 1000 < share``, a pure function,
never a random draw, so the split is reproducible and the same request always lands on
the same arm (also after a restart). Blue-green is the same with share 0 until the alias
flip; all-at-once serves the champion only.

``Baker`` keeps, per arm, the last ``bake_window`` outcomes of a canary (parse failure,
guardrail refusal, fallback, call latency, cost) and, once both arms have
``bake_min_samples``, compares them: the canary is rolled back when its parse-failure,
refusal or fallback rate exceeds the champion's by more than the allowed delta, or its
latency p95 or cost per request exceeds the allowed ratio. The verdict names the metric.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import xxhash

from norn.llm import limits
from norn.llm.settings import Deployment
from norn.llm.usecases import mix

CHAMPION, CHALLENGER = 0, 1


def challenger_mask(
    seed: int, use_case: str, request_ids: np.ndarray, share_permille: int
) -> np.ndarray:
    if not 0 <= share_permille <= 1000:
        raise ValueError("share_permille must be in 0..1000")
    ids = np.asarray(request_ids, np.int64)
    if share_permille == 0:
        return np.zeros(len(ids), bool)
    base = xxhash.xxh3_64_intdigest(f"{seed}\0{use_case}".encode())
    h = mix(np.full(len(ids), np.uint64(base), np.uint64), ids)
    return (h % np.uint64(1000)).astype(np.int64) < share_permille


@dataclass
class Outcome:
    parse_failure: bool
    refused: bool
    fallback: bool
    latency_s: float
    cost_usd: float


class Arm:
    def __init__(self, window: int) -> None:
        if not 1 <= window <= limits.bake_window_max:
            raise ValueError(f"bake window must be in 1..{limits.bake_window_max}")
        self.rows: deque[Outcome] = deque(maxlen=window)

    def __len__(self) -> int:
        return len(self.rows)

    def rate(self, attr: str) -> float:
        return sum(getattr(o, attr) for o in self.rows) / len(self.rows) if self.rows else 0.0

    def p95(self) -> float:
        lat = sorted(o.latency_s for o in self.rows)
        return lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else 0.0

    def cost(self) -> float:
        return sum(o.cost_usd for o in self.rows) / len(self.rows) if self.rows else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"samples": len(self), "parse_failure": round(self.rate("parse_failure"), 4),
                "refused": round(self.rate("refused"), 4),
                "fallback": round(self.rate("fallback"), 4),
                "latency_p95_s": round(self.p95(), 4), "cost_usd": round(self.cost(), 8)}


class Baker:
    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.arms = (Arm(dep.bake_window), Arm(dep.bake_window))

    def record(self, arm: int, outcome: Outcome) -> None:
        self.arms[arm].rows.append(outcome)

    def verdict(self) -> str | None:
        """None while baking or healthy; else why the canary must be rolled back."""
        champ, canary = self.arms
        d = self.dep
        if min(len(champ), len(canary)) < d.bake_min_samples:
            return None
        for attr, delta in (("parse_failure", d.max_parse_failure_delta),
                            ("refused", d.max_refusal_delta),
                            ("fallback", d.max_fallback_delta)):
            a, b = champ.rate(attr), canary.rate(attr)
            if b - a > delta:
                return f"{attr} {b:.3f} vs champion {a:.3f} (allowed +{delta:g})"
        pa, pb = champ.p95(), canary.p95()
        if pb > max(pa, 1e-3) * d.max_latency_p95_ratio:
            return (f"latency p95 {pb:.3f} s vs champion {pa:.3f} s "
                    f"(allowed x{d.max_latency_p95_ratio:g})")
        ca, cb = champ.cost(), canary.cost()
        if cb > 0 and cb > ca * d.max_cost_ratio:
            return f"cost {cb:.6f} vs champion {ca:.6f} USD/request (allowed x{d.max_cost_ratio:g})"
        return None

    def as_dict(self) -> dict[str, object]:
        return {"champion": self.arms[0].as_dict(), "challenger": self.arms[1].as_dict()}
