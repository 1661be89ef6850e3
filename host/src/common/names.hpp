// Name rules shared by config validation, the CLI and the brokers.
#pragma once

#include <string_view>

namespace kanban::host {

// Domains match [a-z0-9_-]+ (docs/design.md §3): safe as a NATS subject token, a
// durable-name part and an AMQP routing-key word.
constexpr bool isValidDomainName(std::string_view s) {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
    return true;
}

// Stream and schedule names: [A-Za-z0-9_-]+ (no '.', '*', '>' or spaces).
constexpr bool isValidIdentifier(std::string_view s) {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    return true;
}

}  // namespace kanban::host
