#include "runner/runner_main.hpp"

#include "common/clock.hpp"
#include "log/json_formatter.hpp"
#include "plugin/host_api.hpp"
#include "plugin/plugin.hpp"
#include "runner/channel.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace kanban::host::runner {
namespace {

std::atomic<bool> g_quitting{false};

// kanband's end of the socket closed: kanband is gone (a SIGKILL, a crash)
// and the runner must not outlive it, even inside a handler that never
// returns. After a Quit the plugin's destroy() gets 10 s.
void lifeline() {
    pollfd fd{kSocketFd, POLLRDHUP, 0};
    for (;;) {
        if (::poll(&fd, 1, -1) > 0 && (fd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) break;
    }
    if (g_quitting.load()) std::this_thread::sleep_for(std::chrono::seconds(10));
    std::_Exit(0);
}

std::int64_t residentKiB(int statm_fd) {
    char buf[128];
    const ssize_t n = ::pread(statm_fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    buf[n] = '\0';
    long long size = 0, resident = 0;
    if (std::sscanf(buf, "%lld %lld", &size, &resident) != 2) return 0;
    return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

void setupLogging(const std::string& domain, const std::string& level) {
    const char* format = std::getenv("KANBAN_LOG_FORMAT");  // set by kanband
    log::setup("runner", format != nullptr ? format : "text",
               "%Y-%m-%dT%H:%M:%S.%e%z %l runner pid=%P domain=" + domain + ": %v",
               {{"domain", domain}, {"runner_pid", std::to_string(::getpid())}});
    spdlog::set_level(log::levelFrom(level));
}

class Runner {
public:
    Runner(Shared& shared, std::string domain, std::shared_ptr<const plugin::Instance> instance)
        : shared_(shared), domain_(std::move(domain)), instance_(std::move(instance)) {
        statm_ = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    }
    ~Runner() {
        if (statm_ >= 0) ::close(statm_);
    }

    void batch(const BatchHeader& h, const std::vector<WireItem>& items) {
        bool retiring = false;
        for (std::size_t k = 0; k < items.size(); ++k) {
            ItemResult& r = shared_.results[k];
            ItemState state = ItemState::ran;
            if (retiring || shared_.stop.load() != 0)
                state = ItemState::skipped;
            else if (items[k].deadline_unix_ms <= nowUnixMs())
                state = ItemState::expired;
            else
                run(h, items[k], k, r);
            r.state.store(static_cast<std::uint32_t>(state), std::memory_order_release);
            shared_.completed.store(static_cast<std::uint32_t>(k + 1), std::memory_order_release);
            if (state != ItemState::ran) continue;
            ++handled_;
            if (h.recycle_after_items > 0 && handled_ >= h.recycle_after_items) {
                shared_.retire.store(static_cast<std::uint32_t>(Retire::recycle));
                retiring = true;
            }
            if (h.memory_max_kib > 0) {
                const std::int64_t rss = residentKiB(statm_);
                shared_.rss_kib.store(rss);
                if (rss > h.memory_max_kib) {
                    shared_.retire.store(static_cast<std::uint32_t>(Retire::memory));
                    retiring = true;
                }
            }
        }
    }

private:
    void run(const BatchHeader& h, const WireItem& w, std::size_t k, ItemResult& r) {
        kanban_context ctx;
        ctx.domain = domain_;
        ctx.id = w.id;
        ctx.attempt = w.attempt;
        const std::int64_t now_ms = nowUnixMs();
        const auto start = std::chrono::steady_clock::now();
        ctx.deadline = start + std::chrono::milliseconds(std::min(w.deadline_unix_ms - now_ms, h.timeout_ms));
        ctx.external_cancel = &shared_.cancel;
        ctx.on_progress = [](void* arg) { static_cast<Shared*>(arg)->progress.fetch_add(1); };
        ctx.progress_arg = &shared_;
        ctx.load_headers = [](const void* arg, Headers& out) {
            const auto& in = *static_cast<const Headers*>(arg);
            out.insert(out.end(), in.begin(), in.end());
        };
        ctx.headers_arg = &w.headers;
        if (const std::string* tp = findHeader(w.headers, kTraceParentHeader)) ctx.traceparent = *tp;
        // Domains are checked by kanband when it publishes them.
        ctx.follow_up_rules = &rules_;

        kanban_work_item item{};
        item.struct_size = sizeof item;
        item.id = w.id.data();  // NUL-terminated in the frame
        item.id_len = w.id.size();
        item.domain = domain_.c_str();
        item.domain_len = domain_.size();
        item.priority = static_cast<kanban_priority>(w.priority);
        item.payload = w.payload.empty() ? nullptr : w.payload.data();
        item.payload_len = w.payload.size();
        item.attempt = w.attempt;
        item.deadline_unix_ms = w.deadline_unix_ms;

        r.reason[0] = '\0';
        kanban_result result{sizeof(kanban_result), KANBAN_STATUS_FAIL, r.reason, kReasonBytes, -1};
        r.started_ns = start.time_since_epoch().count();
        r.deadline_ns = ctx.deadline.time_since_epoch().count();
        shared_.current_started_ns.store(r.started_ns);
        shared_.current_deadline_ns.store(r.deadline_ns);
        shared_.current.store(static_cast<std::uint32_t>(k + 1), std::memory_order_release);
        instance_->handle(item, &ctx, &result);
        r.ended_ns = std::chrono::steady_clock::now().time_since_epoch().count();
        r.reason[kReasonBytes - 1] = '\0';
        r.status = static_cast<std::int32_t>(result.status);
        r.retry_after_ms = result.retry_after_ms;
        r.follow_ups = 0;
        // Follow-ups matter only for an ok; they reach kanband before the
        // result does (the socket is read before the result is settled).
        std::lock_guard lock(ctx.follow_ups_mu);
        if (result.status == KANBAN_STATUS_OK && !ctx.follow_ups.empty()) {
            if (writeAll(kSocketFd, frame(FrameType::follow_ups, encodeFollowUps(static_cast<std::uint32_t>(k), ctx.follow_ups)))) {
                r.follow_ups = static_cast<std::uint32_t>(ctx.follow_ups.size());
            } else {
                r.status = KANBAN_STATUS_RETRY;  // never an ok without its follow-ups
                std::snprintf(r.reason, kReasonBytes, "%s", "follow-ups could not be handed to kanband");
            }
        }
        shared_.current.store(0, std::memory_order_release);
    }

    Shared& shared_;
    std::string domain_;
    std::shared_ptr<const plugin::Instance> instance_;
    int statm_ = -1;
    std::int64_t handled_ = 0;
    const plugin::FollowUpRules rules_{};
};

int fail(const std::string& message) {
    (void)writeAll(kSocketFd, frame(FrameType::failed, encodeStrings({message})));
    return 1;
}

}  // namespace

int runnerMain() {
    std::thread(lifeline).detach();
    void* map = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED, kSharedFd, 0);
    if (map == MAP_FAILED) return fail("the runner cannot map its shared memory");
    Shared& shared = *static_cast<Shared*>(map);

    FrameReader reader(kSocketFd);
    auto hello = reader.next();
    if (!hello || hello->first != FrameType::hello) return 1;
    auto parts = decodeStrings(hello->second, 4);
    if (!parts) return fail(parts.message());
    const std::string& domain = (*parts)[0];
    setupLogging(domain, (*parts)[3]);

    std::shared_ptr<const plugin::Instance> instance;
    {
        auto lib = plugin::Library::load((*parts)[1]);
        if (!lib) return fail(lib.message());
        auto created = plugin::Instance::create(std::move(*lib), (*parts)[2]);
        if (!created) return fail(created.message());
        instance = std::move(*created);
    }
    const auto& lib = instance->library();
    if (!writeAll(kSocketFd, frame(FrameType::ready, encodeStrings({lib.name(), lib.version()})))) return 1;

    {
    Runner runner(shared, domain, instance);
    for (;;) {
        auto f = reader.next();
        if (!f) break;  // kanband is gone
        if (f->first == FrameType::quit) {
            g_quitting = true;
            break;
        }
        if (f->first != FrameType::batch) continue;
        BatchHeader h;
        auto items = decodeBatch(f->second, h);
        if (!items) {
            spdlog::error("{}", items.message());
            return 1;
        }
        runner.batch(h, *items);
        if (!writeAll(kSocketFd, frame(FrameType::batch_done, {}))) break;
    }
    }
    instance.reset();  // destroy()
    spdlog::default_logger()->flush();
    return 0;
}

}  // namespace kanban::host::runner
