// Norn bridge client: the shape of the wire's kinds (PROTOCOL.md sections 6-8).
//
// A kind is a list of fields in wire order; the tables for protocol v1 are generated from the
// engine's declaration into kinds_v1.hpp. Column types are PROTOCOL.md's: u1 uint8, u2 uint16,
// i2 int16, u4 uint32, i4 int32, i8 int64, f4 float32, all little-endian; a map field is an i2
// index into the frame's map dictionary; a text field is two columns, <name>_len (u2) and
// <name> (the UTF-8 bytes of every value, concatenated).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace norn {

enum class WType : std::uint8_t { u1, u2, i2, u4, i4, i8, f4, map, text };

/// Bytes per value of a column of this type (text: its length column's, u2).
constexpr std::size_t wtype_size(WType t) {
    switch (t) {
        case WType::u1: return 1;
        case WType::u2: return 2;
        case WType::i2: return 2;
        case WType::u4: return 4;
        case WType::i4: return 4;
        case WType::i8: return 8;
        case WType::f4: return 4;
        case WType::map: return 2;
        case WType::text: return 2;
    }
    return 0;
}

/// One field: wire name, type and inclusive bounds (text: byte length; map: -1 allowed when
/// lo is -1, i.e. "every map"; f4: lo is the lower bound, hi INT64_MAX = unbounded).
struct Field {
    const char* name;
    WType type;
    std::int64_t lo;
    std::int64_t hi;
};

/// One kind: its name and fields; for events with a position, the indexes of the (map, x, y)
/// fields whose cell must lie inside the map (-1: none).
struct Kind {
    const char* name;
    const Field* fields;
    int nfields;
    int inside_map;
    int inside_x;
    int inside_y;
};

/// Number of wire columns of a kind (a text field has two).
inline int wire_column_count(const Kind& k) {
    int n = 0;
    for (int i = 0; i < k.nfields; ++i) n += k.fields[i].type == WType::text ? 2 : 1;
    return n;
}

// Little-endian stores and loads, whatever the host's byte order.
inline void put_le(char* p, std::uint64_t v, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline std::uint64_t get_le(const char* p, std::size_t n) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i)
        v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    return v;
}
/// A value of column type ``t`` at ``p`` as a signed 64-bit integer (f4: truncated; use
/// get_f4 for floats).
inline std::int64_t get_int(const char* p, WType t) {
    std::uint64_t v = get_le(p, wtype_size(t));
    switch (t) {
        case WType::i2: case WType::map: return static_cast<std::int16_t>(v);
        case WType::i4: return static_cast<std::int32_t>(v);
        case WType::i8: return static_cast<std::int64_t>(v);
        default: return static_cast<std::int64_t>(v);
    }
}
inline float get_f4(const char* p) {
    std::uint32_t u = static_cast<std::uint32_t>(get_le(p, 4));
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline std::uint32_t f4_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

}  // namespace norn

#include "norn/kinds_v1.hpp"

namespace norn {

/// The v1 event kind called ``name``; nullptr when there is none.
inline const Kind* find_event_kind(std::string_view name) {
    for (const Kind& k : v1::kEventKinds)
        if (name == k.name) return &k;
    return nullptr;
}
inline const Kind* find_action_kind(std::string_view name) {
    for (const Kind& k : v1::kActionKinds)
        if (name == k.name) return &k;
    return nullptr;
}
/// The columns of a join sync's rows of action kind ``name``; nullptr when a sync has none
/// (or the kind is not v1's).
inline const Kind* find_sync_kind(std::string_view name) {
    for (const Kind& k : v1::kSyncKinds)
        if (name == k.name) return &k;
    return nullptr;
}

}  // namespace norn
