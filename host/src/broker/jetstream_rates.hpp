// flow::RateStore in the JetStream KV bucket `<stream>_RATES`: key
// `<domain>`, value {"tat_unix_us": N, "interval_us": I}. Every change is
// compare-and-set on the key's revision; the last value this host wrote is
// kept, so a host that is the only one reserving needs no read first.
#pragma once

#include "broker/jetstream.hpp"
#include "flow/rate_limit.hpp"

#include <map>

struct __kvStore;
#include <mutex>

namespace kanban::host::broker {

class JetStreamRates final : public flow::RateStore {
public:
    explicit JetStreamRates(JetStream& nats) : nats_(nats) {}
    ~JetStreamRates() override;
    JetStreamRates(const JetStreamRates&) = delete;
    JetStreamRates& operator=(const JetStreamRates&) = delete;
    Result<std::int64_t> reserve(const std::string& domain, std::int64_t n, const flow::RateLimit& rate,
                                 std::int64_t burst) override;

private:
    struct Known {
        std::uint64_t revision = 0;  // 0: the key does not exist
        std::int64_t tat_unix_us = 0;
        std::int64_t interval_us = 0;
    };
    JetStream& nats_;
    std::mutex mu_;
    std::map<std::string, Known> known_;  // per domain: what this host last read or wrote (mu_)
    __kvStore* kv_ = nullptr;             // the bucket, bound on first use (mu_)
};

}  // namespace kanban::host::broker
