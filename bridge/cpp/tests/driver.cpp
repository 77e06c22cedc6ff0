// A small map server written against the C++ client, for tests/test_cpp_client.py: it plays
// rAthena the way `norn sim-server` does (players log in, walk, kill, trade, ..., log out), in
// one of three modes, and prints one JSON summary line at the end.
//
//   e2e       events of every kind, actions executed as they arrive
//   lockstep  step s stamped welcome.tick + 1 + s; the actions of tick a answered in the
//             batch stamped a + lag; progress declared once the mark allows (section 14)
//   stream    one quest_done batch per step (for the scripted-engine error tests)
//
// --store FILE keeps executed action ids in a FileExecutedStore; --crash-after-execute N kills
// the process (SIGKILL) right after the Nth id is stored, before its result can leave.
//
// Actions are validated as `norn sim-server` validates them (bridge/sim_server.py), in the
// order drain() hands them (action_id order across kinds, PROTOCOL.md section 8): a map it
// does not host fails unknown_map, a cell outside the map out_of_bounds, and an NPC action
// (move_npc, despawn_npc, npc_say) for an NPC it was never shown not_here. It mirrors what it
// is shown: spawn_npc actions and the join sync (PROTOCOL.md section 16, asked for unless
// --no-sync), which replaces the mirror (in lockstep only the first one: a certification run
// keeps its own mirror across the engine's restarts, as the simulator does).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "norn/client.hpp"

namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point after(double seconds) {
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

struct Options {
    std::string endpoint, server_id = "map01", mode = "e2e", store, hosted;
    std::string curve_server, curve_public, curve_secret;
    int steps = 40, step_ms = 20, players = 50, result_lag = 2, crash_after = 0;
    std::uint64_t seed = 1;
    double connect_timeout_s = 30, drain_timeout_s = 30, duration_s = 0;
    bool rows = false, lockstep = false, quiet_log = false, sync = true;
    std::uint32_t retransmit_ms = 3000, retransmit_max_ms = 60000, hello_retry_ms = 1000;
    std::uint32_t batch_events = 4096, batch_ms = 20;
};

std::uint64_t mix(std::uint64_t x) {  // splitmix64
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/// The executed-id store, which kills the process after the Nth id it stored.
class CrashingStore : public norn::FileExecutedStore {
public:
    CrashingStore(const std::string& path, int crash_after)
        : norn::FileExecutedStore(path), crash_after_(crash_after) {}
    void executed(const norn::Action& a) override {
        norn::FileExecutedStore::executed(a);  // the record is durable now...
        if (crash_after_ > 0 && ++stored_ == crash_after_) {
            std::cout << "{\"crashing_after\":" << a.id << "}" << std::endl;
            ::raise(SIGKILL);  // ...and its result never leaves
        }
    }

private:
    int crash_after_;
    int stored_ = 0;
};

struct Player {
    std::uint32_t char_id, account_id;
    bool online = false;
    int map = 0;
    int x = 0, y = 0, base = 1, job = 1;
};

class World {
public:
    World(int players, std::uint64_t seed, std::vector<norn::MapInfo> maps)
        : seed_(seed), maps_(std::move(maps)) {
        if (maps_.size() > 3) maps_.resize(3);
        for (int i = 0; i < players; ++i)
            players_.push_back({static_cast<std::uint32_t>(150000 + i),
                                static_cast<std::uint32_t>(2000000 + i)});
    }

    /// Step ``s``'s events, queued on ``c``; a pure function of (seed, players, maps, s).
    void step(norn::Client& c, int s) {
        for (std::size_t i = 0; i < players_.size(); ++i) {
            Player& p = players_[i];
            std::uint64_t r = mix(seed_ ^ mix(static_cast<std::uint64_t>(s) * 1000003u + i));
            int pick = static_cast<int>(r % 100);
            auto rnd = [&](int n) { r = mix(r); return static_cast<int>(r % static_cast<std::uint64_t>(n)); };
            const norn::MapInfo& m = maps_[p.map];
            if (!p.online) {
                if (pick < 30) {
                    p.online = true;
                    p.map = rnd(static_cast<int>(maps_.size()));
                    const norn::MapInfo& mm = maps_[p.map];
                    p.x = rnd(static_cast<int>(mm.width));
                    p.y = rnd(static_cast<int>(mm.height));
                    add("login", c.login(p.char_id, p.account_id, mm.name, p.x, p.y, p.base));
                }
                continue;
            }
            if (pick < 40) {
                p.x = std::max(0, std::min(static_cast<int>(m.width) - 1, p.x + rnd(15) - 7));
                p.y = std::max(0, std::min(static_cast<int>(m.height) - 1, p.y + rnd(15) - 7));
                add("player_move", c.player_move(p.char_id, m.name, p.x, p.y));
            } else if (pick < 50) {
                add("mob_kill", c.mob_kill(p.char_id, 1002 + rnd(50), rnd(4) == 0 ? 1 + rnd(9) : 0,
                                           m.name, p.x, p.y));
            } else if (pick < 54) {
                int to = (p.map + 1) % static_cast<int>(maps_.size());
                const norn::MapInfo& mm = maps_[to];
                p.x = rnd(static_cast<int>(mm.width));
                p.y = rnd(static_cast<int>(mm.height));
                add("map_change", c.map_change(p.char_id, m.name, mm.name, p.x, p.y));
                p.map = to;
            } else if (pick < 58) {
                add("player_death", c.player_death(p.char_id, m.name, p.x, p.y));
            } else if (pick < 62) {
                p.base = std::min(99, p.base + 1);
                p.job = std::min(50, p.job + rnd(2));
                add("level_up", c.level_up(p.char_id, p.base, p.job));
            } else if (pick < 68) {
                static const char* lines[] = {"Hello!", "Any quests for me?", "Th\xc3\xa9 prices rose!", ""};
                add("npc_talk", c.npc_talk(p.char_id, 110000001 + rnd(4), lines[rnd(4)]));
            } else if (pick < 72) {
                add("quest_done", c.quest_done(p.char_id, 7001 + rnd(5)));
            } else if (pick < 76) {
                const Player& q = players_[rnd(static_cast<int>(players_.size()))];
                bool zeny_only = rnd(3) == 0;
                add("trade", c.trade(p.char_id, q.char_id, zeny_only ? 0 : 501 + rnd(8),
                                     zeny_only ? 0 : 1 + rnd(20), rnd(50000)));
            } else if (pick < 80) {
                const Player& q = players_[rnd(static_cast<int>(players_.size()))];
                add("vending_purchase", c.vending_purchase(p.char_id, q.char_id, 501 + rnd(8),
                                                           1 + rnd(10), 10 + rnd(100000)));
            } else if (pick < 86) {
                add("npc_shop", c.npc_shop(p.char_id, m.name, 501 + rnd(8), 1 + rnd(30), rnd(3) == 0));
            } else if (pick < 89) {
                p.online = false;
                add("logout", c.logout(p.char_id, p.account_id));
            }
        }
        if (s % 5 == 0) {
            std::vector<int> counts(maps_.size(), 0);
            for (const Player& p : players_)
                if (p.online) ++counts[p.map];
            for (std::size_t m = 0; m < maps_.size(); ++m)
                add("map_snapshot", c.map_snapshot(maps_[m].name, counts[m]));
        }
    }

    void logout_all(norn::Client& c) {
        for (Player& p : players_)
            if (p.online) {
                p.online = false;
                add("logout", c.logout(p.char_id, p.account_id));
            }
    }

    std::map<std::string, std::uint64_t> generated;
    std::uint64_t refused = 0;

private:
    void add(const char* kind, bool ok) {
        if (ok) ++generated[kind];
        else ++refused;
    }
    std::uint64_t seed_;
    std::vector<norn::MapInfo> maps_;
    std::vector<Player> players_;
};

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

std::string json_counts(const std::map<std::string, std::uint64_t>& m) {
    std::ostringstream o;
    o << "{";
    bool first = true;
    for (const auto& kv : m) {
        o << (first ? "" : ",") << "\"" << kv.first << "\":" << kv.second;
        first = false;
    }
    o << "}";
    return o.str();
}

/// What the engine showed on our maps, and the checks a real map server makes.
class Mirror {
public:
    struct Npc { std::string map; int x, y; std::string name; };

    void set_maps(const std::vector<norn::MapInfo>& world, const std::vector<std::string>& hosted) {
        maps_.clear();
        for (const norn::MapInfo& m : world)
            if (hosted.empty() || std::find(hosted.begin(), hosted.end(), m.name) != hosted.end())
                maps_[m.name] = {m.width, m.height};
    }

    /// Replace everything with the sync's rows (each validated like an action).
    void apply(const norn::JoinSync& js) {
        npcs.clear();
        prices.clear();
        weather.clear();
        hazards.clear();
        ++syncs;
        sync_rows += js.rows.size() + js.unknown_rows;
        for (const norn::Action& r : js.rows) {
            norn::Reason why = check(r);
            if (why == norn::Reason::ok && r.action_kind() == Kind::spawn_npc &&
                (r.name.empty() || r.name.size() > 23))
                why = norn::Reason::invalid;
            if (why != norn::Reason::ok) {
                ++sync_invalid[reason_name(why)];
                continue;
            }
            switch (r.action_kind()) {
                case Kind::spawn_npc: npcs[r.npc_id] = {r.map, r.x, r.y, r.name}; break;
                case Kind::set_price: prices[r.market_id] = {r.price_zeny, r.stock}; break;
                case Kind::set_weather: weather.insert({r.map, r.weather}); break;
                case Kind::set_hazard: hazards[{r.map, r.hazard_type}] = r.intensity; break;
                default: break;
            }
        }
    }

    /// Validate and apply one action; its answer.
    norn::Reason execute(const norn::Action& a) {
        norn::Reason why = check(a);
        if (why == norn::Reason::ok) {
            switch (a.action_kind()) {
                case Kind::spawn_npc: {
                    std::string name = npcs.count(a.npc_id) ? npcs[a.npc_id].name : "";
                    npcs[a.npc_id] = {a.map, a.x, a.y, name};
                    break;
                }
                case Kind::move_npc:
                case Kind::despawn_npc:
                case Kind::npc_say: {
                    auto it = npcs.find(a.npc_id);
                    if (it == npcs.end()) { why = norn::Reason::not_here; break; }
                    if (a.action_kind() == Kind::despawn_npc) npcs.erase(it);
                    else if (a.action_kind() == Kind::move_npc) it->second = {a.map, a.x, a.y, it->second.name};
                    break;
                }
                case Kind::set_price: {
                    auto it = prices.find(a.market_id);
                    prices[a.market_id] = {a.price_zeny, it == prices.end() ? -1 : it->second.second};
                    break;
                }
                case Kind::set_weather:
                    if (a.on) weather.insert({a.map, a.weather});
                    else weather.erase({a.map, a.weather});
                    break;
                case Kind::set_hazard:
                    if (a.on) hazards[{a.map, a.hazard_type}] = a.intensity;
                    else hazards.erase({a.map, a.hazard_type});
                    break;
                default: break;
            }
        }
        if (why == norn::Reason::ok) ++executed[a.kind_name];
        else ++failed[a.kind_name + "/" + reason_name(why)];
        return why;
    }

    std::map<std::int64_t, Npc> npcs;
    std::map<std::int32_t, std::pair<std::int32_t, std::int32_t>> prices;  // price, stock
    std::set<std::pair<std::string, int>> weather;
    std::map<std::pair<std::string, int>, float> hazards;
    std::uint64_t syncs = 0, sync_rows = 0;
    std::map<std::string, std::uint64_t> sync_invalid, executed, failed;

private:
    using Kind = norn::v1::ActionKind;

    static std::string reason_name(norn::Reason r) {
        static const char* names[] = {"ok", "unknown_map", "out_of_bounds", "reward_cap", "not_here",
                                      "expired", "zeny_overflow", "invalid", "unsupported"};
        return names[static_cast<int>(r)];
    }

    /// The map and the cell, as a map server checks them before it acts.
    norn::Reason check(const norn::Action& a) const {
        switch (a.action_kind()) {
            case Kind::spawn_npc: case Kind::move_npc: case Kind::set_price: case Kind::set_weather:
            case Kind::set_hazard: {
                auto it = maps_.find(a.map);
                if (it == maps_.end()) return norn::Reason::unknown_map;
                if (a.action_kind() == Kind::spawn_npc || a.action_kind() == Kind::move_npc) {
                    if (a.x < 0 || a.y < 0 || a.x >= it->second.first || a.y >= it->second.second)
                        return norn::Reason::out_of_bounds;
                }
                return norn::Reason::ok;
            }
            case Kind::broadcast:
                return a.map.empty() || maps_.count(a.map) ? norn::Reason::ok : norn::Reason::unknown_map;
            default:
                return norn::Reason::ok;
        }
    }

    std::map<std::string, std::pair<std::int64_t, std::int64_t>> maps_;
};

std::string json_stats(const norn::Stats& s) {
    std::ostringstream o;
    o << "{";
#define F(name) o << "\"" #name "\":" << s.name << ",";
    F(events_queued) F(events_invalid) F(events_dropped) F(events_sent) F(events_acked)
    F(events_rejected) F(results_queued) F(results_sent) F(results_acked) F(batches_sent)
    F(retransmits) F(timeouts) F(rewinds) F(acks) F(actions_received) F(actions_executed)
    F(actions_failed) F(actions_deferred) F(actions_duplicate) F(actions_reanswered)
    F(actions_expired) F(actions_unsupported) F(actions_malformed) F(hellos) F(welcomes)
    F(reconnects) F(superseded) F(errors) F(overloaded) F(tick_ahead) F(progress_sent)
    F(inbound_dropped) F(syncs) F(sync_rows) F(sync_rows_unknown) F(syncs_dropped)
    F(actions_reflected)
#undef F
    o << "\"errors_by_code\":{";
    bool first = true;
    for (int i = 0; i < 18; ++i)
        if (s.errors_by_code[i]) {
            o << (first ? "" : ",") << "\"" << i << "\":" << s.errors_by_code[i];
            first = false;
        }
    o << "}}";
    return o.str();
}

int run(const Options& opt) {
    std::unique_ptr<CrashingStore> store;
    if (!opt.store.empty()) store = std::make_unique<CrashingStore>(opt.store, opt.crash_after);
    norn::Config cfg;
    cfg.endpoint = opt.endpoint;
    cfg.server_id = opt.server_id;
    cfg.maps = split(opt.hosted);
    cfg.lockstep = opt.lockstep || opt.mode == "lockstep";
    cfg.rows = opt.rows;
    cfg.batch_events = opt.batch_events;
    cfg.batch_ms = opt.batch_ms;
    cfg.retransmit_ms = opt.retransmit_ms;
    cfg.retransmit_max_ms = opt.retransmit_max_ms;
    cfg.hello_retry_ms = opt.hello_retry_ms;
    cfg.curve_server_key = opt.curve_server;
    cfg.curve_public_key = opt.curve_public;
    cfg.curve_secret_key = opt.curve_secret;
    cfg.store = store.get();
    cfg.sync = opt.sync;
    Mirror mirror;
    std::vector<norn::Action> waiting;  // lockstep: until their tick's turn
    bool ls = opt.mode == "lockstep";
    norn::Client* live = nullptr;  // the client, once it exists (the callbacks run after)
    bool maps_known = false;
    auto know_maps = [&] {  // our maps and their sizes: the welcome's, cut to --maps
        if (maps_known || live == nullptr) return;
        mirror.set_maps(live->world_maps(), cfg.maps);
        maps_known = true;
    };
    cfg.on_sync = [&](const norn::JoinSync& js) {
        know_maps();
        if (!(ls && mirror.syncs)) {  // lockstep: the first sync only (see the top)
            mirror.apply(js);
        } else {
            ++mirror.syncs;
        }
        for (norn::Action& a : waiting)  // drained before it, not yet in their turn
            if (a.mirrored() && (a.id >> 24) <= js.tick) a.reflected = true;
    };
    std::vector<std::string> logs;
    cfg.on_log = [&](norn::LogLevel level, const std::string& text) {
        if (!opt.quiet_log) std::cerr << static_cast<int>(level) << " " << text << "\n";
        if (logs.size() < 200) logs.push_back(text);
    };
    norn::Client client(cfg);
    live = &client;

    std::map<std::string, std::uint64_t> executed_by_kind;
    std::set<std::int64_t> executed_ids;
    std::vector<std::int64_t> executed_order;  // ids as executed: action_id order in a tick
    std::uint64_t reflected = 0, out_of_order = 0;
    std::int64_t last_id = -1;
    auto run_one = [&](const norn::Action& a) -> norn::Reason {
        know_maps();
        // validated and applied in action_id order (PROTOCOL.md section 8): within a tick,
        // never an id below one already run (a later tick's frame may come first only
        // after a reconnect re-sends an older one)
        if ((a.id >> 24) == (last_id >> 24) && a.id < last_id) ++out_of_order;
        last_id = a.id;
        if (a.reflected) {  // the sync shows it already: done, not executed again
            ++reflected;
            return norn::Reason::ok;
        }
        norn::Reason why = mirror.execute(a);
        if (why == norn::Reason::ok) {
            ++executed_by_kind[a.kind_name];
            executed_ids.insert(a.id);
            executed_order.push_back(a.id);
        }
        return why;
    };
    norn::Client::Executor execute = [&](const norn::Action& a) {
        if (ls) {
            waiting.push_back(a);
            return norn::Outcome::deferred();
        }
        if (a.kind < 0) return norn::Outcome::failed(norn::Reason::unsupported);
        norn::Reason why = run_one(a);
        return why == norn::Reason::ok ? norn::Outcome::done() : norn::Outcome::failed(why);
    };
    auto report_due = [&](std::int64_t upto) {
        std::vector<norn::Action> keep;
        // in tick order, each tick in action_id order (the id's high bits are its tick)
        std::stable_sort(waiting.begin(), waiting.end(),
                         [](const norn::Action& a, const norn::Action& b) { return a.id < b.id; });
        for (const norn::Action& a : waiting) {
            if (a.tick > upto) { keep.push_back(a); continue; }
            if (a.kind < 0) {  // a kind this map server does not know: answered in turn
                client.report(a, norn::ResultStatus::failed, norn::Reason::unsupported);
                continue;
            }
            norn::Reason why = run_one(a);
            client.report(a, why == norn::Reason::ok ? norn::ResultStatus::done : norn::ResultStatus::failed, why);
        }
        waiting.swap(keep);
    };
    auto pump = [&](double seconds) {
        auto end = after(seconds);
        do {
            client.drain(execute);
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        } while (Clock::now() < end);
    };

    client.start();
    auto deadline = after(opt.connect_timeout_s);
    while (client.world_maps().empty() && Clock::now() < deadline) pump(0.005);
    if (client.world_maps().empty()) {
        std::cout << "{\"error\":\"no welcome\"," << "\"stats\":" << json_stats(client.stats()) << "}" << std::endl;
        client.stop(false);
        return 3;
    }
    World world(opt.players, opt.seed, client.world_maps());
    std::int64_t first = client.engine_tick() + 1;
    bool timed_out = false;
    auto settle = [&](std::int64_t tick) {
        std::int64_t upto = tick - opt.result_lag;
        auto end = after(opt.drain_timeout_s);
        while (client.mark_tick() < upto) {
            if (Clock::now() > end) { timed_out = true; return; }
            pump(0.002);
        }
        client.set_tick(tick);
        report_due(upto);
    };

    if (opt.mode == "stream") {
        auto end = after(opt.duration_s);
        int s = 0;
        while (Clock::now() < end) {
            client.quest_done(150000, 1 + s++);
            client.flush();
            pump(opt.step_ms / 1000.0);
        }
    } else {
        for (int s = 0; s < opt.steps && !timed_out; ++s) {
            if (ls) settle(first + s);
            world.step(client, s);
            if (ls) client.progress(first + s);
            pump(opt.step_ms / 1000.0);
        }
        if (ls) settle(first + opt.steps);
        world.logout_all(client);
        if (ls) client.progress(norn::kSeqMax);  // done stamping
    }
    client.flush();
    auto end = after(opt.drain_timeout_s);
    while (!client.events_durable() && Clock::now() < end) pump(0.01);
    auto grace = Clock::now() + std::chrono::milliseconds(2 * opt.batch_ms + 1000);
    while (!client.idle() && Clock::now() < std::min(grace, end)) pump(0.01);
    bool all_acked = client.events_durable();
    norn::Stats st = client.stats();
    client.stop(true, 1000);

    std::ostringstream o;
    o << "{\"server_id\":\"" << opt.server_id << "\",\"mode\":\"" << opt.mode
      << "\",\"all_acked\":" << (all_acked ? "true" : "false")
      << ",\"timed_out\":" << (timed_out ? "true" : "false") << ",\"first_tick\":" << first
      << ",\"refused\":" << world.refused << ",\"generated_by_kind\":{";
    bool f1 = true;
    for (const auto& kv : world.generated) {
        o << (f1 ? "" : ",") << "\"" << kv.first << "\":" << kv.second;
        f1 = false;
    }
    o << "},\"executed_by_kind\":{";
    f1 = true;
    for (const auto& kv : executed_by_kind) {
        o << (f1 ? "" : ",") << "\"" << kv.first << "\":" << kv.second;
        f1 = false;
    }
    o << "},\"executed_ids\":[";
    f1 = true;
    for (std::int64_t id : executed_ids) {
        o << (f1 ? "" : ",") << id;
        f1 = false;
    }
    o << "],\"executed_order\":[";
    f1 = true;
    for (std::int64_t id : executed_order) {
        o << (f1 ? "" : ",") << id;
        f1 = false;
    }
    o << "],\"out_of_order\":" << out_of_order << ",\"unexecuted\":" << waiting.size() << ",\"syncs\":" << mirror.syncs
      << ",\"sync_rows\":" << mirror.sync_rows << ",\"sync_invalid\":" << json_counts(mirror.sync_invalid)
      << ",\"npcs_known\":" << mirror.npcs.size() << ",\"reflected\":" << reflected
      << ",\"failed_by_kind\":" << json_counts(mirror.failed) << ",\"stats\":" << json_stats(st) << "}";
    std::cout << o.str() << std::endl;
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) { std::cerr << a << " needs a value\n"; std::exit(2); }
            return argv[++i];
        };
        if (a == "--endpoint") opt.endpoint = next();
        else if (a == "--server-id") opt.server_id = next();
        else if (a == "--mode") opt.mode = next();
        else if (a == "--maps") opt.hosted = next();
        else if (a == "--store") opt.store = next();
        else if (a == "--crash-after-execute") opt.crash_after = std::stoi(next());
        else if (a == "--steps") opt.steps = std::stoi(next());
        else if (a == "--step-ms") opt.step_ms = std::stoi(next());
        else if (a == "--players") opt.players = std::stoi(next());
        else if (a == "--seed") opt.seed = std::stoull(next());
        else if (a == "--result-lag") opt.result_lag = std::stoi(next());
        else if (a == "--duration-s") opt.duration_s = std::stod(next());
        else if (a == "--connect-timeout-s") opt.connect_timeout_s = std::stod(next());
        else if (a == "--drain-timeout-s") opt.drain_timeout_s = std::stod(next());
        else if (a == "--retransmit-ms") opt.retransmit_ms = static_cast<std::uint32_t>(std::stoul(next()));
        else if (a == "--retransmit-max-ms") opt.retransmit_max_ms = static_cast<std::uint32_t>(std::stoul(next()));
        else if (a == "--hello-retry-ms") opt.hello_retry_ms = static_cast<std::uint32_t>(std::stoul(next()));
        else if (a == "--batch-events") opt.batch_events = static_cast<std::uint32_t>(std::stoul(next()));
        else if (a == "--batch-ms") opt.batch_ms = static_cast<std::uint32_t>(std::stoul(next()));
        else if (a == "--curve-server-key") opt.curve_server = next();
        else if (a == "--curve-public-key") opt.curve_public = next();
        else if (a == "--curve-secret-key") opt.curve_secret = next();
        else if (a == "--rows") opt.rows = true;
        else if (a == "--lockstep") opt.lockstep = true;
        else if (a == "--no-sync") opt.sync = false;
        else if (a == "--quiet") opt.quiet_log = true;
        else { std::cerr << "unknown option " << a << "\n"; return 2; }
    }
    if (opt.endpoint.empty()) { std::cerr << "--endpoint is required\n"; return 2; }
    try {
        return run(opt);
    } catch (const std::exception& e) {
        std::cerr << "norn_driver: " << e.what() << "\n";
        return 4;
    }
}
