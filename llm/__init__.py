"""The asynchronous LLM decision tier behind the engine's ``Resolver`` seam (docs/llm.md).

``LlmResolver`` (``resolver.py``) answers decision requests through a cache, batched and
single model calls, with guardrails, budgets, canaries and an inference log; the embedded
offline provider needs no model and no network. Import the submodules you need; importing
this package imports nothing heavy.
"""
