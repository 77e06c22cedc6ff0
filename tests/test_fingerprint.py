"""The state-code fingerprint covers state code only: a help text is not a code change."""

from __future__ import annotations

import shutil

from norn.engine import fingerprint as fp
from tests.helpers import ROOT


def _copy_state_packages(dst):
    for pkg in fp.STATE_PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))


def _edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path} no longer holds {old!r}: pick another line to edit"
    path.write_text(text.replace(old, new, 1))


def test_a_help_text_or_an_error_message_leaves_the_hash_alone(tmp_path):
    _copy_state_packages(tmp_path)
    before = fp.source_hash.__wrapped__(tmp_path)
    assert before == fp.source_hash.__wrapped__(ROOT)  # the copy hashes like the tree
    _edit(tmp_path / "engine" / "commands.py", 'help="check every tick by snapshot/restore"',
          'help="check each tick by snapshot and restore"')
    _edit(tmp_path / "engine" / "cli.py", 'description="Deterministic world engine for rAthena"',
          'description="Norn"')
    _edit(tmp_path / "engine" / "errors.py", '"""A journal cannot be used as it is."""',
          '"""A journal is unusable."""')
    _edit(tmp_path / "engine" / "config.py", '"must be a multiple of 8"', '"use a multiple of 8"')
    assert fp.source_hash.__wrapped__(tmp_path) == before


def test_an_edit_to_state_code_changes_the_hash(tmp_path):
    _copy_state_packages(tmp_path)
    before = fp.source_hash.__wrapped__(tmp_path)
    for rel in ("engine/tick.py", "engine/messages.py", "engine/resume.py", "rules/__init__.py"):
        path = tmp_path / rel
        original = path.read_bytes()
        path.write_bytes(original + b"\n# changed\n")
        assert fp.source_hash.__wrapped__(tmp_path) != before, rel
        path.write_bytes(original)
    assert fp.source_hash.__wrapped__(tmp_path) == before


def test_the_not_state_list_names_real_files_and_spares_the_tick():
    for rel, why in fp.NOT_STATE.items():
        assert (ROOT / rel).is_file(), f"NOT_STATE names {rel}, which does not exist"
        assert rel.split("/")[0] in fp.STATE_PACKAGES and why
    hashed = {p.relative_to(ROOT).as_posix() for p in fp.state_sources()}
    assert not hashed & set(fp.NOT_STATE)
    for rel in ("engine/tick.py", "engine/world.py", "engine/table.py", "engine/messages.py",
                "engine/runner.py", "engine/recorder.py", "engine/reader.py", "engine/resume.py",
                "engine/state.py", "engine/rng.py"):
        assert rel in hashed, rel
