// Runtime schedules in the JetStream KV bucket `<stream>_SCHEDULES`
// (created on first use), shared by every host of the cluster.
#pragma once

#include "broker/jetstream.hpp"
#include "scheduler/schedule_store.hpp"

struct __kvStore;

namespace kanban::host::broker {

class JetStreamScheduleStore final : public scheduler::ScheduleStore {
public:
    explicit JetStreamScheduleStore(JetStream& nats) : nats_(nats) {}
    bool available() const override { return nats_.connected(); }
    Status put(const std::string& name, const std::string& json) override;
    Result<bool> remove(const std::string& name) override;
    Result<std::map<std::string, std::string>> all() override;

private:
    Result<__kvStore*> bucket();  // the caller destroys it
    JetStream& nats_;
};

}  // namespace kanban::host::broker
