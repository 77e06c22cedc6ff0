"""Every engine-wide bound, named ``*_max`` and documented once (STYLE habit 4).

Config keys may lower these; nothing may raise them past the hard ceilings here.
Each limit is tested at exactly the bound and one past it.
"""

from __future__ import annotations

# Tables and messages
table_capacity_max = 1 << 24  # rows per table (16.7M); slot ids fit in 32 bits
spawns_per_tick_max = 1 << 20  # queued spawns applied in one tick, per table
messages_per_channel_max = 1 << 22  # messages one channel may hold in one tick
# Inputs (bridge and admin commands)
input_batches_max = 4096  # batches waiting in the input queue
input_events_max = 1 << 22  # events waiting in the input queue, all batches together
batch_events_max = 65536  # events in one input batch
text_bytes_max = 255  # chat / NPC text, bytes of UTF-8 (rAthena CHAT_SIZE_MAX)
source_name_bytes_max = 64  # an input source's (map server's) name
# Decisions
decision_options_max = 8  # candidate options in one decision request
decision_context_max = 16  # floats in a decision request's context vector
decisions_pending_max = 65536  # requests in flight to the resolver
decision_deadline_ticks_max = 600  # a request must be settled within this many ticks
# Actions
actions_per_tick_max = 1 << 18  # world actions emitted in one tick
action_log_ticks_max = 600  # ticks of actions the action log remembers (engine/actions.py)
action_log_rows_max = spawns_per_tick_max  # its rows, ticks x per tick (spawned at build)
# Journal
journal_frame_bytes_max = 64 << 20  # one frame's payload
#: snapshots being written off the tick thread; the next one due waits for these
snapshots_in_flight_max = 1
#: input column bytes one tick takes from the queue: its journal frame must fit
#: journal_frame_bytes_max (4M mob kills are 75 MB; the rest waits for the next tick)
tick_input_bytes_max = journal_frame_bytes_max // 2
# rAthena facts
map_name_bytes_max = 11  # rAthena map names: at most 11 characters
item_stack_max = 30000  # rAthena MAX_AMOUNT per stack
zeny_max = 2**31 - 1  # zeny is a signed 32-bit integer in the game
zeny_min = -(2**31)
