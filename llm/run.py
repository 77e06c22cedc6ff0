"""The LLM tier's part of ``norn run``: ``--llm SETTINGS`` puts it behind the decision seam.

A run extension (entry point group ``norn.run_extensions``; protocol
``norn.engine.commands.RunExtension``). Attached, it replaces the world's built-in resolver
by an ``LlmResolver`` (the tiers: cache, batched and single calls, fallbacks) before the
first tick; a resumed world's pending requests are handed to it again, so each gets its
result or its fallback at its deadline, never twice (the decision book applies a request
once). Before every tick it journals the tier's deployment flips as ``llm_deploy`` inputs
(source ``llm``); after the run it closes the resolver and adds the tiers' summary to the
report. ``--llm default`` uses the embedded settings: the offline provider, no model, no
network (what ``make run`` uses).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from norn.engine.commands import RunContext
from norn.engine.decisions import DEPLOY, DEPLOY_MODES
from norn.engine.inputs import InputBatch
from norn.engine.observe import Sample

#: The input source of the tier's deployment flips in the journal.
SOURCE = "llm"


class LlmRunExtension:
    """Adds ``--llm`` to ``norn run``."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--llm", metavar="SETTINGS",
            help="settle escalated decisions through the LLM tier (docs/llm.md): a settings "
            "JSON file, or 'default' for the embedded offline provider (no model, no network)",
        )

    def configure(self, args: argparse.Namespace, overrides: dict[str, Any]) -> None:
        return None

    def resend_ticks(self, args: argparse.Namespace) -> int:
        return 0

    def attach(self, run: RunContext) -> LlmRun | None:
        if not getattr(run.args, "llm", None):
            return None
        from norn.llm.resolver import LlmResolver

        path = None if run.args.llm == "default" else run.args.llm
        resolver = LlmResolver(settings_path=path, seed=run.config.seed,
                               tick_ms=run.config.tick_ms, run_id=str(run.out_dir))
        world = run.world
        pending = world.decisions.pending
        if len(pending):  # a resumed world: its requests in flight go to the new tier
            resolver.submit(world.tick, pending)
        world.resolver = resolver
        run.probes.add_samples(lambda: llm_samples(resolver))  # calls, tiers, cost (--metrics)
        return LlmRun(world, resolver, run.durable.get(SOURCE, 0))


class LlmRun:
    """One run's LLM tier: flips journaled before each tick, its summary at the end."""

    feeds_inputs = False

    def __init__(self, world: Any, resolver: Any, seq: int) -> None:
        self.world = world
        self.resolver = resolver
        self.seq = seq
        self.failure: str | None = None
        self._waiting: list[Any] = []

    def before_tick(self, tick: int) -> bool:
        flips = self._waiting + self.resolver.take_flips()
        if flips:
            dt = dict(DEPLOY.schema)
            cols = {
                "use_case": np.array([f.use_case for f in flips], dt["use_case"]),
                "mode": np.array([DEPLOY_MODES.index(f.mode) if f.mode in DEPLOY_MODES
                                  else 0 for f in flips], dt["mode"]),
                "share_permille": np.array([f.share_permille for f in flips],
                                           dt["share_permille"]),
                "champion": np.array([f.champion for f in flips], dt["champion"]),
                "challenger": np.array([f.challenger for f in flips], dt["challenger"]),
                "reason": np.array([f.reason for f in flips], dt["reason"]),
            }
            if self.world.inputs.offer(InputBatch(SOURCE, self.seq + 1, DEPLOY.name, cols)):
                self.seq += 1
                self._waiting = []
            else:  # the input queue is full: the flips wait for the next tick
                self._waiting = flips
        return True

    def close(self) -> None:
        self.resolver.close()

    def report(self, report: dict[str, Any]) -> list[str]:
        from norn.llm.resolver import format_summary

        summary = self.resolver.summary()
        report["llm"] = summary
        return [format_summary(summary)]


def llm_samples(resolver: Any) -> list[Sample]:
    """The tier's figures for ``--metrics`` (read from the metrics thread while the
    resolver's worker runs: a use case added meanwhile is retried, never fatal)."""
    for _ in range(8):
        try:
            summary = resolver.summary()
            per_uc = [st.as_dict() for st in list(resolver.stats.values())]
            break
        except RuntimeError:  # a dict changed size under us: read again
            continue
    else:
        return []
    out = [Sample("norn_llm_decisions", n, "counter", "decisions settled by the LLM tier, by "
                  "tier (cache, batch, single, fallback)", (("tier", tier),))
           for tier, n in sorted(summary["by_tier"].items())]
    out += [Sample("norn_llm_fallbacks", n, "counter", "LLM-tier fallbacks by reason",
                   (("reason", reason),)) for reason, n in summary["fallbacks"].items()]
    out += [
        Sample("norn_llm_calls", summary["calls"], "counter", "model calls made"),
        Sample("norn_llm_calls_saved", summary["calls_saved"], "counter",
               "decisions answered without a call of their own (cache, shared, batched)"),
        Sample("norn_llm_expired", summary["expired"], "counter",
               "requests whose deadline passed before an answer"),
        Sample("norn_llm_tokens", sum(d["tokens"] for d in per_uc), "counter",
               "tokens used by model calls"),
        Sample("norn_llm_cost_usd", sum(d["cost_usd"] for d in per_uc), "counter",
               "cost of model calls (USD, at the configured prices)"),
    ]
    return out


#: The object ``norn.run_extensions`` names.
extension = LlmRunExtension()
