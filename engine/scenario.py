"""Scenarios: a TOML file naming a world model and its data; the model builds the world.

The engine reads only ``name`` and ``model``; the model validates the rest with its own
pydantic schema. The scenario's full text is embedded in the journal header, so a replay
needs nothing but the journal (and the model's package installed).

Models are found through the ``norn.models`` entry point group: each names a ``Model``
object (``norn.actors.midgard:MODEL``), so a model can live in its own installable
package. A ``Model`` says explicitly which optional hooks it has (None where it has not).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from norn.engine.errors import ConfigError, DefinitionError

if TYPE_CHECKING:
    from norn.engine.inputs import InputBatch
    from norn.engine.world import World

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = ROOT / "scenarios"
DEFAULT_SCENARIO = "midgard.toml"
#: The entry point group models register in (``[project.entry-points."norn.models"]``).
MODELS_GROUP = "norn.models"

#: ``source(tick) -> batches``: a model's simulated inputs while no bridge serves.
EventSource = Callable[[int], "list[InputBatch]"]


@dataclass(frozen=True)
class Model:
    """A world model: how to build a world from a scenario, and its optional hooks.

    - ``build_world(world, scenario)``: add the model's resources and plugins.
    - ``make_event_source(data, seed)``: simulated players' events, a pure function of the
      tick, offered before each tick of an unbridged run (None: the world gets no inputs).
    - ``summary(world)``: what happened, for the run report.
    - ``bridge_view(world)``: the ``bridge.view.WorldView`` keywords (map names and sizes,
      reward caps, ``kinds``) the bridge validates against; None: cannot be served.
    - ``bridge_sync(world, hosts)``: what a map server hosting ``hosts`` (bool per map id;
      None: every map) must mirror of the world now, as rows of action kinds (kind -> engine
      columns, without ``action_id``): the join sync a server gets after each ``hello``
      (``bridge/PROTOCOL.md`` section 16). Read-only, called on the tick thread between
      ticks; None: servers get no sync.
    """

    name: str
    build_world: Callable[[World, Scenario], None]
    make_event_source: Callable[[dict[str, Any], int], EventSource] | None = None
    summary: Callable[[World], dict[str, Any]] | None = None
    bridge_view: Callable[[World], dict[str, Any]] | None = None
    bridge_sync: Callable[[World, Any], dict[str, dict[str, Any]]] | None = None


#: Models registered in this process (``register_model``), over the entry points.
_REGISTERED: dict[str, Model] = {}


@cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=MODELS_GROUP)}


def model_names() -> list[str]:
    """Every model this installation knows, sorted."""
    return sorted({*_entry_points(), *_REGISTERED})


def load_model(name: str) -> Model:
    """The model ``name``: registered in-process, else its ``norn.models`` entry point."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise ConfigError(f"model {name!r} is not installed; known: {model_names()}")
    try:
        model = ep.load()
    except Exception as exc:
        raise DefinitionError(
            f"model {name!r}: loading its entry point {ep.value!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, Model) or model.name != name:
        raise DefinitionError(
            f"model {name!r}: entry point {ep.value!r} must name a norn.engine.scenario.Model "
            f"called {name!r} (got {type(model).__name__})"
        )
    return model


def register_model(model: Model) -> Callable[[], None]:
    """Make ``model`` known in this process (tests, notebooks); returns the undo."""
    previous = _REGISTERED.get(model.name)
    _REGISTERED[model.name] = model

    def undo() -> None:
        if previous is None:
            _REGISTERED.pop(model.name, None)
        else:
            _REGISTERED[model.name] = previous

    return undo


def refresh_models() -> None:
    """Forget the cached entry points (after installing a model package at run time)."""
    _entry_points.cache_clear()


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str
    text: str
    data: dict[str, Any]
    source: str

    def world_model(self) -> Model:
        return load_model(self.model)

    def builder(self) -> Callable[..., None]:
        return self.world_model().build_world


def parse_scenario(text: str, source: str) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    model = data.get("model")
    if model not in model_names():
        raise ConfigError(f"{source}: model: must be one of {model_names()} (got {model!r})")
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
