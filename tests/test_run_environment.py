"""``norn run`` refused by its surroundings: one line, the right code, no half-made run.

A malformed ``--serve`` endpoint is bad input (exit 2); a port in use, an address this
machine does not have, or a numba threading layer that cannot load is the environment
(exit 3). None of them prints a traceback, and none leaves a run directory behind: the
cheap checks run before it is created (``preflight``), and a failure after it was created
but before the first tick removes what the run made (``engine/commands.py:_NewRun``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import zmq

from tests.helpers import ROOT, journal_digests, norn


def _one_line(r: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("norn: error: "), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def busy_port():
    """A TCP port another socket holds for the test's duration."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind("tcp://127.0.0.1:*")
    try:
        yield sock.getsockopt_string(zmq.LAST_ENDPOINT)
    finally:
        sock.close(0)
        ctx.term()


@pytest.mark.parametrize("endpoint", ["foo", "tcp://127.0.0.1", "tcp://127.0.0.1:99999",
                                      "udp://127.0.0.1:7600"])
def test_a_malformed_serve_endpoint_is_one_line_exit_2_and_no_run_dir(tmp_path, endpoint):
    out = tmp_path / "runs" / "r"
    _one_line(norn("run", "--ticks", "2", "--serve", endpoint, "--out", str(out)), 2,
              f"--serve {endpoint}", "tcp://HOST:PORT")
    assert not (tmp_path / "runs").exists()


def test_a_port_in_use_is_one_line_exit_3_and_no_run_dir(tmp_path, busy_port):
    out = tmp_path / "runs" / "r"
    _one_line(norn("run", "--ticks", "2", "--serve", busy_port, "--out", str(out)), 3,
              busy_port, "Address already in use")
    assert not (tmp_path / "runs").exists()


def test_a_port_in_use_does_not_cost_the_old_run_with_replace(tmp_path, busy_port):
    old = tmp_path / "old"
    assert norn("run", "--scenario", "toy", "--ticks", "3", "--out", str(old),
                "--json").returncode == 0
    before = journal_digests(old)
    _one_line(norn("run", "--ticks", "2", "--serve", busy_port, "--replace", "--out", str(old)),
              3, "Address already in use")
    assert journal_digests(old) == before


def test_a_port_taken_after_the_check_still_leaves_no_run_dir(tmp_path, busy_port):
    """The race the preflight cannot close: the bind at start fails, the new run goes."""
    out = tmp_path / "runs" / "r"
    code = textwrap.dedent(f"""
        import sys
        from norn.bridge import serve
        from norn.engine.cli import main

        serve.probe_bind = lambda endpoint: None  # the port is free when checked ...
        sys.exit(main(["run", "--ticks", "2", "--serve", {busy_port!r}, "--out", {str(out)!r}]))
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    _one_line(r, 3, busy_port, "Address already in use")  # ... and taken when bound
    assert not (tmp_path / "runs").exists()


def test_a_model_that_cannot_be_served_leaves_no_run_dir(tmp_path):
    out = tmp_path / "runs" / "r"
    _one_line(norn("run", "--scenario", "toy", "--ticks", "2", "--serve", "tcp://127.0.0.1:0",
                   "--out", str(out)), 2, "cannot be served")
    assert not (tmp_path / "runs").exists()


def test_an_existing_empty_out_dir_is_kept_and_left_empty(tmp_path, busy_port):
    out = tmp_path / "empty"
    out.mkdir()
    code = textwrap.dedent(f"""
        import sys
        from norn.bridge import serve
        from norn.engine.cli import main

        serve.probe_bind = lambda endpoint: None
        sys.exit(main(["run", "--ticks", "2", "--serve", {busy_port!r}, "--out", {str(out)!r}]))
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    _one_line(r, 3, "Address already in use")
    assert out.is_dir() and list(out.iterdir()) == []


def _tbb_loads() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "from numba.np.ufunc import parallel; parallel._launch_threads()"],
        env={"NUMBA_THREADING_LAYER": "tbb", "PATH": "/usr/bin:/bin"}, capture_output=True,
        timeout=120)
    return probe.returncode == 0


@pytest.mark.parametrize("layer", ["tbb", "no-such-layer"])
def test_a_threading_layer_that_cannot_load_is_one_line_exit_3_and_no_run_dir(tmp_path, layer):
    if layer == "tbb" and _tbb_loads():
        pytest.skip("Intel TBB is installed here: the tbb layer loads")
    out = tmp_path / "runs" / "r"
    _one_line(norn("run", "--scenario", "toy", "--ticks", "2", "--out", str(out),
                   env={"NUMBA_THREADING_LAYER": layer}), 3,
              f"NUMBA_THREADING_LAYER={layer}")
    assert not (tmp_path / "runs").exists()
