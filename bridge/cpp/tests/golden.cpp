// Golden vectors: decode each .msgpack file named on the command line and print one JSON line
// per file: {"file": ..., "type": ..., "decoded": <the message as index.json renders it>,
// "reencoded": "<hex of its canonical encoding>"} (or "error" when it does not decode); a
// join sync also gets "rows": each row as the client hands it to Config::on_sync, its sync
// kind's fields by name. tests/test_cpp_client.py compares them with bridge/vectors/index.json
// and with the Python client's decode_sync.
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "norn/client.hpp"
#include "norn/wire.hpp"

namespace {
std::string quoted(const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += c;
    }
    return o + "\"";
}

/// The rows of a sync part, as JSON: [{"kind": ..., field: value, ...}, ...].
std::string rows_json(const norn::Sync& part) {
    norn::JoinSync js;
    norn::append_sync_rows(part, js);
    std::string o = "[";
    for (const norn::Action& a : js.rows) {
        if (o.size() > 1) o += ',';
        o += "{\"kind\":" + quoted(a.kind_name);
        const norn::Kind* k = norn::find_sync_kind(a.kind_name);
        for (int f = 0; f < k->nfields; ++f) {
            std::string name = k->fields[f].name;
            std::string v;
            if (name == "npc_id") v = std::to_string(a.npc_id);
            else if (name == "map") v = quoted(a.map);
            else if (name == "x") v = std::to_string(a.x);
            else if (name == "y") v = std::to_string(a.y);
            else if (name == "sprite") v = std::to_string(a.sprite);
            else if (name == "name") v = quoted(a.name);
            else if (name == "market_id") v = std::to_string(a.market_id);
            else if (name == "item_id") v = std::to_string(a.item_id);
            else if (name == "price_zeny") v = std::to_string(a.price_zeny);
            else if (name == "stock") v = std::to_string(a.stock);
            else if (name == "weather") v = std::to_string(a.weather);
            else if (name == "hazard_type") v = std::to_string(a.hazard_type);
            else if (name == "intensity") v = std::to_string(a.intensity);
            else if (name == "on") v = a.on ? "1" : "0";
            else v = "null";
            o += "," + quoted(name) + ":" + v;
        }
        o += "}";
    }
    return o + "]";
}
}  // namespace

int main(int argc, char** argv) {
    int failures = 0;
    for (int i = 1; i < argc; ++i) {
        std::ifstream in(argv[i], std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::string path = argv[i];
        std::string name = path.substr(path.find_last_of('/') + 1);
        try {
            norn::Message m = norn::decode(bytes.data(), bytes.size());
            std::cout << "{\"file\":\"" << name << "\",\"type\":\"" << norn::message_type(m)
                      << "\",\"decoded\":" << norn::to_json(m) << ",\"reencoded\":\""
                      << norn::hex(norn::encode(m)) << "\"";
            if (const auto* sy = std::get_if<norn::Sync>(&m)) std::cout << ",\"rows\":" << rows_json(*sy);
            std::cout << "}\n";
        } catch (const std::exception& e) {
            ++failures;
            std::cout << "{\"file\":\"" << name << "\",\"error\":\"decode failed\"}\n";
            std::cerr << name << ": " << e.what() << "\n";
        }
    }
    return failures ? 1 : 0;
}
