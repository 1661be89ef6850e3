#include "runner/channel.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kanban::host::runner {
namespace {

constexpr std::size_t kFrameHeader = 8;  // after the 8-byte length: type, reserved
// A frame larger than this is corrupt (a batch is at most 1000 items of at
// most the NATS server's max_payload, 64 MiB).
constexpr std::uint64_t kMaxFrame = 1ULL << 36;

template <typename T>
void put(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

void putString(std::string& out, std::string_view s) {
    put<std::uint64_t>(out, s.size());
    out.append(s);
}

class Cursor {
public:
    explicit Cursor(std::string_view s) : s_(s) {}
    template <typename T>
    bool get(T& v) {
        if (s_.size() < sizeof v) return false;
        std::memcpy(&v, s_.data(), sizeof v);
        s_.remove_prefix(sizeof v);
        return true;
    }
    bool getString(std::string& out) {
        std::string_view v;
        if (!getView(v)) return false;
        out.assign(v);
        return true;
    }
    bool getView(std::string_view& out, std::size_t trailer = 0) {
        std::uint64_t n = 0;
        if (!get(n) || s_.size() < n + trailer) return false;
        out = s_.substr(0, n);
        s_.remove_prefix(n + trailer);
        return true;
    }

private:
    std::string_view s_;
};

void putHeaders(std::string& out, const Headers& headers) {
    put<std::uint64_t>(out, headers.size());
    for (const auto& [name, value] : headers) {
        putString(out, name);
        putString(out, value);
    }
}

bool getHeaders(Cursor& c, Headers& out) {
    std::uint64_t n = 0;
    if (!c.get(n) || n > (1u << 16)) return false;
    out.resize(n);
    for (auto& [name, value] : out)
        if (!c.getString(name) || !c.getString(value)) return false;
    return true;
}

}  // namespace

std::string frame(FrameType type, std::string_view body) {
    std::string out;
    out.reserve(8 + kFrameHeader + body.size());
    put<std::uint64_t>(out, body.size());
    put<std::uint32_t>(out, static_cast<std::uint32_t>(type));
    put<std::uint32_t>(out, 0);  // reserved
    out.append(body);
    return out;
}

std::string encodeStrings(const std::vector<std::string_view>& parts) {
    std::string out;
    for (auto p : parts) putString(out, p);
    return out;
}

Result<std::vector<std::string>> decodeStrings(std::string_view body, std::size_t count) {
    Cursor c(body);
    std::vector<std::string> out(count);
    for (auto& s : out)
        if (!c.getString(s)) return Error{"malformed runner message"};
    return out;
}

std::string encodeBatch(const BatchHeader& header, const std::vector<WireItem>& items) {
    std::size_t bytes = 8 + 16 + 32;
    for (const WireItem& i : items) bytes += 40 + i.id.size() + i.payload.size();
    std::string out;
    out.reserve(bytes);
    put(out, header.timeout_ms);
    put(out, header.memory_max_kib);
    put(out, header.recycle_after_items);
    put<std::uint64_t>(out, items.size());
    for (const WireItem& i : items) {
        putString(out, i.id);
        out.push_back('\0');
        putString(out, i.payload);
        put(out, i.priority);
        put(out, i.attempt);
        put(out, i.deadline_unix_ms);
        putHeaders(out, i.headers);
    }
    return out;
}

Result<std::vector<WireItem>> decodeBatch(std::string_view body, BatchHeader& header) {
    Cursor c(body);
    std::uint64_t n = 0;
    if (!c.get(header.timeout_ms) || !c.get(header.memory_max_kib) || !c.get(header.recycle_after_items) ||
        !c.get(n) || n > kMaxBatch)
        return Error{"malformed batch"};
    std::vector<WireItem> items(n);
    for (auto& i : items)
        if (!c.getView(i.id, 1) || !c.getView(i.payload) || !c.get(i.priority) || !c.get(i.attempt) ||
            !c.get(i.deadline_unix_ms) || !getHeaders(c, i.headers))
            return Error{"malformed batch item"};
    return items;
}

std::string encodeFollowUps(std::uint32_t index, const std::vector<plugin::FollowUp>& follow_ups) {
    std::string out;
    put(out, index);
    put<std::uint64_t>(out, follow_ups.size());
    for (const auto& f : follow_ups) {
        putString(out, f.id);
        putString(out, f.domain);
        putString(out, f.payload);
        put<std::int32_t>(out, f.priority ? static_cast<std::int32_t>(*f.priority) : -1);
        put(out, f.delay_ms);
        putHeaders(out, f.headers);
    }
    return out;
}

Result<std::pair<std::uint32_t, std::vector<plugin::FollowUp>>> decodeFollowUps(std::string_view body) {
    Cursor c(body);
    std::uint32_t index = 0;
    std::uint64_t n = 0;
    if (!c.get(index) || !c.get(n) || n > plugin::kMaxFollowUps) return Error{"malformed follow-ups"};
    std::vector<plugin::FollowUp> out(n);
    for (auto& f : out) {
        std::int32_t priority = -1;
        if (!c.getString(f.id) || !c.getString(f.domain) || !c.getString(f.payload) || !c.get(priority) ||
            !c.get(f.delay_ms) || !getHeaders(c, f.headers) || priority < -1 || priority > KANBAN_PRIORITY_LOW)
            return Error{"malformed follow-up"};
        if (priority >= 0) f.priority = static_cast<kanban_priority>(priority);
    }
    return std::make_pair(index, std::move(out));
}

bool FrameReader::complete() const {
    if (buf_.size() < 8 + kFrameHeader) return false;
    std::uint64_t n = 0;
    std::memcpy(&n, buf_.data(), sizeof n);
    return buf_.size() >= 8 + kFrameHeader + n;
}

std::pair<FrameType, std::string> FrameReader::take() {
    std::uint64_t n = 0;
    std::uint32_t type = 0;
    std::memcpy(&n, buf_.data(), sizeof n);
    std::memcpy(&type, buf_.data() + 8, sizeof type);
    std::string body = buf_.substr(8 + kFrameHeader, n);
    buf_.erase(0, 8 + kFrameHeader + n);
    return {static_cast<FrameType>(type), std::move(body)};
}

Result<bool> FrameReader::poll() {
    if (complete()) return true;
    char chunk[65536];
    for (;;) {
        const ssize_t r = ::read(fd_, chunk, sizeof chunk);
        if (r > 0) {
            buf_.append(chunk, static_cast<std::size_t>(r));
            if (buf_.size() >= 8) {
                std::uint64_t n = 0;
                std::memcpy(&n, buf_.data(), sizeof n);
                if (n > kMaxFrame) return Error{"corrupt frame"};
            }
            if (complete()) return true;
            continue;
        }
        if (r == 0) return Error{"closed"};
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
        return Error{std::string("read: ") + std::strerror(errno)};
    }
}

Result<std::pair<FrameType, std::string>> FrameReader::next() {
    for (;;) {
        auto r = poll();
        if (!r) return r.error();
        if (*r) return take();
    }
}

Status writeAll(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t w = ::write(fd, bytes.data(), bytes.size());
        if (w < 0) {
            if (errno == EINTR) continue;
            return Error{std::string("write: ") + std::strerror(errno)};
        }
        bytes.remove_prefix(static_cast<std::size_t>(w));
    }
    return Ok{};
}

}  // namespace kanban::host::runner
