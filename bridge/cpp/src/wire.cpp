// Norn bridge client: msgpack decoding and canonical encoding of every message.
#include "norn/wire.hpp"

#include <msgpack.hpp>

#include <cstdio>

namespace norn {
namespace {

using Obj = msgpack::object;

std::string_view str_of(const Obj& o) { return {o.via.str.ptr, o.via.str.size}; }

const Obj* get(const Obj& map, std::string_view key) {
    for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
        const auto& kv = map.via.map.ptr[i];
        if (kv.key.type == msgpack::type::STR && str_of(kv.key) == key) return &kv.val;
    }
    return nullptr;
}

[[noreturn]] void bad(std::string_view what) { throw WireError(std::string(what)); }

bool as_int(const Obj& o, std::int64_t& out) {
    if (o.type == msgpack::type::POSITIVE_INTEGER) {
        if (o.via.u64 > static_cast<std::uint64_t>(INT64_MAX)) return false;
        out = static_cast<std::int64_t>(o.via.u64);
        return true;
    }
    if (o.type == msgpack::type::NEGATIVE_INTEGER) {
        out = o.via.i64;
        return true;
    }
    return false;
}

std::int64_t req_int(const Obj& m, std::string_view key) {
    const Obj* o = get(m, key);
    std::int64_t v;
    if (o == nullptr || !as_int(*o, v)) bad(std::string(key) + " must be an integer");
    return v;
}

std::optional<std::int64_t> opt_int(const Obj& m, std::string_view key) {
    const Obj* o = get(m, key);
    if (o == nullptr || o->type == msgpack::type::NIL) return std::nullopt;
    std::int64_t v;
    if (!as_int(*o, v)) bad(std::string(key) + " must be an integer or nil");
    return v;
}

std::string req_str(const Obj& m, std::string_view key) {
    const Obj* o = get(m, key);
    if (o == nullptr || o->type != msgpack::type::STR) bad(std::string(key) + " must be a string");
    return std::string(str_of(*o));
}

std::vector<std::string> str_list(const Obj& m, std::string_view key, bool required) {
    std::vector<std::string> out;
    const Obj* o = get(m, key);
    if (o == nullptr) {
        if (required) bad(std::string(key) + " is required");
        return out;
    }
    if (o->type != msgpack::type::ARRAY) bad(std::string(key) + " must be an array of strings");
    for (std::uint32_t i = 0; i < o->via.array.size; ++i) {
        const Obj& e = o->via.array.ptr[i];
        if (e.type != msgpack::type::STR) bad(std::string(key) + " must hold strings");
        out.emplace_back(str_of(e));
    }
    return out;
}

Value to_value(const Obj& o) {
    Value v;
    switch (o.type) {
        case msgpack::type::NIL: v.type = Value::Type::nil; break;
        case msgpack::type::BOOLEAN: v.type = Value::Type::boolean; v.u = o.via.boolean; break;
        case msgpack::type::POSITIVE_INTEGER: v.type = Value::Type::uint_; v.u = o.via.u64; break;
        case msgpack::type::NEGATIVE_INTEGER: v.type = Value::Type::int_; v.i = o.via.i64; break;
        case msgpack::type::FLOAT32:
        case msgpack::type::FLOAT64: v.type = Value::Type::f64; v.f = o.via.f64; break;
        case msgpack::type::STR: v.type = Value::Type::str; v.s.assign(o.via.str.ptr, o.via.str.size); break;
        case msgpack::type::BIN: v.type = Value::Type::bin; v.s.assign(o.via.bin.ptr, o.via.bin.size); break;
        default: bad("a row value must be nil, a boolean, a number, a string or binary");
    }
    return v;
}

std::vector<Column> columns(const Obj& m, std::string_view what) {
    if (m.type != msgpack::type::MAP) bad(std::string(what) + " must be a map");
    std::vector<Column> out;
    for (std::uint32_t i = 0; i < m.via.map.size; ++i) {
        const auto& kv = m.via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR) bad(std::string(what) + ": keys must be strings");
        std::string name(str_of(kv.key));
        if (kv.val.type == msgpack::type::BIN)
            out.push_back({std::move(name), std::string(kv.val.via.bin.ptr, kv.val.via.bin.size)});
        else if (what == "cols")
            bad("cols: every column must be binary");
        // inside an action kind's map, non-binary keys other than n are unknown: ignored
    }
    return out;
}

Batch decode_batch(const Obj& m, bool results) {
    Batch b;
    b.results = results;
    b.seq = req_int(m, "seq");
    if (auto t = opt_int(m, "tick")) b.tick = *t;
    if (!results) b.kind = req_str(m, "kind");
    if (const Obj* rows = get(m, "rows")) {
        b.rows = true;
        if (rows->type != msgpack::type::ARRAY) bad("rows must be an array");
        for (std::uint32_t i = 0; i < rows->via.array.size; ++i) {
            const Obj& r = rows->via.array.ptr[i];
            if (r.type != msgpack::type::ARRAY) bad("a row must be an array");
            std::vector<Value> row;
            for (std::uint32_t j = 0; j < r.via.array.size; ++j) row.push_back(to_value(r.via.array.ptr[j]));
            b.row_values.push_back(std::move(row));
        }
        return b;
    }
    b.n = req_int(m, "n");
    if (get(m, "maps") != nullptr) {
        b.has_maps = true;
        b.maps = str_list(m, "maps", true);
    }
    const Obj* cols = get(m, "cols");
    if (cols == nullptr) bad("cols is required (or rows)");
    b.cols = columns(*cols, "cols");
    return b;
}

Actions decode_actions(const Obj& m) {
    Actions a;
    a.tick = req_int(m, "tick");
    a.expires_tick = req_int(m, "expires_tick");
    a.maps = str_list(m, "maps", false);
    const Obj* kinds = get(m, "kinds");
    if (kinds == nullptr || kinds->type != msgpack::type::MAP) bad("kinds must be a map");
    for (std::uint32_t i = 0; i < kinds->via.map.size; ++i) {
        const auto& kv = kinds->via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR || kv.val.type != msgpack::type::MAP)
            bad("kinds: each entry must be a kind name and a map of columns");
        ActionColumns ac;
        ac.kind.assign(str_of(kv.key));
        ac.n = req_int(kv.val, "n");
        ac.cols = columns(kv.val, "kinds");
        a.kinds.push_back(std::move(ac));
    }
    return a;
}

Sync decode_sync(const Obj& m) {
    Sync s;
    s.tick = req_int(m, "tick");
    s.part = req_int(m, "part");
    s.parts = req_int(m, "parts");
    if (s.tick < 0) bad("tick must be >= 0");
    if (s.parts < 1 || s.part < 0 || s.part >= s.parts) bad("part must lie in [0, parts)");
    s.maps = str_list(m, "maps", false);
    const Obj* kinds = get(m, "kinds");
    if (kinds == nullptr || kinds->type != msgpack::type::MAP) bad("kinds must be a map");
    for (std::uint32_t i = 0; i < kinds->via.map.size; ++i) {
        const auto& kv = kinds->via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR || kv.val.type != msgpack::type::MAP)
            bad("kinds: each entry must be a kind name and a map of columns");
        ActionColumns ac;
        ac.kind.assign(str_of(kv.key));
        ac.n = req_int(kv.val, "n");
        ac.cols = columns(kv.val, "kinds");
        s.kinds.push_back(std::move(ac));
    }
    return s;
}

Welcome decode_welcome(const Obj& m) {
    Welcome w;
    w.v = req_int(m, "v");
    w.server_id = req_str(m, "server_id");
    w.acked = req_int(m, "acked");
    w.next_seq = req_int(m, "next_seq");
    w.credit = req_int(m, "credit");
    w.tick = req_int(m, "tick");
    w.heartbeat_ms = req_int(m, "heartbeat_ms");
    w.peer_timeout_ms = req_int(m, "peer_timeout_ms");
    w.caps = str_list(m, "caps", false);
    if (const Obj* l = get(m, "limits")) {
        if (l->type != msgpack::type::MAP) bad("limits must be a map");
        for (std::uint32_t i = 0; i < l->via.map.size; ++i) {
            const auto& kv = l->via.map.ptr[i];
            std::int64_t v;
            if (kv.key.type == msgpack::type::STR && as_int(kv.val, v))
                w.limits.emplace_back(std::string(str_of(kv.key)), v);
        }
    }
    if (const Obj* maps = get(m, "maps")) {
        if (maps->type != msgpack::type::ARRAY) bad("maps must be an array");
        for (std::uint32_t i = 0; i < maps->via.array.size; ++i) {
            const Obj& e = maps->via.array.ptr[i];
            MapInfo mi;
            if (e.type != msgpack::type::ARRAY || e.via.array.size < 3 ||
                e.via.array.ptr[0].type != msgpack::type::STR ||
                !as_int(e.via.array.ptr[1], mi.width) || !as_int(e.via.array.ptr[2], mi.height))
                bad("maps: each entry must be [name, width, height]");
            mi.name.assign(str_of(e.via.array.ptr[0]));
            w.maps.push_back(std::move(mi));
        }
    }
    if (const Obj* r = get(m, "reward")) {
        if (r->type != msgpack::type::MAP) bad("reward must be a map");
        w.zeny_max = opt_int(*r, "zeny_max").value_or(0);
        w.amount_max = opt_int(*r, "amount_max").value_or(0);
    }
    return w;
}

Error decode_error(const Obj& m) {
    Error e;
    e.code = req_int(m, "code");
    if (get(m, "name")) e.name = req_str(m, "name");
    if (get(m, "message")) e.message = req_str(m, "message");
    e.seq = opt_int(m, "seq");
    if (const Obj* f = get(m, "field"); f != nullptr && f->type == msgpack::type::STR)
        e.field = std::string(str_of(*f));
    e.expected_seq = opt_int(m, "expected_seq");
    e.invalid = opt_int(m, "invalid").value_or(0);
    if (const Obj* ev = get(m, "events"); ev != nullptr && ev->type == msgpack::type::ARRAY) {
        for (std::uint32_t i = 0; i < ev->via.array.size; ++i) {
            const Obj& d = ev->via.array.ptr[i];
            ErrorDetail det;
            if (d.type != msgpack::type::ARRAY || d.via.array.size < 3 ||
                !as_int(d.via.array.ptr[0], det.index) ||
                d.via.array.ptr[1].type != msgpack::type::STR ||
                d.via.array.ptr[2].type != msgpack::type::STR)
                bad("events: each entry must be [index, field, reason]");
            det.field.assign(str_of(d.via.array.ptr[1]));
            det.reason.assign(str_of(d.via.array.ptr[2]));
            e.events.push_back(std::move(det));
        }
    }
    return e;
}

// -- encoding --------------------------------------------------------------------------------
using Packer = msgpack::packer<msgpack::sbuffer>;

void p_int(Packer& pk, std::int64_t v) {
    if (v >= 0) pk.pack_uint64(static_cast<std::uint64_t>(v));
    else pk.pack_int64(v);
}
void p_str(Packer& pk, std::string_view s) {
    pk.pack_str(static_cast<std::uint32_t>(s.size()));
    pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}
void p_bin(Packer& pk, std::string_view s) {
    pk.pack_bin(static_cast<std::uint32_t>(s.size()));
    pk.pack_bin_body(s.data(), static_cast<std::uint32_t>(s.size()));
}
void p_strs(Packer& pk, const std::vector<std::string>& v) {
    pk.pack_array(static_cast<std::uint32_t>(v.size()));
    for (const auto& s : v) p_str(pk, s);
}
void p_value(Packer& pk, const Value& v) {
    switch (v.type) {
        case Value::Type::nil: pk.pack_nil(); break;
        case Value::Type::boolean: if (v.u) pk.pack_true(); else pk.pack_false(); break;
        case Value::Type::int_: pk.pack_int64(v.i); break;
        case Value::Type::uint_: pk.pack_uint64(v.u); break;
        case Value::Type::f64: pk.pack_double(v.f); break;
        case Value::Type::str: p_str(pk, v.s); break;
        case Value::Type::bin: p_bin(pk, v.s); break;
    }
}

/// Canonical column order for a kind: its fields in order (text: _len first); columns the
/// kind does not know (only in a decoded foreign frame) follow in their order.
std::vector<const Column*> canonical_cols(const std::vector<Column>& cols, const Kind* kind) {
    std::vector<const Column*> out;
    std::vector<bool> used(cols.size(), false);
    auto take = [&](std::string_view name) {
        for (std::size_t i = 0; i < cols.size(); ++i)
            if (!used[i] && cols[i].name == name) { used[i] = true; out.push_back(&cols[i]); return; }
    };
    if (kind != nullptr) {
        for (int f = 0; f < kind->nfields; ++f) {
            std::string name = kind->fields[f].name;
            if (kind->fields[f].type == WType::text) take(name + "_len");
            take(name);
        }
    }
    for (std::size_t i = 0; i < cols.size(); ++i)
        if (!used[i]) out.push_back(&cols[i]);
    return out;
}

void encode_batch(Packer& pk, const Batch& b) {
    std::uint32_t keys = 2 + (b.tick ? 1 : 0) + (b.results ? 0 : 1) +
                         (b.rows ? 1 : 2 + (b.has_maps ? 1 : 0));
    pk.pack_map(keys);
    p_str(pk, "t");
    p_str(pk, b.results ? "results" : "events");
    p_str(pk, "seq");
    p_int(pk, b.seq);
    if (b.tick) { p_str(pk, "tick"); p_int(pk, b.tick); }
    if (!b.results) { p_str(pk, "kind"); p_str(pk, b.kind); }
    if (b.rows) {
        p_str(pk, "rows");
        pk.pack_array(static_cast<std::uint32_t>(b.row_values.size()));
        for (const auto& row : b.row_values) {
            pk.pack_array(static_cast<std::uint32_t>(row.size()));
            for (const Value& v : row) p_value(pk, v);
        }
        return;
    }
    p_str(pk, "n");
    p_int(pk, b.n);
    if (b.has_maps) { p_str(pk, "maps"); p_strs(pk, b.maps); }
    p_str(pk, "cols");
    const Kind* kind = b.results ? &v1::kResultKind : find_event_kind(b.kind);
    auto cols = canonical_cols(b.cols, kind);
    pk.pack_map(static_cast<std::uint32_t>(cols.size()));
    for (const Column* c : cols) { p_str(pk, c->name); p_bin(pk, c->data); }
}

void encode_actions(Packer& pk, const Actions& a) {
    pk.pack_map(5);
    p_str(pk, "t"); p_str(pk, "actions");
    p_str(pk, "tick"); p_int(pk, a.tick);
    p_str(pk, "expires_tick"); p_int(pk, a.expires_tick);
    p_str(pk, "maps"); p_strs(pk, a.maps);
    p_str(pk, "kinds");
    // kinds in the action table's order; unknown ones after, as given
    std::vector<const ActionColumns*> order;
    for (const Kind& k : v1::kActionKinds)
        for (const auto& ac : a.kinds)
            if (ac.kind == k.name) order.push_back(&ac);
    for (const auto& ac : a.kinds)
        if (find_action_kind(ac.kind) == nullptr) order.push_back(&ac);
    pk.pack_map(static_cast<std::uint32_t>(order.size()));
    for (const ActionColumns* ac : order) {
        p_str(pk, ac->kind);
        auto cols = canonical_cols(ac->cols, find_action_kind(ac->kind));
        pk.pack_map(static_cast<std::uint32_t>(1 + cols.size()));
        p_str(pk, "n");
        p_int(pk, ac->n);
        for (const Column* c : cols) { p_str(pk, c->name); p_bin(pk, c->data); }
    }
}

void encode_sync(Packer& pk, const Sync& s) {
    pk.pack_map(6);
    p_str(pk, "t"); p_str(pk, "sync");
    p_str(pk, "tick"); p_int(pk, s.tick);
    p_str(pk, "part"); p_int(pk, s.part);
    p_str(pk, "parts"); p_int(pk, s.parts);
    p_str(pk, "maps"); p_strs(pk, s.maps);
    p_str(pk, "kinds");
    // kinds in the action table's order; those without v1 sync rows after, as given
    std::vector<const ActionColumns*> order;
    for (const Kind& k : v1::kSyncKinds)
        for (const auto& ac : s.kinds)
            if (ac.kind == k.name) order.push_back(&ac);
    for (const auto& ac : s.kinds)
        if (find_sync_kind(ac.kind) == nullptr) order.push_back(&ac);
    pk.pack_map(static_cast<std::uint32_t>(order.size()));
    for (const ActionColumns* ac : order) {
        p_str(pk, ac->kind);
        auto cols = canonical_cols(ac->cols, find_sync_kind(ac->kind));
        pk.pack_map(static_cast<std::uint32_t>(1 + cols.size()));
        p_str(pk, "n");
        p_int(pk, ac->n);
        for (const Column* c : cols) { p_str(pk, c->name); p_bin(pk, c->data); }
    }
}

const char* kLimitOrder[] = {"frame_bytes_max", "events_per_batch_max", "text_bytes_max",
                             "unacked_batches_max", "events_per_s_max", "map_dict_max"};

struct Encoder {
    Packer& pk;
    void operator()(const Hello& h) const {
        pk.pack_map(5);
        p_str(pk, "t"); p_str(pk, "hello");
        p_str(pk, "v"); p_int(pk, h.v);
        p_str(pk, "server_id"); p_str(pk, h.server_id);
        p_str(pk, "caps"); p_strs(pk, h.caps);
        p_str(pk, "maps"); p_strs(pk, h.maps);
    }
    void operator()(const Welcome& w) const {
        pk.pack_map(13);
        p_str(pk, "t"); p_str(pk, "welcome");
        p_str(pk, "v"); p_int(pk, w.v);
        p_str(pk, "server_id"); p_str(pk, w.server_id);
        p_str(pk, "acked"); p_int(pk, w.acked);
        p_str(pk, "next_seq"); p_int(pk, w.next_seq);
        p_str(pk, "credit"); p_int(pk, w.credit);
        p_str(pk, "tick"); p_int(pk, w.tick);
        p_str(pk, "heartbeat_ms"); p_int(pk, w.heartbeat_ms);
        p_str(pk, "peer_timeout_ms"); p_int(pk, w.peer_timeout_ms);
        p_str(pk, "caps"); p_strs(pk, w.caps);
        p_str(pk, "limits");
        std::vector<std::pair<std::string, std::int64_t>> known;
        for (const char* name : kLimitOrder)
            for (const auto& kv : w.limits)
                if (kv.first == name) { known.push_back(kv); break; }
        pk.pack_map(static_cast<std::uint32_t>(known.size()));
        for (const auto& kv : known) { p_str(pk, kv.first); p_int(pk, kv.second); }
        p_str(pk, "maps");
        pk.pack_array(static_cast<std::uint32_t>(w.maps.size()));
        for (const auto& m : w.maps) {
            pk.pack_array(3);
            p_str(pk, m.name); p_int(pk, m.width); p_int(pk, m.height);
        }
        p_str(pk, "reward");
        pk.pack_map(2);
        p_str(pk, "zeny_max"); p_int(pk, w.zeny_max);
        p_str(pk, "amount_max"); p_int(pk, w.amount_max);
    }
    void operator()(const Ack& a) const {
        pk.pack_map(3);
        p_str(pk, "t"); p_str(pk, "ack");
        p_str(pk, "seq"); p_int(pk, a.seq);
        p_str(pk, "credit"); p_int(pk, a.credit);
    }
    void operator()(const Hb& h) const {
        pk.pack_map(h.acked ? 3 : 2);
        p_str(pk, "t"); p_str(pk, "hb");
        p_str(pk, "tick"); p_int(pk, h.tick);
        if (h.acked) { p_str(pk, "acked"); p_int(pk, *h.acked); }
    }
    void operator()(const Bye&) const {
        pk.pack_map(1);
        p_str(pk, "t"); p_str(pk, "bye");
    }
    void operator()(const Progress& p) const {
        pk.pack_map(3);
        p_str(pk, "t"); p_str(pk, "progress");
        p_str(pk, "tick"); p_int(pk, p.tick);
        p_str(pk, "seq"); p_int(pk, p.seq);
    }
    void operator()(const Error& e) const {
        pk.pack_map(9);
        p_str(pk, "t"); p_str(pk, "error");
        p_str(pk, "code"); p_int(pk, e.code);
        p_str(pk, "name"); p_str(pk, e.name);
        p_str(pk, "message"); p_str(pk, e.message);
        p_str(pk, "seq"); if (e.seq) p_int(pk, *e.seq); else pk.pack_nil();
        p_str(pk, "field"); if (e.field) p_str(pk, *e.field); else pk.pack_nil();
        p_str(pk, "expected_seq"); if (e.expected_seq) p_int(pk, *e.expected_seq); else pk.pack_nil();
        p_str(pk, "invalid"); p_int(pk, e.invalid);
        p_str(pk, "events");
        pk.pack_array(static_cast<std::uint32_t>(e.events.size()));
        for (const auto& d : e.events) {
            pk.pack_array(3);
            p_int(pk, d.index); p_str(pk, d.field); p_str(pk, d.reason);
        }
    }
    void operator()(const Batch& b) const { encode_batch(pk, b); }
    void operator()(const Actions& a) const { encode_actions(pk, a); }
    void operator()(const Sync& sy) const { encode_sync(pk, sy); }
};

// -- JSON ------------------------------------------------------------------------------------
struct Json {
    std::string out;
    void str(std::string_view s) {
        out += '"';
        for (unsigned char c : s) {
            switch (c) {
                case '"': out += "\\\""; break;
                case '\\': out += "\\\\"; break;
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                default:
                    if (c < 0x20) {
                        char buf[8];
                        std::snprintf(buf, sizeof buf, "\\u%04x", c);
                        out += buf;
                    } else {
                        out += static_cast<char>(c);
                    }
            }
        }
        out += '"';
    }
    void num(std::int64_t v) { out += std::to_string(v); }
    void key(std::string_view k) {
        if (!out.empty() && out.back() != '{' && out.back() != '[') out += ',';
        str(k);
        out += ':';
    }
    void sep() {
        if (!out.empty() && out.back() != '{' && out.back() != '[') out += ',';
    }
    void bin(std::string_view b) { out += "{\"bin\":"; str(hex(b)); out += '}'; }
    void strs(const std::vector<std::string>& v) {
        out += '[';
        for (const auto& s : v) { sep(); str(s); }
        out += ']';
    }
    void value(const Value& v) {
        switch (v.type) {
            case Value::Type::nil: out += "null"; break;
            case Value::Type::boolean: out += v.u ? "true" : "false"; break;
            case Value::Type::int_: num(v.i); break;
            case Value::Type::uint_: out += std::to_string(v.u); break;
            case Value::Type::f64: { char buf[32]; std::snprintf(buf, sizeof buf, "%.17g", v.f); out += buf; break; }
            case Value::Type::str: str(v.s); break;
            case Value::Type::bin: bin(v.s); break;
        }
    }
    void cols(const std::vector<Column>& cs) {
        out += '{';
        for (const auto& c : cs) { key(c.name); bin(c.data); }
        out += '}';
    }
};

struct JsonWriter {
    Json& j;
    void operator()(const Hello& h) const {
        j.out += '{';
        j.key("t"); j.str("hello");
        j.key("v"); j.num(h.v);
        j.key("server_id"); j.str(h.server_id);
        j.key("caps"); j.strs(h.caps);
        j.key("maps"); j.strs(h.maps);
        j.out += '}';
    }
    void operator()(const Welcome& w) const {
        j.out += '{';
        j.key("t"); j.str("welcome");
        j.key("v"); j.num(w.v);
        j.key("server_id"); j.str(w.server_id);
        j.key("acked"); j.num(w.acked);
        j.key("next_seq"); j.num(w.next_seq);
        j.key("credit"); j.num(w.credit);
        j.key("tick"); j.num(w.tick);
        j.key("heartbeat_ms"); j.num(w.heartbeat_ms);
        j.key("peer_timeout_ms"); j.num(w.peer_timeout_ms);
        j.key("caps"); j.strs(w.caps);
        j.key("limits");
        j.out += '{';
        for (const auto& kv : w.limits) { j.key(kv.first); j.num(kv.second); }
        j.out += '}';
        j.key("maps");
        j.out += '[';
        for (const auto& m : w.maps) {
            j.sep();
            j.out += '[';
            j.str(m.name); j.out += ','; j.num(m.width); j.out += ','; j.num(m.height);
            j.out += ']';
        }
        j.out += ']';
        j.key("reward");
        j.out += '{';
        j.key("zeny_max"); j.num(w.zeny_max);
        j.key("amount_max"); j.num(w.amount_max);
        j.out += "}}";
    }
    void operator()(const Ack& a) const {
        j.out += '{';
        j.key("t"); j.str("ack");
        j.key("seq"); j.num(a.seq);
        j.key("credit"); j.num(a.credit);
        j.out += '}';
    }
    void operator()(const Hb& h) const {
        j.out += '{';
        j.key("t"); j.str("hb");
        j.key("tick"); j.num(h.tick);
        if (h.acked) { j.key("acked"); j.num(*h.acked); }
        j.out += '}';
    }
    void operator()(const Bye&) const { j.out += "{\"t\":\"bye\"}"; }
    void operator()(const Progress& p) const {
        j.out += '{';
        j.key("t"); j.str("progress");
        j.key("tick"); j.num(p.tick);
        j.key("seq"); j.num(p.seq);
        j.out += '}';
    }
    void operator()(const Error& e) const {
        j.out += '{';
        j.key("t"); j.str("error");
        j.key("code"); j.num(e.code);
        j.key("name"); j.str(e.name);
        j.key("message"); j.str(e.message);
        j.key("seq"); if (e.seq) j.num(*e.seq); else j.out += "null";
        j.key("field"); if (e.field) j.str(*e.field); else j.out += "null";
        j.key("expected_seq"); if (e.expected_seq) j.num(*e.expected_seq); else j.out += "null";
        j.key("invalid"); j.num(e.invalid);
        j.key("events");
        j.out += '[';
        for (const auto& d : e.events) {
            j.sep();
            j.out += '[';
            j.num(d.index); j.out += ','; j.str(d.field); j.out += ','; j.str(d.reason);
            j.out += ']';
        }
        j.out += "]}";
    }
    void operator()(const Batch& b) const {
        j.out += '{';
        j.key("t"); j.str(b.results ? "results" : "events");
        j.key("seq"); j.num(b.seq);
        if (b.tick) { j.key("tick"); j.num(b.tick); }
        if (!b.results) { j.key("kind"); j.str(b.kind); }
        if (b.rows) {
            j.key("rows");
            j.out += '[';
            for (const auto& row : b.row_values) {
                j.sep();
                j.out += '[';
                for (const Value& v : row) { j.sep(); j.value(v); }
                j.out += ']';
            }
            j.out += "]}";
            return;
        }
        j.key("n"); j.num(b.n);
        if (b.has_maps) { j.key("maps"); j.strs(b.maps); }
        j.key("cols"); j.cols(b.cols);
        j.out += '}';
    }
    void operator()(const Actions& a) const {
        j.out += '{';
        j.key("t"); j.str("actions");
        j.key("tick"); j.num(a.tick);
        j.key("expires_tick"); j.num(a.expires_tick);
        j.key("maps"); j.strs(a.maps);
        j.key("kinds");
        j.out += '{';
        for (const auto& ac : a.kinds) {
            j.key(ac.kind);
            j.out += '{';
            j.key("n"); j.num(ac.n);
            for (const auto& c : ac.cols) { j.key(c.name); j.bin(c.data); }
            j.out += '}';
        }
        j.out += "}}";
    }
    void operator()(const Sync& s) const {
        j.out += '{';
        j.key("t"); j.str("sync");
        j.key("tick"); j.num(s.tick);
        j.key("part"); j.num(s.part);
        j.key("parts"); j.num(s.parts);
        j.key("maps"); j.strs(s.maps);
        j.key("kinds");
        j.out += '{';
        for (const auto& ac : s.kinds) {
            j.key(ac.kind);
            j.out += '{';
            j.key("n"); j.num(ac.n);
            for (const auto& c : ac.cols) { j.key(c.name); j.bin(c.data); }
            j.out += '}';
        }
        j.out += "}}";
    }
};

}  // namespace

const char* message_type(const Message& m) {
    static const char* names[] = {"hello", "welcome", "ack", "hb", "bye", "progress", "error",
                                  "events", "actions", "sync"};
    if (const Batch* b = std::get_if<Batch>(&m)) return b->results ? "results" : "events";
    return names[m.index()];
}

Message decode(const void* data, std::size_t size, std::size_t max_bytes) {
    if (size > max_bytes) throw WireError("frame larger than " + std::to_string(max_bytes) + " bytes");
    msgpack::object_handle oh;
    std::size_t off = 0;
    try {
        // bounds from the frame's size: a declared length beyond it fails before allocating
        msgpack::unpack_limit limit(size, size, size, size, 0, 16);
        oh = msgpack::unpack(static_cast<const char*>(data), size, off, nullptr, nullptr, limit);
    } catch (const std::exception& e) {
        throw WireError(std::string("not a msgpack frame: ") + e.what());
    }
    if (off != size) throw WireError("extra bytes after the message");
    const Obj& m = oh.get();
    if (m.type != msgpack::type::MAP) throw WireError("frame is not a map");
    const Obj* t = get(m, "t");
    if (t == nullptr || t->type != msgpack::type::STR) throw WireError("frame has no string 't'");
    std::string_view type = str_of(*t);
    if (type == "hello") {
        Hello h;
        h.v = req_int(m, "v");
        h.server_id = req_str(m, "server_id");
        h.caps = str_list(m, "caps", true);
        h.maps = str_list(m, "maps", true);
        return h;
    }
    if (type == "welcome") return decode_welcome(m);
    if (type == "ack") return Ack{req_int(m, "seq"), req_int(m, "credit")};
    if (type == "hb") return Hb{req_int(m, "tick"), opt_int(m, "acked")};
    if (type == "bye") return Bye{};
    if (type == "progress") return Progress{req_int(m, "tick"), req_int(m, "seq")};
    if (type == "error") return decode_error(m);
    if (type == "events") return decode_batch(m, false);
    if (type == "results") return decode_batch(m, true);
    if (type == "actions") return decode_actions(m);
    if (type == "sync") return decode_sync(m);
    throw WireError("unknown message type '" + std::string(type.substr(0, 40)) + "'");
}

std::string encode(const Message& m) {
    msgpack::sbuffer buf;
    Packer pk(buf);
    std::visit(Encoder{pk}, m);
    return std::string(buf.data(), buf.size());
}

std::string to_json(const Message& m) {
    Json j;
    std::visit(JsonWriter{j}, m);
    return std::move(j.out);
}

std::string hex(std::string_view bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

bool valid_utf8(std::string_view s) {
    std::size_t i = 0, n = s.size();
    while (i < n) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        std::size_t len;
        std::uint32_t cp;
        if (c < 0x80) { ++i; continue; }
        if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > n) return false;
        for (std::size_t k = 1; k < len; ++k) {
            unsigned char d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

}  // namespace norn
