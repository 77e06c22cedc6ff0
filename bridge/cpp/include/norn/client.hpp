// Norn bridge client for rAthena map servers (C++17, cppzmq + msgpack-cxx).
//
// Threading: the client owns one network thread that runs the ZeroMQ DEALER socket and the
// whole protocol of bridge/PROTOCOL.md (handshake, sequence numbers, cumulative acks, credit,
// retransmission with exponential backoff, heartbeats, reconnects, lockstep progress, every
// error code, CURVE). The game thread (the map server's single main loop) never blocks and
// never touches the socket: its calls append to per-kind column buffers it alone owns, and
// batches, progress marks and actions cross between the threads through two bounded
// lock-free single-producer single-consumer rings. A timer in the game loop calls drain(),
// which hands the actions that arrived to an executor (in action_id order, the order the
// world emitted them), queues their results, closes batches that are old enough and passes
// them to the network thread.
//
//   norn::Config cfg;
//   cfg.endpoint = "tcp://127.0.0.1:7600";
//   cfg.server_id = "map01";
//   norn::Client client(cfg);
//   client.start();
//   client.player_move(150000, "prontera", 156, 191);      // from the game's hooks
//   client.drain([](const norn::Action& a) { ... return norn::Outcome::done(); });  // timer
//
// Durability of executed actions: an ExecutedStore (the integrator's, backed by the char
// database) records every action the game executed, together with its effect; the client
// restores the record on start and never executes a recorded id again (PROTOCOL.md 8).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "norn/spsc.hpp"
#include "norn/wire.hpp"

namespace norn {

/// One action from the engine, decoded (PROTOCOL.md section 8). Fields a kind does not have
/// are zero / empty. A kind this client does not know (an engine newer than it, a world
/// plugin's kind) reaches the executor too, with kind -1, its wire name and its id only:
/// answer it Outcome::failed(Reason::unsupported) (a switch's default), or defer it like
/// any action (in lockstep its answer must land on the tick the stream decides).
struct Action {
    int kind = -1;               // a v1::ActionKind, or -1: a kind this client does not know
    std::string kind_name;       // the wire name (also for unknown kinds)
    std::int64_t id = 0;         // action_id: (tick << 24) | position
    std::int64_t tick = 0;       // the tick that emitted it
    std::int64_t expires_tick = 0;
    std::int64_t npc_id = 0;
    std::string map;             // map name; "" = every map (broadcast's -1)
    std::int16_t x = 0, y = 0, sprite = 0, weather = 0, hazard_type = 0;
    std::int32_t market_id = 0, item_id = 0, price_zeny = 0, quest_id = 0, amount = 0, zeny = 0;
    std::uint32_t char_id = 0;
    float intensity = 0;
    bool on = false;
    std::string text;
    // join sync rows only (section 16): an NPC's shown name, a shop's stock (-1: not given)
    std::string name;
    std::int32_t stock = -1;
    /// Lockstep only: the last join sync already reflects this action (a mirrored kind of a
    /// tick <= the sync's, or a line of such a tick by an NPC the sync does not show).
    /// Answer it done in its turn WITHOUT executing it. (Outside lockstep the client
    /// answers such actions itself; the executor never sees them.)
    bool reflected = false;

    v1::ActionKind action_kind() const { return static_cast<v1::ActionKind>(kind); }
    /// Whether the map server mirrors this kind's effect (spawn_npc, despawn_npc, move_npc,
    /// set_price, set_weather, set_hazard): the state a join sync carries.
    bool mirrored() const { return kind >= 0 && v1::kActionMirrored[kind]; }
    /// Whether this kind is a line an NPC says (npc_say): reflected by a sync that does not
    /// show its NPC (the NPC was gone by then).
    bool spoken() const { return kind >= 0 && v1::kActionSpoken[kind]; }
};

/// A whole join sync (PROTOCOL.md section 16), handed to Config::on_sync on the game thread
/// once its last part has arrived, before any action that came after it. It is everything
/// the engine shows on this server's maps at ``tick``: the handler REPLACES its mirror with
/// it (NPCs, prices, weather and hazards it shows from the engine and the sync does not name
/// are removed / turned off), validating each row like an action (a map it does not host, a
/// cell outside the map: skip and log the row).
struct JoinSync {
    std::int64_t tick = 0;
    /// One row per thing, as the Action of its kind would show it (id 0, tick = the sync's):
    /// spawn_npc (npc_id, map, x, y, sprite, name), set_price (market_id, map, item_id,
    /// price_zeny, stock), set_weather (map, weather, on), set_hazard (map, hazard_type,
    /// intensity, on). Kinds in the action table's order.
    std::vector<Action> rows;
    /// Rows of kinds this client does not know (a world's own kinds: spawn_monster,
    /// mark_dig_site, set_mapflag ...), skipped; their actions reach the executor as kind -1.
    std::uint64_t unknown_rows = 0;
    std::vector<std::string> unknown_kinds;
};

/// Decode one ``sync`` part's rows into ``out`` (its tick is the caller's). Throws WireError
/// when a column is missing or of the wrong length, or a map index is out of range.
void append_sync_rows(const Sync& part, JoinSync& out);

/// What the executor says about an action.
struct Outcome {
    bool later = false;  // the game answers with Client::report() once it knows
    ResultStatus status = ResultStatus::done;
    Reason reason = Reason::ok;

    static Outcome done() { return {}; }
    static Outcome failed(Reason r) { return {false, ResultStatus::failed, r}; }
    static Outcome deferred() { return {true, ResultStatus::done, Reason::ok}; }
};

/// The durable record of executed actions, backed by the integrator (the char database).
///
/// Every method is called on the game thread, from start() and drain().
class ExecutedStore {
public:
    virtual ~ExecutedStore() = default;
    /// On start: the ids this store can list that earlier runs executed (may be none: a
    /// store that keeps ids per character answers ``contains`` instead).
    virtual void load(std::vector<std::int64_t>& ids) { (void)ids; }
    /// Asked for an action the client has no memory of, before executing it: did an earlier
    /// run execute it? (For give_reward: is its id in the character's saved record?)
    virtual bool contains(const Action& action) { (void)action; return false; }
    /// The game executed ``action`` (its outcome is done). Store the record with the effect,
    /// in the same save (for a character's reward: the character's own save).
    virtual void executed(const Action& action) = 0;
    /// The engine's tick passed ``tick``: records of actions whose expires_tick < tick can go
    /// (such an action is never executed again; it would arrive expired).
    virtual void expire(std::int64_t tick) { (void)tick; }
};

/// An ExecutedStore in a file: one line per executed action, fsynced before the result
/// leaves; compacted as records expire. For tests, and for world actions (NPCs, weather,
/// prices) whose effects are not in the char database.
class FileExecutedStore : public ExecutedStore {
public:
    explicit FileExecutedStore(std::string path, bool sync = true);
    ~FileExecutedStore() override;
    void load(std::vector<std::int64_t>& ids) override;
    bool contains(const Action& action) override;
    void executed(const Action& action) override;
    void expire(std::int64_t tick) override;
    std::size_t size() const { return records_.size(); }

private:
    void open_append();
    void rewrite();
    std::string path_;
    bool sync_;
    int fd_ = -1;
    std::deque<std::pair<std::int64_t, std::int64_t>> records_;  // (action_id, expires_tick)
    std::unordered_set<std::int64_t> ids_;
    std::size_t lines_ = 0;
};

enum class LogLevel : std::uint8_t { debug, info, warning, error };

struct Config {
    std::string endpoint = "tcp://127.0.0.1:7600";
    std::string server_id = "map01";       // [A-Za-z0-9_.-]{1,64}, stable across restarts
    std::vector<std::string> maps;         // maps this server hosts; empty = every map
    bool lockstep = false;                 // ask for a lockstep session (section 14)
    bool rows = false;                     // send batches as rows instead of columns
    /// Ask for the join sync after each hello (section 16): before any action, the engine
    /// sends the state to mirror on this server's maps (NPCs, prices, weather, hazards), so
    /// moves and lines of NPCs that exist since before this server came never fail
    /// not_here. On by default; asked for only when on_sync is set (someone must apply it).
    bool sync = true;

    // batching, on the game thread
    std::uint32_t batch_events = 4096;     // close a kind's batch at this many events...
    std::uint32_t batch_ms = 50;           // ...or when its first event is this old (drain)
    std::size_t pending_events_max = 1u << 20;  // events held on the game thread; past it,
                                                // events are refused (counted dropped)
    // the rings
    std::size_t outbound_ring = 1024;      // batches and progress, game -> network
    std::size_t inbound_ring = 1024;       // action frames, marks, logs, network -> game

    // the network thread
    std::size_t frames_max = 1024;         // encoded batches kept until acked (and unsent)
    std::size_t frames_bytes_max = 256u << 20;  // ... and their bytes
    std::uint32_t poll_ms = 5;             // longest wait for the socket before looking at
                                           // the outbound ring again
    std::uint32_t heartbeat_ms = 1000;     // until a welcome says otherwise
    std::uint32_t peer_timeout_ms = 5000;  // until a welcome says otherwise
    std::uint32_t hello_retry_ms = 1000;   // no welcome this long: new socket, new hello...
    std::uint32_t hello_retry_max_ms = 30000;  // ... backing off up to this
    std::uint32_t retransmit_ms = 3000;    // retransmission timeout floor (section 4)
    std::uint32_t retransmit_max_ms = 60000;   // its backoff cap
    int sndhwm = 1000;
    int rcvhwm = 1000;
    std::int64_t recv_frame_bytes_max = 128 << 20;
    // CurveZMQ (section 11): all three Z85 keys (40 characters) or none
    std::string curve_server_key;
    std::string curve_public_key;
    std::string curve_secret_key;

    // actions
    std::size_t ledger_max = 65536;        // action ids remembered in memory
    ExecutedStore* store = nullptr;        // durable record of executed actions (or none)
    /// Log lines of the client (connects, errors from the engine, refusals), delivered on
    /// the game thread from drain(). Without it they are dropped.
    std::function<void(LogLevel, const std::string&)> on_log;
    /// The join sync, delivered on the game thread from drain(), in order with the actions
    /// (every action drained after it is newer state). Replace your mirror with it. Mirrored
    /// actions of ticks <= its tick that come after it are answered done by the client
    /// without reaching the executor (lockstep: they reach it with Action::reflected set).
    std::function<void(const JoinSync&)> on_sync;
};

/// Counters (a snapshot). "events" are game events; "results" answers to actions.
struct Stats {
    std::uint64_t events_queued = 0, events_invalid = 0, events_dropped = 0, events_sent = 0,
                  events_acked = 0, events_rejected = 0;
    std::uint64_t results_queued = 0, results_sent = 0, results_acked = 0;
    std::uint64_t batches_sent = 0, retransmits = 0, timeouts = 0, rewinds = 0, acks = 0;
    std::uint64_t actions_received = 0, actions_executed = 0, actions_failed = 0,
                  actions_deferred = 0, actions_duplicate = 0, actions_reanswered = 0,
                  actions_expired = 0, actions_unsupported = 0, actions_malformed = 0;
    std::uint64_t hellos = 0, welcomes = 0, reconnects = 0, superseded = 0, errors = 0,
                  overloaded = 0, tick_ahead = 0, progress_sent = 0, inbound_dropped = 0;
    // join sync: syncs applied, their rows, rows of unknown kinds skipped, syncs dropped
    // (cut short or malformed), actions answered done because a sync reflects them
    std::uint64_t syncs = 0, sync_rows = 0, sync_rows_unknown = 0, syncs_dropped = 0,
                  actions_reflected = 0;
    std::uint64_t errors_by_code[18] = {};
};

/// A value for add_event: an integer, a float or a string (map name or text).
struct Arg {
    enum class Type : std::uint8_t { integer, real, string } type;
    std::int64_t i = 0;
    double f = 0;
    std::string_view s;

    template <class T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
    Arg(T v) : type(Type::integer), i(static_cast<std::int64_t>(v)) {}  // NOLINT
    Arg(double v) : type(Type::real), f(v) {}                              // NOLINT
    Arg(std::string_view v) : type(Type::string), s(v) {}                  // NOLINT
    Arg(const char* v) : type(Type::string), s(v) {}                       // NOLINT
    Arg(const std::string& v) : type(Type::string), s(v) {}                // NOLINT
};

class Net;

// What crosses the rings (internal).
/// A closed batch: one kind's events (or results) as wire columns, not yet numbered.
struct OutBatch {
    int kind = -1;  // a v1::EventKind; -1: results
    std::int64_t stamp = 0;
    std::uint32_t n = 0;
    std::vector<std::string> cols;  // wire columns in canonical order
    std::vector<std::string> maps;  // the map dictionary, in order of first use
};

struct OutItem {
    enum class Type : std::uint8_t { none, batch, progress } type = Type::none;
    std::int64_t tick = 0;
    std::unique_ptr<OutBatch> batch;
};

struct InItem {
    enum class Type : std::uint8_t { none, actions, mark, log, welcome, sync } type = Type::none;
    std::int64_t tick = 0;
    std::vector<Action> actions;
    LogLevel level = LogLevel::info;
    std::string text;
    std::unique_ptr<Welcome> welcome;
    std::unique_ptr<JoinSync> sync;
};

class Client {
public:
    explicit Client(Config config);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /// Restore the executed-id record and start the network thread (game thread).
    void start();
    /// Stop the network thread: with ``bye``, after trying for up to ``linger_ms`` to send
    /// what is queued. Unacked batches are lost with the process (like rAthena's unsaved
    /// state); a restarted client starts again from the engine's ``next_seq``.
    void stop(bool bye = true, std::uint32_t linger_ms = 0);

    // -- events (game thread, never blocking). False: refused, because a value is outside
    // its bounds (counted events_invalid) or the game-thread buffer is full (events_dropped).
    bool login(std::uint32_t char_id, std::uint32_t account_id, std::string_view map,
               std::int16_t x, std::int16_t y, std::int16_t base_level);
    bool logout(std::uint32_t char_id, std::uint32_t account_id);
    bool map_change(std::uint32_t char_id, std::string_view from_map, std::string_view to_map,
                    std::int16_t x, std::int16_t y);
    bool player_move(std::uint32_t char_id, std::string_view map, std::int16_t x, std::int16_t y);
    bool mob_kill(std::uint32_t char_id, std::int32_t mob_id, std::int32_t instance_id,
                  std::string_view map, std::int16_t x, std::int16_t y);
    bool player_death(std::uint32_t char_id, std::string_view map, std::int16_t x, std::int16_t y);
    bool level_up(std::uint32_t char_id, std::int16_t base_level, std::int16_t job_level);
    bool npc_talk(std::uint32_t char_id, std::int64_t npc_id, std::string_view text);
    bool quest_done(std::uint32_t char_id, std::int32_t quest_id);
    bool trade(std::uint32_t char_id, std::uint32_t partner_char_id, std::int32_t item_id,
               std::int32_t amount, std::int32_t zeny);
    bool vending_purchase(std::uint32_t char_id, std::uint32_t seller_char_id,
                          std::int32_t item_id, std::int32_t amount, std::int32_t price_zeny);
    bool npc_shop(std::uint32_t char_id, std::string_view map, std::int32_t item_id,
                  std::int32_t amount, bool is_sell);
    bool map_snapshot(std::string_view map, std::int32_t players);
    /// Any event kind, values in its field order (PROTOCOL.md section 6's table).
    bool add_event(v1::EventKind kind, std::initializer_list<Arg> values);

    // -- lockstep (section 14)
    /// Stamp what is queued from now on with engine tick ``tick`` (never decreasing).
    bool set_tick(std::int64_t tick);
    /// Declare ``tick`` complete: everything stamped <= tick is queued.
    bool progress(std::int64_t tick);
    /// Lockstep: every action of ticks <= this has been handed out by drain().
    std::int64_t mark_tick() const { return drained_mark_; }

    // -- the timer-driven drain (game thread)
    using Executor = std::function<Outcome(const Action&)>;
    /// Hand each new action to ``execute`` (at most ``max_actions``), queue the results,
    /// deliver log lines, close batches older than batch_ms and pass closed batches to the
    /// network thread. Returns the number of actions handed to ``execute``.
    /// Order: frames in the order they arrived, each frame's actions in action_id order
    /// across kinds (the order the world emitted them; PROTOCOL.md section 8), so an NPC
    /// that says a line and is despawned in the same tick is handed the say first. Execute
    /// them in that order (a deferred action's effect, too, before the next one's).
    std::size_t drain(const Executor& execute, std::size_t max_actions = SIZE_MAX);
    /// Answer an action the executor deferred (Outcome::deferred()).
    bool report(const Action& action, ResultStatus status, Reason reason);
    /// Close every open batch now (they leave within the credit).
    void flush();

    // -- state
    bool connected() const { return connected_.load(std::memory_order_acquire); }
    bool superseded() const { return superseded_.load(std::memory_order_acquire); }
    std::int64_t engine_tick() const { return engine_tick_.load(std::memory_order_acquire); }
    /// Nothing buffered, nothing in flight: everything queued so far is acked.
    bool idle() const;
    /// Every game event queued so far is acked (results may still be in flight).
    bool events_durable() const;
    /// The world's maps, from the last welcome this drain() saw (empty before it).
    const std::vector<MapInfo>& world_maps() const { return world_maps_; }
    /// The tick of the last join sync drain() delivered (-1: none yet).
    std::int64_t synced_tick() const { return synced_tick_; }
    Stats stats() const;

private:
    friend class Net;
    struct Builder;
    struct LedgerEntry {
        ResultStatus status;
        Reason reason;
        bool restored;     // executed by an earlier run
        bool reanswered;   // ... and answered once more by this one
    };

    bool append(int kind, std::initializer_list<Arg> values);
    Builder& builder(int kind);
    void close(Builder& b);
    void push_pending();
    void answer(std::int64_t id, ResultStatus status, Reason reason);
    void finish(const Action& a, ResultStatus status, Reason reason);
    bool handle(const Action& a, const Executor& execute);
    void remember(std::int64_t id, LedgerEntry e);
    void log(LogLevel level, std::string text);

    Config cfg_;
    // game-thread state
    std::vector<std::unique_ptr<Builder>> builders_;  // per event kind, and results last
    std::deque<OutItem> pending_;                     // closed batches and progress, not yet in the ring
    std::size_t pending_events_ = 0;                  // open + pending events
    std::int64_t stamp_ = 0;
    std::int64_t drained_mark_ = 0;
    std::vector<MapInfo> world_maps_;
    std::int64_t synced_tick_ = -1;
    std::vector<std::int64_t> synced_npcs_;           // the NPCs that sync showed, sorted
    std::unique_ptr<InItem> current_;                 // a frame drained part way
    std::size_t current_pos_ = 0;
    std::unordered_map<std::int64_t, LedgerEntry> ledger_;
    std::deque<std::int64_t> ledger_order_;
    std::unordered_set<std::int64_t> in_progress_;
    std::int64_t expired_upto_ = 0;
    std::uint64_t invalid_logged_ = 0;
    bool started_ = false;

    // shared with the network thread
    std::unique_ptr<SpscRing<OutItem>> out_ring_;
    std::unique_ptr<SpscRing<InItem>> in_ring_;
    std::atomic<bool> connected_{false};
    std::atomic<bool> superseded_{false};
    std::atomic<std::int64_t> engine_tick_{0};
    std::atomic<std::uint64_t> in_flight_{0};   // batches the network thread holds
    std::atomic<std::uint64_t> in_flight_events_{0};  // of which event (not result) batches
    std::unique_ptr<Net> net_;
    std::thread thread_;

    // counters: game thread writes some, network thread others; all atomic
    struct Counters;
    std::unique_ptr<Counters> counters_;
};

}  // namespace norn
