"""Realtime pacing (``engine/runner.py:Pacer``) on an injected clock: no wall-clock asserts.

A long first tick (the JIT compile of a cold start) is one stall: counted once, and the
schedule re-phased from there, so the ticks after it keep ``tick_ms`` instead of racing to
catch up the lost seconds (rAthena's interval timers do the same past 1000 ms). A short
delay is caught up by running the late ticks back to back, counted as one overrun.
"""

from __future__ import annotations

import itertools

import pytest

from norn.engine.runner import Pacer, realtime_behind_ms_max, run
from tests.helpers import toy_world


class FakeClock:
    """Time that moves only when told: a tick's work (``spend``) or a sleep."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep_until(self, deadline: float) -> None:
        self.sleeps.append(deadline)
        self.t = max(self.t, deadline)


def _paced(work_s: list[float], period_s: float = 0.1) -> tuple[Pacer, list[float]]:
    """Run ticks taking ``work_s`` each on a fake clock; the start time of every tick."""
    fake = FakeClock()
    pacer = Pacer(period_s, fake.now, fake.sleep_until)
    pacer.start()
    starts = []
    for w in work_s:
        starts.append(fake.t)
        fake.t += w
        pacer.tick_done()
    return pacer, starts


def _gaps(starts: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(starts)]


def test_a_long_first_tick_is_one_stall_and_the_rest_keep_the_rate():
    pacer, starts = _paced([5.0] + [0.02] * 50)  # a 5 s compile, then 20 ms ticks
    assert (pacer.overruns, pacer.stalls) == (1, 1)
    assert pacer.skipped_s == pytest.approx(4.9)
    assert _gaps(starts)[0] == 5.0  # the stalled tick; the next starts at once
    assert set(_gaps(starts)[1:]) == {0.1}  # then 10 ticks/s, none late


def test_behind_by_exactly_the_bound_catches_up_one_past_it_re_phases():
    bound_s = realtime_behind_ms_max / 1000
    # tick 1 ends exactly bound_s after tick 2 was due: caught up, back to back
    pacer, starts = _paced([0.1 + bound_s] + [0.02] * 30)
    assert (pacer.overruns, pacer.stalls) == (1, 0)
    gaps = _gaps(starts)
    assert gaps[0] == pytest.approx(0.1 + bound_s)
    assert min(gaps[1:]) == 0.02  # racing the backlog ...
    assert starts[-1] - starts[1] == pytest.approx(29 * 0.1 - bound_s)  # ... until on time
    assert gaps[-1] == 0.1
    # one millisecond more: re-phased, nothing raced
    pacer, starts = _paced([0.1 + bound_s + 0.001] + [0.02] * 30)
    assert (pacer.overruns, pacer.stalls) == (1, 1)
    assert set(_gaps(starts)[1:]) == {0.1}


def test_catching_up_counts_one_overrun_and_every_late_tick_is_counted_once():
    pacer, _ = _paced([0.02, 0.35, 0.02, 0.02, 0.02, 0.02, 0.02, 0.5, 0.02, 0.02, 0.02, 0.02])
    assert (pacer.overruns, pacer.stalls) == (2, 0)


def test_a_tick_that_keeps_its_period_is_never_late():
    pacer, starts = _paced([0.1] * 20)
    assert (pacer.overruns, pacer.stalls) == (0, 0)
    assert set(_gaps(starts)) == {0.1}


def test_the_runner_paces_through_the_injected_pacer_and_reports_the_stall():
    world, _, config = toy_world(seed=2, walkers=50, clock="realtime", tick_ms=100)
    fake = FakeClock()
    starts: list[float] = []

    def before_tick(tick: int) -> None:  # each tick's work, on the fake clock
        starts.append(fake.t)
        fake.t += 3.0 if tick == 1 else 0.03

    summary = run(world, config, ticks=40, before_tick=before_tick,
                  pacer=Pacer(0.1, fake.now, fake.sleep_until))
    assert (summary.overruns, summary.stalls) == (1, 1)
    assert summary.stall_s == pytest.approx(2.9)
    assert set(_gaps(starts)[1:]) == {0.1}
    assert len(fake.sleeps) == 39  # every tick after the stall waited for its start
    d = summary.as_dict()
    assert (d["overruns"], d["stalls"]) == (1, 1)


def test_a_default_realtime_run_keeps_its_rate_after_a_compile_stall(monkeypatch):
    """The default pacing, on ``engine/clock.py`` injected: the ``make run`` case."""
    from norn.engine import clock

    world, _, config = toy_world(seed=2, walkers=50, clock="realtime", tick_ms=100)
    fake = FakeClock()
    monkeypatch.setattr(clock, "monotonic", fake.now)
    monkeypatch.setattr(clock, "sleep_until", fake.sleep_until)
    starts: list[float] = []

    def before_tick(tick: int) -> None:
        starts.append(fake.t)
        fake.t += 3.0 if tick == 1 else 0.03

    summary = run(world, config, ticks=40, before_tick=before_tick)
    assert summary.overruns == 1  # the stall, once (it was 40: every later tick "late")
    assert set(_gaps(starts)[1:]) == {0.1}  # 10 ticks/s after it, not 33
