#include "broker/jetstream_rates.hpp"

#include <nats/nats.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <random>
#include <thread>

#include "broker/nats_util.hpp"
#include "common/clock.hpp"

namespace kanban::host::broker {
namespace {

constexpr int kMaxTries = 64;  // compare-and-set races lost in a row before giving up

std::int64_t nowUnixUs() { return nowUnixNs() / 1000; }

}  // namespace

JetStreamRates::~JetStreamRates() {
    if (kv_ != nullptr) kvStore_Destroy(kv_);
}

Result<std::int64_t> JetStreamRates::reserve(const std::string& domain, std::int64_t n, const flow::RateLimit& rate,
                                             std::int64_t burst) {
    if (!nats_.connected()) return Error{"nats: not connected"};
    std::unique_lock lock(mu_);  // one reservation of this host at a time: its tries never race each other
    if (kv_ == nullptr) {
        // Bound once (a stream-info request), not per reservation; dropped on
        // any failure, so a bucket made anew is bound again.
        auto kv = nats::keyValueBucket(nats_.js(), nats_.streamName() + "_RATES", "TPS Kanban: rate_limit state",
                                       nats_.options().replicas);
        if (!kv) return kv.error();
        kv_ = *kv;
    }
    kvStore* const kv = kv_;
    const std::int64_t interval = rate.intervalUs();
    Known known;
    bool have = false;  // `known` is what the bucket holds, as far as this host knows
    if (auto it = known_.find(domain); it != known_.end()) {
        known = it->second;
        have = true;
    }
    thread_local std::mt19937 rng{std::random_device{}()};
    std::string failure;
    for (int attempt = 0; attempt < kMaxTries; ++attempt) {
        if (!have) {
            kvEntry* e = nullptr;
            const natsStatus s = kvStore_Get(&e, kv, domain.c_str());
            if (s == NATS_NOT_FOUND) {
                known = Known{};
                have = true;
            } else if (s != NATS_OK) {
                failure = nats::error(s);
                break;
            } else {
                const auto j = nlohmann::json::parse(std::string(static_cast<const char*>(kvEntry_Value(e)),
                                                                 static_cast<std::size_t>(kvEntry_ValueLen(e))),
                                                     nullptr, /*allow_exceptions=*/false);
                known = Known{kvEntry_Revision(e), 0, 0};
                have = true;
                if (j.is_object()) {
                    known.tat_unix_us = j.value("tat_unix_us", std::int64_t{0});
                    known.interval_us = j.value("interval_us", std::int64_t{0});
                }
                kvEntry_Destroy(e);
            }
        }
        const std::int64_t now = nowUnixUs();
        // A TAT left by another limit (a reload, a host with an older config)
        // does not carry over: 1/h before must not hold 50/s back an hour.
        const std::int64_t tat = known.interval_us == interval ? known.tat_unix_us : std::min(known.tat_unix_us, now);
        const flow::Reservation r = flow::reserveStart(tat, now, n, interval, burst);
        const std::string value = nlohmann::json{{"tat_unix_us", r.tat_unix_us}, {"interval_us", interval}}.dump();
        std::uint64_t rev = 0;
        const natsStatus s =
            known.revision == 0
                ? kvStore_Create(&rev, kv, domain.c_str(), value.data(), static_cast<int>(value.size()))
                : kvStore_Update(&rev, kv, domain.c_str(), value.data(), static_cast<int>(value.size()), known.revision);
        if (s == NATS_OK) {
            known_[domain] = Known{rev, r.tat_unix_us, interval};
            return r.start_unix_us;
        }
        // Another host reserved since (or the store failed: the read says).
        failure = nats::error(s);
        have = false;
        if (attempt > 4) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
    }
    known_.erase(domain);
    kvStore_Destroy(kv_);
    kv_ = nullptr;
    return Error{"nats: rate_limit state of " + domain + ": " + failure};
}

}  // namespace kanban::host::broker
