"""Scenarios: a TOML file naming a world model and its data; the model builds the world.

The engine reads only ``name`` and ``model``; the model validates the rest with its own
pydantic schema. The scenario's full text is embedded in the journal header, so a replay
needs nothing but the journal.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from norn.engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = ROOT / "scenarios"
DEFAULT_SCENARIO = "midgard.toml"

#: model name -> "module:function" building plugins into a World from scenario data.
MODELS: dict[str, str] = {
    "toy": "norn.actors.toy:build_world",
    "boltzmann": "norn.actors.boltzmann:build_world",
    "midgard": "norn.actors.midgard:build_world",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str
    text: str
    data: dict[str, Any]
    source: str

    def builder(self) -> Callable[..., None]:
        module, _, fn = MODELS[self.model].partition(":")
        return getattr(importlib.import_module(module), fn)


def parse_scenario(text: str, source: str) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    model = data.get("model")
    if model not in MODELS:
        raise ConfigError(f"{source}: model: must be one of {sorted(MODELS)} (got {model!r})")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: name: must be a non-empty string")
    return Scenario(name=name, model=model, text=text, data=data, source=source)


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load ``path``, a bare name from ``scenarios/``, or the embedded default."""
    if path is None:
        candidate = SCENARIO_DIR / DEFAULT_SCENARIO
        if not candidate.is_file():
            candidate = SCENARIO_DIR / "toy.toml"
        path = candidate
    p = Path(path)
    if not p.is_file() and (SCENARIO_DIR / p).is_file():
        p = SCENARIO_DIR / p
    if not p.is_file() and (SCENARIO_DIR / f"{p}.toml").is_file():
        p = SCENARIO_DIR / f"{p}.toml"
    if not p.is_file():
        raise ConfigError(f"{path}: scenario file not found")
    return parse_scenario(p.read_text(), str(p))
