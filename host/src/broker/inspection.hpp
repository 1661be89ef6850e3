// What operators and the coordinator ask about the queues (depths, dead
// letters, replay), asked through one interface. Each backend answers for
// itself (BackendInspection); broker::Failover asks every configured
// backend and merges the answers (Inspector), so nothing above the broker
// layer names a concrete backend.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker/work_queue.hpp"

namespace kanban::host::broker {

struct InspectOptions {
    bool dead_letters = false;  // count each domain's dead letters too
    bool oldest = false;        // the publish time of each domain's oldest item (NATS only)
    // Remove what a domain's consumer has acknowledged but the stream still
    // holds (NATS only: a server killed before it flushed the removals keeps
    // them below every ack floor, never delivered, counted against max_msgs).
    bool sweep_acked = false;
};

// One domain on one backend.
struct DomainCounts {
    // Waiting plus delivered-unacknowledged, by kPriorities index. A backend
    // without priority levels (RabbitMQ: one queue per domain) reports its
    // total at `normal` and sets by_priority false.
    std::array<std::uint64_t, 3> depth{};
    bool by_priority = true;
    std::optional<std::uint64_t> dead_letters;  // with InspectOptions::dead_letters, when answered
    // With InspectOptions::oldest: set when known; nullopt inside means empty.
    std::optional<std::optional<std::int64_t>> oldest_unix_ms;
    // With InspectOptions::sweep_acked: acknowledged items removed now.
    std::uint64_t swept = 0;

    std::uint64_t total() const { return depth[0] + depth[1] + depth[2]; }
};

// One backend's answer.
struct BackendReport {
    // Every domain the backend answered for (a domain missing here: unknown).
    std::map<std::string, DomainCounts> domains;
    // Items on work subjects that none of the asked domains consumes, by
    // subject (orphans); nullopt when the backend cannot tell.
    std::optional<std::map<std::string, std::uint64_t>> unclaimed;
};

// The merged answer: per backend name ("nats", "rabbitmq"), for each
// backend that answered at all.
struct QueueReport {
    std::map<std::string, BackendReport> backends;

    // The domain's counts on `backend`, if it answered for it.
    const DomainCounts* find(const std::string& backend, const std::string& domain) const {
        auto b = backends.find(backend);
        if (b == backends.end()) return nullptr;
        auto d = b->second.domains.find(domain);
        return d == b->second.domains.end() ? nullptr : &d->second;
    }
    // Waiting and in flight on every backend that answered.
    std::uint64_t depth(const std::string& domain) const {
        std::uint64_t n = 0;
        for (const auto& [name, b] : backends)
            if (auto d = b.domains.find(domain); d != b.domains.end()) n += d->second.total();
        return n;
    }
};

// Republishes a dead letter as new work (the failover path): what replay
// uses. Empty: the dead letters are removed without being published (purge).
using Republish = std::function<Status(const PublishRequest&)>;

// Which dead letters a listing, replay or purge takes: all by default.
struct DeadLetterFilter {
    std::optional<std::string> id;  // only this work id
    // Only those whose reason code is this, or whose reason text contains it.
    std::string reason;
    bool matches(const DeadLetter& dl) const {
        return (!id || dl.id == *id) &&
               (reason.empty() || dl.reason_code == reason || dl.reason.find(reason) != std::string::npos);
    }
};

// Per item tried by a replay: its id and "" (replayed) or why not.
using ReplayResults = std::vector<std::pair<std::string, std::string>>;

// One page of a dead-letter listing, so that no request holds a whole DLQ
// in memory: at most `limit` items and `max_bytes` of payload (a page has
// at least one item, whatever its size).
struct DeadLetterQuery {
    std::size_t limit = 100;
    std::size_t max_bytes = 1 << 20;
    // JetStream: start after this dead-letter sequence (the last page's
    // next_after). RabbitMQ's fallback queue is listed on the first page only.
    std::uint64_t after = 0;
    // Applied to the page after it was read: a page may hold fewer than
    // `limit` matches and still have `more`.
    DeadLetterFilter filter;
};

struct DeadLetterPage {
    std::vector<DeadLetter> items;
    bool more = false;             // the page is full: ask again with after = next_after
    std::uint64_t next_after = 0;  // the last sequence listed
};

// A work item found waiting in a work queue (kanbanctl status).
struct WaitingItem {
    std::string domain;
    Priority priority = Priority::normal;
    std::uint64_t sequence = 0;
    // Handed to a worker and not settled yet: in a fetched batch, in a
    // handler, or waiting for its retry's backoff.
    bool delivered = false;
    std::optional<std::int64_t> published_unix_ms;
};

// The answer of a search for one id among the waiting items.
struct WaitingSearch {
    std::optional<WaitingItem> found;
    std::uint64_t scanned = 0;  // items looked at
    bool complete = true;       // false: stopped at the bound before the end
};

// What one backend answers. Called from the coordinator's and the admin
// API's threads; implementations are thread-safe.
class BackendInspection {
public:
    virtual ~BackendInspection() = default;
    virtual std::string_view backendName() const = 0;
    // Whether asking now can get an answer (a JetStream request to a
    // disconnected server would wait for its timeout).
    virtual bool answering() const = 0;
    virtual Result<BackendReport> inspect(const std::vector<std::string>& domains, const InspectOptions& options) = 0;
    // Oldest first, one page; each tagged with this backend.
    virtual Result<DeadLetterPage> deadLetters(std::string_view domain, const DeadLetterQuery& query) = 0;
    // Publishes each dead letter of `domain` that `filter` takes with
    // `republish`, and removes it only once that succeeded; with an empty
    // `republish`, removes it (purge). Only what is there when it starts.
    virtual Result<ReplayResults> settleDeadLetters(std::string_view domain, const DeadLetterFilter& filter,
                                                    const Republish& republish) = 0;
    // Looks for the item `id` among the waiting (and delivered, unsettled)
    // items of `domains`, reading at most `max_scan` of them. A backend
    // whose queues cannot be read without taking their items says why.
    virtual Result<WaitingSearch> findWaiting(const std::vector<std::string>& /*domains*/, std::string_view /*id*/,
                                              std::size_t /*max_scan*/) {
        return Error{std::string(backendName()) + ": its queues cannot be searched without taking their items"};
    }
};

// Dead letters of one domain across the backends.
struct DeadLetterListing {
    std::vector<DeadLetter> items;
    bool more = false;             // NATS has more after next_after
    std::uint64_t next_after = 0;
    std::map<std::string, std::string> unavailable;  // backend -> why it did not answer
    bool answered = false;                           // at least one backend answered
};

struct ReplayReport {
    ReplayResults results;
    std::string unavailable;  // backends that did not answer, and why
    bool answered = false;
};

// What the coordinator and the admin API ask of the brokers as a whole.
// broker::Failover implements it; unit tests fake it.
class Inspector {
public:
    virtual ~Inspector() = default;
    // "nats", "rabbitmq" or "none": where publishes go now.
    virtual std::string_view backendName() const = 0;
    virtual bool healthy() const = 0;
    // Why this host cannot serve at speed yet although a broker is healthy
    // (NATS: its idempotency index is still being built), or empty.
    virtual std::string warmingUp() const { return ""; }
    // Whether `backend` can be reached now.
    virtual bool reachable(std::string_view backend) const = 0;
    // Probes the backends that are down and re-evaluates the active one.
    virtual void refresh() = 0;
    virtual QueueReport inspect(const std::vector<std::string>& domains, const InspectOptions& options) = 0;
    virtual DeadLetterListing deadLetters(std::string_view domain, const DeadLetterQuery& query) = 0;
    // Republishes through the failover path (NATS, else RabbitMQ).
    virtual ReplayReport replay(std::string_view domain, const DeadLetterFilter& filter) = 0;
    // Removes dead letters for good, on every backend that answers.
    virtual ReplayReport purge(std::string_view domain, const DeadLetterFilter& filter) = 0;
    // Asks each backend that answers (see BackendInspection::findWaiting);
    // `unavailable` says which could not be searched and why.
    virtual WaitingSearch findWaiting(const std::vector<std::string>& /*domains*/, std::string_view /*id*/,
                                      std::size_t /*max_scan*/, std::map<std::string, std::string>& unavailable) {
        unavailable["all"] = "not supported";
        return {};
    }
};

}  // namespace kanban::host::broker
