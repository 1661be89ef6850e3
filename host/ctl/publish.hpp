// kanbanctl publish: through the same failover path as the daemon (NATS,
// else RabbitMQ); prints each work id on its own line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kanban::ctl {

struct PublishArgs {
    std::string domain;
    std::string priority = "normal";
    std::string payload;
    std::string file;
    std::string id;
    std::int64_t deadline_ms = 0;  // from the item's not-before when delayed, else from now
    std::string delay;             // --delay 30s: not handled before now + that
    std::string at;                // --at 2026-12-24T18:00:00Z: not handled before then
    std::int64_t count = 1;
    std::vector<std::string> headers;  // --header K=V, repeatable
    bool trace = false;                // --trace: each item starts a trace (a publish span)
};

int publish(const std::string& config_path, const PublishArgs& args);

}  // namespace kanban::ctl
