#include "broker/done_log.hpp"

#include "common/base64.hpp"

#include <cstdint>

namespace kanban::host::broker {
namespace {
constexpr std::string_view kLogToken = "log.";
constexpr std::string_view kAttemptsToken = "attempts.";
}  // namespace

void appendDoneId(std::string& body, std::string_view id) {
    const auto n = static_cast<std::uint16_t>(id.size());
    body.push_back(static_cast<char>(n & 0xff));
    body.push_back(static_cast<char>(n >> 8));
    body.append(id.substr(0, n));
}

bool forEachDoneId(std::string_view body, const std::function<void(std::string_view)>& each) {
    while (!body.empty()) {
        if (body.size() < 2) return false;
        const std::size_t n = static_cast<unsigned char>(body[0]) | (static_cast<std::size_t>(static_cast<unsigned char>(body[1])) << 8);
        if (body.size() - 2 < n) return false;
        each(body.substr(2, n));
        body.remove_prefix(2 + n);
    }
    return true;
}

DoneSubject classifyDoneSubject(std::string_view key) {
    DoneSubject s;
    if (key.substr(0, kLogToken.size()) == kLogToken) {
        s.kind = DoneSubject::Kind::log;
    } else if (key.substr(0, kAttemptsToken.size()) != kAttemptsToken && !key.empty() &&
               key.find('.') == std::string_view::npos) {
        if (auto id = fromBase64(key)) {
            s.kind = DoneSubject::Kind::key;
            s.id = std::move(*id);
        }
    }
    return s;
}

bool forEachRecordedId(std::string_view subject, std::string_view prefix, bool deleted, std::string_view body,
                       const std::function<void(std::string_view)>& each) {
    if (deleted || subject.substr(0, prefix.size()) != prefix) return true;
    const DoneSubject what = classifyDoneSubject(subject.substr(prefix.size()));
    if (what.kind == DoneSubject::Kind::log) return forEachDoneId(body, each);
    if (what.kind == DoneSubject::Kind::key) each(what.id);
    return true;
}

std::string doneLogSubject(std::string_view bucket, std::string_view writer, std::uint64_t n) {
    return "$KV." + std::string(bucket) + "." + std::string(kLogToken) + std::string(writer) + "." + std::to_string(n);
}

}  // namespace kanban::host::broker
