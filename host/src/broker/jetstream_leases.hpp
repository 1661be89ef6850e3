// flow::InFlightLeases in the JetStream KV bucket `<stream>_LEASES`: key
// `<domain>.<slot>`, value {"until_unix_ms": N}. Every change is
// compare-and-set on the key's revision: a slot is taken when it is absent
// or its holder's time ran out (0 once released), and a release only frees
// the holder's own revision.
#pragma once

#include "broker/jetstream.hpp"
#include "flow/in_flight_leases.hpp"

struct __kvStore;

namespace kanban::host::broker {

class JetStreamLeases final : public flow::InFlightLeases {
public:
    explicit JetStreamLeases(JetStream& nats) : nats_(nats) {}
    Result<std::optional<flow::Lease>> acquire(const std::string& domain, std::int64_t slots,
                                               std::int64_t hold_ms) override;
    void release(const flow::Lease& lease) override;

private:
    Result<__kvStore*> bucket();  // the caller destroys it
    JetStream& nats_;
};

}  // namespace kanban::host::broker
