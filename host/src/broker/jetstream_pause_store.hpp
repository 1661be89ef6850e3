// The paused domains in the JetStream KV bucket `<stream>_CONTROL` (created
// on first use), key `paused`: one JSON object {"<domain>": {"since_unix_ms": N}}.
// One key, so that every host reads the whole state with one request per
// coordinator tick; changes are compare-and-set on its revision, so two
// hosts pausing different domains at once both land.
#pragma once

#include "broker/jetstream.hpp"
#include "pause/pause_store.hpp"

struct __kvStore;

namespace kanban::host::broker {

class JetStreamPauseStore final : public pause::PauseStore {
public:
    explicit JetStreamPauseStore(JetStream& nats) : nats_(nats) {}
    bool available() const override { return nats_.connected(); }
    Result<pause::Paused> paused() override;
    Result<bool> set(const std::string& domain, bool paused, std::int64_t now_unix_ms) override;

private:
    Result<__kvStore*> bucket();  // the caller destroys it
    JetStream& nats_;
};

}  // namespace kanban::host::broker
