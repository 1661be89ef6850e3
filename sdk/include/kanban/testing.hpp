// kanban/testing.hpp: unit-test a handler without a host or a broker.
//
//   #include <kanban/testing.hpp>
//   #include <gtest/gtest.h>
//
//   TEST(Payment, RetriesWhenThePartnerThrottles) {
//       kanban::testing::TestHost<Payment> host(R"({"url": "http://127.0.0.1:1"})");
//       const auto out = host.handle({.payload = R"({"order": 42})", .attempt = 2});
//       EXPECT_EQ(out.status, kanban::Result::Status::retry);
//       EXPECT_EQ(out.retry_after, std::chrono::seconds(30));
//       EXPECT_EQ(out.progress_calls, 0);
//   }
//
// TestHost<T> is a fake host: it creates T and calls its handle() through
// the same C trampolines a real kanband uses (kanban::detail::Adapter, the
// code KANBAN_PLUGIN exports), so what a test sees is what the host would
// see: a constructor that throws is a failed create(), handle() that throws
// is Result::retry("exception: ..."), a reason longer than the host's
// buffer is truncated. It records each handle()'s outcome, progress()
// calls, log lines and follow-ups (ctx.publish(), with the ids the host
// would give them), shows the item's headers, and can ask the handler to
// stop (cancel()).
//
// Header-only, no dependency beyond <kanban/handler.hpp>; any test framework.
// One TestHost is one handler instance; handle() may be called from several
// threads at once, like the host does.
#ifndef KANBAN_TESTING_HPP
#define KANBAN_TESTING_HPP

#include <kanban/handler.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kanban::testing {

// The item handed to handle(); every field has a usable default.
struct Item {
    std::string id = "test-item-1";
    std::string domain = "test";
    Priority priority = Priority::normal;
    std::string payload;
    std::uint32_t attempt = 1;
    // Absent: 30 s from the call.
    std::optional<std::chrono::system_clock::time_point> deadline = std::nullopt;
    // What item.header() / item.headers show (ABI 1.1).
    std::vector<std::pair<std::string, std::string>> headers = {};
};

// A follow-up the handler asked for with ctx.publish(), as the host would
// publish it if the attempt returns ok.
struct FollowUp {
    std::string id;  // "<parent id>/<key>" or "<parent id>/<n>", as the host derives it
    std::string domain;
    std::string payload;
    std::optional<Priority> priority;  // absent: the parent's
    std::vector<std::pair<std::string, std::string>> headers;  // as the handler gave them
    std::chrono::milliseconds delay{0};
};

struct LogLine {
    LogLevel level = LogLevel::info;
    std::string message;
};

// What one handle() call did, as the host sees it.
struct Outcome {
    Result::Status status = Result::Status::fail;
    std::string reason;
    std::optional<std::chrono::milliseconds> retry_after;  // Result::retry(reason, delay)
    int progress_calls = 0;
    std::vector<LogLine> logs;  // the lines logged through the item's Context
    // Every ctx.publish() of the call. The host publishes them only when
    // the call returns ok; a test sees them either way.
    std::vector<FollowUp> follow_ups;
    bool ok() const { return status == Result::Status::ok; }
};

namespace detail {

// One handle() call's state; the kanban_context* the handler gets points here.
struct Call {
    std::string id;
    std::vector<std::pair<std::string, std::string>> headers;
    const std::vector<std::string>* domains = nullptr;  // empty: any domain
    std::vector<FollowUp> follow_ups;  // mu
    std::chrono::system_clock::time_point deadline;
    const std::atomic<bool>* cancelled = nullptr;
    std::atomic<int> progress{0};
    std::mutex mu;
    std::vector<LogLine> logs;  // mu
};

struct HostState {
    std::atomic<bool> cancelled{false};
    std::mutex mu;
    std::vector<LogLine> logs;  // logged without an item (constructor, background threads); mu
};

inline Call* call(const kanban_context* ctx) {
    return reinterpret_cast<Call*>(const_cast<kanban_context*>(ctx));
}

// The host's own logs (ctx == NULL) go to the HostState of the instance
// being created or run; a plugin keeps the api pointer, not a state, so the
// state travels in a thread-local set around create() and handle().
inline HostState*& currentHost() {
    thread_local HostState* state = nullptr;
    return state;
}

inline const kanban_host_api* fakeApi() {
    static const kanban_host_api api = {
        sizeof(kanban_host_api),
        KANBAN_ABI_MAJOR,
        KANBAN_ABI_MINOR,
        [](const kanban_context* ctx) -> std::int64_t {
            return std::chrono::duration_cast<std::chrono::milliseconds>(call(ctx)->deadline -
                                                                         std::chrono::system_clock::now())
                .count();
        },
        [](const kanban_context* ctx) -> int {
            const Call* c = call(ctx);
            return (c->cancelled != nullptr && c->cancelled->load()) ||
                           std::chrono::system_clock::now() >= c->deadline
                       ? 1
                       : 0;
        },
        [](kanban_context* ctx) { ++call(ctx)->progress; },
        [](const kanban_context* ctx, kanban_log_level level, const char* message, std::size_t len) {
            LogLine line{static_cast<LogLevel>(level), std::string(message != nullptr ? message : "", len)};
            if (ctx != nullptr) {
                Call* c = call(ctx);
                std::lock_guard lock(c->mu);
                c->logs.push_back(std::move(line));
            } else if (HostState* h = currentHost()) {
                std::lock_guard lock(h->mu);
                h->logs.push_back(std::move(line));
            }
        },
        [](const kanban_context* ctx) -> std::size_t { return call(ctx)->headers.size(); },
        [](const kanban_context* ctx, std::size_t i, kanban_header* out) -> int {
            const auto& hs = call(ctx)->headers;
            if (i >= hs.size() || out == nullptr) return 1;
            *out = {hs[i].first.data(), hs[i].first.size(), hs[i].second.data(), hs[i].second.size()};
            return 0;
        },
        [](kanban_context* ctx, const kanban_follow_up* f, char* out, std::size_t out_len) -> int {
            Call* c = call(ctx);
            auto refuse = [&](const std::string& why) {
                kanban::detail::copyText(out, out_len, why);
                return 1;
            };
            if (f == nullptr) return refuse("no follow-up given");
            FollowUp fu;
            fu.domain.assign(f->domain != nullptr ? f->domain : "", f->domain != nullptr ? f->domain_len : 0);
            if (fu.domain.empty()) return refuse("a follow-up needs a domain");
            if (c->domains != nullptr && !c->domains->empty()) {
                bool known = false;
                for (const auto& d : *c->domains) known = known || d == fu.domain;
                if (!known) return refuse("unknown domain \"" + fu.domain + "\"");
            }
            if (f->priority < -1 || f->priority > KANBAN_PRIORITY_LOW)
                return refuse("priority " + std::to_string(f->priority) + " is not one of -1, 0, 1, 2");
            fu.payload.assign(f->payload != nullptr ? f->payload : "", f->payload != nullptr ? f->payload_len : 0);
            if (f->priority >= 0) fu.priority = static_cast<Priority>(f->priority);
            for (std::size_t i = 0; i < f->header_count; ++i) {
                std::string name(f->headers[i].name, f->headers[i].name_len);
                // As the host: Nats-* and Kanban-* (but Kanban-Parent) are its own.
                const auto prefixed = [&](std::string_view p) {
                    return name.size() >= p.size() && kanban::detail::sameName(std::string_view(name).substr(0, p.size()), p);
                };
                if (prefixed("Nats-") || (prefixed("Kanban-") && !kanban::detail::sameName(name, "Kanban-Parent")))
                    return refuse("header \"" + name + "\" is reserved");
                fu.headers.emplace_back(std::move(name), std::string(f->headers[i].value, f->headers[i].value_len));
            }
            fu.delay = std::chrono::milliseconds(f->delay_ms > 0 ? f->delay_ms : 0);
            std::lock_guard lock(c->mu);
            const std::string key = f->key_len > 0 ? std::string(f->key, f->key_len)
                                                   : std::to_string(c->follow_ups.size() + 1);
            fu.id = c->id + "/" + key;
            if (fu.id.size() > 256) return refuse("the child id \"" + fu.id.substr(0, 40) + "...\" is longer than 256 bytes");
            if (c->follow_ups.size() >= 1000) return refuse("more than 1000 follow-ups in one attempt");
            kanban::detail::copyText(out, out_len, fu.id);
            c->follow_ups.push_back(std::move(fu));
            return 0;
        }};
    return &api;
}

}  // namespace detail

template <class T>
class TestHost {
public:
    // Creates the handler with these settings ([domain.settings] as JSON).
    // Throws std::runtime_error with the message the host would report when
    // the handler's constructor fails.
    explicit TestHost(std::string settings_json = "{}") {
        char error[512] = {};
        detail::currentHost() = &state_;
        instance_ = kanban::detail::Adapter<T>::create(settings_json.c_str(), detail::fakeApi(), error, sizeof error);
        detail::currentHost() = nullptr;
        if (instance_ == nullptr) throw std::runtime_error(std::string("create failed: ") + error);
    }
    ~TestHost() { kanban::detail::Adapter<T>::destroy(instance_); }
    TestHost(const TestHost&) = delete;
    TestHost& operator=(const TestHost&) = delete;

    // Calls handle() once with `item` and returns what it did.
    Outcome handle(const Item& item = {}) {
        detail::Call call;
        call.id = item.id;
        call.headers = item.headers;
        call.domains = &domains_;
        call.deadline = item.deadline.value_or(std::chrono::system_clock::now() + std::chrono::seconds(30));
        call.cancelled = &state_.cancelled;
        kanban_work_item in{};
        in.struct_size = sizeof in;
        in.id = item.id.c_str();
        in.id_len = item.id.size();
        in.domain = item.domain.c_str();
        in.domain_len = item.domain.size();
        in.priority = static_cast<kanban_priority>(item.priority);
        in.payload = item.payload.empty() ? nullptr : item.payload.data();
        in.payload_len = item.payload.size();
        in.attempt = item.attempt;
        in.deadline_unix_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(call.deadline.time_since_epoch()).count();
        // As the host does: FAIL with an empty reason unless the handler says otherwise.
        char reason[kReasonCapacity] = {};
        kanban_result result{};
        result.struct_size = sizeof result;
        result.status = KANBAN_STATUS_FAIL;
        result.reason = reason;
        result.reason_capacity = sizeof reason;
        result.retry_after_ms = -1;
        detail::currentHost() = &state_;
        kanban::detail::Adapter<T>::handle(instance_, &in, reinterpret_cast<kanban_context*>(&call), &result);
        detail::currentHost() = nullptr;
        Outcome out;
        out.status = static_cast<Result::Status>(result.status);
        out.reason = reason;
        if (result.retry_after_ms >= 0) out.retry_after = std::chrono::milliseconds(result.retry_after_ms);
        out.progress_calls = call.progress.load();
        std::lock_guard lock(call.mu);
        out.logs = std::move(call.logs);
        out.follow_ups = std::move(call.follow_ups);
        return out;
    }

    // The domains ctx.publish() may name, as the host's config would have
    // them; a follow-up to another is refused (PublishError). Empty (the
    // default): any domain.
    void setDomains(std::vector<std::string> domains) { domains_ = std::move(domains); }

    // From now on Context::cancelled() is true (the host's timeout or shutdown).
    void cancel(bool on = true) { state_.cancelled = on; }

    // Lines logged without an item (through kanban::Host, e.g. in the constructor).
    std::vector<LogLine> hostLogs() {
        std::lock_guard lock(state_.mu);
        return state_.logs;
    }

    // The size of the host's reason buffer (longer reasons are truncated).
    static constexpr std::size_t kReasonCapacity = 256;

private:
    detail::HostState state_;
    std::vector<std::string> domains_;
    void* instance_ = nullptr;
};

}  // namespace kanban::testing

#endif  // KANBAN_TESTING_HPP
