// The cap of `[[domain]] max_in_flight = N` across every host: N slots per
// domain, each held by one worker while it has an item in hand (it fetches
// one item per slot). Kept where every host sees them
// (broker::JetStreamLeases: NATS KV); unit tests fake it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/result.hpp"

namespace kanban::host::flow {

struct Lease {
    std::string key;
    std::uint64_t revision = 0;
};

class InFlightLeases {
public:
    virtual ~InFlightLeases() = default;
    // Takes a free slot of `domain` among `slots`, held for `hold_ms` at most
    // (a holder that dies frees it then). nullopt: every slot is held. An
    // error: the store cannot answer (the caller does not pull).
    virtual Result<std::optional<Lease>> acquire(const std::string& domain, std::int64_t slots, std::int64_t hold_ms) = 0;
    // Frees the slot, unless it expired and another holder took it since.
    virtual void release(const Lease& lease) = 0;
};

}  // namespace kanban::host::flow
