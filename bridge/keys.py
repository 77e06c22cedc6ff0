"""CurveZMQ key files: ``norn bridge keygen`` writes them, the server and client read them.

A key pair is two text files holding Z85 keys (40 characters): ``NAME.public`` (share it:
the engine lists map servers' public keys in its allowlist directory, map servers need the
engine's public key) and ``NAME.secret`` (mode 0600, never shared).
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq

from norn.engine.errors import ConfigError

Z85_KEY_CHARS = 40


def write_keypair(out_dir: str | Path, name: str = "bridge") -> tuple[Path, Path]:
    """Generate a key pair with ``zmq.curve_keypair`` and write it; returns (public, secret)."""
    if not zmq.has("curve"):
        raise ConfigError("this libzmq was built without CURVE support")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    pub_path, sec_path = out / f"{name}.public", out / f"{name}.secret"
    if pub_path.exists() or sec_path.exists():
        raise ConfigError(f"{pub_path} or {sec_path} exists; refusing to overwrite a key")
    pub_path.write_text(public.decode() + "\n")
    fd = os.open(sec_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.decode() + "\n")
    return pub_path, sec_path


def read_key(path: str | Path) -> bytes:
    """One Z85 key from a file (first line, whitespace stripped)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: key file not found")
    text = p.read_text().strip().splitlines()
    key = text[0].strip() if text else ""
    if len(key) != Z85_KEY_CHARS:
        raise ConfigError(f"{p}: not a {Z85_KEY_CHARS}-character Z85 CurveZMQ key")
    return key.encode()


def public_from_secret(secret: bytes) -> bytes:
    return zmq.curve_public(secret)


def read_allowed(keys_dir: str | Path | None, keys: tuple[str, ...] = ()) -> set[bytes]:
    """The allowlist: every ``*.public`` file in ``keys_dir`` plus ``keys`` (Z85)."""
    allowed = {k.encode() for k in keys}
    if keys_dir is not None:
        d = Path(keys_dir)
        if not d.is_dir():
            raise ConfigError(f"{d}: curve_allowed_keys_dir is not a directory")
        for p in sorted(d.glob("*.public")):
            allowed.add(read_key(p))
    return allowed
