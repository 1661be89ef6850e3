// [log] format = "json": one JSON object per line, for log shippers.
//   {"time":"2026-12-05T18:30:00.123Z","level":"info","message":"...",
//    "domain":"payment","id":"order-7","attempt":2}
// Our messages name what they are about as key=value words ("domain=payment
// id=order-7 attempt=2"); the formatter lifts `domain`, `id`, `attempt`,
// `job` and `trace_id` into fields where a message has them (the message
// keeps its text). Bytes that are not UTF-8 are replaced, never dropped.
#pragma once

#include <spdlog/formatter.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace kanban::host::log {

class JsonFormatter final : public spdlog::formatter {
public:
    // `fixed`: fields every line carries (a runner's domain and pid).
    explicit JsonFormatter(std::map<std::string, std::string> fixed = {}) : fixed_(std::move(fixed)) {}
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
    std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(fixed_); }

private:
    std::map<std::string, std::string> fixed_;
};

// The level names of the config ("warning", not spdlog's "warn").
std::string_view levelName(spdlog::level::level_enum level);
// "trace" … "error" (and "warn") to spdlog's level; nullopt-like `off` for
// anything else is the caller's to refuse (the config check does).
spdlog::level::level_enum levelFrom(std::string_view name);

// The default logger (stderr) in `format` ("text" or "json").
void setup(const std::string& name, const std::string& format, const std::string& text_pattern,
           std::map<std::string, std::string> fixed = {});

}  // namespace kanban::host::log
