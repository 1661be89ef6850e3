#include "broker/failover.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <thread>
#include <utility>

namespace kanban::host::broker {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

// Done records made while NATS was down, for the bucket once it is back.
// Shared by every worker's store (a worker may reopen its store meanwhile).
class PendingRecords {
public:
    void add(std::string_view id) {
        std::lock_guard lock(mu_);
        if (ids_.size() < kMax) ids_.emplace_back(id);
    }
    std::vector<std::string> take() {
        std::lock_guard lock(mu_);
        return std::exchange(ids_, {});
    }

private:
    static constexpr std::size_t kMax = 100'000;  // beyond that the local record alone keeps them
    std::mutex mu_;
    std::vector<std::string> ids_;
};

namespace {

// One side of a worker's consumer: opened on demand, dropped on error and
// reopened after a growing pause, so a broker that is down costs nothing.
// `consumer` changes on the worker's thread under `mu`, which interrupt()
// holds too (it comes from another thread).
struct Side {
    Side(const char* n, std::mutex& m) : name(n), mu(m) {}
    const char* name;
    std::mutex& mu;
    std::unique_ptr<Consumer> consumer;
    Clock::time_point retry_at{};
    std::chrono::milliseconds pause{250};
    bool warned = false;

    void set(std::unique_ptr<Consumer> c) {
        std::unique_lock lock(mu);
        std::swap(consumer, c);
        lock.unlock();  // the old one (if any) is destroyed outside the lock
    }
    void failed(const std::string& domain, const std::string& why) {
        set(nullptr);
        retry_at = Clock::now() + pause;
        pause = std::min(pause * 2, std::chrono::milliseconds(5000));
        if (!warned) spdlog::warn("worker of domain={}: {} unavailable: {}", domain, name, why);
        warned = true;
    }
    void opened(const std::string& domain) {
        pause = std::chrono::milliseconds(250);
        if (warned) spdlog::info("worker of domain={}: {} consumer open again", domain, name);
        warned = false;
    }
};

class FailoverConsumer final : public Consumer {
public:
    FailoverConsumer(JetStream* nats, RabbitMq* rabbit, ConsumerSpec spec)
        : nats_(nats), rabbit_(rabbit), spec_(std::move(spec)) {}

    // Opens what can be opened; an error only when neither broker answers.
    Status open() {
        ensure();
        if (!nats_side_.consumer && !rabbit_side_.consumer)
            return Error{"no broker reachable for domain " + spec_.domain + (last_error_.empty() ? "" : ": " + last_error_)};
        return Ok{};
    }

    Result<DeliveryBatch> fetch(int max, std::chrono::milliseconds idle_wait) override {
        if (Status s = open(); !s) return s.error();
        if (rabbit_side_.consumer) {
            // Never wait here while NATS is there to wait on. With RabbitMQ
            // alone, wait at most kSideCheckEvery: NATS may be back.
            const auto wait = nats_side_.consumer ? std::chrono::milliseconds(0) : std::min(idle_wait, kSideCheckEvery);
            auto b = rabbit_side_.consumer->fetch(max, wait);
            if (!b)
                rabbit_side_.failed(spec_.domain, b.message());
            else if (!b->empty() || !nats_side_.consumer)
                return b;
        }
        if (nats_side_.consumer) {
            // RabbitMQ's deliveries are checked between NATS waits.
            const auto wait = rabbit_side_.consumer ? std::min(idle_wait, kSideCheckEvery) : idle_wait;
            auto b = nats_side_.consumer->fetch(max, wait);
            if (b) return b;
            nats_side_.failed(spec_.domain, b.message());
        }
        if (!nats_side_.consumer && !rabbit_side_.consumer) return Error{"lost both brokers"};
        return DeliveryBatch{};
    }

    void interrupt() override {
        std::lock_guard lock(sides_mu_);
        if (nats_side_.consumer) nats_side_.consumer->interrupt();
        if (rabbit_side_.consumer) rabbit_side_.consumer->interrupt();
    }

private:
    // While both brokers are open, how long a wait on one may leave the
    // other unchecked (RabbitMQ deliveries left from an outage, or NATS
    // coming back while RabbitMQ serves alone).
    static constexpr std::chrono::milliseconds kSideCheckEvery{1000};

    void ensure() {
        const auto now = Clock::now();
        if (nats_ != nullptr && !nats_side_.consumer && now >= nats_side_.retry_at) {
            if (!nats_->connected()) {
                nats_side_.failed(spec_.domain, "not connected");
            } else if (auto c = nats_->openConsumer(spec_)) {
                nats_side_.set(std::move(*c));
                nats_side_.opened(spec_.domain);
            } else {
                last_error_ = c.message();
                nats_side_.failed(spec_.domain, c.message());
            }
        }
        // While NATS serves, RabbitMQ is joined only once it is known to
        // answer (the coordinator probes it): a connect to an unreachable
        // host would stall this worker's NATS work for the connect timeout.
        const bool try_rabbit = rabbit_ != nullptr && (rabbit_->healthy() || !nats_side_.consumer);
        if (try_rabbit && !rabbit_side_.consumer && now >= rabbit_side_.retry_at) {
            if (auto c = rabbit_->openConsumer(spec_)) {
                rabbit_side_.set(std::move(*c));
                rabbit_side_.opened(spec_.domain);
            } else {
                last_error_ = c.message();
                rabbit_side_.failed(spec_.domain, c.message());
            }
        }
    }

    JetStream* nats_;
    RabbitMq* rabbit_;
    ConsumerSpec spec_;
    std::mutex sides_mu_;
    Side nats_side_{"nats", sides_mu_};
    Side rabbit_side_{"rabbitmq", sides_mu_};
    std::string last_error_;
};

// The JetStream bucket while NATS is connected; the caller's local record
// alone while it is not (records made meanwhile are written on return).
class FailoverDoneStore final : public DoneStore {
public:
    FailoverDoneStore(JetStream* nats, std::shared_ptr<PendingRecords> pending) : nats_(nats), pending_(std::move(pending)) {}

    Result<std::vector<bool>> lookup(const std::vector<std::string_view>& ids) override {
        if (usable()) return store_->lookup(ids);
        if (!degraded_ && !announced_.exchange(true))
            spdlog::warn("idempotency: NATS unreachable, relying on this host's record of completed items");
        degraded_ = true;
        return std::vector<bool>(ids.size(), false);
    }

    void record(std::string_view id) override {
        if (usable()) {
            for (const auto& p : pending_->take()) store_->record(p);
            store_->record(id);
        } else {
            pending_->add(id);
        }
    }

    std::size_t flush() override { return store_ && usable() ? store_->flush() : 0; }

    // While NATS is down the host's local attempt ledger is all there is
    // (the worker keeps one for this case and for crash charges).
    Result<std::vector<std::optional<AttemptRecord>>> attempts(const std::vector<std::string_view>& ids) override {
        if (usable()) return store_->attempts(ids);
        return std::vector<std::optional<AttemptRecord>>(ids.size());
    }

    Status recordAttempt(std::string_view id, const AttemptRecord& record) override {
        if (usable()) return store_->recordAttempt(id, record);
        return Error{"attempt record: NATS unreachable"};
    }

    void forgetAttempts(std::string_view id) override {
        if (usable()) store_->forgetAttempts(id);
    }

    bool shared() override { return usable(); }

private:
    bool usable() {
        if (nats_ == nullptr || !nats_->connected()) {
            store_.reset();
            return false;
        }
        if (!store_) {
            auto s = nats_->openDoneStore();
            if (!s) return false;
            store_ = std::move(*s);
            if (degraded_ && announced_.exchange(false)) spdlog::info("idempotency: NATS reachable again, using the shared record");
            degraded_ = false;
        }
        return true;
    }

    JetStream* nats_;
    std::shared_ptr<PendingRecords> pending_;
    std::unique_ptr<DoneStore> store_;
    bool degraded_ = false;
    static inline std::atomic<bool> announced_{false};  // one log line per process, not per worker
};

}  // namespace

Failover::Failover(JetStream* nats, RabbitMq* rabbit, std::function<void(std::string_view)> on_switch)
    : nats_(nats), rabbit_(rabbit), on_switch_(std::move(on_switch)), pending_(std::make_shared<PendingRecords>()) {}

bool Failover::natsUsable() const { return nats_ != nullptr && nats_->connected(); }

std::string_view Failover::backendName() const {
    const char* a = active_.load();
    return a == nullptr ? "none" : a;
}

std::string_view Failover::lastPublishBackend() const { return last_publish_.load(); }

std::string Failover::warmingUp() const { return natsUsable() ? nats_->doneIndexTrouble() : ""; }

bool Failover::healthy() const {
    return (natsUsable() && nats_->healthy()) || (rabbit_ != nullptr && rabbit_->healthy());
}

void Failover::setActive(const char* backend) {
    const char* before = active_.exchange(backend);
    if (before != nullptr && std::string_view(before) == backend) return;
    if (before == nullptr) {
        spdlog::info("publishing to {}", backend);
        return;
    }
    spdlog::warn("failover: publishing to {} now (was {})", backend, before);
    if (on_switch_) on_switch_(backend);
}

void Failover::refresh() {
    // Workers join RabbitMQ (while NATS serves) once it answers: find out here.
    if (rabbit_ != nullptr && !rabbit_->healthy()) (void)rabbit_->probe();
    if (natsUsable()) {
        setActive("nats");
        return;
    }
    if (rabbit_ != nullptr && rabbit_->healthy()) setActive("rabbitmq");  // the coordinator probes it just before
}

Result<PublishAck> Failover::publish(const PublishRequest& request) {
    if (rabbit_ == nullptr) return publishNatsOnly(request);
    std::string nats_error = nats_ == nullptr ? "nats: no server reachable" : "nats: not connected";
    if (natsUsable()) {
        auto r = nats_->publish(request);
        if (r || r.error().refused || rabbit_ == nullptr) {
            if (r) {
                publishedTo("nats");
            }
            return r;
        }
        nats_error = r.message();
    }
    if (rabbit_ == nullptr) return Error{nats_error};
    auto r = rabbit_->publish(request);
    if (!r) return Error{nats_error + "; and " + r.message(), r.error().refused};
    publishedTo("rabbitmq");
    return r;
}

void Failover::publishedTo(const char* backend) {
    setActive(backend);
    last_publish_ = backend;
}

Result<PublishAck> Failover::publishNatsOnly(const PublishRequest& request) {
    if (nats_ == nullptr) return Error{"nats: no server reachable"};
    // No fallback: ride out a reconnect (to another node of a cluster, or
    // the same server restarted) for a bounded time. The work id makes the
    // retry idempotent: the stream drops a copy it already stored.
    const auto give_up = std::chrono::steady_clock::now() + kNatsOnlyWait;
    std::string last = "nats: not connected";
    for (;;) {
        if (natsUsable()) {
            auto r = nats_->publish(request);
            if (r) {
                publishedTo("nats");
            }
            if (r || r.error().refused) return r;
            last = r.message();
        }
        if (std::chrono::steady_clock::now() >= give_up) return Error{last};
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

Result<std::unique_ptr<Consumer>> Failover::openConsumer(const ConsumerSpec& spec) {
    auto c = std::make_unique<FailoverConsumer>(nats_, rabbit_, spec);
    if (Status s = c->open(); !s) return s.error();
    return std::unique_ptr<Consumer>(std::move(c));
}

Result<std::unique_ptr<DoneStore>> Failover::openDoneStore() {
    return std::unique_ptr<DoneStore>(std::make_unique<FailoverDoneStore>(nats_, pending_));
}

bool Failover::reachable(std::string_view backend) const {
    if (backend == "nats") return natsUsable();
    if (backend == "rabbitmq") return rabbit_ != nullptr && rabbit_->healthy();
    return false;
}

std::vector<BackendInspection*> Failover::inspectable() const {
    std::vector<BackendInspection*> out;
    if (nats_ != nullptr) out.push_back(nats_);
    if (rabbit_ != nullptr) out.push_back(rabbit_);
    return out;
}

QueueReport Failover::inspect(const std::vector<std::string>& domains, const InspectOptions& options) {
    QueueReport report;
    for (BackendInspection* b : inspectable()) {
        if (!b->answering()) continue;  // a down broker counts as unknown, not as empty
        if (auto r = b->inspect(domains, options))
            report.backends.emplace(std::string(b->backendName()), std::move(*r));
        else
            spdlog::debug("{}: not inspected: {}", b->backendName(), r.message());
    }
    return report;
}

DeadLetterListing Failover::deadLetters(std::string_view domain, const DeadLetterQuery& query) {
    DeadLetterListing out;
    out.next_after = query.after;
    std::size_t bytes = 0;
    for (BackendInspection* b : inspectable()) {
        const std::string name(b->backendName());
        if (out.more || out.items.size() >= query.limit || bytes >= query.max_bytes) break;
        if (b == nats_ && !natsUsable()) {  // (RabbitMQ connects for the listing: its last probe may be stale)
            out.unavailable[name] = "not connected";
            continue;
        }
        DeadLetterQuery rest = query;
        rest.limit = query.limit - out.items.size();
        rest.max_bytes = query.max_bytes - bytes;
        auto page = b->deadLetters(domain, rest);
        if (!page) {
            out.unavailable[name] = page.message();
            continue;
        }
        out.answered = true;
        if (b == nats_) {
            out.more = page->more;
            out.next_after = page->next_after;
        }
        for (auto& dl : page->items) {
            bytes += dl.payload.size();
            if (query.filter.matches(dl)) out.items.push_back(std::move(dl));
        }
    }
    return out;
}

WaitingSearch Failover::findWaiting(const std::vector<std::string>& domains, std::string_view id,
                                    std::size_t max_scan, std::map<std::string, std::string>& unavailable) {
    WaitingSearch out;
    for (BackendInspection* b : inspectable()) {
        const std::string name(b->backendName());
        if (b == nats_ && !natsUsable()) {
            unavailable[name] = "not connected";
            continue;
        }
        auto found = b->findWaiting(domains, id, max_scan - std::min<std::size_t>(max_scan, out.scanned));
        if (!found) {
            unavailable[name] = found.message();
            continue;
        }
        out.scanned += found->scanned;
        out.complete = out.complete && found->complete;
        if (found->found) {
            out.found = std::move(found->found);
            break;
        }
    }
    return out;
}

ReplayReport Failover::replay(std::string_view domain, const DeadLetterFilter& filter) {
    // Published like any other item (NATS, or RabbitMQ when NATS cannot
    // take it) with the original id and payload and a fresh deadline.
    const Republish republish = [this](const PublishRequest& req) -> Status {
        auto ack = publish(req);
        if (!ack) return ack.error();
        if (ack->duplicate)
            return Error{"id " + req.id + " was published less than 2 minutes ago, so the work stream drops this copy "
                         "as a duplicate; replay it after the window"};
        return Ok{};
    };
    return settle(domain, filter, republish);
}

ReplayReport Failover::purge(std::string_view domain, const DeadLetterFilter& filter) { return settle(domain, filter, {}); }

ReplayReport Failover::settle(std::string_view domain, const DeadLetterFilter& filter, const Republish& republish) {
    ReplayReport out;
    for (BackendInspection* b : inspectable()) {
        if (b == nats_ && !natsUsable()) continue;  // (RabbitMQ is asked even when its last probe failed)
        if (auto results = b->settleDeadLetters(domain, filter, republish)) {
            out.answered = true;
            for (auto& r : *results) out.results.push_back(std::move(r));
        } else {
            out.unavailable += (out.unavailable.empty() ? "" : "; ") + results.message();
        }
    }
    return out;
}

}  // namespace kanban::host::broker
