// Unit tests of the C++ client's parts that need no engine: the SPSC ring across two threads,
// the codec's edges (unknown keys and kinds, malformed frames, UTF-8), event validation on the
// game thread, and the file-backed executed-id store. Prints "ok N checks" or the failures.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <msgpack.hpp>
#include <string>
#include <thread>
#include <vector>

#include "norn/client.hpp"

namespace {
int checks = 0, failures = 0;

void check(bool ok, const char* what, int line) {
    ++checks;
    if (!ok) {
        ++failures;
        std::cout << "FAIL line " << line << ": " << what << "\n";
    }
}
#define CHECK(x) check((x), #x, __LINE__)

template <class F>
bool throws(F f) {
    try {
        f();
    } catch (const norn::WireError&) {
        return true;
    }
    return false;
}

void test_ring() {
    norn::SpscRing<std::uint64_t> small(3);
    CHECK(small.capacity() == 4);
    std::uint64_t v = 1;
    for (int i = 0; i < 4; ++i) CHECK(small.try_push(v));
    CHECK(!small.try_push(v));  // full: refused, never blocks
    std::uint64_t out = 0;
    CHECK(small.try_pop(out) && out == 1);
    CHECK(small.try_push(v));

    norn::SpscRing<std::uint64_t> ring(1024);
    const std::uint64_t n = 200000;
    std::atomic<bool> ok{true};
    std::thread consumer([&] {
        std::uint64_t expect = 0, got;
        while (expect < n) {
            if (ring.try_pop(got)) {
                if (got != expect) ok = false;
                ++expect;
            } else {
                std::this_thread::yield();  // two shared cores: let the producer run
            }
        }
    });
    for (std::uint64_t i = 0; i < n;) {
        std::uint64_t x = i;
        if (ring.try_push(x)) ++i;
        else std::this_thread::yield();
    }
    consumer.join();
    CHECK(ok.load());  // every item, in order, none lost
    CHECK(ring.size() == 0);
}

std::string pack_map(const std::vector<std::pair<std::string, msgpack::object>>& kv, msgpack::zone&) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(static_cast<std::uint32_t>(kv.size()));
    for (const auto& e : kv) {
        pk.pack(e.first);
        pk.pack(e.second);
    }
    return std::string(buf.data(), buf.size());
}

void test_codec() {
    msgpack::zone z;
    // unknown keys are ignored (section 2)
    std::string ack = pack_map({{"t", msgpack::object("ack", z)}, {"seq", msgpack::object(7)},
                                {"future", msgpack::object("x", z)}, {"credit", msgpack::object(64)}}, z);
    auto m = norn::decode(ack.data(), ack.size());
    CHECK(std::get<norn::Ack>(m).seq == 7 && std::get<norn::Ack>(m).credit == 64);
    // ... and canonical re-encoding drops them
    std::string canon = norn::encode(m);
    CHECK(canon.size() < ack.size());
    CHECK(std::get<norn::Ack>(norn::decode(canon.data(), canon.size())).seq == 7);
    // malformed frames
    CHECK(throws([] { norn::decode("\x93\x01\x02\x03", 4); }));        // not a map
    CHECK(throws([] { norn::decode("\x81\xa1x\x01", 4); }));            // no t
    CHECK(throws([] { norn::decode("\x81\xa1t\xa3zzz", 6); }));          // unknown type
    CHECK(throws([&] { std::string s = canon + "x"; norn::decode(s.data(), s.size()); }));
    CHECK(throws([] { norn::decode("\xc1", 1); }));                     // not msgpack
    CHECK(throws([] { norn::decode("\xdf\xff\xff\xff\xff", 5); }));     // claims 4G entries
    std::string deep(40, '\x91');
    deep += '\x01';
    CHECK(throws([&] { norn::decode(deep.data(), deep.size()); }));
    // an actions frame with a kind this client does not know decodes; the kind is kept
    norn::Actions a;
    a.tick = 5;
    a.expires_tick = 55;
    a.kinds.push_back({"teleport", 1, {{"action_id", std::string("\x01\0\0\x05\0\0\0\0", 8)}}});
    std::string enc = norn::encode(a);
    auto back = std::get<norn::Actions>(norn::decode(enc.data(), enc.size()));
    CHECK(back.kinds.size() == 1 && back.kinds[0].kind == "teleport" && back.kinds[0].n == 1);
    // UTF-8
    CHECK(norn::valid_utf8("Th\xc3\xa9 prices"));
    CHECK(!norn::valid_utf8("\xc3"));              // cut
    CHECK(!norn::valid_utf8("\xc0\xaf"));          // overlong
    CHECK(!norn::valid_utf8("\xed\xa0\x80"));      // surrogate
    CHECK(!norn::valid_utf8("\xf4\x90\x80\x80"));  // beyond U+10FFFF
}

void test_validation() {
    norn::Config cfg;
    cfg.endpoint = "tcp://127.0.0.1:1";  // never started: nothing leaves
    norn::Client c(cfg);
    CHECK(c.player_move(150000, "prontera", 10, 20));
    CHECK(!c.player_move(0, "prontera", 10, 20));          // char_id >= 1
    CHECK(!c.player_move(150000, "", 10, 20));             // a map name
    CHECK(!c.player_move(150000, std::string(65, 'm'), 1, 1));
    CHECK(!c.player_move(150000, "prontera", -1, 20));     // x >= 0
    CHECK(!c.level_up(150000, 1000, 1));                   // base_level <= 999
    CHECK(!c.npc_talk(150000, 1, std::string(256, 'a')));  // 255 bytes at most
    CHECK(c.npc_talk(150000, 1, std::string(255, 'a')));
    CHECK(!c.npc_talk(150000, 1, std::string("a\0b", 3))); // no NUL
    CHECK(!c.npc_talk(150000, 1, "\xc3"));                 // UTF-8
    CHECK(!c.trade(150000, 150001, 501, 30001, 0));        // a stack holds 30000
    CHECK(!c.add_event(norn::v1::EventKind::quest_done, {150000}));  // too few values
    CHECK(c.add_event(norn::v1::EventKind::quest_done, {150000, 7001}));
    auto st = c.stats();
    CHECK(st.events_queued == 3 && st.events_invalid == 10);
    CHECK(!c.idle() && !c.events_durable());
    CHECK(c.set_tick(10) && !c.set_tick(9) && c.set_tick(10));  // stamps never decrease
}

void test_store() {
    char tmpl[] = "/tmp/norn_store_XXXXXX";
    int fd = mkstemp(tmpl);
    close(fd);
    std::string path = tmpl;
    {
        norn::FileExecutedStore s(path);
        std::vector<std::int64_t> ids;
        s.load(ids);
        CHECK(ids.empty());
        norn::Action a;
        for (int i = 0; i < 3; ++i) {
            a.id = (100LL << 24) + i;
            a.expires_tick = 150 + i;
            s.executed(a);
        }
    }
    {  // a torn last line (a crash in the middle of a write) is dropped
        std::ofstream out(path, std::ios::app);
        out << "12345";
    }
    {
        norn::FileExecutedStore s(path);
        std::vector<std::int64_t> ids;
        s.load(ids);
        CHECK(ids.size() == 3 && ids[0] == (100LL << 24));
        norn::Action a;
        a.id = 12345;
        CHECK(!s.contains(a));
        a.id = (100LL << 24) + 1;
        CHECK(s.contains(a));
        s.expire(152);  // expires_tick 150 and 151 are before tick 152: never executed again
        CHECK(s.size() == 1 && !s.contains(a));
    }
    std::remove(path.c_str());
}
}  // namespace

void test_sync_rows() {
    // a sync part: one NPC (name as text), one kind of a world's own, one NPC on a bad map
    auto le = [](std::uint64_t v, int n) {
        std::string o(n, '\0');
        norn::put_le(&o[0], v, n);
        return o;
    };
    norn::Sync part;
    part.tick = 9;
    part.maps = {"prontera"};
    norn::ActionColumns npc{"spawn_npc", 1, {{"npc_id", le((1ULL << 33) | 4, 8)}, {"map", le(0, 2)},
                                             {"x", le(10, 2)}, {"y", le(11, 2)}, {"sprite", le(105, 2)},
                                             {"name_len", le(5, 2)}, {"name", "Orc H"}}};
    part.kinds = {npc, {"spawn_monster", 3, {}}};
    norn::JoinSync js;
    norn::append_sync_rows(part, js);
    CHECK(js.rows.size() == 1 && js.rows[0].npc_id == static_cast<std::int64_t>((1ULL << 33) | 4));
    CHECK(js.rows[0].name == "Orc H" && js.rows[0].text.empty() && js.rows[0].map == "prontera");
    CHECK(js.rows[0].mirrored() && js.rows[0].id == 0 && js.rows[0].tick == 9);
    CHECK(js.unknown_rows == 3 && js.unknown_kinds == std::vector<std::string>{"spawn_monster"});
    norn::Sync bad = part;
    bad.kinds = {npc};
    bad.kinds[0].cols[1].data = le(3, 2);  // map index 3 of a one-map dictionary
    CHECK(throws([&] { norn::JoinSync j; norn::append_sync_rows(bad, j); }));
    bad.kinds[0].cols.pop_back();  // no name bytes
    CHECK(throws([&] { norn::JoinSync j; norn::append_sync_rows(bad, j); }));
    norn::Action say;
    say.kind = static_cast<int>(norn::v1::ActionKind::npc_say);
    CHECK(!say.mirrored());
}

int main() {
    test_ring();
    test_sync_rows();
    test_codec();
    test_validation();
    test_store();
    if (failures) {
        std::cout << failures << " of " << checks << " checks failed\n";
        return 1;
    }
    std::cout << "ok " << checks << " checks\n";
    return 0;
}
