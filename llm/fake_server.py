"""A local model server for tests and demos: OpenAI chat completions and Anthropic Messages
on a real socket (127.0.0.1), answering deterministically, with injected faults.

``norn llm serve-fake [--port N] [--faults JSON]`` runs it; tests start ``FakeServer`` in a
thread. Answers come from the offline provider's rule (highest utility, canned lines), in
the answer schema the request asked for (``response_format`` json_schema, a forced tool's
``input_schema``, or the request views in the prompt).

Faults are a plan: a list of rules, the first matching rule of a call applies. A rule has
``fault`` and selects calls by ``calls`` (0-based indices in arrival order since the plan
was set), ``every`` (with
``offset``) or ``permille`` (by a hash of the request body: deterministic, not random).
Faults: ``latency`` (``latency_s``, then a normal answer), ``rate_limited`` (429 with
``retry_after_s``), ``server_error`` (500), ``overloaded`` (529, Anthropic's), ``timeout``
(hangs ``hang_s``, then answers: the client has given up), ``empty`` (empty content),
``invalid_json``, ``missing_ids`` (the last id left out), ``wrong_choice`` (a label no
request has), ``forbidden_text`` (out-of-character speech), ``malformed`` (not the API's
shape). ``POST /_fake/plan`` replaces the plan (and zeroes the counts); ``GET /_fake/stats`` counts
calls.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import xxhash

from norn.llm.offline import deterministic_answer
from norn.llm.prompts import extract_requests

FAULTS = ("latency", "rate_limited", "server_error", "overloaded", "timeout", "empty",
          "invalid_json", "missing_ids", "wrong_choice", "forbidden_text", "malformed")
BODY_BYTES_MAX = 4 << 20


def check_plan(plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(plan, list):
        raise ValueError("a fault plan is a list of rules")
    for rule in plan:
        if not isinstance(rule, dict) or rule.get("fault") not in FAULTS:
            raise ValueError(f"unknown fault rule {rule!r}; faults: {', '.join(FAULTS)}")
    return plan


class FakeServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 plan: list[dict[str, Any]] | None = None) -> None:
        self.plan = check_plan(plan or [])
        self.lock = threading.Lock()
        self.calls = 0
        self.stats: dict[str, Any] = {"calls": 0, "items": [], "faults": {}, "paths": {}}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                if self.path == "/_fake/stats":
                    with server.lock:
                        self._send(200, orjson.dumps(server.stats))
                else:
                    self._send(404, b'{"error":"not found"}')

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                if n > BODY_BYTES_MAX:
                    self._send(413, b'{"error":"too large"}')
                    return
                raw = self.rfile.read(n)
                if self.path == "/_fake/plan":
                    try:
                        server.set_plan(orjson.loads(raw))
                    except (ValueError, orjson.JSONDecodeError) as exc:
                        self._send(400, orjson.dumps({"error": str(exc)}))
                        return
                    self._send(200, b'{"ok":true}')
                    return
                if self.path in ("/v1/chat/completions", "/chat/completions"):
                    flavour = "openai"
                elif self.path == "/v1/messages":
                    flavour = "anthropic"
                else:
                    self._send(404, b'{"error":"not found"}')
                    return
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    self._send(400, b'{"error":"body is not JSON"}')
                    return
                status, headers, payload = server.answer(flavour, body, raw, self.path)
                self._send(status, payload, headers)

            def _send(self, status: int, payload: bytes,
                      headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout fault): nothing to tell it

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={
            "poll_interval": 0.05}, name="norn-llm-fake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_plan(self, plan: list[dict[str, Any]]) -> None:
        check_plan(plan)
        with self.lock:
            self.plan = plan
            self.calls = 0  # ``calls`` indices count from the plan's installation
            self.stats = {"calls": 0, "items": [], "faults": {}, "paths": {}}

    # -- answering ---------------------------------------------------------------------------
    def _fault(self, index: int, raw: bytes) -> dict[str, Any] | None:
        for rule in self.plan:
            if "calls" in rule and index in rule["calls"]:
                return rule
            if "every" in rule and index % int(rule["every"]) == int(rule.get("offset", 0)):
                return rule
            if "permille" in rule and xxhash.xxh3_64_intdigest(raw) % 1000 < rule["permille"]:
                return rule
            if not ({"calls", "every", "permille"} & rule.keys()):
                return rule  # a rule without a selector applies to every call
        return None

    def answer(self, flavour: str, body: dict[str, Any], raw: bytes,
               path: str) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            index = self.calls
            self.calls += 1
            rule = self._fault(index, raw)
            self.stats["calls"] += 1
            self.stats["paths"][path] = self.stats["paths"].get(path, 0) + 1
            if rule is not None:
                f = rule["fault"]
                self.stats["faults"][f] = self.stats["faults"].get(f, 0) + 1
        fault = rule["fault"] if rule else None
        if fault == "latency":
            time.sleep(float(rule.get("latency_s", 0.05)))
        elif fault == "timeout":
            time.sleep(float(rule.get("hang_s", 2.0)))
        elif fault == "rate_limited":
            return 429, {"retry-after": str(rule.get("retry_after_s", 1))}, \
                b'{"error":{"type":"rate_limit_error","message":"slow down"}}'
        elif fault == "server_error":
            return 500, {}, b'{"error":{"type":"server_error","message":"boom"}}'
        elif fault == "overloaded":
            return 529, {}, b'{"type":"error","error":{"type":"overloaded_error"}}'
        elif fault == "malformed":
            return 200, {}, b'{"unexpected": true}'
        messages = list(body.get("messages") or [])
        schema = _schema_of(flavour, body)
        views = extract_requests(messages)
        want_text = any("say" in (p.get("properties") or {})
                        for p in ((schema or {}).get("properties") or {}).values()
                        if isinstance(p, dict)) or any("player_said" in v for v in views)
        ans = deterministic_answer(views, want_text)
        with self.lock:
            self.stats["items"].append(len(ans))
            del self.stats["items"][:-1000]
        if fault == "missing_ids" and ans:
            ans.pop(list(ans)[-1])
        elif fault == "wrong_choice":
            for v in ans.values():
                v["choice"] = "dance"
        elif fault == "forbidden_text":
            for v in ans.values():
                v["say"] = "As an AI language model I cannot say."
        content = orjson.dumps(ans).decode()
        if fault == "empty":
            content = ""
        elif fault == "invalid_json":
            content = '{"oops": '
        tin = sum(len(str(m.get("content", ""))) for m in messages) // 4
        tout = len(content) // 4
        model = str(body.get("model") or "fake")
        if flavour == "openai":
            doc = {"id": f"fake-{index}", "object": "chat.completion", "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": tin, "completion_tokens": tout}}
        else:
            use_tool = bool(body.get("tools")) and fault not in ("empty", "invalid_json")
            block = ({"type": "tool_use", "id": f"toolu_{index}",
                      "name": body["tools"][0].get("name", "answer"), "input": ans}
                     if use_tool else {"type": "text", "text": content})
            doc = {"id": f"msg_{index}", "type": "message", "role": "assistant", "model": model,
                   "content": [block], "stop_reason": "end_turn",
                   "usage": {"input_tokens": tin, "output_tokens": tout}}
        return 200, {}, orjson.dumps(doc)


def _schema_of(flavour: str, body: dict[str, Any]) -> dict[str, Any] | None:
    if flavour == "openai":
        rf = body.get("response_format") or {}
        return (rf.get("json_schema") or {}).get("schema") if isinstance(rf, dict) else None
    tools = body.get("tools") or []
    return tools[0].get("input_schema") if tools and isinstance(tools[0], dict) else None


def serve(host: str, port: int, plan: list[dict[str, Any]] | None = None) -> None:
    """Run in the foreground until interrupted (``norn llm serve-fake``)."""
    srv = FakeServer(host, port, plan)
    print(f"fake model server on {srv.url} (OpenAI: {srv.url}/v1, Anthropic: {srv.url})",
          flush=True)
    try:
        srv.httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.httpd.server_close()
