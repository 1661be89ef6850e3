#include "broker/attempt_record.hpp"

#include <charconv>

#include "common/base64.hpp"

namespace kanban::host::broker {

std::string encodeAttemptRecord(const AttemptRecord& r) {
    std::string out = std::to_string(r.calls);
    out += r.dead_letter ? "\t1\t" : "\t0\t";
    out += r.label;
    out += '\t';
    out += r.reason;
    return out;
}

std::optional<AttemptRecord> decodeAttemptRecord(std::string_view text) {
    AttemptRecord r;
    const auto tab1 = text.find('\t');
    if (tab1 == std::string_view::npos) return std::nullopt;
    auto [p, ec] = std::from_chars(text.data(), text.data() + tab1, r.calls);
    if (ec != std::errc() || p != text.data() + tab1) return std::nullopt;
    text.remove_prefix(tab1 + 1);
    if (text.size() < 2 || (text[0] != '0' && text[0] != '1') || text[1] != '\t') return std::nullopt;
    r.dead_letter = text[0] == '1';
    text.remove_prefix(2);
    const auto tab3 = text.find('\t');
    if (tab3 == std::string_view::npos) return std::nullopt;
    r.label = std::string(text.substr(0, tab3));
    r.reason = std::string(text.substr(tab3 + 1));
    return r;
}

std::string attemptKey(std::string_view id) { return "attempts." + base64(id, /*url_safe=*/true); }

}  // namespace kanban::host::broker
