// The idempotency record in the JetStream KV bucket `<stream>_DONE`
// (internal to the broker folder; JetStream::openDoneStore is the way in).
#pragma once

#include "broker/jetstream.hpp"

namespace kanban::host::broker {

Result<std::unique_ptr<DoneStore>> openJetStreamDoneStore(JetStream& owner);

}  // namespace kanban::host::broker
