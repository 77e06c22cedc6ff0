"""A world model in its own installable package, with an event kind of its own, end to end.

``tests/fixtures/tinymodel`` is a separate distribution (``norn-tinymodel``) whose
``pyproject.toml`` registers the model ``tiny`` in the ``norn.models`` entry point group
and whose one module declares the event kind ``tiny_ping`` and the system consuming it.
It is installed here the way an installer lays a package out (the package and a
``.dist-info`` with its ``entry_points.txt``, generated from its ``pyproject.toml``) into
a temporary directory put on ``PYTHONPATH``: offline, without a build backend. Then:

- ``norn`` finds the model through the entry point (it is not in Norn's pyproject);
- a batch of ``tiny_ping`` sent over the real bridge (``norn run --serve``, a real DEALER)
  is accepted with the wire schema derived from the kind's declaration (an event with its
  cell outside the map is rejected by the same declaration), acked, journaled under the
  kind's name, replayed by ``norn replay verify``, and reaches the model's system.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from norn.bridge import protocol as proto
from norn.bridge.codec import encode_columns
from norn.bridge.testing import RawPeer
from norn.engine.kinds import Kinds
from tests.helpers import ROOT, norn

FIXTURE = ROOT / "tests" / "fixtures" / "tinymodel"
pytestmark = [pytest.mark.slow]


def install(src: Path, target: Path) -> Path:
    """Lay ``src`` (a setuptools project) out as an installer would: its packages, and a
    dist-info whose ``entry_points.txt`` comes from ``[project.entry-points]``."""
    meta = tomllib.loads((src / "pyproject.toml").read_text())
    project = meta["project"]
    target.mkdir(parents=True, exist_ok=True)
    for pkg in meta["tool"]["setuptools"]["packages"]:
        shutil.copytree(src / pkg, target / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    dist = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = []
    for group, eps in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in eps.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (dist / "INSTALLER").write_text("tests/test_tinymodel.py\n")
    return target


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return install(FIXTURE, tmp_path_factory.mktemp("site"))


def _env(site: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def test_the_fixture_model_is_not_part_of_norn():
    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert "tiny" not in eps["norn.models"]
    assert "tiny" in tomllib.loads((FIXTURE / "pyproject.toml").read_text())["project"][
        "entry-points"]["norn.models"]


def test_the_model_is_found_through_its_entry_point(site):
    code = (
        "from norn.engine.scenario import load_model, model_names\n"
        "m = load_model('tiny')\n"
        "print(sorted(model_names()), m.name, m.summary is not None, m.make_event_source)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **_env(site)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["['boltzmann',", "'midgard',", "'tiny',", "'toy']", "tiny",
                                "True", "None"]
    # and without the package on the path, a scenario naming it is refused (exit 2)
    r = norn("run", "--scenario", str(_scenario(site.parent)), "--ticks", "1", "--out",
             str(site.parent / "no-run"))
    assert r.returncode == 2 and "tiny" in r.stderr


def _scenario(where: Path) -> Path:
    p = where / "tiny.toml"
    p.write_text('name = "tiny"\nmodel = "tiny"\n')
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_new_event_kind_goes_from_the_wire_to_its_system_and_replays(site, tmp_path,
                                                                       monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    from norn_tinymodel import PING  # the one declaration; the engine knows nothing else

    kinds = Kinds.protocol_v1()
    kinds.consume("test", [PING])
    wire = proto.WireSchema.of(kinds)
    assert "tiny_ping" in wire.events and "tiny_ping" not in proto.WIRE_EVENT_SCHEMAS

    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    out = tmp_path / "run"
    engine = subprocess.Popen(
        [sys.executable, "-m", "norn.engine.cli", "run", "--scenario",
         str(_scenario(tmp_path)), "--serve", endpoint, "--out", str(out), "--ticks",
         "1000000", "--clock", "realtime", "--tick-ms", "20", "--snapshot-every", "0",
         "--json"],
        cwd=ROOT, env={**os.environ, **_env(site)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    peer = RawPeer(endpoint)
    try:
        welcome = None
        deadline = time.monotonic() + 60
        while welcome is None and time.monotonic() < deadline and engine.poll() is None:
            welcome = peer.hello("map01")
        assert welcome is not None and welcome["t"] == proto.WELCOME, engine.poll()
        assert welcome["maps"] == [["tiny_field", 40, 30]]
        cols = {
            "char_id": np.array([150001, 150002, 150003], "<u4"),
            "map": np.zeros(3, "<i2"),
            "x": np.array([5, 39, 40], "<i2"),  # 40 is outside the 40-cell-wide map
            "y": np.array([7, 29, 1], "<i2"),
            "power": np.array([10, 20, 30], "<i4"),
        }
        peer.send(encode_columns(proto.EVENTS, 1, "tiny_ping", cols, ["tiny_field"],
                                 schema=wire))
        err = peer.recv_type(proto.ERROR, timeout_s=30)
        assert err is not None and err["name"] == "invalid_events"
        assert err["events"] == [[2, "x", "outside the map's width"]]
        ack = peer.recv_until(lambda m: m.get("t") == proto.ACK and m["seq"] >= 1, 30)
        assert ack is not None, "the batch was never acked (journaled)"
    finally:
        peer.close()
        engine.send_signal(signal.SIGTERM)
        stdout, stderr = engine.communicate(timeout=120)
    assert engine.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["world"] == {"pings": 2, "power": 30}  # the system saw the valid two

    from norn.engine.reader import open_run

    run = open_run(out)
    assert [k for k, _ in run.header["kinds"]][-1] == "tiny_ping"  # after protocol v1's
    batches = [b for rec in run.ticks() for b in rec.inputs if b.kind == "tiny_ping"]
    assert len(batches) == 1 and batches[0].columns["power"].tolist() == [10, 20]

    r = norn("replay", "verify", str(out), env=_env(site))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "match" in r.stdout
