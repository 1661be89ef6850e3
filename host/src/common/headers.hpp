// Item headers: what a publisher sets (kanbanctl publish --header, a
// handler's follow-up, any client), carried with the item through retries,
// delays, dead-lettering and replay, and shown to its handler.
//
// The host's own bookkeeping headers are not part of them: names starting
// with `Nats-` (the NATS server's and client's) and with `Kanban-` (this
// host's: Kanban-Id, Kanban-Deadline, Kanban-Attempts, ...), except
// `Kanban-Parent`, which a follow-up carries for its handler to read.
// Names compare without regard to ASCII case (RabbitMQ's are lower case).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kanban::host {

using Headers = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::string_view kParentHeader = "Kanban-Parent";
inline constexpr std::string_view kTraceParentHeader = "traceparent";

inline bool sameHeaderName(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

inline bool hasHeaderPrefix(std::string_view name, std::string_view prefix) {
    return name.size() >= prefix.size() && sameHeaderName(name.substr(0, prefix.size()), prefix);
}

// One of the host's bookkeeping headers, never shown to a handler nor
// settable by a publisher.
inline bool reservedHeader(std::string_view name) {
    if (hasHeaderPrefix(name, "Nats-")) return true;
    return hasHeaderPrefix(name, "Kanban-") && !sameHeaderName(name, kParentHeader);
}

// The first value of `name`, or nullptr.
inline const std::string* findHeader(const Headers& headers, std::string_view name) {
    for (const auto& [k, v] : headers)
        if (sameHeaderName(k, name)) return &v;
    return nullptr;
}

// Sets `name` to `value`: replaces every value it had with this one.
inline void setHeader(Headers& headers, std::string_view name, std::string value) {
    std::erase_if(headers, [&](const auto& h) { return sameHeaderName(h.first, name); });
    headers.emplace_back(std::string(name), std::move(value));
}

// Why a header a publisher gives is refused ("" when it is fine): a name
// that is empty, not an HTTP token, or one of the host's own; a value with
// a line break or another control character.
std::string headerProblem(std::string_view name, std::string_view value);

}  // namespace kanban::host
