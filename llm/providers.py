"""Providers: the model endpoints, over httpx only (no SDKs, no litellm).

- ``OpenAIProvider``: OpenAI-compatible chat completions (OpenAI, DeepSeek, Groq, xAI,
  vLLM, llama.cpp server, Ollama). ``structured`` = ``json_schema`` sends the answer schema
  as ``response_format`` (strict); ``json_object`` asks for a JSON object and puts the
  schema in the prompt; ``none`` puts it in the prompt only.
- ``AnthropicProvider``: the Messages API; ``structured`` = ``tool`` forces one tool call
  whose ``input_schema`` is the answer schema; ``none`` puts the schema in the prompt.
- ``OfflineProvider`` (``offline.py``) and ``LocalProvider`` (``local.py``) answer without
  a network.

Every HTTP call has a total deadline (``timeout_s``, at most ``timeout_s_max``; never an
SDK's 600 s default) and reads at most ``response_bytes_max`` bytes. Failures are one
exception type, ``ProviderError``, whose ``kind`` drives the router's retries: timeout,
connect, rate_limited (with Retry-After), server (5xx, 529), auth, client (other 4xx),
protocol (not the API's shape), too_large. A provider never judges the content: empty or
invalid answers are the validator's business.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson

from norn.llm import limits

ERROR_KINDS = ("timeout", "connect", "rate_limited", "server", "auth", "client", "protocol",
               "too_large")


@dataclass
class Call:
    messages: list[dict[str, Any]]
    schema: dict[str, Any] | None = None
    schema_name: str = "answer"
    model: str = ""
    max_tokens: int = 512
    temperature: float = 0.0
    timeout_s: float = 10.0


@dataclass
class Completion:
    content: str
    tokens_in: int = 0
    tokens_out: int = 0
    model: str = ""
    latency_s: float = 0.0


class ProviderError(Exception):
    def __init__(
        self, kind: str, message: str, status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        assert kind in ERROR_KINDS, kind
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s


class Provider(Protocol):
    name: str
    kind: str
    model: str

    async def complete(self, call: Call) -> Completion: ...

    async def aclose(self) -> None: ...


def schema_in_prompt(provider: Provider) -> bool:
    return getattr(provider, "structured", "none") in ("json_object", "none")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without keywords strict structured outputs refuse (``maxLength``)."""
    if isinstance(schema, dict):
        return {k: strict_schema(v) for k, v in schema.items() if k != "maxLength"}
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


class _Http:
    kind = "http"
    path = "/"

    def __init__(
        self,
        name: str,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        structured: str = "none",
        timeout_s: float = 10.0,
        headers: dict[str, str] | None = None,
        connections_max: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not 0 < timeout_s <= limits.timeout_s_max:
            raise ValueError(f"timeout_s must be in (0, {limits.timeout_s_max}]")
        self.name = name
        self.model = model
        self.structured = structured
        self.timeout_s = timeout_s
        self.api_key = api_key if api_key is not None else (
            os.environ.get(api_key_env, "") if api_key_env else "")
        self.headers = dict(headers or {})
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=connections_max,
                                max_keepalive_connections=connections_max),
            transport=transport,
            trust_env=False,
        )

    def auth_headers(self) -> dict[str, str]:
        return {}

    async def _post(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        timeout_s = min(timeout_s, self.timeout_s)
        headers = {**self.headers, **self.auth_headers(), "content-type": "application/json"}
        try:
            async with asyncio.timeout(timeout_s):
                async with self._client.stream(
                    "POST", self.path, content=orjson.dumps(body), headers=headers,
                    timeout=httpx.Timeout(timeout_s),
                ) as resp:
                    chunks, size = [], 0
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        if size > limits.response_bytes_max:
                            raise ProviderError(
                                "too_large", f"body over {limits.response_bytes_max} bytes",
                                resp.status_code)
                        chunks.append(chunk)
                    raw = b"".join(chunks)
                    status = resp.status_code
                    ra = parse_retry_after(resp.headers.get("retry-after"))
        except TimeoutError as exc:
            raise ProviderError("timeout", f"no answer within {timeout_s:g} s") from exc
        except httpx.TimeoutException as exc:
            raise ProviderError("timeout", str(exc) or type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise ProviderError("connect", str(exc) or type(exc).__name__) from exc
        if status == 429:
            raise ProviderError("rate_limited", _snippet(raw), status, ra)
        if status in (408,):
            raise ProviderError("timeout", _snippet(raw), status, ra)
        if status in (401, 403):
            raise ProviderError("auth", _snippet(raw), status)
        if status >= 500:
            raise ProviderError("server", _snippet(raw), status, ra)
        if status >= 400:
            raise ProviderError("client", _snippet(raw), status)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProviderError("protocol", "response body is not JSON", status) from exc
        if not isinstance(doc, dict):
            raise ProviderError("protocol", "response body is not an object", status)
        return doc

    async def aclose(self) -> None:
        await self._client.aclose()


def _snippet(raw: bytes) -> str:
    return raw[:200].decode("utf-8", "replace")


def _tokens(usage: Any, a: str, b: str) -> tuple[int, int]:
    if not isinstance(usage, dict):
        return 0, 0
    try:
        return int(usage.get(a) or 0), int(usage.get(b) or 0)
    except (TypeError, ValueError):
        return 0, 0


class OpenAIProvider(_Http):
    kind = "openai"
    path = "/chat/completions"

    def auth_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def complete(self, call: Call) -> Completion:
        body: dict[str, Any] = {
            "model": call.model or self.model,
            "messages": call.messages,
            "max_tokens": call.max_tokens,
            "temperature": call.temperature,
        }
        if self.structured == "json_schema" and call.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": call.schema_name, "schema": strict_schema(call.schema),
                                "strict": True},
            }
        elif self.structured == "json_object":
            body["response_format"] = {"type": "json_object"}
        t0 = time.perf_counter()
        doc = await self._post(body, call.timeout_s)
        choices = doc.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ProviderError("protocol", "no choices in the answer")
        msg = choices[0].get("message") or {}
        content = msg.get("content") if isinstance(msg, dict) else None
        tin, tout = _tokens(doc.get("usage"), "prompt_tokens", "completion_tokens")
        return Completion(content if isinstance(content, str) else "", tin, tout,
                          str(doc.get("model") or body["model"]), time.perf_counter() - t0)


class AnthropicProvider(_Http):
    kind = "anthropic"
    path = "/v1/messages"
    version = "2023-06-01"

    def auth_headers(self) -> dict[str, str]:
        h = {"anthropic-version": self.version}
        if self.api_key:
            h["x-api-key"] = self.api_key
        return h

    async def complete(self, call: Call) -> Completion:
        system = "\n".join(m["content"] for m in call.messages if m["role"] == "system")
        msgs = [m for m in call.messages if m["role"] != "system"]
        body: dict[str, Any] = {
            "model": call.model or self.model,
            "max_tokens": call.max_tokens,
            "temperature": call.temperature,
            "messages": msgs,
        }
        if system:
            body["system"] = system
        if self.structured == "tool" and call.schema is not None:
            body["tools"] = [{"name": call.schema_name,
                              "description": "Record the answer for every request id.",
                              "input_schema": call.schema}]
            body["tool_choice"] = {"type": "tool", "name": call.schema_name}
        t0 = time.perf_counter()
        doc = await self._post(body, call.timeout_s)
        blocks = doc.get("content")
        if not isinstance(blocks, list):
            raise ProviderError("protocol", "no content blocks in the answer")
        content = ""
        for b in blocks:
            if isinstance(b, dict) and b.get("type") == "tool_use":
                content = orjson.dumps(b.get("input")).decode()
                break
        else:
            content = "".join(b.get("text", "") for b in blocks
                              if isinstance(b, dict) and b.get("type") == "text")
        tin, tout = _tokens(doc.get("usage"), "input_tokens", "output_tokens")
        return Completion(content, tin, tout, str(doc.get("model") or body["model"]),
                          time.perf_counter() - t0)
