"""The CLI left the state core: packages register their own commands; engine/ imports down.

- nothing under ``engine/`` imports ``bridge``, ``replays``, ``bench``, ``llm`` or
  ``actors`` (not even inside a function);
- the installed ``norn.commands`` and ``norn.run_extensions`` entry points are the ones
  ``pyproject.toml`` declares (a stale install would hide commands), each inside its package;
- ``norn run`` without the bridge's extension has no bridge options, and refuses lockstep.
"""

from __future__ import annotations

import ast
import tomllib
from importlib.metadata import entry_points

import pytest

from tests.helpers import ROOT

ABOVE_ENGINE = ("bridge", "replays", "bench", "llm", "actors")


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module a file imports, anywhere in it (``import_module("...")`` included)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(
                node.func, "id", None)) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def test_engine_imports_nothing_above_it():
    bad = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        for line, module in _imported_modules(ast.parse(path.read_text())):
            parts = module.split(".")
            top = parts[1] if parts[0] == "norn" and len(parts) > 1 else parts[0]
            if top in ABOVE_ENGINE:
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert not bad, "\n".join(bad)


def test_the_import_canary_is_caught():
    tree = ast.parse("def f():\n    from norn.bridge.server import BridgeServer\n"
                     "    importlib.import_module('norn.replays.verify')\n")
    assert [m for _, m in _imported_modules(tree)] == ["norn.bridge.server", "norn.replays.verify"]


def _declared(group: str) -> dict[str, str]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return doc["project"]["entry-points"][group]


@pytest.mark.parametrize("group", ["norn.commands", "norn.run_extensions"])
def test_installed_entry_points_are_the_declared_ones(group):
    installed = {ep.name: ep.value for ep in entry_points(group=group)}
    assert installed == _declared(group), "stale install: pip install -e '.[dev]'"


def test_each_package_registers_its_own_commands():
    owners = {"run": "norn.engine.", "replay": "norn.replays.", "bridge": "norn.bridge.",
              "bench": "norn.bench.", "llm": "norn.llm."}
    assert {k: v.split(":")[0] for k, v in _declared("norn.commands").items()} == {
        k: f"{v}{'commands' if k == 'run' else 'cli'}" for k, v in owners.items()} | {
        "warmup": "norn.engine.warmup", "scenario": "norn.actors.midgard.importer"}
    assert _declared("norn.run_extensions") == {"bridge": "norn.bridge.serve:extension",
                                                "gm": "norn.replays.gm:extension",
                                                "llm": "norn.llm.run:extension",
                                                "observe": "norn.engine.metrics:extension"}
    assert _declared_script() == "norn.engine.cli:main"


def _declared_script() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["norn"]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--serve", "tcp://127.0.0.1:0", "--sim-players", "3", "--lockstep-server", "m"],
        ["replay", "info", "d"],
        ["replay", "verify", "d", "--json"],
        ["sim-server", "--connect", "tcp://127.0.0.1:1"],
        ["bridge", "keygen", "--out", "d"],
        ["bench", "core", "--tiny"],
        ["scenario", "import", "--rathena", "d", "--maps", "prontera,prt_fild0*"],
    ],
)
def test_every_command_parses(argv):
    from norn.engine.cli import build_parser

    args = build_parser().parse_args(argv)
    assert callable(args.func) and args.command == argv[0]


def test_run_without_the_bridge_extension_has_no_bridge_options(monkeypatch, tmp_path, capsys):
    from norn.engine import cli, commands

    monkeypatch.setattr(commands, "run_extensions", lambda: [])
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "--serve", "tcp://127.0.0.1:0"])
    assert "unrecognized arguments: --serve" in capsys.readouterr().err
    cfg = tmp_path / "norn.toml"
    cfg.write_text('[run]\nlockstep_servers = ["map01"]\n')
    code = cli.main(["run", "--scenario", "toy", "--ticks", "2", "--config", str(cfg), "--out",
                     str(tmp_path / "r"), "--json"])
    assert code == 2
    assert capsys.readouterr().err == (
        "norn: error: lockstep_servers needs a bridge serving the map servers it waits for "
        "(norn run --serve)\n")
