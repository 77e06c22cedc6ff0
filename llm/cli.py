"""``norn llm``: the LLM tier's operator commands.

Usage::

    norn llm serve-fake [--host 127.0.0.1] [--port 8799] [--faults JSON]
    norn llm status [--settings FILE] [--status-file FILE] [--db FILE] [--json]
    norn llm log [--db FILE | --settings FILE] [--use-case U] [--outcome O] [--variant V]
                 [--limit N] [--json]
    norn llm cache-report [--json]          # the labelled set: hits and false hits
    norn llm registry show --settings FILE
    norn llm registry add-provider --settings FILE NAME --kind openai --base-url URL ...
    norn llm registry add-variant --settings FILE USE_CASE NAME --provider P [--model M] ...
    norn llm registry alias --settings FILE USE_CASE champion|challenger NAME
    norn llm registry deploy --settings FILE USE_CASE all-at-once|blue-green|canary
                 [--challenger NAME] [--share PERMILLE]
    norn llm registry promote|rollback --settings FILE USE_CASE
    norn llm local-demo                     # the opt-in SmolLM2 model (make llm-local)

``register(subparsers)`` adds ``llm`` to the ``norn`` command line (as ``bench/cli.py``
does); ``python -m norn.llm.cli`` works on its own. Exit status: 0; 2 for a user error
(bad settings, unknown use case or variant) with one line naming it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from norn.engine.errors import ConfigError
from norn.llm import limits


def _settings_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--settings", required=required, metavar="FILE",
                   help="the LLM settings and registry JSON (docs/llm.md)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="llm_command", required=True)
    q = sub.add_parser("serve-fake", help="a local OpenAI/Anthropic-compatible fake model")
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--port", type=int, default=8799)
    q.add_argument("--faults", default="[]", help="a JSON fault plan (llm/fake_server.py)")
    q.set_defaults(func=cmd_serve_fake)

    q = sub.add_parser("status", help="tiers, hit rates, breakers, budgets, canaries")
    _settings_arg(q)
    q.add_argument("--status-file", metavar="FILE", help="a running resolver's status JSON")
    q.add_argument("--db", metavar="FILE", help="the inference log (default: settings')")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_status)

    q = sub.add_parser("log", help="query the inference log")
    _settings_arg(q)
    q.add_argument("--db", metavar="FILE")
    q.add_argument("--use-case")
    q.add_argument("--outcome")
    q.add_argument("--variant")
    q.add_argument("--limit", type=int, default=20)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_log)

    q = sub.add_parser("cache-report", help="the cache's labelled set: hits, false hits")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_cache_report)

    q = sub.add_parser("local-demo", help="NPCs answer through the local SmolLM2 model")
    q.set_defaults(func=lambda a: __import__("norn.llm.local", fromlist=["demo"]).demo())

    r = sub.add_parser("registry", help="models per use case: variants, aliases, deployments")
    rs = r.add_subparsers(dest="registry_command", required=True)
    q = rs.add_parser("show")
    _settings_arg(q, True)
    q.set_defaults(func=cmd_registry)
    q = rs.add_parser("add-provider")
    _settings_arg(q, True)
    q.add_argument("name")
    q.add_argument("--kind", required=True, choices=["offline", "openai", "anthropic", "local"])
    q.add_argument("--base-url", default="")
    q.add_argument("--model", default="")
    q.add_argument("--api-key-env")
    q.add_argument("--structured", default="none",
                   choices=["json_schema", "json_object", "tool", "none"])
    q.add_argument("--timeout-s", type=float, default=10.0)
    q.add_argument("--price-in", type=float, default=0.0, help="USD per million input tokens")
    q.add_argument("--price-out", type=float, default=0.0, help="USD per million output tokens")
    q.set_defaults(func=cmd_registry)
    q = rs.add_parser("add-variant")
    _settings_arg(q, True)
    q.add_argument("use_case")
    q.add_argument("name")
    q.add_argument("--provider", required=True)
    q.add_argument("--model", default="")
    q.add_argument("--prompt-version", default="")
    q.add_argument("--temperature", type=float, default=0.0)
    q.add_argument("--max-tokens", type=int, default=1024)
    q.add_argument("--fallback", action="append", default=[], help="next provider (repeat)")
    q.set_defaults(func=cmd_registry)
    q = rs.add_parser("alias")
    _settings_arg(q, True)
    q.add_argument("use_case")
    q.add_argument("alias", choices=["champion", "challenger"])
    q.add_argument("name")
    q.set_defaults(func=cmd_registry)
    q = rs.add_parser("deploy")
    _settings_arg(q, True)
    q.add_argument("use_case")
    q.add_argument("mode", choices=["all-at-once", "blue-green", "canary"])
    q.add_argument("--challenger")
    q.add_argument("--share", type=int, default=0, metavar="PERMILLE",
                   help="canary: requests per thousand to the challenger")
    q.set_defaults(func=cmd_registry)
    for name in ("promote", "rollback"):
        q = rs.add_parser(name)
        _settings_arg(q, True)
        q.add_argument("use_case")
        q.set_defaults(func=cmd_registry)


def register(subparsers: Any) -> None:
    """Add ``llm`` to the ``norn`` command line."""
    p = subparsers.add_parser("llm", help="the LLM decision tier (docs/llm.md)")
    add_arguments(p)


# -- commands ---------------------------------------------------------------------------------
def cmd_serve_fake(args: argparse.Namespace) -> int:
    from norn.llm.fake_server import check_plan, serve

    try:
        plan = check_plan(json.loads(args.faults))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--faults: {exc}") from None
    serve(args.host, args.port, plan)
    return 0


def _db(args: argparse.Namespace) -> str | None:
    if args.db:
        return args.db
    if getattr(args, "settings", None):
        from norn.llm.settings import load_settings

        return load_settings(args.settings).log_path
    return None


def cmd_status(args: argparse.Namespace) -> int:
    from norn.llm import log

    doc: dict[str, Any] = {}
    settings = None
    if args.settings:
        from norn.llm.settings import load_settings

        settings = load_settings(args.settings)
        doc["registry"] = {
            name: {"champion": uc.champion(), "challenger": uc.challenger(),
                   "mode": uc.deployment.mode, "share_permille": uc.canary_share(),
                   "rolled_back": uc.rolled_back, "budget": uc.budget.model_dump()}
            for name, uc in sorted({"default": settings.default, **settings.use_cases}.items())}
    status_file = args.status_file or (settings.status_path if settings else None)
    if status_file and Path(status_file).exists():
        doc["live"] = json.loads(Path(status_file).read_text())
    db = _db(args)
    if db and Path(db).exists():
        doc["log"] = log.aggregate(db)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    if not doc:
        print("nothing to show: give --settings, --status-file or --db")
        return 0
    for name, r in doc.get("registry", {}).items():
        print(f"{name}: champion {r['champion']}, challenger {r['challenger'] or '-'}, "
              f"{r['mode']}" + (f" {r['share_permille']}‰" if r["share_permille"] else "")
              + (f"; rolled back {', '.join(r['rolled_back'])}" if r["rolled_back"] else ""))
    live = doc.get("live")
    if live:
        print(f"live: queue {live['queue']}, results {live['results']}, "
              f"open {live['open_requests']}, counters {live['counters']}")
        c = live["cache"]
        print(f"cache: {c['entries']}/{c['entries_max']} entries, hit rate {c['hit_rate']} "
              f"(exact {c['exact']}, near {c['near']} of {c['lookups']})")
        for uc, s in live["use_cases"].items():
            print(f"  {uc}: {s['requests']} requests; cache {s['cache_exact']}+"
                  f"{s['cache_near']}, shared {s['shared']}, batched {s['batch_items']} in "
                  f"{s['calls_batch']} calls, single {s['single_items']} in "
                  f"{s['calls_single']} calls, saved {s['calls_saved']}; fallbacks "
                  f"{s['fallbacks'] or 'none'}; p95 {s['latency_p95_s']} s")
        for p, b in live["breakers"].items():
            print(f"  breaker {p}: {b['state']} (failures {b['failures']}, opens {b['opens']})")
        for uc, b in live["budgets"].items():
            print(f"  budget {uc}: {b}")
        for uc, cn in live["canaries"].items():
            print(f"  canary {uc}: {cn}")
    for row in doc.get("log", []):
        print(f"log {row['use_case']}/{row['variant']}/{row['tier']}: {row['calls']} calls, "
              f"{row['items']} items, ok {row['ok_rate']:.3f}, p95 "
              f"{row['latency_p95_ms']:.1f} ms, tokens {row['tokens_in']}+{row['tokens_out']},"
              f" cost {row['cost_usd']:.6f} USD")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from norn.llm import log

    db = _db(args)
    if not db or not Path(db).exists():
        raise ConfigError(f"no inference log at {db!r} (give --db or --settings)")
    if not 1 <= args.limit <= limits.log_query_rows_max:
        raise ConfigError(f"--limit must be in 1..{limits.log_query_rows_max}")
    rows = log.query(db, use_case=args.use_case, outcome=args.outcome, variant=args.variant,
                     limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for r in rows:
        print(f"tick {r['tick']} {r['use_case']}/{r['variant']} {r['tier']} x{r['items']} "
              f"{r['provider']}:{r['model']} {r['outcome']} {r['latency_ms']:.1f} ms "
              f"tokens {r['tokens_in']}+{r['tokens_out']} {r['cost_usd']:.6f} USD"
              + (f" error {r['error']}" if r["error"] else ""))
        print(f"    out: {r['output'][:160]}")
    return 0


def cmd_cache_report(args: argparse.Namespace) -> int:
    from norn.llm.cache import evaluate

    rep = evaluate()
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    for name, r in rep.items():
        print(f"{name}: threshold {r['threshold']} standard units; held-out hits "
              f"{r['hits']}/{r['should_hit']}, false hits {r['false_hits']}/{r['should_miss']}")
        for why, w in r["by_why"].items():
            print(f"    {why} ({w['expect']}): {w['hits']}/{w['cases']} hit")
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from norn.llm.settings import ProviderSpec, Registry, Variant

    reg = Registry.open(args.settings)
    c = args.registry_command
    flip = None
    if c == "show":
        print(json.dumps(reg.settings.model_dump(mode="json"), indent=2))
        return 0
    if c == "add-provider":
        reg.add_provider(args.name, ProviderSpec(
            kind=args.kind, base_url=args.base_url, model=args.model,
            api_key_env=args.api_key_env, structured=args.structured,
            timeout_s=args.timeout_s, price_in_per_mtok_usd=args.price_in,
            price_out_per_mtok_usd=args.price_out))
        print(f"provider {args.name} saved to {args.settings}")
        return 0
    if c == "add-variant":
        flip = reg.add_variant(args.use_case, args.name, Variant(
            provider=args.provider, model=args.model, prompt_version=args.prompt_version,
            temperature=args.temperature, max_tokens=args.max_tokens, fallbacks=args.fallback))
    elif c == "alias":
        flip = reg.set_alias(args.use_case, args.alias, args.name)
    elif c == "deploy":
        if not 0 <= args.share <= 1000:
            raise ConfigError("--share must be in 0..1000 (permille)")
        flip = reg.deploy(args.use_case, args.mode, args.challenger, args.share)
    elif c == "promote":
        flip = reg.promote(args.use_case)
    elif c == "rollback":
        flip = reg.rollback(args.use_case)
    if flip is not None:
        print(json.dumps(flip.as_dict()))
    return 0


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from norn.engine.errors import NornError

    parser = argparse.ArgumentParser(prog="norn llm", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except NornError as exc:
        print(f"norn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValidationError as exc:
        print(f"norn: error: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
