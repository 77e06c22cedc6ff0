"""``LlmResolver``: tiers 2-4 behind the engine's ``Resolver`` seam, off the tick thread.

The tick thread only calls ``submit`` (append an array to a bounded queue, wake the worker
once), ``collect`` (take the arrived results) and, in lockstep, ``wait``; each is a lock
and a few list operations, microseconds. A full queue is not a wait: the overflow gets its
rules' fallback at once, with the reason ``queue_full``.

Everything else runs on one worker thread with its own asyncio loop:

1. requests past their deadline are dropped (the book applies the fallback);
2. per use case, each request is given an arm (``deploy.challenger_mask``: a hash of seed,
   use case and request id) and its cache keys; **tier 2**, the cache, answers what it
   can; identical requests in flight share one answer;
3. the rest go out per (use case, arm): **tier 3**, batches of up to ``batch_items_max``
   requests and ``batch_tokens_max`` estimated tokens in one call whose schema has one
   required key per request id; a lone request is **tier 4**, a single call. Admission
   first: the use case's token bucket and budget (calls, tokens, cost) or the fallback
   with the exhausted one as reason;
4. answers are validated item by item (``prompts.validate``): valid ones become results
   and enter the cache; missing or invalid items of a batch are retried singly; a single
   call is asked again once (``reask``); what is still wrong gets the fallback. Refused
   text keeps its valid choice and speaks the canned line.

Results reach the world only as ``RESULT`` rows through ``collect``, i.e. through the
decision book, which validates them again and journals them; the tier, the reason and the
text of each result wait in ``notes`` (``notes.DecisionNotes``) for the engine to journal.
Every call is logged (``log.InferenceLog``); a canary is baked (``deploy.Baker``) and rolled
back automatically, the flip kept in ``flips`` for the engine to journal as an input.
Nothing here raises into the tick: a worker failure is counted and its requests fall back
at their deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from norn.engine.decisions import RESULT
from norn.llm import limits
from norn.llm.cache import DecisionCache, calibrated_use_cases
from norn.llm.deploy import CHALLENGER, CHAMPION, Baker, Outcome, challenger_mask
from norn.llm.guardrails import Guardrails
from norn.llm.log import InferenceLog
from norn.llm.notes import (
    FLAG_REASKED,
    FLAG_SHARED,
    FLAG_TEXT_REFUSED,
    REASON,
    TIER_BATCH,
    TIER_CACHE,
    TIER_FALLBACK,
    TIER_NAMES,
    TIER_SINGLE,
    DecisionNotes,
)
from norn.llm.offline import OfflineProvider
from norn.llm.prompts import (
    INVALID,
    MISSING,
    OK,
    REFUSED,
    Work,
    answer_schema,
    estimate_tokens,
    parse,
    render,
    validate,
)
from norn.llm.providers import AnthropicProvider, Call, OpenAIProvider, Provider, schema_in_prompt
from norn.llm.router import Budget, CircuitBreaker, Router, TokenBucket
from norn.llm.settings import (
    Flip,
    LlmSettings,
    ProviderSpec,
    Registry,
    UseCaseSettings,
    load_settings,
)
from norn.llm.usecases import UseCase, UseCases, mix

TIER_LOG = {TIER_BATCH: "batch", TIER_SINGLE: "single"}


def make_provider(name: str, spec: ProviderSpec) -> Provider:
    if spec.kind == "offline":
        return OfflineProvider(name, spec.model or "norn-offline-1")
    if spec.kind == "local":
        from norn.llm.local import LocalProvider

        return LocalProvider(name, spec.model_path, spec.model or "smollm2-135m-instruct")
    cls = OpenAIProvider if spec.kind == "openai" else AnthropicProvider
    default_url = "https://api.openai.com/v1" if spec.kind == "openai" else \
        "https://api.anthropic.com"
    return cls(name, spec.base_url or default_url, spec.model, api_key_env=spec.api_key_env,
               structured=spec.structured, timeout_s=spec.timeout_s,
               connections_max=spec.connections_max)


@dataclass
class UseCaseStats:
    requests: int = 0
    cache_exact: int = 0
    cache_near: int = 0
    shared: int = 0
    batch_items: int = 0
    single_items: int = 0
    calls_batch: int = 0
    calls_single: int = 0
    reasks: int = 0
    retried_singly: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)
    text_refused: int = 0
    expired: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=4096))

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latency_s)

        def p(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))], 4) if lat else None

        answered = self.cache_exact + self.cache_near + self.shared + self.batch_items \
            + self.single_items
        calls = self.calls_batch + self.calls_single
        return {
            "requests": self.requests, "cache_exact": self.cache_exact,
            "cache_near": self.cache_near, "shared": self.shared,
            "batch_items": self.batch_items, "single_items": self.single_items,
            "calls": calls, "calls_batch": self.calls_batch, "calls_single": self.calls_single,
            "reasks": self.reasks, "retried_singly": self.retried_singly,
            "calls_saved": max(answered - calls, 0),
            "fallbacks": dict(sorted(self.fallbacks.items())),
            "text_refused": self.text_refused, "expired": self.expired,
            "tokens": self.tokens, "cost_usd": round(self.cost_usd, 6),
            "latency_p50_s": p(0.5), "latency_p95_s": p(0.95),
        }


class _Runtime:
    """A use case's admission controls and canary baker, rebuilt when its settings change."""

    def __init__(self, ucs: UseCaseSettings, clock: Callable[[], float]) -> None:
        b = ucs.budget
        self.ucs = ucs
        self.bucket = TokenBucket(b.rate_per_s, b.burst, clock) if b.rate_per_s else None
        self.budget = Budget(b.calls_max, b.tokens_max, b.cost_max_usd, b.window_s, clock)
        self.baker = Baker(ucs.deployment) if ucs.canary_share() else None


class LlmResolver:
    """The LLM tier as a ``Resolver`` (``submit``/``collect``/``wait``), plus ``notes``,
    ``flips``, ``said``, ``take_notes``, ``status`` and ``summary``."""

    def __init__(
        self,
        settings: LlmSettings | None = None,
        *,
        seed: int = 0,
        tick_ms: int = 100,
        settings_path: str | Path | None = None,
        use_cases: UseCases | None = None,
        guard: Guardrails | None = None,
        providers: dict[str, Provider] | None = None,
        clock: Callable[[], float] = time.monotonic,
        run_id: str = "",
        start: bool = True,
    ) -> None:
        if settings is None:
            settings = load_settings(settings_path) if settings_path else LlmSettings()
        self.settings = settings
        self.registry = Registry(settings, settings_path)
        self._settings_mtime = _mtime(settings_path)
        self.seed, self.tick_s, self.clock, self.run_id = seed, tick_ms / 1000.0, clock, run_id
        self.use_cases = use_cases or UseCases(calibrated_use_cases())
        self.guard = guard or Guardrails(text_bytes_max=settings.text_bytes_max)
        self.cache = DecisionCache(settings.cache_entries_max,
                                   min(settings.cache_bucket_entries_max,
                                       settings.cache_entries_max))
        self.notes = DecisionNotes()
        self.log = InferenceLog(settings.log_path, text_chars_max=settings.log_text_chars_max,
                                rows_max=settings.log_rows_max)
        self.flips: deque[Flip] = deque()
        self.flips_dropped = 0
        self._providers_given = providers
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._in: deque[tuple[int, np.ndarray]] = deque()
        self._in_count = 0
        self._out: list[np.ndarray] = []
        self._out_count = 0
        self._open: dict[int, int] = {}  # submit tick -> requests not yet answered or dropped
        self._texts: dict[int, tuple[str, str, str]] = {}
        self._inflight: set[int] = set()
        self._last_tick = 0
        self._signalled = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._rt: dict[str, _Runtime] = {}
        self.stats: dict[str, UseCaseStats] = {}
        self.counters = {"submitted": 0, "queue_full": 0, "results_dropped": 0,
                         "texts_dropped": 0, "duplicates": 0, "worker_errors": 0}
        self.router: Router | None = None
        if start:
            self.start()

    # -- the tick thread's side (never blocks) ----------------------------------------------
    def submit(self, tick: int, requests: np.ndarray) -> None:
        n = len(requests)
        if not n:
            return
        with self._lock:
            self._last_tick = max(self._last_tick, tick)
            room = self.settings.queue_requests_max - self._in_count
            take, over = (requests, requests[:0]) if n <= room else \
                (requests[: max(room, 0)], requests[max(room, 0):])
            if len(take):
                self._in.append((tick, take.copy()))
                self._in_count += len(take)
                self._open[tick] = self._open.get(tick, 0) + len(take)
            self.counters["submitted"] += n
            if len(over):
                self.counters["queue_full"] += len(over)
                res = np.empty(len(over), RESULT)
                res["request_id"] = over["request_id"]
                res["choice"] = over["fallback"]
                self._push_locked(res)
                for rid in over["request_id"].tolist():
                    self._texts.pop(rid, None)
                    self.notes.add(rid, TIER_FALLBACK, REASON["queue_full"])
            wake = len(take) and not self._signalled and self._loop is not None
            if wake:
                self._signalled = True
        if wake:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to wake
                self._loop.call_soon_threadsafe(self._wake.set)  # type: ignore[union-attr]

    def take_notes(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """NOTE and TEXT rows for the applied ``records`` this resolver decided (journaled)."""
        return self.notes.take(records)

    def said(self, request_ids: np.ndarray, said: list[str] | np.ndarray,
             where: list[str] | None = None, item: list[str] | None = None) -> None:
        """What players said (npc_talk text) for requests filed this tick; before submit."""
        n = len(request_ids)
        with self._lock:
            for i, rid in enumerate(np.asarray(request_ids).tolist()):
                if len(self._texts) >= limits.texts_pending_max:
                    self.counters["texts_dropped"] += n - i
                    break
                s = said[i]
                s = s.decode("utf-8", "replace") if isinstance(s, bytes | np.bytes_) else str(s)
                self._texts[rid] = (s[: limits.player_text_bytes_max],
                                    where[i] if where else "", item[i] if item else "")

    def collect(self, tick: int) -> np.ndarray:
        with self._lock:
            self._last_tick = max(self._last_tick, tick)
            if not self._out:
                return np.empty(0, RESULT)
            out = np.concatenate(self._out) if len(self._out) > 1 else self._out[0]
            self._out, self._out_count = [], 0
        return out

    def wait(self, tick: int, timeout_s: float) -> None:
        """Lockstep: until every request submitted before ``tick`` is answered or dropped."""
        with self._cond:
            self._cond.wait_for(lambda: not any(n for t, n in self._open.items() if t < tick),
                                timeout=timeout_s)

    def take_flips(self) -> list[Flip]:
        with self._lock:
            out = list(self.flips)
            self.flips.clear()
        return out

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="norn-llm", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)

    def close(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self.log.flush()

    def __enter__(self) -> LlmResolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the worker --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        finally:
            self._ready.set()

    def _build_providers(self) -> dict[str, Provider]:
        given = dict(self._providers_given or {})
        for name, spec in self.settings.providers.items():
            if name not in given:
                given[name] = make_provider(name, spec)
        return given

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        s = self.settings
        self._sem = asyncio.Semaphore(s.calls_in_flight_max)
        self.router = Router(self._build_providers(), retries=s.retries, backoff_s=s.backoff_s,
                             backoff_max_s=s.backoff_max_s,
                             retry_after_max_s=s.retry_after_max_s,
                             failures_to_open=s.failures_to_open, open_s=s.open_s,
                             clock=self.clock)
        self._ready.set()
        next_flush = next_poll = self.clock()
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.1)
            self._wake.clear()
            if s.batch_window_ms and self._in_count and not self._stopping:
                await asyncio.sleep(s.batch_window_ms / 1000.0)
            with self._lock:
                chunks = list(self._in)
                self._in.clear()
                self._in_count = 0
                self._signalled = False
            if chunks:
                try:
                    self._dispatch(chunks)
                except Exception:  # a bug here must not stop the tier; requests fall back
                    self.counters["worker_errors"] += 1
                    self._drop_chunks(chunks)
            now = self.clock()
            if now >= next_flush:
                next_flush = now + s.log_flush_s
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.log.flush)
                self._write_status()
            if now >= next_poll:
                next_poll = now + s.registry_poll_s
                self._poll_registry()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.router.aclose()

    def _drop_chunks(self, chunks: list[tuple[int, np.ndarray]]) -> None:
        with self._cond:
            for tick, arr in chunks:
                self._done_locked(tick, len(arr))

    def _done_locked(self, tick: int, n: int = 1) -> None:
        left = self._open.get(tick, 0) - n
        if left > 0:
            self._open[tick] = left
        else:
            self._open.pop(tick, None)
        self._cond.notify_all()

    def _push_locked(self, res: np.ndarray) -> bool:
        if self._out_count + len(res) > self.settings.results_max:
            self.counters["results_dropped"] += len(res)
            return False
        self._out.append(res)
        self._out_count += len(res)
        return True

    def _stats(self, name: str) -> UseCaseStats:
        st = self.stats.get(name)
        if st is None:
            st = self.stats[name] = UseCaseStats()
        return st

    def _runtime(self, name: str) -> _Runtime:
        rt = self._rt.get(name)
        ucs = self.settings.for_use_case(name)
        if rt is None or rt.ucs is not ucs:
            rt = self._rt[name] = _Runtime(ucs, self.clock)
        return rt

    def _dispatch(self, chunks: list[tuple[int, np.ndarray]]) -> None:
        rows = np.concatenate([a for _, a in chunks])
        ticks = np.concatenate([np.full(len(a), t, np.int64) for t, a in chunks])
        with self._lock:
            last = self._last_tick
            texts = {}
            for rid in rows["request_id"].tolist():
                t = self._texts.pop(rid, None)
                if t is not None:
                    texts[rid] = t
        late = rows["deadline_tick"] <= last
        dup = np.array([rid in self._inflight for rid in rows["request_id"].tolist()], bool)
        gone = late | dup
        if gone.any():
            with self._cond:
                for t in ticks[gone].tolist():
                    self._done_locked(t)
            self.counters["duplicates"] += int(dup.sum())
            for k in rows["kind"][late & ~dup].tolist():
                self._stats(self.use_cases.of_kind(k).name).expired += 1
            rows, ticks = rows[~gone], ticks[~gone]
        kinds = rows["kind"]
        for kind in np.unique(kinds).tolist():
            sel = kinds == kind
            uc = self.use_cases.of_kind(kind)
            self._dispatch_use_case(uc, rows[sel], ticks[sel], texts)

    def _dispatch_use_case(self, uc: UseCase, rows: np.ndarray, ticks: np.ndarray,
                           texts: dict[int, tuple[str, str, str]]) -> None:
        st = self._stats(uc.name)
        st.requests += len(rows)
        rt = self._runtime(uc.name)
        ucs = rt.ucs
        ids = rows["request_id"]
        works = [Work(rows[i], uc, *texts.get(int(ids[i]), ("", "", "")), tick=int(ticks[i]))
                 for i in range(len(rows))]
        if not ucs.enabled:
            self._fallback(uc, works, "disabled", CHAMPION)
            return
        arms = challenger_mask(self.seed, uc.name, ids, ucs.canary_share())
        names = [ucs.champion(), ucs.challenger() or ""]
        vkeys = np.array([xxhash.xxh3_64_intdigest(names[int(a)].encode()) for a in arms],
                         np.uint64)
        words = [(w.said, w.where, w.item) for w in works] if uc.text else None
        bucket, exact, feats = uc.keys(rows, words)
        bucket, exact = mix(bucket, vkeys.view(np.int64)), mix(exact, vkeys.view(np.int64))
        slots, how = self.cache.lookup(uc, bucket, exact, feats)
        for i, w in enumerate(works):
            w.bucket, w.exact, w.feats = int(bucket[i]), int(exact[i]), feats[i]
            w.arm = int(arms[i])
        st.cache_exact += int(np.count_nonzero(how == 1))
        st.cache_near += int(np.count_nonzero(how == 2))
        leaders: dict[int, Work] = {}
        for i, w in enumerate(works):
            if slots[i] >= 0:
                s = int(slots[i])
                self._deliver(uc, w, int(self.cache.choice[s]), TIER_CACHE,
                              text=self.cache.texts[s] or None)
                continue
            lead = leaders.get(w.exact)
            if lead is not None:
                lead.followers.append(w)
                continue
            leaders[w.exact] = w
            self._inflight.add(w.rid)
        for arm in (CHAMPION, CHALLENGER):
            group = [w for w in leaders.values() if w.arm == arm]
            per = max(1, (ucs.batch_tokens_max - estimate_tokens(uc, 0)) // uc.tokens_per_item)
            size = max(1, min(ucs.batch_items_max, per))
            for lo in range(0, len(group), size):
                part = group[lo : lo + size]
                tier = TIER_BATCH if len(part) > 1 else TIER_SINGLE
                reask = ucs.reask and tier == TIER_SINGLE
                self._spawn(self._call(uc, arm, part, tier, reask=reask))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _time_left_s(self, works: list[Work]) -> float:
        dl = min(int(w.req["deadline_tick"]) for w in works)
        return (dl - self._last_tick) * self.tick_s

    async def _call(self, uc: UseCase, arm: int, works: list[Work], tier: int,
                    reask: bool, reask_reason: str | None = None) -> None:
        try:
            await self._call_inner(uc, arm, works, tier, reask, reask_reason)
        except asyncio.CancelledError:
            raise
        except Exception:  # never into the tick: count it, fall back
            self.counters["worker_errors"] += 1
            self._fallback(uc, works, "provider_failed", arm)

    async def _call_inner(self, uc: UseCase, arm: int, works: list[Work], tier: int,
                          reask: bool, reask_reason: str | None) -> None:
        rt = self._runtime(uc.name)
        ucs = rt.ucs
        st = self._stats(uc.name)
        vname = (ucs.challenger() if arm == CHALLENGER else None) or ucs.champion()
        variant = ucs.variants[vname]
        chain = [variant.provider, *variant.fallbacks]
        est = estimate_tokens(uc, len(works))
        left = self._time_left_s(works)
        if left <= 0:
            self._fallback(uc, works, "deadline", arm, deliver=False)
            return
        refusal = "rate_limited" if rt.bucket is not None and not rt.bucket.take(1.0) else \
            rt.budget.admit(est)
        if refusal:
            self._fallback(uc, works, refusal, arm)
            return
        async with self._sem:
            assert self.router is not None
            first = self.router.providers.get(chain[0])
            msgs = render(uc, works, first is None or schema_in_prompt(first), reask_reason)
            deadline = self.clock() + min(self.settings.call_timeout_s, max(left, 0.05))
            call = Call(msgs, answer_schema(works), "answer", variant.model,
                        variant.max_tokens, variant.temperature, self.settings.call_timeout_s)
            t0 = self.clock()
            route = await self.router.complete(chain, call, deadline)
            latency = self.clock() - t0
        comp = route.completion
        spec = self.settings.providers.get(route.provider) if route.provider else None
        tin, tout = (comp.tokens_in, comp.tokens_out) if comp else (0, 0)
        cost = ((tin * spec.price_in_per_mtok_usd + tout * spec.price_out_per_mtok_usd) / 1e6
                if spec else 0.0)
        rt.budget.charge(1, tin + tout, cost)
        if tier == TIER_BATCH:
            st.calls_batch += 1
        else:
            st.calls_single += 1
        if reask_reason:
            st.reasks += 1
        st.tokens += tin + tout
        st.cost_usd += cost
        st.latency_s.append(latency)
        log_tier = "reask" if reask_reason else TIER_LOG[tier]
        common = dict(run=self.run_id, tick=self._last_tick, use_case=uc.name, variant=vname,
                      prompt_version=variant.prompt_version or uc.prompt_version,
                      tier=log_tier, items=len(works),
                      request_ids=",".join(str(w.rid) for w in works[:16]),
                      prompt=msgs[-1]["content"], latency_ms=latency * 1e3,
                      tokens_in=tin, tokens_out=tout, cost_usd=cost,
                      attempts=len(route.attempts))
        if comp is None:
            reason = {"breaker_open": "breaker_open", "deadline": "deadline"}.get(
                route.reason, "provider_failed")
            self.log.add(**common, provider=",".join(a.provider for a in route.attempts),
                         model=variant.model, output="", outcome="failed",
                         error=";".join(f"{a.provider}:{a.outcome}" for a in route.attempts))
            self._fallback(uc, works, reason, arm, latency=latency, cost=cost)
            return
        obj = parse(comp.content)
        answers = validate(works, obj, self.guard)
        n_ok = sum(a.status == OK for a in answers)
        outcome = "ok" if n_ok == len(works) else (
            "partial" if n_ok else ("refused" if all(a.status == REFUSED for a in answers)
                                    else "invalid"))
        self.log.add(**common, provider=route.provider, model=comp.model, output=comp.content,
                     outcome=outcome, error=";".join(sorted({a.reason for a in answers
                                                             if a.reason})))
        per_cost = cost / len(works)
        retry: list[tuple[Work, str]] = []
        for w, a in zip(works, answers, strict=True):
            parse_fail = a.status in (INVALID, MISSING)
            fell = False
            flags = FLAG_REASKED if reask_reason else 0
            if a.status == OK:
                if tier == TIER_BATCH:
                    st.batch_items += 1
                else:
                    st.single_items += 1
                self._deliver(uc, w, a.choice, tier, text=a.text or None, flags=flags)
                self.cache.insert(np.array([w.bucket], np.uint64), np.array([w.exact], np.uint64),
                                  w.feats[None, :], np.array([a.choice]), [a.text])
            elif a.status == REFUSED and reask:
                retry.append((w, f"text refused: {a.reason}"))
            elif a.status == REFUSED:
                st.text_refused += 1
                if tier == TIER_BATCH:
                    st.batch_items += 1
                else:
                    st.single_items += 1
                self._deliver(uc, w, a.choice, tier, reason=REASON["refused_text"],
                              flags=flags | FLAG_TEXT_REFUSED)
            elif tier == TIER_BATCH:
                retry.append((w, ""))
            elif reask:
                retry.append((w, a.reason))
            else:
                why = "unparseable" if a.reason == "unparseable" else (
                    "missing" if a.status == MISSING else "invalid")
                self._fallback(uc, [w], why, arm, bake=False)
                fell = True
            if rt.baker is not None:
                rt.baker.record(arm, Outcome(parse_fail, a.status == REFUSED, fell, latency,
                                             per_cost))
        for w, why in retry:
            if tier == TIER_BATCH:
                st.retried_singly += 1
                self._spawn(self._call(uc, arm, [w], TIER_SINGLE, reask=False))
            else:
                self._spawn(self._call(uc, arm, [w], TIER_SINGLE, reask=False,
                                       reask_reason=why or "invalid answer"))
        self._bake(uc.name, rt)

    def _bake(self, name: str, rt: _Runtime) -> None:
        if rt.baker is None or not rt.ucs.deployment.auto_rollback:
            return
        if rt.ucs is not self.settings.for_use_case(name):
            return  # already flipped (calls of the old deployment still landing)
        why = rt.baker.verdict()
        if why is None:
            return
        flip = self.registry.rollback(name, why, tick=self._last_tick)
        self.settings = self.registry.settings
        self._settings_mtime = _mtime(self.registry.path)
        self._record_flip(flip)

    def _record_flip(self, flip: Flip) -> None:
        with self._lock:
            if len(self.flips) >= limits.flips_max:
                self.flips_dropped += 1
                return
            self.flips.append(flip)

    def _fallback(self, uc: UseCase, works: list[Work], reason: str, arm: int, *,
                  latency: float = 0.0, cost: float = 0.0, deliver: bool = True,
                  bake: bool = True) -> None:
        st = self._stats(uc.name)
        rt = self._rt.get(uc.name)
        for w in works:
            st.fallbacks[reason] = st.fallbacks.get(reason, 0) + 1 + len(w.followers)
            if bake and rt is not None and rt.baker is not None:
                rt.baker.record(arm, Outcome(False, False, True, latency, cost / len(works)))
            if deliver:
                self._deliver(uc, w, w.fallback, TIER_FALLBACK, reason=REASON[reason])
            else:
                self._finish(w)

    def _finish(self, w: Work) -> None:
        with self._cond:
            for x in (w, *w.followers):
                self._done_locked(x.tick)
            self._inflight.discard(w.rid)

    def _deliver(self, uc: UseCase, w: Work, choice: int, tier: int, *, reason: int = 0,
                 flags: int = 0, text: str | None = None) -> None:
        group = [w, *w.followers]
        res = np.empty(len(group), RESULT)
        res["request_id"] = [x.rid for x in group]
        res["choice"] = choice
        if w.followers:
            self._stats(uc.name).shared += len(w.followers)
        with self._cond:
            if self._push_locked(res):
                for x in group:
                    shared = FLAG_SHARED if x is not w else 0
                    self.notes.add(x.rid, TIER_CACHE if shared else tier, reason, x.arm,
                                   flags | shared, text)
            for x in group:
                self._done_locked(x.tick)
            self._inflight.discard(w.rid)

    # -- registry, status --------------------------------------------------------------------
    def _poll_registry(self) -> None:
        path = self.registry.path
        m = _mtime(path)
        if path is None or m == self._settings_mtime:
            return
        self._settings_mtime = m
        try:
            new = load_settings(path)
        except Exception:  # a half-edited file: keep the running settings
            self.counters["worker_errors"] += 1
            return
        old = self.settings
        names = set(old.use_cases) | set(new.use_cases)
        for name in sorted(names):
            a, b = old.for_use_case(name), new.for_use_case(name)
            if (a.aliases, a.deployment) != (b.aliases, b.deployment):
                self._record_flip(Flip(name, b.deployment.mode, b.champion(),
                                       b.challenger() or "", b.canary_share(), "operator",
                                       self._last_tick))
        for pname, spec in new.providers.items():
            if self.router is not None and (pname not in old.providers
                                            or old.providers[pname] != spec):
                self.router.providers[pname] = make_provider(pname, spec)
                self.router.breakers.setdefault(pname, CircuitBreaker(
                    new.failures_to_open, new.open_s, self.clock))
        self.settings = new
        self.registry = Registry(new, path)

    def status(self) -> dict[str, Any]:
        with self._lock:
            queue, results = self._in_count, self._out_count
            open_requests = sum(self._open.values())
        canaries = {}
        for name, rt in sorted(self._rt.items()):
            if rt.baker is not None or rt.ucs.challenger():
                canaries[name] = {
                    "mode": rt.ucs.deployment.mode, "champion": rt.ucs.champion(),
                    "challenger": rt.ucs.challenger(), "share_permille": rt.ucs.canary_share(),
                    "baking": rt.baker.as_dict() if rt.baker else None,
                    "rolled_back": list(rt.ucs.rolled_back)}
        return {
            "queue": queue, "results": results, "open_requests": open_requests,
            "counters": dict(self.counters),
            "use_cases": {k: v.as_dict() for k, v in sorted(self.stats.items())},
            "cache": {**self.cache.stats.as_dict(), "entries": len(self.cache),
                      "entries_max": self.cache.entries_max},
            "breakers": self.router.status() if self.router else {},
            "budgets": {k: rt.budget.as_dict() for k, rt in sorted(self._rt.items())},
            "canaries": canaries,
            "flips_pending": len(self.flips),
            "log": {"path": self.settings.log_path, "written": self.log.written,
                    "dropped": self.log.dropped},
        }

    def summary(self) -> dict[str, Any]:
        """For ``make run``'s summary: decisions by tier, calls, calls saved, fallbacks."""
        by_tier = {"cache": 0, "batch": 0, "single": 0, "fallback": 0}
        calls = saved = 0
        fallbacks: dict[str, int] = {}
        for st in self.stats.values():
            d = st.as_dict()
            by_tier["cache"] += d["cache_exact"] + d["cache_near"] + d["shared"]
            by_tier["batch"] += d["batch_items"]
            by_tier["single"] += d["single_items"]
            calls += d["calls"]
            saved += d["calls_saved"]
            for k, v in d["fallbacks"].items():
                fallbacks[k] = fallbacks.get(k, 0) + v
        qf = self.counters["queue_full"]
        if qf:
            fallbacks["queue_full"] = fallbacks.get("queue_full", 0) + qf
        by_tier["fallback"] = sum(fallbacks.values())
        return {"by_tier": by_tier, "calls": calls, "calls_saved": saved,
                "fallbacks": dict(sorted(fallbacks.items())),
                "expired": sum(s.expired for s in self.stats.values())}

    def _write_status(self) -> None:
        path = self.settings.status_path
        if not path:
            return
        with contextlib.suppress(OSError):
            tmp = f"{path}.tmp"
            Path(tmp).write_text(json.dumps(self.status(), default=str))
            os.replace(tmp, path)


def _mtime(path: str | Path | None) -> float | None:
    if path is None:
        return None
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


def format_summary(summary: dict[str, Any]) -> str:
    """One line for a run summary (see docs/llm.md for wiring)."""
    t = summary["by_tier"]
    fb = ", ".join(f"{k} {v}" for k, v in summary["fallbacks"].items()) or "none"
    return (f"LLM tier: cache {t['cache']}, batched {t['batch']}, single {t['single']}, "
            f"fallback {t['fallback']} ({fb}); {summary['calls']} model calls, "
            f"{summary['calls_saved']} saved; {summary['expired']} expired")


__all__ = ["TIER_NAMES", "LlmResolver", "format_summary", "make_provider"]
