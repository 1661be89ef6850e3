// Work priorities and their wire names (docs/design.md §3).
#pragma once

#include <kanban/plugin.h>

#include <array>
#include <optional>
#include <string_view>

namespace kanban::host {

enum class Priority { high = KANBAN_PRIORITY_HIGH, normal = KANBAN_PRIORITY_NORMAL, low = KANBAN_PRIORITY_LOW };

// Highest first: the order in which workers pull.
inline constexpr std::array<Priority, 3> kPriorities{Priority::high, Priority::normal, Priority::low};

constexpr std::string_view priorityName(Priority p) {
    switch (p) {
        case Priority::high: return "high";
        case Priority::normal: return "normal";
        case Priority::low: return "low";
    }
    return "normal";
}

constexpr std::optional<Priority> parsePriority(std::string_view s) {
    for (Priority p : kPriorities)
        if (priorityName(p) == s) return p;
    return std::nullopt;
}

}  // namespace kanban::host
