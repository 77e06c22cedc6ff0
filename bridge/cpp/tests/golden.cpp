// Golden vectors: decode each .msgpack file named on the command line and print one JSON line
// per file: {"file": ..., "type": ..., "decoded": <the message as index.json renders it>,
// "reencoded": "<hex of its canonical encoding>"} (or "error" when it does not decode).
// tests/test_cpp_client.py compares both with bridge/vectors/index.json.
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "norn/wire.hpp"

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
                      << norn::hex(norn::encode(m)) << "\"}\n";
        } catch (const std::exception& e) {
            ++failures;
            std::cout << "{\"file\":\"" << name << "\",\"error\":\"decode failed\"}\n";
            std::cerr << name << ": " << e.what() << "\n";
        }
    }
    return failures ? 1 : 0;
}
