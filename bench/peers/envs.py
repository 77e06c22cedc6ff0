"""Virtual environments for the peers, created on first use under ``.bench-envs/``.

Why separate environments: mesa-frames' release pins numpy 1.26 while Norn runs numpy 2,
so no single environment holds both. Requirements are pinned to the versions these
scripts were checked with; a changed pin rebuilds the environment (a stamp file holds the
hash of what it was built from). Installs go through pip, from PyPI or the configured
index, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from norn.bench.machine import ROOT

ENV_DIR = ROOT / ".bench-envs"
PEER_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Peer:
    name: str
    script: str
    requirements: tuple[str, ...]


PEERS: dict[str, Peer] = {
    "mesa": Peer("mesa", "mesa_boltzmann.py", ("mesa==3.3.1",)),
    "mesa-frames": Peer(
        "mesa-frames",
        "mesa_frames_boltzmann.py",
        ("mesa-frames==0.1.0a0", "numpy==1.26.4", "polars==2.1.0"),
    ),
}


class PeerUnavailable(RuntimeError):
    pass


def _stamp(peer: Peer) -> str:
    text = json.dumps([sys.version_info[:2], list(peer.requirements)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def env_python(peer: Peer) -> Path:
    return ENV_DIR / peer.name / "bin" / "python"


def ensure_env(peer: Peer, log: Any = None) -> Path:
    """The peer's interpreter, creating its environment first if it is missing or stale."""
    env = ENV_DIR / peer.name
    stamp = env / ".norn-stamp"
    python = env_python(peer)
    if python.exists() and stamp.exists() and stamp.read_text() == _stamp(peer):
        return python
    if log is not None:
        log(f"creating {env} ({', '.join(peer.requirements)}); first use only")
    env.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(env)],
        [str(python), "-m", "pip", "install", "--quiet", *peer.requirements],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise PeerUnavailable(f"{peer.name}: {' '.join(cmd[:4])} ... failed:\n{tail}")
    stamp.write_text(_stamp(peer))
    return python


def run_peer(
    name: str, agents: int, steps: int, repeat: int, seed: int, timeout_s: float, log: Any = None
) -> dict[str, Any]:
    """Run one peer script in its environment; returns its JSON result."""
    peer = PEERS[name]
    python = ensure_env(peer, log)
    cmd = [
        str(python),
        str(PEER_DIR / peer.script),
        f"--agents={agents}",
        f"--steps={steps}",
        f"--repeat={repeat}",
        f"--seed={seed}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerUnavailable(f"{name}: no result within {timeout_s:.0f} s") from exc
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
    raise PeerUnavailable(f"{name}: exited {proc.returncode}:\n{tail}")
