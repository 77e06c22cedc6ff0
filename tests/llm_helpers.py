"""Shared helpers for the LLM tier's tests: requests, a fake server, a resolver on it."""

from __future__ import annotations

import numpy as np

from norn.engine.decisions import REQUEST
from norn.llm.settings import LlmSettings, ProviderSpec, UseCaseSettings, Variant
from norn.llm.usecases import KIND_NPC_BEHAVIOUR, KIND_NPC_TALK, KIND_TOY_REST


def requests(kind: int = KIND_TOY_REST, n: int = 4, *, tick: int = 1, first: int = 0,
             deadline: int = 50, contexts: np.ndarray | None = None,
             n_options: int = 2) -> np.ndarray:
    """``n`` distinct requests of ``kind`` (distinct contexts, so no cache hits among them)."""
    r = np.zeros(n, REQUEST)
    r["request_id"] = (np.int64(tick) << 24) | np.arange(first, first + n)
    r["kind"] = kind
    r["n_options"] = n_options
    r["options"][:, :n_options] = np.arange(n_options)
    r["fallback"] = 0
    r["created_tick"] = tick
    r["deadline_tick"] = tick + deadline
    if contexts is None:
        k = np.arange(first, first + n, dtype=np.float32)
        contexts = np.zeros((n, 16), np.float32)
        contexts[:, 0] = 0.2 + 0.05 * (k % 7)  # option 0 ...
        contexts[:, 1] = 0.9 + 0.3 * k  # ... loses to option 1, by far more each time
        if kind == KIND_NPC_TALK:
            contexts[:, 2:4] = 0.1
            contexts[:, 4] = 0.3
            contexts[:, 5] = 0.2
        if kind == KIND_NPC_BEHAVIOUR:
            contexts[:, 11] = 0
    r["context"][:, : contexts.shape[1]] = contexts
    return r


def http_settings(url: str, *, kind: str = "openai", structured: str = "json_schema",
                  use_case: str = "toy_rest", fallbacks: tuple[str, ...] = (),
                  **top) -> LlmSettings:
    """Settings whose ``use_case`` is served by the fake server at ``url``."""
    base = url + "/v1" if kind == "openai" else url
    providers = {"offline": ProviderSpec(kind="offline"),
                 "fake": ProviderSpec(kind=kind, base_url=base, model="fake-1",
                                      structured=structured, timeout_s=2.0,
                                      price_in_per_mtok_usd=1.0, price_out_per_mtok_usd=2.0)}
    uc = UseCaseSettings(variants={"fake": Variant(provider="fake", fallbacks=list(fallbacks))},
                         aliases={"champion": "fake"})
    top.setdefault("batch_window_ms", 0.0)
    top.setdefault("backoff_s", 0.0)
    return LlmSettings(providers=providers, use_cases={use_case: uc}, **top)


def settle(resolver, tick: int = 10, timeout_s: float = 20.0) -> np.ndarray:
    """Wait (lockstep's wait) for everything submitted before ``tick``; collect it."""
    resolver.wait(tick, timeout_s)
    return resolver.collect(tick)
