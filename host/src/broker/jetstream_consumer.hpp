// The JetStream pull consumer of one worker and its deliveries (internal
// to the broker folder; JetStream::openConsumer is the way in).
#pragma once

#include "broker/jetstream.hpp"

namespace kanban::host::broker {

// Subscribes to the domain's three durable consumers, which must exist.
Result<std::unique_ptr<Consumer>> subscribeJetStreamConsumer(JetStream& owner, const ConsumerSpec& spec);

}  // namespace kanban::host::broker
