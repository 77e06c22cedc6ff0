// Norn bridge client: every message of PROTOCOL.md as a C++ value, decoded from and encoded
// to msgpack (msgpack-cxx). Decoding accepts keys in any order and ignores unknown keys
// (section 2); encoding writes canonical form (documented key order, smallest encodings), so
// a decoded golden vector re-encodes to its exact bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "norn/schema.hpp"

namespace norn {

constexpr int kProtocolVersion = 1;
constexpr std::int64_t kSeqMax = INT64_MAX;
constexpr std::int64_t kTickMax = std::int64_t{1} << 62;  // largest tick a batch may be stamped

enum class ErrorCode : int {
    malformed = 1, unknown_type = 2, bad_field = 3, frame_too_large = 4,
    version_unsupported = 5, hello_required = 6, unknown_kind = 7, batch_too_large = 8,
    invalid_events = 9, seq_gap = 10, window_exceeded = 11, too_many_servers = 12,
    superseded = 13, unknown_map = 14, tick_order = 15, tick_ahead = 16, overloaded = 17,
};

enum class ResultStatus : std::uint8_t { done = 0, failed = 1 };

/// Reasons of a result (PROTOCOL.md section 7).
enum class Reason : std::int16_t {
    ok = 0, unknown_map = 1, out_of_bounds = 2, reward_cap = 3, not_here = 4, expired = 5,
    zeny_overflow = 6, invalid = 7, unsupported = 8,
};

/// A frame that is not a protocol message (or not one we can read).
struct WireError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A generic msgpack value: what a row holds.
struct Value {
    enum class Type : std::uint8_t { nil, boolean, int_, uint_, f64, str, bin } type = Type::nil;
    std::int64_t i = 0;
    std::uint64_t u = 0;
    double f = 0;
    std::string s;  // str or bin

    static Value integer(std::int64_t v) {
        Value x;
        if (v >= 0) { x.type = Type::uint_; x.u = static_cast<std::uint64_t>(v); }
        else { x.type = Type::int_; x.i = v; }
        return x;
    }
    static Value string(std::string v) { Value x; x.type = Type::str; x.s = std::move(v); return x; }
    bool is_int() const { return type == Type::int_ || type == Type::uint_; }
    /// The integer value (uint values above INT64_MAX saturate).
    std::int64_t as_int() const {
        if (type == Type::int_) return i;
        return u > static_cast<std::uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<std::int64_t>(u);
    }
};

/// A binary column: its key and its little-endian bytes.
struct Column {
    std::string name;
    std::string data;
};

struct Hello {
    std::int64_t v = kProtocolVersion;
    std::string server_id;
    std::vector<std::string> caps;
    std::vector<std::string> maps;
};

struct MapInfo {
    std::string name;
    std::int64_t width = 0;
    std::int64_t height = 0;
};

struct Welcome {
    std::int64_t v = kProtocolVersion;
    std::string server_id;
    std::int64_t acked = 0;
    std::int64_t next_seq = 1;
    std::int64_t credit = 1;
    std::int64_t tick = 0;
    std::int64_t heartbeat_ms = 1000;
    std::int64_t peer_timeout_ms = 5000;
    std::vector<std::string> caps;
    std::vector<std::pair<std::string, std::int64_t>> limits;  // as received (known first)
    std::vector<MapInfo> maps;
    std::int64_t zeny_max = 0;
    std::int64_t amount_max = 0;

    /// A limit by name; ``fallback`` when absent.
    std::int64_t limit(std::string_view name, std::int64_t fallback) const {
        for (const auto& kv : limits)
            if (kv.first == name) return kv.second;
        return fallback;
    }
};

struct Ack {
    std::int64_t seq = 0;
    std::int64_t credit = 0;
};

/// ``hb``: from the engine it carries ``acked``; from a map server it does not.
struct Hb {
    std::int64_t tick = 0;
    std::optional<std::int64_t> acked;
};

struct Bye {};

struct Progress {
    std::int64_t tick = 0;
    std::int64_t seq = 0;
};

struct ErrorDetail {
    std::int64_t index = 0;
    std::string field;
    std::string reason;
};

struct Error {
    std::int64_t code = 0;
    std::string name;
    std::string message;
    std::optional<std::int64_t> seq;
    std::optional<std::string> field;
    std::optional<std::int64_t> expected_seq;
    std::int64_t invalid = 0;
    std::vector<ErrorDetail> events;
};

/// ``events`` or ``results``, as columns or rows.
struct Batch {
    bool results = false;
    std::int64_t seq = 0;
    std::int64_t tick = 0;  // 0: not stamped
    std::string kind;       // events only
    bool rows = false;
    // columns
    std::int64_t n = 0;
    bool has_maps = false;
    std::vector<std::string> maps;
    std::vector<Column> cols;
    // rows
    std::vector<std::vector<Value>> row_values;

    const Column* col(std::string_view name) const {
        for (const Column& c : cols)
            if (c.name == name) return &c;
        return nullptr;
    }
};

/// One action kind's columns in an ``actions`` frame.
struct ActionColumns {
    std::string kind;
    std::int64_t n = 0;
    std::vector<Column> cols;

    const Column* col(std::string_view name) const {
        for (const Column& c : cols)
            if (c.name == name) return &c;
        return nullptr;
    }
};

struct Actions {
    std::int64_t tick = 0;
    std::int64_t expires_tick = 0;
    std::vector<std::string> maps;
    std::vector<ActionColumns> kinds;
};

/// ``sync`` (section 16): one part of a join sync, the state a map server mirrors on its maps.
/// Per kind, its row columns (as in ``actions``, without action_id; see v1::kSyncKinds).
struct Sync {
    std::int64_t tick = 0;   // every action of ticks <= tick is reflected in it
    std::int64_t part = 0;   // 0 .. parts-1, in order
    std::int64_t parts = 1;
    std::vector<std::string> maps;
    std::vector<ActionColumns> kinds;
};

using Message = std::variant<Hello, Welcome, Ack, Hb, Bye, Progress, Error, Batch, Actions, Sync>;

/// The ``t`` of a message.
const char* message_type(const Message& m);

/// Decode one frame. Throws WireError when it is not a msgpack map with a known ``t`` and
/// the fields its type requires; unknown keys are ignored. ``max_bytes`` bounds the frame.
Message decode(const void* data, std::size_t size, std::size_t max_bytes = 256u << 20);

/// Canonical msgpack of a message (documented keys only, in documented order).
std::string encode(const Message& m);

/// A JSON rendering of a message, as bridge/vectors/index.json writes ``decoded``: binary
/// values as {"bin": "<hex>"}, absent optional keys left out, nil as null.
std::string to_json(const Message& m);

/// Lower-case hex of bytes.
std::string hex(std::string_view bytes);

/// Whether ``s`` is valid UTF-8 (no overlong forms, no surrogates).
bool valid_utf8(std::string_view s);

}  // namespace norn
