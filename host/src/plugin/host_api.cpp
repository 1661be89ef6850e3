#include "plugin/host_api.hpp"

#include <spdlog/spdlog.h>

namespace kanban::host::plugin {
namespace {

int64_t remainingMs(const kanban_context* ctx) {
    if (ctx == nullptr) return 0;
    return std::chrono::duration_cast<std::chrono::milliseconds>(ctx->deadline - std::chrono::steady_clock::now())
        .count();
}

// Cancelled on request, and once the deadline passed: a handler that polls
// cancelled() stops on time without a watchdog thread.
int cancelled(const kanban_context* ctx) {
    if (ctx == nullptr) return 0;
    return ctx->cancelled.load(std::memory_order_relaxed) ||
           (ctx->external_cancel != nullptr && ctx->external_cancel->load(std::memory_order_relaxed) != 0) ||
           std::chrono::steady_clock::now() >= ctx->deadline;
}

void progress(kanban_context* ctx) {
    if (ctx != nullptr && ctx->on_progress != nullptr) ctx->on_progress(ctx->progress_arg);
}

spdlog::level::level_enum toSpd(kanban_log_level level) {
    switch (level) {
        case KANBAN_LOG_TRACE: return spdlog::level::trace;
        case KANBAN_LOG_DEBUG: return spdlog::level::debug;
        case KANBAN_LOG_INFO: return spdlog::level::info;
        case KANBAN_LOG_WARNING: return spdlog::level::warn;
        case KANBAN_LOG_ERROR: return spdlog::level::err;
    }
    return spdlog::level::info;
}

void log(const kanban_context* ctx, kanban_log_level level, const char* message, size_t message_len) {
    const std::string_view msg(message != nullptr ? message : "", message != nullptr ? message_len : 0);
    if (ctx == nullptr)
        spdlog::log(toSpd(level), "plugin: {}", msg);
    else
        spdlog::log(toSpd(level), "plugin: {} domain={} id={} attempt={}", msg, ctx->domain, ctx->id, ctx->attempt);
}

const kanban_host_api kApi = {sizeof(kanban_host_api), KANBAN_ABI_MAJOR, KANBAN_ABI_MINOR, &remainingMs,
                              &cancelled, &progress, &log};

}  // namespace

const kanban_host_api* hostApi() { return &kApi; }

}  // namespace kanban::host::plugin
