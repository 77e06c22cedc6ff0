"""``norn sweep SCENARIO --param k=v1,v2 --seeds 1..32``: many worlds at once, on Ray.

Every combination of the swept parameter values and seeds is one normal journaled run in
its own directory under ``--out`` (so any of them can be verified, shown, forked or
queried later), run as a Ray task: a local Ray by default (``--workers`` processes), a
cluster by ``--address``. Each task returns its run's summary: ticks, last digest, speed,
every live row count and every counter of the world's one-row ``*_stats`` tables, plus a
price index where the world has markets. The driver gathers them into one DuckDB table,
``runs`` in ``OUT/sweep.duckdb``, one row per run with the swept parameters as columns,
so comparing is one ``GROUP BY``.

Ray is an optional dependency (``pip install 'norn[sweep]'``): it is heavy, and only
sweeps need it. On a cluster every node needs Norn installed (the tasks import it) and
``--out`` must be a path every node writes to (shared storage): the runs are written
where they run, the summaries travel back to the driver.
"""

from __future__ import annotations

import itertools
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from norn.engine.errors import EnvironmentFailure, NornError, UserError

#: Runs in one sweep (a typo in --seeds must not start a million worlds).
SWEEP_RUNS_MAX = 4096


def parse_seeds(text: str) -> list[int]:
    """``1..32`` (inclusive), ``1,5,9`` or a mix: ``1..4,10``."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, dots, hi = part.partition("..")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if dots else [int(part)]
        except ValueError:
            raise UserError(f"--seeds {text!r}: expected 1..32 or 1,5,9") from None
    if not seeds:
        raise UserError(f"--seeds {text!r}: no seeds")
    return seeds


def parse_params(params: list[str]) -> list[tuple[str, list[str]]]:
    """``["rules.economy.price_band_min=0.5,0.6"]`` -> ``[(key, ["0.5", "0.6"])]``."""
    out = []
    for p in params:
        key, eq, values = p.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or not key.strip() or not vals:
            raise UserError(f"--param {p!r}: expected key=v1,v2,...")
        out.append((key.strip(), vals))
    return out


def plan(scenario: str, params: list[str], seeds: str, out: str | Path) -> list[dict[str, Any]]:
    """One spec per run: its directory, seed and ``--set`` values."""
    from norn.engine.scenario import load_scenario

    sc = load_scenario(scenario)
    grid = parse_params(params)
    seed_list = parse_seeds(seeds)
    combos = list(itertools.product(*[[(k, v) for v in vals] for k, vals in grid]))
    n = len(combos) * len(seed_list)
    if n > SWEEP_RUNS_MAX:
        raise UserError(f"the sweep has {n} runs, more than sweep_runs_max {SWEEP_RUNS_MAX}")
    specs = []
    for combo in combos:
        for seed in seed_list:
            label = "-".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in combo)
            name = re.sub(r"[^A-Za-z0-9_.=-]", "_", f"{sc.name}-{label}-s{seed}".replace("--", "-"))
            specs.append({"scenario": sc.text, "source": sc.source, "seed": seed,
                          "sets": [f"{k}={v}" for k, v in combo],
                          "params": dict(combo), "dir": str(Path(out) / name)})
    return specs


def run_one(spec: dict[str, Any], ticks: int) -> dict[str, Any]:
    """One journaled run (a Ray task body; plain Python, so it is tested without Ray)."""
    import time

    from norn.engine.config import make_config
    from norn.engine.recorder import Recorder
    from norn.engine.runner import build_world, make_header, run
    from norn.engine.scenario import parse_scenario
    from norn.replays.fork import apply_sets, parse_value

    t0 = time.monotonic()
    scenario = apply_sets(parse_scenario(spec["scenario"], spec["source"]), spec["sets"])
    config = make_config(None, seed=spec["seed"], ticks=ticks)
    world = build_world(scenario, config)
    recorder = Recorder.create(spec["dir"], make_header(scenario, config, world),
                               fsync=config.fsync, snapshot_every=config.snapshot_every)
    hook = scenario.world_model().make_event_source
    source = hook(scenario.data, config.seed) if hook is not None else None

    def feed(tick: int) -> None:
        for b in source(tick) if source is not None else ():
            if not world.inputs.offer(b):
                raise UserError("generated events exceed the input queue bounds")

    summary = run(world, config, recorder, before_tick=feed)
    recorder.close(world, summary.stopped)
    s = summary.as_dict()
    row: dict[str, Any] = {
        "run": Path(spec["dir"]).name, "dir": spec["dir"], "seed": spec["seed"],
        **{_column(k, spec["params"]): parse_value(v) for k, v in spec["params"].items()},
        "ticks": s["ticks"], "last_digest": s["last_digest"], "ticks_per_s": s["ticks_per_s"],
        "wall_s": round(time.monotonic() - t0, 3), "actions": s["actions"],
        "stopped": s["stopped"]}
    row.update(metrics(world))
    return row


def _column(key: str, params: dict[str, Any]) -> str:
    """A swept key as a column name: its last part, unless two keys share it."""
    last = key.rsplit(".", 1)[-1]
    clash = sum(k.rsplit(".", 1)[-1] == last for k in params) > 1
    return key.replace(".", "_") if clash else last


def metrics(world: Any) -> dict[str, Any]:
    """What a run ended with: live rows per table (``rows_npc``), every counter of the
    one-row stats tables (``npc_stats_fled``), a price index (geometric mean of price over
    base price) where the world has markets."""
    out: dict[str, Any] = {}
    for name, t in world.tables.items():
        out[f"rows_{name}"] = t.count
        if name.endswith("_stats") and t.hwm == 1:
            for c, a in t.columns.items():
                if c in ("alive", "generation"):
                    continue
                v = a[0]
                out[f"{name}_{c}"] = float(v.sum()) if np.ndim(v) else (
                    float(v) if a.dtype.kind == "f" else int(v))
    items, mk = world.resources.get("items"), world.resources.get("markets")
    if items is not None and mk is not None and "market" in world.tables:
        price = world.tables["market"]["price"][: mk.n].astype(np.float64)
        base = np.asarray(items.price, np.float64)[mk.item]
        out["price_index"] = round(float(np.exp(np.mean(np.log(price / base)))), 6)
    return out


def sweep(scenario: str, *, params: list[str], seeds: str, ticks: int, out: str | Path,
          address: str | None = None, workers: int | None = None, replace: bool = False,
          quiet: bool = False) -> dict[str, Any]:
    """Run the sweep on Ray and gather ``OUT/sweep.duckdb``; returns its rows."""
    try:
        import ray
    except ImportError:
        raise EnvironmentFailure("norn sweep runs on Ray, which is not installed: "
                                 "pip install 'norn[sweep]'") from None
    out = Path(out)
    if out.exists() and replace:
        shutil.rmtree(out)
    specs = plan(scenario, params, seeds, out)
    taken = [s["dir"] for s in specs if Path(s["dir"]).exists()]
    if taken:
        raise UserError(f"{taken[0]}: exists already; choose another --out or --replace")
    out.mkdir(parents=True, exist_ok=True)
    started = not ray.is_initialized()
    if started:
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=workers, **kw)
    try:
        task = ray.remote(run_one)
        pending = [task.remote(s, ticks) for s in specs]
        rows: list[dict[str, Any]] = []
        show = not quiet and sys.stderr.isatty()
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                rows.extend(ray.get(done))
            except ray.exceptions.RayTaskError as exc:  # a run's own error, not Ray's
                cause = getattr(exc, "cause", None)
                raise cause if isinstance(cause, NornError) else exc from None
            if show:
                print(f"\rsweep: {len(rows)}/{len(specs)} runs", end="", file=sys.stderr)
        if show:
            print(file=sys.stderr)
    finally:
        if started:
            ray.shutdown()
    rows.sort(key=lambda r: r["run"])
    db = out / "sweep.duckdb"
    _write(db, rows)
    return {"out": str(out), "database": str(db), "table": "runs", "runs": rows}


def _write(db: Path, rows: list[dict[str, Any]]) -> None:
    import duckdb
    import pyarrow as pa

    cols = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.table({c: [r.get(c) for r in rows] for c in cols})
    con = duckdb.connect(str(db))
    try:
        con.register("gathered", table)
        con.execute("CREATE OR REPLACE TABLE runs AS SELECT * FROM gathered")
    finally:
        con.close()


def format_sweep(res: dict[str, Any]) -> str:
    rows = res["runs"]
    lines = [f"{len(rows)} runs in {res['out']}; summaries in {res['database']} (table runs)"]
    for r in rows:
        lines.append(f"  {r['run']}: {r['ticks']} ticks, digest {r['last_digest']}"
                     + (f", price index {r['price_index']}" if "price_index" in r else ""))
    lines.append(f"compare: duckdb {res['database']} \"SELECT * FROM runs\"")
    return "\n".join(lines)
