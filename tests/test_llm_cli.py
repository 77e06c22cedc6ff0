"""``norn llm``: the registry commands, the log, status, the cache report, the fake server."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from norn.llm import cli
from norn.llm.resolver import LlmResolver
from norn.llm.settings import Registry
from tests.helpers import ROOT
from tests.llm_helpers import requests, settle


def test_registry_commands_change_the_file_and_print_the_flip(tmp_path, capsys):
    f = str(tmp_path / "llm.json")
    assert cli.main(["registry", "add-provider", "--settings", f, "groq", "--kind", "openai",
                     "--base-url", "http://127.0.0.1:9/v1", "--structured", "json_object",
                     "--price-in", "0.05"]) == 0
    assert cli.main(["registry", "add-variant", "--settings", f, "npc_talk", "small",
                     "--provider", "groq", "--fallback", "offline"]) == 0
    assert cli.main(["registry", "deploy", "--settings", f, "npc_talk", "canary",
                     "--challenger", "small", "--share", "50"]) == 0
    flip = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert flip["mode"] == "canary" and flip["share_permille"] == 50
    uc = Registry.open(f).settings.use_cases["npc_talk"]
    assert uc.challenger() == "small" and uc.canary_share() == 50
    assert cli.main(["registry", "promote", "--settings", f, "npc_talk"]) == 0
    uc = Registry.open(f).settings.use_cases["npc_talk"]
    assert (uc.champion(), uc.challenger(), uc.canary_share()) == ("small", "offline", 0)
    assert cli.main(["registry", "alias", "--settings", f, "npc_talk", "champion", "nope"]) == 2
    assert cli.main(["registry", "deploy", "--settings", f, "npc_talk", "canary",
                     "--share", "1001"]) == 2


def test_log_and_status_read_what_a_resolver_wrote(tmp_path, capsys):
    db, status = tmp_path / "log.duckdb", tmp_path / "status.json"
    settings = tmp_path / "llm.json"
    settings.write_text(json.dumps({"log_path": str(db), "status_path": str(status),
                                    "log_flush_s": 0.01, "batch_window_ms": 0}))
    with LlmResolver(settings_path=settings) as res:
        res.submit(1, requests(n=3))
        settle(res)
    res._write_status()
    assert cli.main(["log", "--settings", str(settings), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["tier"] == "batch" and rows[0]["provider"] == "offline"
    assert cli.main(["status", "--settings", str(settings)]) == 0
    out = capsys.readouterr().out
    assert "default: champion offline" in out and "toy_rest: 3 requests" in out
    assert "log toy_rest/offline/batch: 1 calls, 3 items" in out
    assert cli.main(["log", "--db", str(tmp_path / "none.duckdb")]) == 2


def test_cache_report_prints_hits_and_false_hits(capsys):
    assert cli.main(["cache-report"]) == 0
    assert "npc_talk: threshold" in capsys.readouterr().out


def test_serve_fake_answers_on_loopback_until_stopped():
    p = subprocess.Popen([sys.executable, "-m", "norn.llm.cli", "serve-fake", "--port", "0"],
                         cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        url = line.split(" on ")[1].split(" ")[0]
        assert url.startswith("http://127.0.0.1:")
        r = httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": [
            {"role": "user", "content": 'REQUESTS:\n[{"id":"7","options":[{"label":"a",'
                                        '"utility":0.1},{"label":"b","utility":0.9}]}]\n'}]})
        content = json.loads(r.json()["choices"][0]["message"]["content"])
        assert content == {"7": {"choice": "b"}}
    finally:
        p.terminate()
        p.wait(timeout=10)
    assert cli.main(["serve-fake", "--faults", '[{"fault": "nope"}]']) == 2
