#include "plugin/host_api.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

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
    else if (const std::string_view trace = traceIdOf(ctx->traceparent); !trace.empty())
        spdlog::log(toSpd(level), "plugin: {} domain={} id={} attempt={} trace_id={}", msg, ctx->domain, ctx->id,
                    ctx->attempt, trace);
    else
        spdlog::log(toSpd(level), "plugin: {} domain={} id={} attempt={}", msg, ctx->domain, ctx->id, ctx->attempt);
}

// The item's headers as the handler sees them, built once per item.
const std::vector<kanban_header>& headerView(const kanban_context* ctx) {
    std::call_once(ctx->headers_once, [ctx] {
        if (ctx->load_headers != nullptr) ctx->load_headers(ctx->headers_arg, ctx->header_store);
        // The handler sees its own attempt's trace context, not its parent's.
        if (!ctx->traceparent.empty()) setHeader(ctx->header_store, kTraceParentHeader, std::string(ctx->traceparent));
        ctx->header_view.reserve(ctx->header_store.size());
        for (const auto& [name, value] : ctx->header_store)
            ctx->header_view.push_back({name.data(), name.size(), value.data(), value.size()});
    });
    return ctx->header_view;
}

size_t headerCount(const kanban_context* ctx) { return ctx == nullptr ? 0 : headerView(ctx).size(); }

int headerAt(const kanban_context* ctx, size_t index, kanban_header* out) {
    if (ctx == nullptr || out == nullptr) return 1;
    const auto& view = headerView(ctx);
    if (index >= view.size()) return 1;
    *out = view[index];
    return 0;
}

int refuse(char* out, size_t out_len, const std::string& why) {
    if (out != nullptr && out_len > 0) {
        const size_t n = std::min(why.size(), out_len - 1);
        std::memcpy(out, why.data(), n);
        out[n] = '\0';
    }
    return 1;
}

std::string_view text(const char* p, size_t n) { return p != nullptr ? std::string_view(p, n) : std::string_view(); }

int publish(kanban_context* ctx, const kanban_follow_up* f, char* out, size_t out_len) {
    if (ctx == nullptr || ctx->follow_up_rules == nullptr)
        return refuse(out, out_len, "publish is only available inside handle()");
    if (f == nullptr || f->struct_size < offsetof(kanban_follow_up, key_len) + sizeof(size_t))
        return refuse(out, out_len, "the follow-up is missing or its struct_size is too small");
    FollowUp fu;
    fu.domain = text(f->domain, f->domain_len);
    if (fu.domain.empty()) return refuse(out, out_len, "a follow-up needs a domain");
    const auto& rules = *ctx->follow_up_rules;
    if (rules.known_domain && !rules.known_domain(fu.domain))
        return refuse(out, out_len, "unknown domain \"" + fu.domain + "\" (not in this host's configuration)");
    if (f->priority < -1 || f->priority > KANBAN_PRIORITY_LOW)
        return refuse(out, out_len, "priority " + std::to_string(f->priority) + " is not -1 (the parent's), 0, 1 or 2");
    if (f->priority >= 0) fu.priority = static_cast<kanban_priority>(f->priority);
    fu.payload = text(f->payload, f->payload_len);
    for (size_t i = 0; i < f->header_count && f->headers != nullptr; ++i) {
        const std::string_view name = text(f->headers[i].name, f->headers[i].name_len);
        const std::string_view value = text(f->headers[i].value, f->headers[i].value_len);
        if (std::string why = headerProblem(name, value); !why.empty()) return refuse(out, out_len, why);
        fu.headers.emplace_back(name, value);
    }
    fu.delay_ms = std::max<std::int64_t>(0, f->delay_ms);
    std::lock_guard lock(ctx->follow_ups_mu);
    if (ctx->follow_ups.size() >= kMaxFollowUps)
        return refuse(out, out_len, "more than " + std::to_string(kMaxFollowUps) + " follow-ups in one attempt");
    const std::string_view key = text(f->key, f->key_len);
    fu.id = std::string(ctx->id) + "/" + (key.empty() ? std::to_string(ctx->follow_ups.size() + 1) : std::string(key));
    if (fu.id.size() > kMaxChildIdBytes)
        return refuse(out, out_len, "the child id would be " + std::to_string(fu.id.size()) + " bytes long; the limit is " +
                                        std::to_string(kMaxChildIdBytes));
    for (unsigned char c : key)
        if (c < 0x20 || c == 0x7f) return refuse(out, out_len, "a follow-up's key must not contain control characters");
    if (out == nullptr || out_len <= fu.id.size()) return refuse(out, out_len, "the id buffer is too small");
    std::memcpy(out, fu.id.c_str(), fu.id.size() + 1);
    ctx->follow_ups.push_back(std::move(fu));
    return 0;
}

const kanban_host_api kApi = {sizeof(kanban_host_api), KANBAN_ABI_MAJOR, KANBAN_ABI_MINOR, &remainingMs,
                              &cancelled, &progress, &log, &headerCount, &headerAt, &publish};

}  // namespace

const kanban_host_api* hostApi() { return &kApi; }

std::string_view traceIdOf(std::string_view traceparent) {
    // version "-" trace-id (32) "-" parent-id (16) "-" flags
    if (traceparent.size() < 55 || traceparent[2] != '-') return {};
    return traceparent.substr(3, 32);
}

}  // namespace kanban::host::plugin
