#include "log/json_formatter.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <ctime>

namespace kanban::host::log {
namespace {

constexpr std::array<std::string_view, 5> kLifted{"domain", "id", "attempt", "job", "trace_id"};

std::string isoTime(spdlog::log_clock::time_point t) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    const std::time_t s = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    ::gmtime_r(&s, &tm);
    char buf[40];
    const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return std::string(buf, n) + "." + std::to_string(1000 + ms % 1000).substr(1) + "Z";
}

// Lifts key=value words of the message into `out` (the first of each key).
void lift(std::string_view text, nlohmann::json& out) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t end = std::min(text.find(' ', pos), text.size());
        const std::string_view word = text.substr(pos, end - pos);
        pos = end + 1;
        const std::size_t eq = word.find('=');
        if (eq == std::string_view::npos || eq == 0) continue;
        const std::string_view key = word.substr(0, eq);
        std::string_view value = word.substr(eq + 1);
        while (!value.empty() && (value.back() == ':' || value.back() == ',' || value.back() == ';')) value.remove_suffix(1);
        if (value.empty()) continue;
        for (std::string_view k : kLifted) {
            if (k != key || out.contains(k)) continue;
            long long n = 0;
            const auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (k == "attempt" && ec == std::errc{} && p == value.data() + value.size())
                out[std::string(k)] = n;
            else
                out[std::string(k)] = std::string(value);
        }
    }
}

}  // namespace

std::string_view levelName(spdlog::level::level_enum level) {
    switch (level) {
        case spdlog::level::trace: return "trace";
        case spdlog::level::debug: return "debug";
        case spdlog::level::info: return "info";
        case spdlog::level::warn: return "warning";
        case spdlog::level::err: return "error";
        case spdlog::level::critical: return "critical";
        default: return "off";
    }
}

spdlog::level::level_enum levelFrom(std::string_view name) {
    return spdlog::level::from_str(std::string(name == "warning" ? "warn" : name));
}

void JsonFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
    nlohmann::json line = nlohmann::json::object();
    line["time"] = isoTime(msg.time);
    line["level"] = levelName(msg.level);
    const std::string_view text(msg.payload.data(), msg.payload.size());
    line["message"] = std::string(text);
    for (const auto& [k, v] : fixed_) line[k] = v;
    lift(text, line);
    const std::string out = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(out.data(), out.data() + out.size());
    dest.push_back('\n');
}

void setup(const std::string& name, const std::string& format, const std::string& text_pattern,
           std::map<std::string, std::string> fixed) {
    auto logger = spdlog::stderr_color_mt(name);
    if (format == "json")
        logger->set_formatter(std::make_unique<JsonFormatter>(std::move(fixed)));
    else
        logger->set_pattern(text_pattern);
    spdlog::set_default_logger(logger);
}

}  // namespace kanban::host::log
