"""Run configuration: one TOML file validated by pydantic, overridable from the CLI.

Errors name the key and what is allowed, and become exit code 2 (``ConfigError``).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from norn.engine import limits
from norn.engine.errors import ConfigError


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(1, ge=0, lt=2**63)
    ticks: int = Field(600, ge=1, le=10**9)
    tick_ms: int = Field(100, ge=1, le=60_000)
    clock: Literal["fast", "realtime", "lockstep"] = "fast"
    chunk_rows: int = Field(1024, ge=8, le=1 << 20)
    snapshot_every: int = Field(100, ge=0, le=10**9)
    fsync: bool = True
    synctest: bool = False
    decision_latency_ticks: int = Field(1, ge=0, le=limits.decision_deadline_ticks_max)
    lockstep_timeout_s: float = Field(10.0, gt=0, le=3600)
    # Bridge lockstep: before each tick, wait until these map servers declared it complete
    # (PROTOCOL.md section 14), so which tick a batch lands in never depends on timing.
    lockstep_servers: tuple[str, ...] = Field((), max_length=1024)
    lockstep_servers_timeout_s: float = Field(60.0, gt=0, le=86_400)
    input_batches_max: int = Field(limits.input_batches_max, ge=1, le=limits.input_batches_max)
    input_events_max: int = Field(limits.input_events_max, ge=1, le=limits.input_events_max)
    actions_per_tick_max: int = Field(
        limits.actions_per_tick_max, ge=1, le=limits.actions_per_tick_max
    )

    @field_validator("lockstep_servers")
    @classmethod
    def _server_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for sid in v:
            if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", sid):
                raise ValueError(f"{sid!r} is not a server id ([A-Za-z0-9_.-]{{1,64}})")
        if len(set(v)) != len(v):
            raise ValueError("server ids repeat")
        return tuple(sorted(v))

    @field_validator("chunk_rows")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            raise ValueError("must be a multiple of 8")
        return v


def format_loc(loc: tuple[Any, ...]) -> str:
    """A key path the way a designer reads it: ``maps[3].warps[1].to``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def suggest(name: str, allowed: Iterable[str]) -> str | None:
    """The allowed key closest to a misspelled ``name``, if one is close enough."""
    match = difflib.get_close_matches(name, sorted(set(allowed)), n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_keys_message(where: str, unknown: Iterable[str], allowed: Iterable[str]) -> str:
    """One line per unknown key, with the close match among ``allowed`` when there is one."""
    allowed = sorted(set(allowed))
    lines = []
    for key in sorted(unknown):
        close = suggest(key, allowed)
        hint = f"; did you mean {close!r}?" if close else f"; allowed: {', '.join(allowed)}"
        lines.append(f"{where}: {key}: unknown key{hint}")
    return "\n".join(lines)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (itself, list/tuple items, dict values, unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    args = get_args(annotation)
    if get_origin(annotation) is dict and len(args) == 2:
        args = args[1:]
    return [m for a in args if a is not Ellipsis for m in _models_in(a)]


def keys_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the table at ``loc`` of a document validated by ``model``."""
    models = [model] if model is not None else []
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list: the same models
        found = []
        for m in models:
            field = m.model_fields.get(str(part))
            if field is None:  # an alias?
                field = next((f for f in m.model_fields.values() if f.alias == part), None)
            if field is not None:
                found += _models_in(field.annotation)
        models = found
    return sorted({f.alias or name for m in models for name, f in m.model_fields.items()})


def format_validation_error(exc: ValidationError, where: str,
                            model: type[BaseModel] | None = None) -> str:
    """Every problem, one line each, naming its key path and what is allowed.

    An unknown key gets the close match among the keys allowed there (from ``model``, the
    class validated); a required key missing in the same table as a close unknown one is the
    same problem, said once: ``world.terain_seed: unknown key; did you mean 'terrain_seed'
    (required)?``.
    """
    errors = exc.errors()
    missing: dict[tuple[Any, ...], set[str]] = {}
    for err in errors:
        if err["type"] == "missing" and err["loc"]:
            missing.setdefault(tuple(err["loc"][:-1]), set()).add(str(err["loc"][-1]))
    close: dict[tuple[Any, ...], str | None] = {}  # unknown key -> the key it likely meant
    for err in errors:
        if err["type"] == "extra_forbidden":
            loc = tuple(err["loc"])
            parent, key = loc[:-1], str(loc[-1])
            close[loc] = suggest(key, missing.get(parent, ())) or suggest(
                key, keys_at(model, parent))
    # missing keys an unknown key's hint names: one problem, said once
    explained = {(*loc[:-1], c) for loc, c in close.items()
                 if c is not None and c in missing.get(loc[:-1], ())}
    lines = []
    for err in errors:
        loc = tuple(err["loc"])
        kind = err["type"]
        if kind == "missing" and loc in explained:
            continue
        got = f" (got {err.get('input')!r:.60})"
        if kind == "extra_forbidden":
            meant = close[loc]
            if meant is not None and (*loc[:-1], meant) in explained:
                msg, got = f"unknown key; did you mean {meant!r} (required)?", ""
            elif meant is not None:
                msg, got = f"unknown key; did you mean {meant!r}?", ""
            else:
                msg = "unknown key"
        elif kind == "missing":
            msg, got = "required key is missing", ""
        elif kind == "literal_error":
            msg = f"must be one of {err['ctx']['expected']}"
        else:
            msg = err["msg"]
        lines.append(f"{where}: {format_loc(loc)}: {msg}{got}")
    return "\n".join(lines)


def _read_toml(file: str | Path) -> tuple[Path, dict[str, Any]]:
    """The config file's tables; a missing file, bad TOML or an unknown table is a ConfigError."""
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"run", "bridge"}
    if unknown:
        raise ConfigError(unknown_keys_message(str(path), unknown, ("run", "bridge")))
    return path, doc


def make_config(file: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the ``[run]`` table of ``file``, then non-None ``overrides``."""
    data: dict[str, Any] = {}
    where = "config"
    if file is not None:
        path, doc = _read_toml(file)
        where = str(path)
        data.update(doc.get("run", {}))
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RunConfig(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where, RunConfig)) from None


def run_table(file: str | Path | None) -> dict[str, Any]:
    """The ``[run]`` table of the config file, as written (``make_config`` validates it)."""
    if file is None:
        return {}
    return dict(_read_toml(file)[1].get("run", {}))


def bridge_table(file: str | Path | None) -> dict[str, Any]:
    """The ``[bridge]`` table of the config file (validated by the bridge's own model)."""
    if file is None:
        return {}
    return _read_toml(file)[1].get("bridge", {})
