// Norn for rAthena: the map-server side of the Norn bridge, as a small module.
//
// Written for rAthena commit 0034c1c2bd4d358ee277ad074a3865276d53d517 (see norn.hpp and
// docs/rathena.md for the functions it calls and where each was read). Not built by Norn's
// tests. Everything here runs on the map server's single main thread: the Norn client does
// its socket work on its own thread, and this module only appends events (never blocking)
// and drains actions from a timer.
#include "norn.hpp"

#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <common/showmsg.hpp>
#include <common/strlib.hpp>
#include <common/timer.hpp>

#include "chrif.hpp"
#include "clif.hpp"
#include "intif.hpp"
#include "itemdb.hpp"
#include "log.hpp"
#include "map.hpp"
#include "mob.hpp"
#include "npc.hpp"
#include "pc.hpp"
#include "quest.hpp"
#include "script.hpp"

#include "norn/client.hpp"  // bridge/cpp/include

namespace {

struct Settings {
    std::string endpoint = "tcp://127.0.0.1:7600";
    std::string server_id = "map01";
    std::string maps;                               // comma-separated; empty: every map
    std::string store = "save/norn_executed.log";   // world actions' executed ids
    std::string curve_server, curve_public, curve_secret;
    std::string npc_template = "NornTemplate";      // a script NPC to duplicate for spawn_npc
    int drain_ms = 50;        // the drain timer (actions, results, batches)
    int sample_ms = 1000;     // player positions are sampled this often (player_move)
    int snapshot_ms = 10000;  // players per map (map_snapshot)
    int reward_zeny_max = 1000000;  // this server's own cap on a reward's zeny
    std::unordered_map<int, std::string> markets;   // market_id -> shop NPC name
} settings;

constexpr int kRecordSlots = 16;  // rewards remembered per character (NORN_DONE[0..15])

std::unique_ptr<norn::FileExecutedStore> world_store;
std::unique_ptr<norn::ExecutedStore> store;
std::unique_ptr<norn::Client> client;
std::unordered_map<int64, int> npc_block;      // Norn's 64-bit npc_id -> rAthena block id
std::unordered_map<int, int64> npc_norn_id;    // and back (npc_talk)
struct Seen { int16 m, x, y; };
std::unordered_map<uint32, Seen> last_seen;    // char_id -> last position sent
std::unordered_set<std::string> hosted;        // norn_maps (empty: every map)

const char* map_name(int16 m) { return map_mapid2mapname(m); }

bool char_scoped(const norn::Action& a) {
    return a.action_kind() == norn::v1::ActionKind::give_reward ||
           a.action_kind() == norn::v1::ActionKind::start_quest;
}

/// Executed ids: a character's rewards and quests in that character's own registry (saved by
/// the same chrif_save as the zeny and items they paid), world actions in a file.
class CharRecordStore : public norn::ExecutedStore {
public:
    void load(std::vector<int64_t>& ids) override { world_store->load(ids); }

    bool contains(const norn::Action& a) override {
        if (!char_scoped(a))
            return world_store->contains(a);
        map_session_data* sd = map_charid2sd(a.char_id);
        if (sd == nullptr)
            return false;  // not online here: the executor answers not_here, nothing runs
        for (int i = 0; i < kRecordSlots; i++)
            if (pc_readglobalreg(sd, reference_uid(add_str("NORN_DONE"), i)) == a.id)
                return true;
        return false;
    }

    void executed(const norn::Action& a) override {
        if (!char_scoped(a)) {
            world_store->executed(a);
            return;
        }
        map_session_data* sd = map_charid2sd(a.char_id);
        if (sd == nullptr)
            return;
        int64 pos = pc_readglobalreg(sd, add_str("NORN_DONE_POS"));
        pc_setglobalreg(sd, reference_uid(add_str("NORN_DONE"), pos % kRecordSlots), a.id);
        pc_setglobalreg(sd, add_str("NORN_DONE_POS"), (pos + 1) % kRecordSlots);
        // The record first, then the character with its zeny and items: a save cut short
        // can only lose a payment, never pay twice (chrif_save sends the inventory before
        // the registry, so the registry goes ahead on its own).
        intif_saveregistry(sd);
        chrif_save(sd, CSAVE_INVENTORY);
    }

    void expire(int64_t tick) override { world_store->expire(tick); }
};

// -- actions --------------------------------------------------------------------------------
using norn::Outcome;
using norn::Reason;
using Kind = norn::v1::ActionKind;

npc_data* norn_npc(int64 npc_id) {
    auto it = npc_block.find(npc_id);
    return it == npc_block.end() ? nullptr : map_id2nd(it->second);
}

Outcome spawn_npc(const norn::Action& a, int16 m) {
    if (npc_data* nd = norn_npc(a.npc_id)) {  // already here: a repeat after a restart
        if (nd->bl.m == m)
            return npc_movenpc(nd, a.x, a.y) ? Outcome::done() : Outcome::failed(Reason::out_of_bounds);
        npc_unload(nd, true);
    }
    npc_data* tmpl = npc_name2id(settings.npc_template.c_str());
    if (tmpl == nullptr)
        return Outcome::failed(Reason::unsupported);
    char name[NPC_NAME_LENGTH + 1];
    // the visible part, then a hidden unique part (rAthena's "Name#unique" convention)
    safesnprintf(name, sizeof(name), "Norn#%lld", static_cast<long long>(a.npc_id % 1000000000000LL));
    npc_data* nd = npc_duplicate_npc(*tmpl, name, m, a.x, a.y, a.sprite, DIR_SOUTH, 0, 0);
    if (nd == nullptr)
        return Outcome::failed(Reason::invalid);
    npc_block[a.npc_id] = nd->bl.id;
    npc_norn_id[nd->bl.id] = a.npc_id;
    return Outcome::done();
}

Outcome give_reward(const norn::Action& a, map_session_data* sd) {
    // Both caps apply (PROTOCOL.md section 8): the engine's (welcome.reward) and ours.
    if (a.amount < 0 || a.amount > MAX_AMOUNT || a.zeny < 0 || a.zeny > settings.reward_zeny_max)
        return Outcome::failed(Reason::reward_cap);
    // pc_getzeny pays only up to MAX_ZENY and returns success: check before paying
    if (static_cast<int64>(sd->status.zeny) + a.zeny > MAX_ZENY)
        return Outcome::failed(Reason::zeny_overflow);
    struct item it = {};
    if (a.amount > 0) {
        std::shared_ptr<item_data> id = item_db.find(a.item_id);
        if (id == nullptr)
            return Outcome::failed(Reason::invalid);
        // all or nothing: check that the items fit before paying anything
        if (pc_checkadditem(sd, a.item_id, a.amount) == CHKADDITEM_OVERAMOUNT)
            return Outcome::failed(Reason::reward_cap);
        if (sd->weight + id->weight * a.amount > sd->max_weight)
            return Outcome::failed(Reason::invalid);
        it.nameid = a.item_id;
        it.identify = 1;
        if (pc_additem(sd, &it, a.amount, LOG_TYPE_SCRIPT) != ADDITEM_SUCCESS)
            return Outcome::failed(Reason::invalid);
    }
    if (a.zeny > 0)
        pc_getzeny(sd, a.zeny, LOG_TYPE_SCRIPT, 0);
    return Outcome::done();  // the client then calls CharRecordStore::executed: saved together
}

// A shop's price (and, from a join sync, its stock: a marketshop's qty).
Outcome set_price(const norn::Action& a) {
    auto name = settings.markets.find(a.market_id);
    if (name == settings.markets.end()) return Outcome::failed(Reason::not_here);
    npc_data* nd = npc_name2id(name->second.c_str());
    if (nd == nullptr || (nd->subtype != NPCTYPE_SHOP && nd->subtype != NPCTYPE_MARKETSHOP))
        return Outcome::failed(Reason::not_here);
    for (int i = 0; i < nd->u.shop.count; i++)
        if (nd->u.shop.shop_item[i].nameid == static_cast<t_itemid>(a.item_id)) {
            nd->u.shop.shop_item[i].value = a.price_zeny;
#if PACKETVER >= 20131223
            if (a.stock >= 0 && nd->subtype == NPCTYPE_MARKETSHOP)
                nd->u.shop.shop_item[i].qty = static_cast<uint16>(std::min(a.stock, 65535));
#endif
            return Outcome::done();
        }
    return Outcome::failed(Reason::invalid);
}

// Weather mapflags Norn turned on, (map, code): a join sync turns off those it does not name.
std::set<std::pair<int16, int>> weather_on;

Outcome set_weather(int16 m, int weather, bool on) {
    static const e_mapflag flags[] = {MF_CLOUDS, MF_CLOUDS2, MF_FOG, MF_SNOW, MF_SAKURA,
                                      MF_LEAVES, MF_FIREWORKS};
    if (weather < 1 || weather > 7)  // 8 (rain): no mapflag clif_weather shows
        return Outcome::failed(Reason::unsupported);
    map_setmapflag(m, flags[weather - 1], on);
    clif_weather(m);
    if (on) weather_on.insert({m, weather});
    else weather_on.erase({m, weather});
    return Outcome::done();
}

// -- the join sync (PROTOCOL.md section 16) ---------------------------------------------------
// After each welcome, before any action, the engine sends what stands on our maps. It
// REPLACES what this server shows from Norn: NPCs it names stay (moved to their cell) or are
// duplicated, the others are unloaded; weather it names is on, the rest Norn set is off;
// prices and stock are set. A row for a map we do not host or a cell that is not walkable
// is skipped and logged, like the action would fail. Moves and lines of NPCs the engine
// spawned before this server came then find their NPC (no not_here), and the client answers
// older mirrored actions done itself (they are in the sync).
void apply_sync(const norn::JoinSync& js) {
    std::unordered_set<int64> named;
    std::set<std::pair<int16, int>> weather;
    int skipped = 0;
    for (const norn::Action& r : js.rows) {
        int16 m = map_mapname2mapid(r.map.c_str());
        if (m < 0 || (!hosted.empty() && !hosted.count(r.map))) {
            ++skipped;
            continue;
        }
        switch (r.action_kind()) {
            case Kind::spawn_npc:
                if (!map_getcell(m, r.x, r.y, CELL_CHKPASS) ||
                    spawn_npc(r, m).status != norn::ResultStatus::done) {
                    ++skipped;
                    continue;
                }
                named.insert(r.npc_id);  // r.name: the faction's name, for the NPC's label
                break;
            case Kind::set_price:
                if (set_price(r).status != norn::ResultStatus::done) ++skipped;
                break;
            case Kind::set_weather:
                if (r.on) weather.insert({m, r.weather});
                break;
            default:  // set_hazard: no rAthena counterpart (see execute)
                break;
        }
    }
    for (auto it = npc_block.begin(); it != npc_block.end();) {  // not named: gone since
        if (named.count(it->first)) { ++it; continue; }
        if (npc_data* nd = map_id2nd(it->second)) npc_unload(nd, true);
        npc_norn_id.erase(it->second);
        it = npc_block.erase(it);
    }
    for (auto w : std::set<std::pair<int16, int>>(weather_on))
        if (!weather.count(w)) set_weather(w.first, w.second, false);
    for (auto w : weather)
        if (!weather_on.count(w)) set_weather(w.first, w.second, true);
    ShowInfo("Norn: join sync of tick %lld: %d NPCs, %zu rows, %d skipped\n",
             static_cast<long long>(js.tick), static_cast<int>(named.size()), js.rows.size(), skipped);
}

int broadcast_sub(block_list* bl, va_list ap) {
    const char* text = va_arg(ap, const char*);
    size_t len = va_arg(ap, size_t);
    clif_broadcast(bl, text, len, BC_DEFAULT, SELF);
    return 1;
}

// drain() hands a frame's actions in action_id order across kinds, the order the world
// emitted them (PROTOCOL.md section 8): each one runs here as it comes, so an NPC's last
// line (npc_say) is shown before its npc_unload (despawn_npc) of the same tick.
Outcome execute(const norn::Action& a) {
    int16 m = a.map.empty() ? -1 : map_mapname2mapid(a.map.c_str());
    switch (a.action_kind()) {
        case Kind::spawn_npc:
            if (m < 0) return Outcome::failed(Reason::unknown_map);
            if (!map_getcell(m, a.x, a.y, CELL_CHKPASS)) return Outcome::failed(Reason::out_of_bounds);
            return spawn_npc(a, m);
        case Kind::despawn_npc: {
            npc_data* nd = norn_npc(a.npc_id);
            if (nd == nullptr) return Outcome::failed(Reason::not_here);
            npc_norn_id.erase(nd->bl.id);
            npc_block.erase(a.npc_id);
            npc_unload(nd, true);
            return Outcome::done();
        }
        case Kind::move_npc: {
            npc_data* nd = norn_npc(a.npc_id);
            if (nd == nullptr) return Outcome::failed(Reason::not_here);
            if (m < 0) return Outcome::failed(Reason::unknown_map);
            if (nd->bl.m != m) return spawn_npc(a, m);  // another map: unload, duplicate there
            return npc_movenpc(nd, a.x, a.y) ? Outcome::done() : Outcome::failed(Reason::out_of_bounds);
        }
        case Kind::npc_say: {
            npc_data* nd = norn_npc(a.npc_id);
            if (nd == nullptr) return Outcome::failed(Reason::not_here);
            char line[CHAT_SIZE_MAX];
            safesnprintf(line, sizeof(line), "%s : %s", nd->name, a.text.c_str());
            clif_messagecolor(&nd->bl, color_table[COLOR_WHITE], line, true, AREA_CHAT_WOC);
            return Outcome::done();
        }
        case Kind::broadcast: {
            size_t len = a.text.size() + 1;  // with its NUL, as clif_broadcast expects
            if (a.map.empty()) {             // every map: this server's players
                clif_broadcast(nullptr, a.text.c_str(), len, BC_DEFAULT, ALL_CLIENT);
                return Outcome::done();
            }
            if (m < 0) return Outcome::failed(Reason::unknown_map);
            map_foreachinmap(broadcast_sub, m, BL_PC, a.text.c_str(), len);
            return Outcome::done();
        }
        case Kind::set_price:
            return set_price(a);
        case Kind::set_weather:
            if (m < 0) return Outcome::failed(Reason::unknown_map);
            return set_weather(m, a.weather, a.on);
        case Kind::start_quest: {
            map_session_data* sd = map_charid2sd(a.char_id);  // a char id, not an account id
            if (sd == nullptr) return Outcome::failed(Reason::not_here);
            return quest_add(sd, a.quest_id) == 0 ? Outcome::done() : Outcome::failed(Reason::invalid);
        }
        case Kind::give_reward: {
            map_session_data* sd = map_charid2sd(a.char_id);
            if (sd == nullptr) return Outcome::failed(Reason::not_here);
            return give_reward(a, sd);
        }
        case Kind::set_hazard:  // no rAthena counterpart: wire it to your own script event
        default:
            return Outcome::failed(Reason::unsupported);
    }
}

// -- timers ---------------------------------------------------------------------------------
TIMER_FUNC(norn_drain_timer) {
    client->drain(execute, 512);  // bounded work per tick of the main loop
    return 0;
}

int sample_sub(map_session_data* sd, va_list) {
    if (sd->bl.prev == nullptr || !sd->state.active)
        return 0;
    Seen now{sd->bl.m, sd->bl.x, sd->bl.y};
    auto it = last_seen.find(sd->status.char_id);
    if (it != last_seen.end() && it->second.m == now.m && it->second.x == now.x && it->second.y == now.y)
        return 0;
    last_seen[sd->status.char_id] = now;
    client->player_move(sd->status.char_id, map_name(now.m), now.x, now.y);
    return 0;
}

TIMER_FUNC(norn_sample_timer) {
    map_foreachpc(sample_sub);
    return 0;
}

TIMER_FUNC(norn_snapshot_timer) {
    for (int16 m = 0; m < map_num; m++)
        if (hosted.empty() || hosted.count(map_name(m)))
            client->map_snapshot(map_name(m), map_getmapdata(m)->users);
    return 0;
}

void log_line(norn::LogLevel level, const std::string& text) {
    switch (level) {
        case norn::LogLevel::error: ShowError("%s\n", text.c_str()); break;
        case norn::LogLevel::warning: ShowWarning("%s\n", text.c_str()); break;
        case norn::LogLevel::info: ShowInfo("%s\n", text.c_str()); break;
        default: break;
    }
}

}  // namespace

// -- configuration and lifecycle ------------------------------------------------------------
bool norn_config_read(const char* w1, const char* w2) {
    if (strncmpi(w1, "norn_", 5) != 0)
        return false;
    std::string key = w1 + 5;
    if (key == "endpoint") settings.endpoint = w2;
    else if (key == "server_id") settings.server_id = w2;
    else if (key == "maps") settings.maps = w2;
    else if (key == "executed_store") settings.store = w2;
    else if (key == "curve_server_key") settings.curve_server = w2;
    else if (key == "curve_public_key") settings.curve_public = w2;
    else if (key == "curve_secret_key") settings.curve_secret = w2;
    else if (key == "npc_template") settings.npc_template = w2;
    else if (key == "drain_ms") settings.drain_ms = atoi(w2);
    else if (key == "sample_ms") settings.sample_ms = atoi(w2);
    else if (key == "snapshot_ms") settings.snapshot_ms = atoi(w2);
    else if (key == "reward_zeny_max") settings.reward_zeny_max = atoi(w2);
    else if (key == "market") {  // norn_market: <market_id>,<shop NPC name>
        const char* comma = strchr(w2, ',');
        if (comma != nullptr) settings.markets[atoi(w2)] = comma + 1;
    } else
        ShowWarning("Unknown Norn setting '%s'\n", w1);
    return true;
}

void do_init_norn(void) {
    norn::Config cfg;
    cfg.endpoint = settings.endpoint;
    cfg.server_id = settings.server_id;
    std::stringstream maps(settings.maps);
    for (std::string m; std::getline(maps, m, ',');)
        if (!m.empty()) {
            cfg.maps.push_back(m);
            hosted.insert(m);
        }
    cfg.curve_server_key = settings.curve_server;
    cfg.curve_public_key = settings.curve_public;
    cfg.curve_secret_key = settings.curve_secret;
    world_store = std::make_unique<norn::FileExecutedStore>(settings.store);
    store = std::make_unique<CharRecordStore>();
    cfg.store = store.get();
    cfg.on_log = log_line;
    cfg.on_sync = apply_sync;  // and cfg.sync (on by default): the join sync is asked for
    client = std::make_unique<norn::Client>(cfg);
    client->start();  // restores the executed ids, starts the network thread

    add_timer_func_list(norn_drain_timer, "norn_drain_timer");
    add_timer_func_list(norn_sample_timer, "norn_sample_timer");
    add_timer_func_list(norn_snapshot_timer, "norn_snapshot_timer");
    add_timer_interval(gettick() + settings.drain_ms, norn_drain_timer, 0, 0, settings.drain_ms);
    add_timer_interval(gettick() + settings.sample_ms, norn_sample_timer, 0, 0, settings.sample_ms);
    add_timer_interval(gettick() + settings.snapshot_ms, norn_snapshot_timer, 0, 0, settings.snapshot_ms);
    ShowStatus("Norn bridge: %s as %s\n", settings.endpoint.c_str(), settings.server_id.c_str());
}

void do_final_norn(void) {
    if (!client) return;
    client->drain(execute);
    client->stop(true, 2000);  // says bye after handing over what is queued (2 s at most)
    client.reset();
}

// -- events ---------------------------------------------------------------------------------
void norn_on_script_event(map_session_data& sd, enum npce_event type) {
    if (!client) return;
    const uint32 c = sd.status.char_id;  // char id; account id is a different number
    switch (type) {
        case NPCE_LOGOUT:
            client->logout(c, sd.status.account_id);
            last_seen.erase(c);
            break;
        case NPCE_BASELVUP:
        case NPCE_JOBLVUP:
            client->level_up(c, sd.status.base_level, sd.status.job_level);
            break;
        case NPCE_DIE:
            client->player_death(c, map_name(sd.bl.m), sd.bl.x, sd.bl.y);
            break;
        default:
            break;
    }
}

void norn_on_loadmap(map_session_data& sd) {
    if (!client) return;
    const uint32 c = sd.status.char_id;
    if (sd.state.connect_new)
        client->login(c, sd.status.account_id, map_name(sd.bl.m), sd.bl.x, sd.bl.y, sd.status.base_level);
    else if (sd.state.pmap != sd.bl.m)
        client->map_change(c, map_name(sd.state.pmap), map_name(sd.bl.m), sd.bl.x, sd.bl.y);
    last_seen[c] = Seen{sd.bl.m, sd.bl.x, sd.bl.y};
}

void norn_on_mob_dead(mob_data& md, map_session_data* mvp_sd) {
    if (!client || mvp_sd == nullptr) return;
    int instance = map_getmapdata(md.bl.m)->instance_id;
    client->mob_kill(mvp_sd->status.char_id, md.mob_id, instance, map_name(md.bl.m), md.bl.x, md.bl.y);
}

void norn_on_quest_done(map_session_data& sd, int quest_id) {
    if (client) client->quest_done(sd.status.char_id, quest_id);
}

void norn_on_npc_click(map_session_data& sd, npc_data& nd) {
    if (!client) return;
    auto it = npc_norn_id.find(nd.bl.id);
    if (it != npc_norn_id.end()) client->npc_talk(sd.status.char_id, it->second, "");
}

void norn_on_trade(map_session_data& sd, map_session_data& partner, int item_id, int amount, int zeny) {
    if (client) client->trade(sd.status.char_id, partner.status.char_id, item_id, amount, zeny);
}

void norn_on_vending(map_session_data& buyer, map_session_data& seller, int item_id, int amount, int price) {
    if (client) client->vending_purchase(buyer.status.char_id, seller.status.char_id, item_id, amount, price);
}

void norn_on_npc_shop(map_session_data& sd, int item_id, int amount, bool is_sell) {
    if (client) client->npc_shop(sd.status.char_id, map_name(sd.bl.m), item_id, amount, is_sell);
}
