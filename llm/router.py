"""The router: timeouts, retries by error class, circuit breakers, fallback chains, and the
admission controls (token buckets, budgets) that degrade a use case to its fallback.

``Router.complete(chain, call, deadline)`` tries the providers of ``chain`` in order and
never raises: it returns a ``RouteResult`` whose ``completion`` is None when every
provider failed, was open-circuited or the deadline came; the caller then applies the
rules' fallback with the reason. Per error kind (``providers.ProviderError``):

- ``rate_limited``: wait the Retry-After and try the same provider again when that fits
  the deadline and ``retry_after_max_s``; otherwise go on to the next provider. Not a
  breaker failure (the provider is up, it is pacing us).
- ``server``, ``timeout``, ``connect``, ``protocol``, ``too_large``: a breaker failure;
  retried on the same provider after an exponential backoff (``backoff_s`` doubling, no
  jitter, capped) while retries and time remain, then the next provider.
- ``auth``, ``client``: a breaker failure, never retried (the same request fails again).

A ``CircuitBreaker`` per provider opens after ``failures_to_open`` failures in a row,
refuses calls for ``open_s``, then lets one probe through (half-open): success closes it,
failure opens it again. Time is injected (``clock``, ``sleep``), so tests drive it
without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from norn.llm import limits
from norn.llm.providers import Call, Completion, Provider, ProviderError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
BREAKER_FAILURES = ("server", "timeout", "connect", "protocol", "too_large", "auth", "client")
NO_RETRY = ("auth", "client")


class CircuitBreaker:
    def __init__(self, failures_to_open: int = 5, open_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures_to_open < 1 or open_s <= 0:
            raise ValueError("failures_to_open >= 1 and open_s > 0")
        self.failures_to_open = failures_to_open
        self.open_s = open_s
        self.clock = clock
        self._state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.opens = 0
        self._probing = False

    @property
    def state(self) -> str:
        if self._state == OPEN and self.clock() - self.opened_at >= self.open_s:
            return HALF_OPEN
        return self._state

    def allow(self) -> bool:
        s = self.state
        if s == CLOSED:
            return True
        if s == HALF_OPEN and not self._probing:
            self._state = HALF_OPEN
            self._probing = True
            return True
        return False

    def record(self, ok: bool) -> None:
        self._probing = False
        if ok:
            self._state, self.failures = CLOSED, 0
            return
        self.failures += 1
        if self._state == HALF_OPEN or self.failures >= self.failures_to_open:
            if self._state != OPEN:
                self.opens += 1
            self._state, self.opened_at = OPEN, self.clock()


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved; ``take`` never waits."""

    def __init__(self, rate_per_s: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("rate_per_s and burst must be positive")
        self.rate, self.burst, self.clock = rate_per_s, burst, clock
        self.level = burst
        self.at = clock()

    def take(self, n: float = 1.0) -> bool:
        now = self.clock()
        self.level = min(self.burst, self.level + (now - self.at) * self.rate)
        self.at = now
        if self.level >= n:
            self.level -= n
            return True
        return False


@dataclass
class Budget:
    """Calls, tokens and cost a use case may spend per ``window_s`` (None: per run)."""

    calls_max: int | None = None
    tokens_max: int | None = None
    cost_max_usd: float | None = None
    window_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    window_start: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.window_start = self.clock()

    def _roll(self) -> None:
        if self.window_s is not None and self.clock() - self.window_start >= self.window_s:
            self.calls, self.tokens, self.cost_usd = 0, 0, 0.0
            self.window_start = self.clock()

    def admit(self, tokens_est: int) -> str | None:
        """None when a call of ``tokens_est`` tokens fits; else the exhausted budget."""
        self._roll()
        if self.calls_max is not None and self.calls + 1 > self.calls_max:
            return "budget_calls"
        if self.tokens_max is not None and self.tokens + tokens_est > self.tokens_max:
            return "budget_tokens"
        if self.cost_max_usd is not None and self.cost_usd >= self.cost_max_usd:
            return "budget_cost"
        return None

    def charge(self, calls: int, tokens: int, cost_usd: float) -> None:
        self._roll()
        self.calls += calls
        self.tokens += tokens
        self.cost_usd += cost_usd

    def as_dict(self) -> dict[str, object]:
        return {"calls": self.calls, "calls_max": self.calls_max, "tokens": self.tokens,
                "tokens_max": self.tokens_max, "cost_usd": round(self.cost_usd, 6),
                "cost_max_usd": self.cost_max_usd, "window_s": self.window_s}


@dataclass
class Attempt:
    provider: str
    outcome: str  # "ok" or an error kind, or "breaker_open"
    latency_s: float = 0.0
    status: int | None = None
    waited_s: float = 0.0


@dataclass
class RouteResult:
    completion: Completion | None
    provider: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    reason: str = ""  # why there is no completion: all_failed, breaker_open, deadline


class Router:
    def __init__(
        self,
        providers: dict[str, Provider],
        *,
        retries: int = 2,
        backoff_s: float = 0.2,
        backoff_max_s: float = 5.0,
        retry_after_max_s: float = 30.0,
        failures_to_open: int = 5,
        open_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 <= retries <= limits.retries_max:
            raise ValueError(f"retries must be in 0..{limits.retries_max}")
        if not 0 <= retry_after_max_s <= limits.retry_after_s_max:
            raise ValueError(f"retry_after_max_s must be in 0..{limits.retry_after_s_max}")
        if len(providers) > limits.providers_max:
            raise ValueError(f"more than providers_max={limits.providers_max} providers")
        self.providers = providers
        self.retries = retries
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self.clock, self.sleep = clock, sleep
        self.breakers = {n: CircuitBreaker(failures_to_open, open_s, clock) for n in providers}

    async def complete(self, chain: list[str], call: Call, deadline: float) -> RouteResult:
        if len(chain) > limits.fallback_chain_max:
            chain = chain[: limits.fallback_chain_max]
        res = RouteResult(None)
        any_tried = False
        for name in chain:
            provider = self.providers.get(name)
            if provider is None:
                continue
            breaker = self.breakers[name]
            attempt = 0
            while True:
                left = deadline - self.clock()
                if left <= 0:
                    res.reason = "deadline"
                    return res
                if not breaker.allow():
                    res.attempts.append(Attempt(name, "breaker_open"))
                    break
                any_tried = True
                t0 = self.clock()
                try:
                    comp = await provider.complete(
                        Call(call.messages, call.schema, call.schema_name, call.model,
                             call.max_tokens, call.temperature, min(call.timeout_s, left)))
                except ProviderError as exc:
                    err: ProviderError | None = exc
                except Exception as exc:  # a provider bug must not reach the tick
                    err = ProviderError("protocol", f"{type(exc).__name__}: {exc}")
                else:
                    err = None
                lat = self.clock() - t0
                if err is None:
                    breaker.record(True)
                    res.attempts.append(Attempt(name, "ok", lat))
                    res.completion, res.provider = comp, name
                    return res
                res.attempts.append(Attempt(name, err.kind, lat, err.status))
                if err.kind in BREAKER_FAILURES:
                    breaker.record(False)
                if err.kind in NO_RETRY or attempt >= self.retries:
                    break
                if err.kind == "rate_limited":
                    wait = err.retry_after_s if err.retry_after_s is not None else self.backoff_s
                    if wait > self.retry_after_max_s:
                        break
                else:
                    wait = min(self.backoff_s * (2**attempt), self.backoff_max_s)
                if self.clock() + wait >= deadline:
                    break
                res.attempts[-1].waited_s = wait
                await self.sleep(wait)
                attempt += 1
        res.reason = "all_failed" if any_tried else "breaker_open"
        return res

    def status(self) -> dict[str, dict[str, object]]:
        return {n: {"state": b.state, "failures": b.failures, "opens": b.opens}
                for n, b in sorted(self.breakers.items())}

    async def aclose(self) -> None:
        for p in self.providers.values():
            with contextlib.suppress(Exception):  # closing is best effort
                await p.aclose()
