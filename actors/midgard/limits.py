"""Hard ceilings of the Midgard model, each named ``*_max`` (STYLE habit 4).

These are not tunable rules (those are scenario keys under ``[rules]``); they size dtypes
and fixed-shape columns: a map id is int16, a warp's index within its map is int8, a
faction id indexes a (factions,) column. Scenario validation refuses anything past them.
"""

from __future__ import annotations

from norn.actors.faction.schema import reputation_rows_max
from norn.actors.hazard.schema import live_hazards_max
from norn.engine import limits as engine_limits

maps_max = 4096  # map ids are int16; next-hop routing is a maps x maps int8 matrix (16 MiB)
map_side_max = 2048  # cells per side (x, y are int16)
map_cells_max = 1 << 26  # walkability cells over all maps together (uint8 each)
warps_per_map_max = 32  # a warp's local index is int8
factions_max = 256  # influence is a (factions,) float32 column per map
items_max = 4096  # item index is int16
towns_max = maps_max
markets_per_town_max = 512
hazard_types_max = 32
hazards_max = live_hazards_max  # live hazard instances (the hazard kind's ceiling)
npcs_max = engine_limits.spawns_per_tick_max  # the initial population is spawned in one go
players_max = 1 << 20
reputation_entries_max = reputation_rows_max  # the faction kind's ceiling
populations_max = 1 << 16
quests_max = 4096
dialogue_lines_max = 64
map_name_bytes_max = engine_limits.map_name_bytes_max
item_stack_max = engine_limits.item_stack_max
zeny_max = engine_limits.zeny_max
item_id_max = 2**31 - 1
