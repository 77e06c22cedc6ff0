// Norn for rAthena: a map-server module written against the Norn C++ client
// (bridge/cpp, docs/rathena.md). Copy norn.hpp and norn.cpp into rathena/src/map/.
//
// Written for rAthena at commit 0034c1c2bd4d358ee277ad074a3865276d53d517 (src/map/pc.cpp,
// src/map/map.cpp read at that commit; npc.hpp, pc.hpp, quest.hpp, chrif.cpp, clif.cpp,
// mob.cpp read in stored versions of the same period, see docs/rathena.md). It is not
// built by Norn's tests: check each call against your checkout.
//
// Seven one-line hooks call into it (docs/rathena.md, "Wiring"):
//   map.cpp   map_config_read       else if (norn_config_read(w1, w2)) ;
//   map.cpp   MapServer::initialize do_init_norn();      (after do_init_npc())
//   map.cpp   MapServer::finalize   do_final_norn();     (first line)
//   npc.cpp   npc_script_event      norn_on_script_event(sd, type);
//   clif.cpp  clif_parse_LoadEndAck norn_on_loadmap(*sd);
//   mob.cpp   mob_dead              norn_on_mob_dead(*md, mvp_sd);
//   quest.cpp quest_update_status   if (status == Q_COMPLETE) norn_on_quest_done(*sd, quest_id);
// and four optional ones (trade, vending, NPC shops, NPC clicks).
#pragma once

#include "map.hpp"  // map_session_data, block_list
#include "npc.hpp"  // npce_event

struct mob_data;

/// A `norn_*` line of conf/map_athena.conf (or an import): true when it was one.
bool norn_config_read(const char* w1, const char* w2);

void do_init_norn(void);
void do_final_norn(void);

// Events (all called on the map server's main thread; none blocks).
void norn_on_script_event(map_session_data& sd, enum npce_event type);
void norn_on_loadmap(map_session_data& sd);
void norn_on_mob_dead(mob_data& md, map_session_data* mvp_sd);
void norn_on_quest_done(map_session_data& sd, int quest_id);
void norn_on_npc_click(map_session_data& sd, npc_data& nd);
void norn_on_trade(map_session_data& sd, map_session_data& partner, int item_id, int amount,
                   int zeny);
void norn_on_vending(map_session_data& buyer, map_session_data& seller, int item_id,
                     int amount, int price);
void norn_on_npc_shop(map_session_data& sd, int item_id, int amount, bool is_sell);
