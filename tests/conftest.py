"""Fixtures shared by the bridge tests: a started server harness and a raw peer on it."""

from __future__ import annotations

import pytest

from norn.bridge.testing import FAST, Harness, RawPeer


@pytest.fixture
def harness():
    h = Harness(FAST)
    yield h
    h.stop()


@pytest.fixture
def peer(harness):
    p = RawPeer(harness.endpoint)
    yield p
    p.close()
