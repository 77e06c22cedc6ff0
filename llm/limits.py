"""Every bound of the LLM tier, named ``*_max`` and documented once (STYLE habit 4).

Settings (``norn.llm.settings``) may lower these; nothing may raise them past the ceilings
here. Each is tested at exactly the bound and one past it (tests/test_llm_limits.py).
Text sizes are bytes of UTF-8 unless the name says characters.
"""

from __future__ import annotations

from norn.engine import limits as engine_limits

# The resolver's queues (the tick thread's side never blocks: a full queue is a fallback)
queue_requests_max = engine_limits.decisions_pending_max  # requests waiting for the worker
results_max = engine_limits.decisions_pending_max  # results waiting for collect()
texts_pending_max = engine_limits.decisions_pending_max  # player texts waiting for submit()
notes_max = engine_limits.decisions_pending_max  # tier/reason notes waiting to be journaled
calls_in_flight_max = 64  # model calls outstanding at once
# Batches and prompts
batch_items_max = 64  # requests answered by one batched call
batch_tokens_max = 32_000  # estimated prompt+answer tokens of one call
prompt_chars_max = 128_000  # one rendered prompt, all messages
response_bytes_max = 1 << 20  # one HTTP response body
player_text_bytes_max = engine_limits.text_bytes_max  # what a player said (npc_talk text)
reply_text_bytes_max = engine_limits.text_bytes_max  # an NPC's spoken reply (npc_say text)
use_case_name_chars_max = 64
# Cache (tier 2)
cache_entries_max = 1 << 20  # entries of the decision cache, all use cases together
cache_features_max = engine_limits.decision_context_max  # numeric features per entry
# Routing
retries_max = 5  # attempts per provider per call, after the first
retry_after_s_max = 60.0  # a longer Retry-After skips to the next provider
timeout_s_max = 120.0  # one HTTP call, connect to last byte (never the SDKs' 600 s)
fallback_chain_max = 8  # providers tried for one call
# Registry, deployments, baking
providers_max = 32
use_cases_max = 64
variants_max = 16  # variants registered per use case
bake_window_max = 100_000  # outcomes kept per arm of a canary
flips_max = 1024  # deployment flips waiting to be journaled
# Guardrails
lexicon_terms_max = 4096
lore_names_max = 1 << 16  # known map and item names
# Inference log
log_buffer_max = 65_536  # rows waiting to be written (more are counted as dropped)
log_text_chars_max = 4096  # prompt or output kept per row
log_rows_max = 10_000_000  # rows kept in the DuckDB log (oldest deleted past it)
log_query_rows_max = 10_000  # rows one `norn llm log` query prints
