// Norn bridge client: the game-thread side (column buffers, the drain, the executed-id
// ledger) and the network thread (the protocol itself).
#include "norn/client.hpp"

#include <zmq.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <optional>
#include <stdexcept>

namespace norn {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

namespace {
constexpr std::size_t kMapNameBytesMax = 64;    // longer map names are refused by the engine
constexpr std::size_t kMapDictMax = 2048;       // the engine's default map_dict_max
constexpr std::size_t kTextBytesMax = 255;      // text_bytes_max (CHAT_SIZE_MAX)
constexpr std::size_t kInBacklogMax = 4096;     // items the network thread holds when the
                                                // inbound ring is full

double seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

bool valid_server_id(const std::string& s) {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'))
            return false;
    return true;
}
}  // namespace

#define NORN_COUNTERS(X)                                                                      \
    X(events_queued) X(events_invalid) X(events_dropped) X(events_sent) X(events_acked)       \
    X(events_rejected) X(results_queued) X(results_sent) X(results_acked) X(batches_sent)     \
    X(retransmits) X(timeouts) X(rewinds) X(acks) X(actions_received) X(actions_executed)     \
    X(actions_failed) X(actions_deferred) X(actions_duplicate) X(actions_reanswered)          \
    X(actions_expired) X(actions_unsupported) X(actions_malformed) X(hellos) X(welcomes)      \
    X(reconnects) X(superseded) X(errors) X(overloaded) X(tick_ahead) X(progress_sent)        \
    X(inbound_dropped) X(syncs) X(sync_rows) X(sync_rows_unknown) X(syncs_dropped)           \
    X(actions_reflected)

struct Client::Counters {
#define NORN_DECLARE(name) std::atomic<std::uint64_t> name{0};
    NORN_COUNTERS(NORN_DECLARE)
#undef NORN_DECLARE
    std::atomic<std::uint64_t> errors_by_code[18] = {};
};

namespace {
void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
    c.fetch_add(n, std::memory_order_relaxed);
}
}  // namespace

// -- the game thread's column buffers --------------------------------------------------------
struct Client::Builder {
    int kind = -1;
    const Kind* k = nullptr;
    std::vector<int> col_of;  // field -> its (first) wire column
    int ncols = 0;
    std::unique_ptr<OutBatch> open;
    std::unordered_map<std::string, std::int16_t> map_index;
    TimePoint since;
};

namespace {
const Kind& kind_of(int kind) { return kind < 0 ? v1::kResultKind : v1::kEventKinds[kind]; }

std::vector<std::string> wire_names(const Kind& k) {
    std::vector<std::string> out;
    for (int f = 0; f < k.nfields; ++f) {
        if (k.fields[f].type == WType::text) out.push_back(std::string(k.fields[f].name) + "_len");
        out.emplace_back(k.fields[f].name);
    }
    return out;
}

bool has_map_field(const Kind& k) {
    for (int f = 0; f < k.nfields; ++f)
        if (k.fields[f].type == WType::map) return true;
    return false;
}

void put(std::string& col, std::uint64_t v, std::size_t n) {
    char buf[8];
    put_le(buf, v, n);
    col.append(buf, n);
}
}  // namespace

Client::Client(Config config) : cfg_(std::move(config)), counters_(std::make_unique<Counters>()) {
    if (!valid_server_id(cfg_.server_id))
        throw std::invalid_argument("server_id must match [A-Za-z0-9_.-]{1,64}");
    bool any = !cfg_.curve_server_key.empty() || !cfg_.curve_public_key.empty() ||
               !cfg_.curve_secret_key.empty();
    bool all = !cfg_.curve_server_key.empty() && !cfg_.curve_public_key.empty() &&
               !cfg_.curve_secret_key.empty();
    if (any && !all) throw std::invalid_argument("CURVE needs all three keys");
    cfg_.batch_events = std::max<std::uint32_t>(1, std::min<std::uint32_t>(cfg_.batch_events, 65536));
    cfg_.ledger_max = std::max<std::size_t>(1, cfg_.ledger_max);
    out_ring_ = std::make_unique<SpscRing<OutItem>>(cfg_.outbound_ring);
    in_ring_ = std::make_unique<SpscRing<InItem>>(cfg_.inbound_ring);
    for (int k = 0; k <= v1::kEventKindCount; ++k) {
        auto b = std::make_unique<Builder>();
        b->kind = k < v1::kEventKindCount ? k : -1;
        b->k = &kind_of(b->kind);
        for (int f = 0; f < b->k->nfields; ++f) {
            b->col_of.push_back(b->ncols);
            b->ncols += b->k->fields[f].type == WType::text ? 2 : 1;
        }
        builders_.push_back(std::move(b));
    }
}

Client::~Client() { stop(false); }

void Client::log(LogLevel level, std::string text) {
    if (cfg_.on_log) cfg_.on_log(level, text);
}

// -- events ---------------------------------------------------------------------------------
bool Client::login(std::uint32_t c, std::uint32_t a, std::string_view m, std::int16_t x,
                   std::int16_t y, std::int16_t lv) {
    return append(static_cast<int>(v1::EventKind::login), {c, a, m, x, y, lv});
}
bool Client::logout(std::uint32_t c, std::uint32_t a) {
    return append(static_cast<int>(v1::EventKind::logout), {c, a});
}
bool Client::map_change(std::uint32_t c, std::string_view from, std::string_view to,
                        std::int16_t x, std::int16_t y) {
    return append(static_cast<int>(v1::EventKind::map_change), {c, from, to, x, y});
}
bool Client::player_move(std::uint32_t c, std::string_view m, std::int16_t x, std::int16_t y) {
    return append(static_cast<int>(v1::EventKind::player_move), {c, m, x, y});
}
bool Client::mob_kill(std::uint32_t c, std::int32_t mob, std::int32_t inst, std::string_view m,
                      std::int16_t x, std::int16_t y) {
    return append(static_cast<int>(v1::EventKind::mob_kill), {c, mob, inst, m, x, y});
}
bool Client::player_death(std::uint32_t c, std::string_view m, std::int16_t x, std::int16_t y) {
    return append(static_cast<int>(v1::EventKind::player_death), {c, m, x, y});
}
bool Client::level_up(std::uint32_t c, std::int16_t base, std::int16_t job) {
    return append(static_cast<int>(v1::EventKind::level_up), {c, base, job});
}
bool Client::npc_talk(std::uint32_t c, std::int64_t npc, std::string_view text) {
    return append(static_cast<int>(v1::EventKind::npc_talk), {c, npc, text});
}
bool Client::quest_done(std::uint32_t c, std::int32_t q) {
    return append(static_cast<int>(v1::EventKind::quest_done), {c, q});
}
bool Client::trade(std::uint32_t c, std::uint32_t p, std::int32_t item, std::int32_t amount,
                   std::int32_t zeny) {
    return append(static_cast<int>(v1::EventKind::trade), {c, p, item, amount, zeny});
}
bool Client::vending_purchase(std::uint32_t c, std::uint32_t s, std::int32_t item,
                              std::int32_t amount, std::int32_t price) {
    return append(static_cast<int>(v1::EventKind::vending_purchase), {c, s, item, amount, price});
}
bool Client::npc_shop(std::uint32_t c, std::string_view m, std::int32_t item, std::int32_t amount,
                      bool is_sell) {
    return append(static_cast<int>(v1::EventKind::npc_shop), {c, m, item, amount, is_sell ? 1 : 0});
}
bool Client::map_snapshot(std::string_view m, std::int32_t players) {
    return append(static_cast<int>(v1::EventKind::map_snapshot), {m, players});
}
bool Client::add_event(v1::EventKind kind, std::initializer_list<Arg> values) {
    return append(static_cast<int>(kind), values);
}

Client::Builder& Client::builder(int kind) {
    return *builders_[kind < 0 ? v1::kEventKindCount : kind];
}

bool Client::append(int kind, std::initializer_list<Arg> values) {
    const Kind& k = kind_of(kind);
    const bool results = kind < 0;
    auto refuse = [&](const std::string& why) {
        bump(counters_->events_invalid);
        if (invalid_logged_++ < 20)
            log(LogLevel::warning, std::string("norn: ") + k.name + " event refused: " + why);
        return false;
    };
    if (static_cast<int>(values.size()) != k.nfields)
        return refuse(std::to_string(values.size()) + " values, the kind has " +
                      std::to_string(k.nfields));
    // validate everything first: an event is appended whole or not at all
    int f = 0;
    int new_maps = 0;
    Builder& b = builder(kind);
    for (const Arg& v : values) {
        const Field& fd = k.fields[f++];
        switch (fd.type) {
            case WType::map:
                if (v.type != Arg::Type::string || v.s.empty() || v.s.size() > kMapNameBytesMax)
                    return refuse(std::string(fd.name) + " must be a map name of 1..64 bytes");
                if (b.map_index.find(std::string(v.s)) == b.map_index.end()) ++new_maps;
                break;
            case WType::text:
                if (v.type != Arg::Type::string || v.s.size() > kTextBytesMax ||
                    v.s.size() < static_cast<std::size_t>(fd.lo) ||
                    v.s.find('\0') != std::string_view::npos || !valid_utf8(v.s))
                    return refuse(std::string(fd.name) + " must be UTF-8 text of at most 255 bytes "
                                  "without NUL");
                break;
            case WType::f4:
                if ((v.type != Arg::Type::real && v.type != Arg::Type::integer) ||
                    !std::isfinite(v.type == Arg::Type::real ? v.f : 0.0) ||
                    (v.type == Arg::Type::real ? v.f : static_cast<double>(v.i)) < static_cast<double>(fd.lo))
                    return refuse(std::string(fd.name) + " must be a finite number >= " +
                                  std::to_string(fd.lo));
                break;
            default:
                if (v.type != Arg::Type::integer || v.i < fd.lo || v.i > fd.hi)
                    return refuse(std::string(fd.name) + " must be an integer in [" +
                                  std::to_string(fd.lo) + ", " + std::to_string(fd.hi) + "]");
        }
    }
    if (!results && pending_events_ >= cfg_.pending_events_max) {
        bump(counters_->events_dropped);
        return false;
    }
    if (b.open && b.open->maps.size() + new_maps > kMapDictMax) close(b);
    if (!b.open) {
        b.open = std::make_unique<OutBatch>();
        b.open->kind = kind;
        b.open->stamp = stamp_;
        b.open->cols.resize(b.ncols);
        b.map_index.clear();
        b.since = SteadyClock::now();
    }
    OutBatch& ob = *b.open;
    f = 0;
    for (const Arg& v : values) {
        const Field& fd = k.fields[f];
        std::string& col = ob.cols[b.col_of[f]];
        ++f;
        switch (fd.type) {
            case WType::map: {
                auto it = b.map_index.find(std::string(v.s));
                std::int16_t idx;
                if (it == b.map_index.end()) {
                    idx = static_cast<std::int16_t>(ob.maps.size());
                    ob.maps.emplace_back(v.s);
                    b.map_index.emplace(std::string(v.s), idx);
                } else {
                    idx = it->second;
                }
                put(col, static_cast<std::uint16_t>(idx), 2);
                break;
            }
            case WType::text:
                put(col, v.s.size(), 2);
                ob.cols[b.col_of[f - 1] + 1].append(v.s.data(), v.s.size());
                break;
            case WType::f4:
                put(col, f4_bits(static_cast<float>(v.type == Arg::Type::real ? v.f : v.i)), 4);
                break;
            default:
                put(col, static_cast<std::uint64_t>(v.i), wtype_size(fd.type));
        }
    }
    ++ob.n;
    ++pending_events_;
    bump(results ? counters_->results_queued : counters_->events_queued);
    if (ob.n >= cfg_.batch_events) close(b);
    return true;
}

void Client::close(Builder& b) {
    if (!b.open || b.open->n == 0) return;
    OutItem it;
    it.type = OutItem::Type::batch;
    it.batch = std::move(b.open);
    pending_.push_back(std::move(it));
    push_pending();
}

void Client::push_pending() {
    while (!pending_.empty()) {
        OutItem& it = pending_.front();
        bool is_batch = it.type == OutItem::Type::batch;
        std::uint32_t n = is_batch ? it.batch->n : 0;
        bool events = is_batch && it.batch->kind >= 0;
        if (is_batch) {  // counted before the push: the network thread may ack it at once
            in_flight_.fetch_add(1, std::memory_order_acq_rel);
            if (events) in_flight_events_.fetch_add(1, std::memory_order_acq_rel);
        }
        if (!out_ring_->try_push(it)) {
            if (is_batch) {
                in_flight_.fetch_sub(1, std::memory_order_acq_rel);
                if (events) in_flight_events_.fetch_sub(1, std::memory_order_acq_rel);
            }
            return;
        }
        pending_events_ -= std::min<std::size_t>(pending_events_, n);
        pending_.pop_front();
    }
}

void Client::flush() {
    for (auto& b : builders_) close(*b);
    push_pending();
}

bool Client::set_tick(std::int64_t tick) {
    if (tick == stamp_) return true;
    if (tick < stamp_ || tick <= 0 || tick > kTickMax) return false;
    flush();
    stamp_ = tick;
    return true;
}

bool Client::progress(std::int64_t tick) {
    if (tick < 0) return false;
    flush();
    OutItem it;
    it.type = OutItem::Type::progress;
    it.tick = tick;
    pending_.push_back(std::move(it));
    push_pending();
    return true;
}

bool Client::idle() const {
    if (!pending_.empty() || in_flight_.load(std::memory_order_acquire) != 0) return false;
    for (const auto& b : builders_)
        if (b->open && b->open->n) return false;
    return true;
}

bool Client::events_durable() const {
    if (in_flight_events_.load(std::memory_order_acquire) != 0) return false;
    for (const auto& it : pending_)
        if (it.type == OutItem::Type::batch && it.batch->kind >= 0) return false;
    for (const auto& b : builders_)
        if (b->kind >= 0 && b->open && b->open->n) return false;
    return true;
}

Stats Client::stats() const {
    Stats s;
#define NORN_COPY(name) s.name = counters_->name.load(std::memory_order_relaxed);
    NORN_COUNTERS(NORN_COPY)
#undef NORN_COPY
    for (int i = 0; i < 18; ++i) s.errors_by_code[i] = counters_->errors_by_code[i].load();
    return s;
}

// -- actions --------------------------------------------------------------------------------
void Client::remember(std::int64_t id, LedgerEntry e) {
    auto it = ledger_.find(id);
    if (it != ledger_.end()) {
        it->second = e;
        return;
    }
    if (ledger_order_.size() >= cfg_.ledger_max) {
        ledger_.erase(ledger_order_.front());
        ledger_order_.pop_front();
    }
    ledger_.emplace(id, e);
    ledger_order_.push_back(id);
}

void Client::answer(std::int64_t id, ResultStatus status, Reason reason) {
    append(-1, {id, static_cast<int>(status), static_cast<int>(reason)});
}

void Client::finish(const Action& a, ResultStatus status, Reason reason) {
    if (a.reflected) {  // nothing was executed: nothing to store
        status = ResultStatus::done;
        reason = Reason::ok;
    } else if (status == ResultStatus::done) {
        // recorded with its effect before the answer can leave
        if (cfg_.store != nullptr) cfg_.store->executed(a);
        bump(counters_->actions_executed);
    } else {
        bump(counters_->actions_failed);
        if (reason == Reason::unsupported) bump(counters_->actions_unsupported);
    }
    remember(a.id, {status, reason, false, false});
    answer(a.id, status, reason);
}

bool Client::handle(const Action& a, const Executor& execute) {
    auto known = ledger_.find(a.id);
    if (known != ledger_.end()) {
        LedgerEntry& e = known->second;
        if (e.restored && !e.reanswered) {  // the earlier run's answer may have died with it
            e.reanswered = true;
            bump(counters_->actions_reanswered);
            answer(a.id, e.status, e.reason);
        } else {
            bump(counters_->actions_duplicate);
        }
        return false;
    }
    if (in_progress_.count(a.id)) {
        bump(counters_->actions_duplicate);
        return false;
    }
    if (synced_tick_ >= 0 && (a.id >> 24) <= synced_tick_ &&
        (a.mirrored() ||
         (a.spoken() && !std::binary_search(synced_npcs_.begin(), synced_npcs_.end(), a.npc_id)))) {
        // the join sync already shows its effect, or its NPC was gone by then (section 16):
        // done, not executed
        bump(counters_->actions_reflected);
        if (cfg_.lockstep) {  // answered by the map server in the frame's turn
            Action r = a;
            r.reflected = true;
            Outcome o = execute(r);
            if (o.later) {
                in_progress_.insert(a.id);
                return true;
            }
            finish(r, ResultStatus::done, Reason::ok);
            return true;
        }
        remember(a.id, {ResultStatus::done, Reason::ok, false, false});
        answer(a.id, ResultStatus::done, Reason::ok);
        return false;
    }
    if (a.expires_tick < engine_tick()) {
        bump(counters_->actions_expired);
        remember(a.id, {ResultStatus::failed, Reason::expired, false, false});
        answer(a.id, ResultStatus::failed, Reason::expired);
        return false;
    }
    if (cfg_.store != nullptr && cfg_.store->contains(a)) {
        remember(a.id, {ResultStatus::done, Reason::ok, true, true});
        bump(counters_->actions_reanswered);
        answer(a.id, ResultStatus::done, Reason::ok);
        return false;
    }
    Outcome o = execute(a);
    if (o.later) {
        in_progress_.insert(a.id);
        bump(counters_->actions_deferred);
        return true;
    }
    finish(a, o.status, o.reason);
    return true;
}

bool Client::report(const Action& a, ResultStatus status, Reason reason) {
    if (in_progress_.erase(a.id) == 0) return false;
    finish(a, status, reason);
    return true;
}

std::size_t Client::drain(const Executor& execute, std::size_t max_actions) {
    std::size_t handed = 0;
    bool full = false;
    while (!full) {
        if (current_) {
            auto& acts = current_->actions;
            while (current_pos_ < acts.size() && handed < max_actions)
                if (handle(acts[current_pos_++], execute)) ++handed;
            if (current_pos_ < acts.size()) {  // the rest waits for the next drain
                full = true;
                break;
            }
            current_.reset();
        }
        InItem* f = in_ring_->front();
        if (f == nullptr) break;
        InItem item = std::move(*f);
        in_ring_->pop();
        switch (item.type) {
            case InItem::Type::actions:
                current_ = std::make_unique<InItem>(std::move(item));
                current_pos_ = 0;
                break;
            case InItem::Type::mark:
                drained_mark_ = std::max(drained_mark_, item.tick);
                break;
            case InItem::Type::log:
                log(item.level, std::move(item.text));
                break;
            case InItem::Type::welcome:
                if (item.welcome) world_maps_ = item.welcome->maps;
                break;
            case InItem::Type::sync:
                if (item.sync) {
                    // replaces the mirror: the state at its tick, even one older than the
                    // last (an engine resumed from a snapshot)
                    synced_tick_ = item.sync->tick;
                    synced_npcs_.clear();
                    for (const Action& r : item.sync->rows)
                        if (r.kind == static_cast<int>(v1::ActionKind::spawn_npc))
                            synced_npcs_.push_back(r.npc_id);
                    std::sort(synced_npcs_.begin(), synced_npcs_.end());
                    if (cfg_.on_sync) cfg_.on_sync(*item.sync);
                }
                break;
            case InItem::Type::none:
                break;
        }
    }
    auto now = SteadyClock::now();
    auto age = std::chrono::milliseconds(cfg_.batch_ms);
    for (auto& b : builders_)
        if (b->open && b->open->n && now - b->since >= age) close(*b);
    push_pending();
    std::int64_t tick = engine_tick();
    if (cfg_.store != nullptr && tick > expired_upto_ + 10) {
        cfg_.store->expire(tick);
        expired_upto_ = tick;
    }
    return handed;
}

// -- the network thread ----------------------------------------------------------------------
class Net {
public:
    explicit Net(Client& c) : c_(c), cfg_(c.cfg_), ctr_(*c.counters_) {
        heartbeat_ms_ = cfg_.heartbeat_ms;
        peer_timeout_ms_ = cfg_.peer_timeout_ms;
        hello_backoff_ms_ = cfg_.hello_retry_ms;
        rto_ = cfg_.retransmit_ms / 1000.0;
    }

    void run();
    std::atomic<bool> stop{false};
    bool bye = true;
    std::uint32_t linger_ms = 0;

private:
    struct Frame {
        std::int64_t seq;
        std::string data;
        std::uint32_t n;
        bool results;
        bool sent = false;
        bool resent = false;
        TimePoint sent_at;
    };

    void new_socket();
    bool send(const std::string& data);
    void take_outbound();
    void add_frames(std::unique_ptr<OutBatch> b);
    std::string encode_batch(const OutBatch& b, std::int64_t seq) const;
    void handshake(TimePoint now);
    void transmit(TimePoint now);
    void send_progress();
    void timers(TimePoint now);
    void recv_all();
    void on_frame(const zmq::message_t& msg);
    void on_welcome(const Welcome& w);
    void on_ack(std::int64_t seq, std::int64_t credit);
    void on_error(const Error& e);
    void on_actions(const Actions& a);
    void on_sync(const Sync& s);
    void drop_sync(const char* why);
    void rewind(std::int64_t seq);
    void drop_acked();
    void rebase(std::int64_t start);
    double rto_base() const;
    void to_game(InItem item);
    void flush_backlog();
    void log(LogLevel level, std::string text);
    void set_tick(std::int64_t tick);

    Client& c_;
    const Config& cfg_;
    Client::Counters& ctr_;
    zmq::context_t ctx_{1};
    std::unique_ptr<zmq::socket_t> sock_;
    std::deque<Frame> frames_;
    std::size_t frames_bytes_ = 0;
    bool connected_ = false, ever_welcomed_ = false, hello_pending_ = true, hello_sent_ = false;
    bool superseded_ = false;
    TimePoint hello_sent_at_, last_recv_, last_send_, last_progress_;
    std::uint32_t hello_backoff_ms_;
    std::int64_t next_seq_ = 0;  // 0: nothing numbered before the first welcome
    std::int64_t send_next_ = 1, acked_ = 0, credit_ = 1, engine_tick_ = 0;
    std::optional<std::pair<std::int64_t, std::int64_t>> progress_;
    bool progress_due_ = false;
    std::int64_t frame_bytes_max_ = 8 << 20;
    std::uint32_t heartbeat_ms_, peer_timeout_ms_;
    std::optional<std::int64_t> hold_ack_, hold_tick_;
    double rto_, srtt_ = -1;
    std::deque<InItem> backlog_;
    std::unique_ptr<JoinSync> sync_;  // a join sync whose parts are arriving
    std::int64_t sync_next_part_ = 0;
};

void Net::log(LogLevel level, std::string text) {
    InItem it;
    it.type = InItem::Type::log;
    it.level = level;
    it.text = std::move(text);
    to_game(std::move(it));
}

void Net::to_game(InItem item) {
    flush_backlog();
    if (backlog_.empty() && c_.in_ring_->try_push(item)) return;
    if (backlog_.size() >= kInBacklogMax) {
        bump(ctr_.inbound_dropped, item.actions.size() + 1);
        return;
    }
    backlog_.push_back(std::move(item));
}

void Net::flush_backlog() {
    while (!backlog_.empty() && c_.in_ring_->try_push(backlog_.front())) backlog_.pop_front();
}

void Net::set_tick(std::int64_t tick) {
    if (tick > engine_tick_) {
        engine_tick_ = tick;
        c_.engine_tick_.store(tick, std::memory_order_release);
    }
}

void Net::new_socket() {
    if (sock_) sock_->close();
    sock_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
    sock_->set(zmq::sockopt::linger, 0);
    sock_->set(zmq::sockopt::sndhwm, cfg_.sndhwm);
    sock_->set(zmq::sockopt::rcvhwm, cfg_.rcvhwm);
    sock_->set(zmq::sockopt::immediate, 1);  // never queue into a connection that is not up
    sock_->set(zmq::sockopt::maxmsgsize, cfg_.recv_frame_bytes_max);
    if (!cfg_.curve_server_key.empty()) {
        sock_->set(zmq::sockopt::curve_serverkey, cfg_.curve_server_key);
        sock_->set(zmq::sockopt::curve_publickey, cfg_.curve_public_key);
        sock_->set(zmq::sockopt::curve_secretkey, cfg_.curve_secret_key);
    }
    sock_->connect(cfg_.endpoint);
    connected_ = false;
    c_.connected_.store(false, std::memory_order_release);
    hello_pending_ = true;
    hello_sent_ = false;
    drop_sync("the connection was renewed");  // the next welcome brings a whole new one
}

bool Net::send(const std::string& data) {
    try {
        // with ZMQ_IMMEDIATE a non-blocking send before the connection is up returns EAGAIN
        auto r = sock_->send(zmq::buffer(data), zmq::send_flags::dontwait);
        if (!r) return false;
    } catch (const zmq::error_t&) {
        return false;
    }
    last_send_ = SteadyClock::now();
    return true;
}

void Net::run() {
    new_socket();
    TimePoint now = SteadyClock::now();
    last_recv_ = last_send_ = last_progress_ = now;
    auto step = [&](int wait_ms) {
        take_outbound();
        TimePoint t = SteadyClock::now();
        handshake(t);
        transmit(t);
        send_progress();
        flush_backlog();
        zmq::pollitem_t items[] = {{sock_->handle(), 0, ZMQ_POLLIN, 0}};
        try {
            zmq::poll(items, 1, std::chrono::milliseconds(wait_ms));
        } catch (const zmq::error_t&) {
        }
        if (items[0].revents & ZMQ_POLLIN) recv_all();
        t = SteadyClock::now();
        transmit(t);
        timers(t);
    };
    while (!stop.load(std::memory_order_acquire)) step(static_cast<int>(cfg_.poll_ms));
    if (bye) {  // try to hand over what is queued, within linger_ms
        TimePoint end = SteadyClock::now() + std::chrono::milliseconds(linger_ms);
        while (SteadyClock::now() < end && !superseded_ &&
               (!frames_.empty() || c_.out_ring_->size() != 0))
            step(2);
        if (connected_) send(encode(Bye{}));
    }
    sock_->close();
    sock_.reset();
    c_.connected_.store(false, std::memory_order_release);
}

void Net::take_outbound() {
    while (OutItem* it = c_.out_ring_->front()) {
        if (!ever_welcomed_) return;  // seqs are numbered from the first welcome's next_seq
        if (it->type == OutItem::Type::batch) {
            if (frames_.size() >= cfg_.frames_max || frames_bytes_ >= cfg_.frames_bytes_max) return;
            add_frames(std::move(it->batch));
        } else if (it->type == OutItem::Type::progress) {
            if (!progress_ || it->tick > progress_->first) progress_ = {it->tick, next_seq_ - 1};
            progress_due_ = true;
        }
        c_.out_ring_->pop();
    }
}

std::string Net::encode_batch(const OutBatch& b, std::int64_t seq) const {
    const Kind& k = kind_of(b.kind);
    Batch w;
    w.results = b.kind < 0;
    w.seq = seq;
    w.tick = b.stamp;
    if (!w.results) w.kind = k.name;
    if (!cfg_.rows) {
        w.n = b.n;
        w.has_maps = has_map_field(k);
        w.maps = b.maps;
        auto names = wire_names(k);
        for (std::size_t i = 0; i < names.size(); ++i) w.cols.push_back({names[i], b.cols[i]});
        return encode(w);
    }
    w.rows = true;
    std::vector<std::size_t> text_at(k.nfields, 0);
    for (std::uint32_t i = 0; i < b.n; ++i) {
        std::vector<Value> row;
        int c = 0;
        for (int f = 0; f < k.nfields; ++f) {
            const Field& fd = k.fields[f];
            const std::string& col = b.cols[c];
            if (fd.type == WType::text) {
                std::size_t len = get_le(col.data() + 2 * i, 2);
                row.push_back(Value::string(b.cols[c + 1].substr(text_at[f], len)));
                text_at[f] += len;
                c += 2;
                continue;
            }
            if (fd.type == WType::map) {
                row.push_back(Value::string(b.maps[get_int(col.data() + 2 * i, WType::map)]));
            } else if (fd.type == WType::f4) {
                Value v;
                v.type = Value::Type::f64;
                v.f = get_f4(col.data() + 4 * i);
                row.push_back(v);
            } else {
                row.push_back(Value::integer(get_int(col.data() + wtype_size(fd.type) * i, fd.type)));
            }
            ++c;
        }
        w.row_values.push_back(std::move(row));
    }
    return encode(w);
}

namespace {
/// Events [from, to) of ``b``, with a dictionary of only the maps they use.
std::unique_ptr<OutBatch> slice(const OutBatch& b, std::uint32_t from, std::uint32_t to) {
    const Kind& k = kind_of(b.kind);
    auto out = std::make_unique<OutBatch>();
    out->kind = b.kind;
    out->stamp = b.stamp;
    out->n = to - from;
    out->cols.resize(b.cols.size());
    std::unordered_map<std::int16_t, std::int16_t> remap;
    int c = 0;
    for (int f = 0; f < k.nfields; ++f) {
        const Field& fd = k.fields[f];
        if (fd.type == WType::text) {
            std::size_t start = 0, len = 0;
            for (std::uint32_t i = 0; i < to; ++i) {
                std::size_t l = get_le(b.cols[c].data() + 2 * i, 2);
                if (i < from) start += l; else len += l;
            }
            out->cols[c] = b.cols[c].substr(2 * from, 2 * out->n);
            out->cols[c + 1] = b.cols[c + 1].substr(start, len);
            c += 2;
            continue;
        }
        std::size_t size = wtype_size(fd.type);
        out->cols[c] = b.cols[c].substr(size * from, size * out->n);
        if (fd.type == WType::map) {
            for (std::uint32_t i = 0; i < out->n; ++i) {
                auto idx = static_cast<std::int16_t>(get_int(out->cols[c].data() + 2 * i, WType::map));
                auto it = remap.find(idx);
                if (it == remap.end()) {
                    it = remap.emplace(idx, static_cast<std::int16_t>(out->maps.size())).first;
                    out->maps.push_back(b.maps[idx]);
                }
                put_le(&out->cols[c][2 * i], static_cast<std::uint16_t>(it->second), 2);
            }
        }
        ++c;
    }
    return out;
}
}  // namespace

void Net::add_frames(std::unique_ptr<OutBatch> b) {
    std::string data = encode_batch(*b, next_seq_);
    if (static_cast<std::int64_t>(data.size()) > frame_bytes_max_ && b->n > 1) {
        // too many bytes for one frame (long texts): two halves, each numbered on its own
        std::uint32_t half = b->n / 2;
        c_.in_flight_.fetch_add(1, std::memory_order_acq_rel);  // one batch became two
        if (b->kind >= 0) c_.in_flight_events_.fetch_add(1, std::memory_order_acq_rel);
        add_frames(slice(*b, 0, half));
        add_frames(slice(*b, half, b->n));
        return;
    }
    frames_bytes_ += data.size();
    frames_.push_back(Frame{next_seq_, std::move(data), b->n, b->kind < 0, false, false, {}});
    ++next_seq_;
}

void Net::handshake(TimePoint now) {
    if (connected_ || superseded_) return;
    if (hello_sent_ && now - hello_sent_at_ > std::chrono::milliseconds(hello_backoff_ms_)) {
        bump(ctr_.reconnects);
        hello_backoff_ms_ = std::min(hello_backoff_ms_ * 2, cfg_.hello_retry_max_ms);
        new_socket();
    }
    if (!hello_pending_) return;
    Hello h;
    h.server_id = cfg_.server_id;
    h.caps = {"columns", "rows"};
    if (cfg_.lockstep) h.caps.emplace_back("lockstep");
    if (cfg_.sync && cfg_.on_sync) h.caps.emplace_back("sync");
    h.maps = cfg_.maps;
    if (!send(encode(h))) return;  // EAGAIN: no connection yet; next round
    hello_pending_ = false;
    hello_sent_ = true;
    hello_sent_at_ = now;
    bump(ctr_.hellos);
}

void Net::transmit(TimePoint now) {
    if (!connected_ || hold_ack_ || hold_tick_ || frames_.empty()) return;
    const std::int64_t limit = acked_ + credit_;
    const std::int64_t base = frames_.front().seq;
    while (send_next_ < next_seq_ && send_next_ <= limit) {
        Frame& fr = frames_[static_cast<std::size_t>(send_next_ - base)];
        if (!send(fr.data)) return;
        if (send_next_ == acked_ + 1) last_progress_ = now;  // nothing was in flight: timer starts
        if (fr.sent) {
            fr.resent = true;
            bump(ctr_.retransmits);
        } else {
            fr.sent = true;
            fr.sent_at = now;
            bump(ctr_.batches_sent);
            bump(fr.results ? ctr_.results_sent : ctr_.events_sent, fr.n);
        }
        ++send_next_;
    }
}

void Net::send_progress() {
    if (!progress_due_ || !connected_ || !progress_) return;
    if (!send(encode(Progress{progress_->first, progress_->second}))) return;
    progress_due_ = false;
    bump(ctr_.progress_sent);
}

double Net::rto_base() const {
    double base = cfg_.retransmit_ms / 1000.0;
    if (srtt_ >= 0) base = std::max(base, 2 * srtt_);
    return std::min(base, cfg_.retransmit_max_ms / 1000.0);
}

void Net::timers(TimePoint now) {
    if (!connected_) return;
    if (now - last_recv_ > std::chrono::milliseconds(peer_timeout_ms_)) {
        bump(ctr_.reconnects);
        log(LogLevel::warning, "norn: the engine is silent; reconnecting");
        new_socket();
        return;
    }
    if (now - last_send_ > std::chrono::milliseconds(heartbeat_ms_)) {
        send(encode(Hb{engine_tick_, std::nullopt}));
        last_send_ = now;
        progress_due_ = progress_.has_value();  // repairs a lost progress
        send_progress();
    }
    if (!frames_.empty() && send_next_ > frames_.front().seq && seconds(now - last_progress_) > rto_) {
        // no ack advanced for a whole timeout: back to the first unacked batch, and wait
        // twice as long next time (section 4)
        bump(ctr_.timeouts);
        rewind(frames_.front().seq);
        last_progress_ = now;
        rto_ = std::min(2 * rto_, cfg_.retransmit_max_ms / 1000.0);
        hold_ack_.reset();
        hold_tick_.reset();
    }
}

void Net::rewind(std::int64_t seq) {
    seq = std::max(seq, acked_ + 1);
    if (seq < send_next_) {
        send_next_ = seq;
        bump(ctr_.rewinds);
    }
}

void Net::recv_all() {
    for (int i = 0; i < 10000; ++i) {
        zmq::message_t msg;
        zmq::recv_result_t r;
        try {
            r = sock_->recv(msg, zmq::recv_flags::dontwait);
        } catch (const zmq::error_t&) {
            return;
        }
        if (!r) return;
        on_frame(msg);
    }
}

void Net::on_frame(const zmq::message_t& msg) {
    last_recv_ = SteadyClock::now();
    Message m;
    try {
        m = decode(msg.data(), msg.size(), static_cast<std::size_t>(cfg_.recv_frame_bytes_max));
    } catch (const WireError& e) {
        bump(ctr_.errors);
        log(LogLevel::warning, std::string("norn: unreadable frame from the engine: ") + e.what());
        return;
    }
    if (auto* w = std::get_if<Welcome>(&m)) {
        on_welcome(*w);
    } else if (auto* a = std::get_if<Ack>(&m)) {
        on_ack(a->seq, a->credit);
    } else if (auto* h = std::get_if<Hb>(&m)) {
        set_tick(h->tick);
        if (cfg_.lockstep) {  // in a lockstep session every hb is a tick mark
            InItem it;
            it.type = InItem::Type::mark;
            it.tick = h->tick;
            to_game(std::move(it));
        }
        if (hold_tick_ && engine_tick_ > *hold_tick_) hold_tick_.reset();  // resend what it refused
        if (h->acked) on_ack(*h->acked, 0);
    } else if (auto* act = std::get_if<Actions>(&m)) {
        on_actions(*act);
    } else if (auto* sy = std::get_if<Sync>(&m)) {
        on_sync(*sy);
    } else if (auto* e = std::get_if<Error>(&m)) {
        on_error(*e);
    } else {
        log(LogLevel::warning, std::string("norn: unexpected '") + message_type(m) + "' from the engine");
    }
}

void Net::on_welcome(const Welcome& w) {
    if (!ever_welcomed_) {
        next_seq_ = w.next_seq;  // a client without saved batches continues the server's numbering
        send_next_ = w.next_seq;
        acked_ = std::max<std::int64_t>(0, std::min(w.acked, w.next_seq - 1));
        ever_welcomed_ = true;
    } else if (w.next_seq > next_seq_) {
        rebase(w.next_seq);  // the engine has seqs we never sent (another process, our id)
    }
    connected_ = true;
    c_.connected_.store(true, std::memory_order_release);
    acked_ = std::max(acked_, std::min(w.acked, next_seq_ - 1));
    drop_acked();
    send_next_ = std::max(acked_ + 1, std::min(w.next_seq, next_seq_));
    credit_ = std::max<std::int64_t>(1, w.credit);
    heartbeat_ms_ = static_cast<std::uint32_t>(std::max<std::int64_t>(1, w.heartbeat_ms));
    peer_timeout_ms_ = static_cast<std::uint32_t>(std::max<std::int64_t>(1, w.peer_timeout_ms));
    frame_bytes_max_ = w.limit("frame_bytes_max", frame_bytes_max_);
    set_tick(w.tick);
    last_progress_ = SteadyClock::now();
    rto_ = std::max(rto_base(), cfg_.retransmit_ms / 1000.0);
    hold_ack_.reset();
    hold_tick_.reset();
    progress_due_ = progress_.has_value();  // the engine may have restarted: say it again
    hello_backoff_ms_ = cfg_.hello_retry_ms;
    bump(ctr_.welcomes);
    log(LogLevel::info, "norn: connected to " + cfg_.endpoint + " as " + cfg_.server_id +
                            " (acked " + std::to_string(w.acked) + ", next seq " +
                            std::to_string(w.next_seq) + ", tick " + std::to_string(w.tick) + ")");
    InItem it;
    it.type = InItem::Type::welcome;
    it.welcome = std::make_unique<Welcome>(w);
    to_game(std::move(it));
}

void Net::rebase(std::int64_t start) {
    std::int64_t seq = start;
    if (progress_) {
        std::int64_t first = frames_.empty() ? next_seq_ : frames_.front().seq;
        progress_->second = std::max<std::int64_t>(0, progress_->second + (start - first));
    }
    for (Frame& fr : frames_) {
        Message m = decode(fr.data.data(), fr.data.size());
        std::get<Batch>(m).seq = seq;
        frames_bytes_ -= fr.data.size();
        fr.data = encode(m);
        frames_bytes_ += fr.data.size();
        fr.seq = seq++;
    }
    next_seq_ = seq;
    acked_ = start - 1;
    send_next_ = start;
}

void Net::drop_acked() {
    while (!frames_.empty() && frames_.front().seq <= acked_) {
        Frame& fr = frames_.front();
        bump(fr.results ? ctr_.results_acked : ctr_.events_acked, fr.n);
        frames_bytes_ -= fr.data.size();
        if (!fr.results) c_.in_flight_events_.fetch_sub(1, std::memory_order_acq_rel);
        c_.in_flight_.fetch_sub(1, std::memory_order_acq_rel);
        frames_.pop_front();
    }
}

void Net::on_ack(std::int64_t seq, std::int64_t credit) {
    if (credit > 0) credit_ = credit;
    if (!ever_welcomed_ || seq <= acked_) return;
    TimePoint now = SteadyClock::now();
    bump(ctr_.acks);
    acked_ = std::min(seq, next_seq_ - 1);
    // Karn: only a batch sent exactly once says how long an ack takes
    const Frame* newest = nullptr;
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it)
        if (it->seq <= acked_) { newest = &*it; break; }
    if (newest != nullptr && newest->sent && !newest->resent) {
        double sample = std::max(0.0, seconds(now - newest->sent_at));
        srtt_ = srtt_ < 0 ? sample : srtt_ + (sample - srtt_) / 8;
        rto_ = rto_base();
    } else {
        rto_ = std::max(rto_, rto_base());  // only resent batches acked: keep the backoff
    }
    drop_acked();
    last_progress_ = now;
    send_next_ = std::max(send_next_, acked_ + 1);
    if (hold_ack_ && acked_ > *hold_ack_) {  // room again: resend what was dropped unread
        hold_ack_.reset();
        rewind(acked_ + 1);
    }
}

void Net::on_error(const Error& e) {
    bump(ctr_.errors);
    if (e.code >= 0 && e.code < 18) bump(ctr_.errors_by_code[e.code]);
    auto code = static_cast<ErrorCode>(e.code);
    LogLevel level = LogLevel::warning;
    switch (code) {
        case ErrorCode::invalid_events:
            bump(ctr_.events_rejected, static_cast<std::uint64_t>(std::max<std::int64_t>(0, e.invalid)));
            break;
        case ErrorCode::seq_gap:
        case ErrorCode::window_exceeded:
            if (e.expected_seq) rewind(*e.expected_seq);
            level = LogLevel::debug;
            break;
        case ErrorCode::tick_ahead:
            bump(ctr_.tick_ahead);
            if (e.expected_seq) rewind(*e.expected_seq);
            hold_tick_ = engine_tick_;  // resend once the engine's tick has moved
            break;
        case ErrorCode::overloaded:
            bump(ctr_.overloaded);
            hold_ack_ = acked_;  // resend what was dropped after the next ack
            break;
        case ErrorCode::hello_required:
            if (connected_) {  // the engine restarted under the same connection
                connected_ = false;
                c_.connected_.store(false, std::memory_order_release);
                bump(ctr_.reconnects);
                hello_pending_ = true;
                hello_sent_ = false;
                drop_sync("the engine asked for a new hello");
            }
            level = LogLevel::info;
            break;
        case ErrorCode::superseded:
            connected_ = false;
            superseded_ = true;
            c_.connected_.store(false, std::memory_order_release);
            c_.superseded_.store(true, std::memory_order_release);
            bump(ctr_.superseded);
            level = LogLevel::error;
            break;
        case ErrorCode::too_many_servers:
        case ErrorCode::unknown_map:
        case ErrorCode::version_unsupported:
            level = LogLevel::error;  // the hello was refused: retried with backoff
            break;
        default:
            break;
    }
    log(level, "norn: engine error " + std::to_string(e.code) + " " + e.name + ": " + e.message);
}

namespace {
/// The rows of one kind's columns (an ``actions`` kind, or a ``sync`` kind's rows) appended
/// to ``out`` as Actions of v1 kind ``kind_index``; false (and why) when malformed.
bool decode_rows(const ActionColumns& ac, const Kind& kd, int kind_index,
                 const std::vector<std::string>& maps, std::int64_t tick, std::int64_t expires,
                 std::vector<Action>& out, std::string& why) {
    if (ac.n < 0 || ac.n > (1 << 24)) { why = ac.kind + ": bad n"; return false; }
    const auto n = static_cast<std::size_t>(ac.n);
    const Kind* k = &kd;
    std::vector<const Column*> cols(k->nfields, nullptr), lens(k->nfields, nullptr);
    std::vector<std::size_t> text_at(k->nfields, 0);
    for (int f = 0; f < k->nfields; ++f) {
        const Field& fd = k->fields[f];
        cols[f] = ac.col(fd.name);
        if (cols[f] == nullptr) { why = ac.kind + " has no column " + fd.name; return false; }
        if (fd.type == WType::text) {
            lens[f] = ac.col(std::string(fd.name) + "_len");
            if (lens[f] == nullptr || lens[f]->data.size() != 2 * n) {
                why = ac.kind + "." + fd.name + "_len";
                return false;
            }
            std::size_t sum = 0;
            for (std::size_t i = 0; i < n; ++i) sum += get_le(lens[f]->data.data() + 2 * i, 2);
            if (sum != cols[f]->data.size()) { why = ac.kind + "." + fd.name + " bytes"; return false; }
        } else if (cols[f]->data.size() != wtype_size(fd.type) * n) {
            why = ac.kind + "." + fd.name + " length";
            return false;
        }
    }
    const std::size_t first = out.size();
    for (std::size_t i = 0; i < n; ++i) {
        Action x;
        x.kind = kind_index;
        x.kind_name = k->name;
        x.tick = tick;
        x.expires_tick = expires;
        for (int f = 0; f < k->nfields; ++f) {
            const Field& fd = k->fields[f];
            const char* p = cols[f]->data.data();
            std::string_view name = fd.name;
            if (fd.type == WType::text) {
                std::size_t len = get_le(lens[f]->data.data() + 2 * i, 2);
                (name == "name" ? x.name : x.text).assign(p + text_at[f], len);
                text_at[f] += len;
                continue;
            }
            if (fd.type == WType::f4) {
                x.intensity = get_f4(p + 4 * i);
                continue;
            }
            std::int64_t v = get_int(p + wtype_size(fd.type) * i, fd.type);
            if (fd.type == WType::map) {
                if (v == -1 && fd.lo == -1) {
                    x.map.clear();
                } else if (v < 0 || v >= static_cast<std::int64_t>(maps.size())) {
                    out.resize(first);
                    why = ac.kind + ".map index out of range";
                    return false;
                } else {
                    x.map = maps[static_cast<std::size_t>(v)];
                }
                continue;
            }
            if (name == "action_id") x.id = v;
            else if (name == "npc_id") x.npc_id = v;
            else if (name == "x") x.x = static_cast<std::int16_t>(v);
            else if (name == "y") x.y = static_cast<std::int16_t>(v);
            else if (name == "sprite") x.sprite = static_cast<std::int16_t>(v);
            else if (name == "weather") x.weather = static_cast<std::int16_t>(v);
            else if (name == "hazard_type") x.hazard_type = static_cast<std::int16_t>(v);
            else if (name == "market_id") x.market_id = static_cast<std::int32_t>(v);
            else if (name == "item_id") x.item_id = static_cast<std::int32_t>(v);
            else if (name == "price_zeny") x.price_zeny = static_cast<std::int32_t>(v);
            else if (name == "stock") x.stock = static_cast<std::int32_t>(v);
            else if (name == "quest_id") x.quest_id = static_cast<std::int32_t>(v);
            else if (name == "amount") x.amount = static_cast<std::int32_t>(v);
            else if (name == "zeny") x.zeny = static_cast<std::int32_t>(v);
            else if (name == "char_id") x.char_id = static_cast<std::uint32_t>(v);
            else if (name == "on") x.on = v != 0;
        }
        out.push_back(std::move(x));
    }
    return true;
}
}  // namespace

void append_sync_rows(const Sync& part, JoinSync& out) {
    for (const ActionColumns& ac : part.kinds) {
        const Kind* k = find_sync_kind(ac.kind);
        const Kind* action = find_action_kind(ac.kind);
        if (k == nullptr || action == nullptr) {  // a world's own kind: not ours to mirror
            if (ac.n > 0) out.unknown_rows += static_cast<std::uint64_t>(ac.n);
            if (std::find(out.unknown_kinds.begin(), out.unknown_kinds.end(), ac.kind) ==
                out.unknown_kinds.end())
                out.unknown_kinds.push_back(ac.kind);
            continue;
        }
        std::string why;
        if (!decode_rows(ac, *k, static_cast<int>(action - v1::kActionKinds), part.maps,
                         part.tick, 0, out.rows, why))
            throw WireError("sync: " + why);
    }
}

void Net::on_actions(const Actions& a) {
    set_tick(a.tick);
    InItem item;
    item.type = InItem::Type::actions;
    item.tick = a.tick;
    std::uint64_t total = 0;
    for (const ActionColumns& ac : a.kinds) total += static_cast<std::uint64_t>(std::max<std::int64_t>(0, ac.n));
    bump(ctr_.actions_received, total);
    auto malformed = [&](const std::string& why) {
        bump(ctr_.actions_malformed, total);
        log(LogLevel::error, "norn: malformed actions frame of tick " + std::to_string(a.tick) + ": " + why);
    };
    for (const ActionColumns& ac : a.kinds) {
        if (ac.n < 0 || ac.n > (1 << 24)) return malformed("bad n");
        const auto n = static_cast<std::size_t>(ac.n);
        const Kind* k = find_action_kind(ac.kind);
        if (k == nullptr) {  // handed to the executor with kind -1 (and its id)
            const Column* ids = ac.col("action_id");
            if (ids == nullptr || ids->data.size() != 8 * n) return malformed(ac.kind + " without ids");
            for (std::size_t i = 0; i < n; ++i) {
                Action x;
                x.kind = -1;
                x.kind_name = ac.kind;
                x.id = get_int(ids->data.data() + 8 * i, WType::i8);
                x.tick = a.tick;
                x.expires_tick = a.expires_tick;
                item.actions.push_back(std::move(x));
            }
            continue;
        }
        std::string why;
        if (!decode_rows(ac, *k, static_cast<int>(k - v1::kActionKinds), a.maps, a.tick,
                         a.expires_tick, item.actions, why))
            return malformed(why);
    }
    // The frame holds its actions by kind; the game executes them in action_id order across
    // kinds, the order the world emitted them (PROTOCOL.md section 8): an NPC that says a
    // line and is despawned in the same tick speaks first. Each kind's ids ascend, so this
    // merges a few runs (stable: a malformed frame with repeated ids keeps its wire order).
    std::stable_sort(item.actions.begin(), item.actions.end(),
                     [](const Action& x, const Action& y) { return x.id < y.id; });
    to_game(std::move(item));
}

void Net::drop_sync(const char* why) {
    if (!sync_) return;
    bump(ctr_.syncs_dropped);
    log(LogLevel::warning, "norn: join sync of tick " + std::to_string(sync_->tick) + " dropped after " +
                               std::to_string(sync_next_part_) + " parts (" + why + ")");
    sync_.reset();
    sync_next_part_ = 0;
}

void Net::on_sync(const Sync& s) {
    // parts arrive in order; part 0 starts a sync (and drops one cut short before it)
    if (s.part == 0) {
        drop_sync("a new sync began");
        sync_ = std::make_unique<JoinSync>();
        sync_->tick = s.tick;
    } else if (!sync_ || sync_->tick != s.tick || s.part != sync_next_part_) {
        // a part of a sync whose start we missed: the next hello brings a whole one
        if (sync_) drop_sync("a part is missing");
        else bump(ctr_.syncs_dropped);
        return;
    }
    try {
        append_sync_rows(s, *sync_);
    } catch (const WireError& e) {
        bump(ctr_.errors);
        log(LogLevel::error, std::string("norn: malformed sync frame: ") + e.what());
        drop_sync("malformed");
        return;
    }
    sync_next_part_ = s.part + 1;
    if (s.part + 1 < s.parts) return;
    set_tick(s.tick);
    bump(ctr_.syncs);
    bump(ctr_.sync_rows, sync_->rows.size());
    bump(ctr_.sync_rows_unknown, sync_->unknown_rows);
    log(LogLevel::info, "norn: join sync of tick " + std::to_string(s.tick) + ": " +
                            std::to_string(sync_->rows.size()) + " rows in " +
                            std::to_string(s.parts) + " parts");
    InItem it;
    it.type = InItem::Type::sync;
    it.tick = s.tick;
    it.sync = std::move(sync_);
    sync_next_part_ = 0;
    to_game(std::move(it));
}

// -- lifecycle ------------------------------------------------------------------------------
void Client::start() {
    if (started_) return;
    started_ = true;
    if (cfg_.store != nullptr) {
        std::vector<std::int64_t> ids;
        cfg_.store->load(ids);
        for (std::int64_t id : ids) remember(id, {ResultStatus::done, Reason::ok, true, false});
        if (!ids.empty())
            log(LogLevel::info, "norn: " + std::to_string(ids.size()) +
                                    " executed action ids restored; none will run again");
    }
    net_ = std::make_unique<Net>(*this);
    thread_ = std::thread([this] { net_->run(); });
}

void Client::stop(bool say_bye, std::uint32_t linger_ms) {
    if (!net_) return;
    if (say_bye) flush();
    net_->bye = say_bye;
    net_->linger_ms = linger_ms;
    net_->stop.store(true, std::memory_order_release);
    if (thread_.joinable()) thread_.join();
    net_.reset();
}

}  // namespace norn
