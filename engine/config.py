"""Run configuration: one TOML file validated by pydantic, overridable from the CLI.

Errors name the key and what is allowed, and become exit code 2 (``ConfigError``).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

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


def format_validation_error(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "literal_error":
            msg = f"must be one of {err['ctx']['expected']}"
        lines.append(f"{where}: {loc}: {msg} (got {err.get('input')!r})")
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
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)}; allowed: [run], [bridge]")
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
        raise ConfigError(format_validation_error(exc, where)) from None


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
