// Norn bridge client: FileExecutedStore, executed action ids in an append-only file.
//
// One line per executed action: "<action_id> <expires_tick>\n", written and fsynced before
// the action's result is queued. Loading skips a torn last line. Once most records have
// expired the file is rewritten (temporary file, fsync, rename, fsync of the directory).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "norn/client.hpp"

namespace norn {
namespace {
void write_all(int fd, const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
        ssize_t w = ::write(fd, s.data() + off, s.size() - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(std::string("norn: executed-id store: write failed: ") +
                                     std::strerror(errno));
        }
        off += static_cast<std::size_t>(w);
    }
}

std::string dir_of(const std::string& path) {
    auto slash = path.find_last_of('/');
    return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}

void sync_dir(const std::string& path) {
    int d = ::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY);
    if (d >= 0) {
        ::fsync(d);
        ::close(d);
    }
}
}  // namespace

FileExecutedStore::FileExecutedStore(std::string path, bool sync)
    : path_(std::move(path)), sync_(sync) {}

FileExecutedStore::~FileExecutedStore() {
    if (fd_ >= 0) ::close(fd_);
}

void FileExecutedStore::open_append() {
    if (fd_ >= 0) return;
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0)
        throw std::runtime_error("norn: cannot open executed-id store " + path_ + ": " +
                                 std::strerror(errno));
}

void FileExecutedStore::load(std::vector<std::int64_t>& ids) {
    records_.clear();
    ids_.clear();
    lines_ = 0;
    std::ifstream in(path_);
    std::string line;
    bool torn = false;
    while (std::getline(in, line)) {
        if (in.eof()) {  // no newline after it: a write cut by a crash
            torn = true;
            break;
        }
        std::istringstream ls(line);
        std::int64_t id, expires;
        if (!(ls >> id >> expires)) continue;
        ++lines_;
        if (ids_.insert(id).second) {
            records_.emplace_back(id, expires);
            ids.push_back(id);
        }
    }
    in.close();
    if (torn) rewrite();  // drop the torn line before appending after it
    open_append();
}

bool FileExecutedStore::contains(const Action& action) { return ids_.count(action.id) != 0; }

void FileExecutedStore::executed(const Action& action) {
    open_append();
    write_all(fd_, std::to_string(action.id) + " " + std::to_string(action.expires_tick) + "\n");
    if (sync_ && ::fdatasync(fd_) != 0)
        throw std::runtime_error(std::string("norn: executed-id store: fsync failed: ") +
                                 std::strerror(errno));
    ++lines_;
    if (ids_.insert(action.id).second) records_.emplace_back(action.id, action.expires_tick);
}

void FileExecutedStore::expire(std::int64_t tick) {
    std::size_t before = records_.size();
    for (auto it = records_.begin(); it != records_.end();) {
        if (it->second < tick) {
            ids_.erase(it->first);
            it = records_.erase(it);
        } else {
            ++it;
        }
    }
    if (records_.size() != before && lines_ > 1024 && lines_ > 2 * records_.size()) rewrite();
}

void FileExecutedStore::rewrite() {
    std::string tmp = path_ + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw std::runtime_error("norn: cannot write " + tmp + ": " + std::strerror(errno));
    std::string body;
    for (const auto& r : records_) body += std::to_string(r.first) + " " + std::to_string(r.second) + "\n";
    write_all(fd, body);
    ::fsync(fd);
    ::close(fd);
    if (::rename(tmp.c_str(), path_.c_str()) != 0)
        throw std::runtime_error("norn: cannot replace " + path_ + ": " + std::strerror(errno));
    sync_dir(path_);
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    lines_ = records_.size();
    open_append();
}

}  // namespace norn
