#include "broker/broker_options.hpp"

namespace kanban::host::broker {

JetStreamOptions jetStreamOptions(const config::Config& cfg, const std::string& role, bool keep_trying) {
    JetStreamOptions o;
    o.servers = cfg.nats.servers;
    o.stream = cfg.nats.stream;
    o.replicas = static_cast<int>(cfg.nats.replicas);
    o.max_msgs = cfg.nats.max_msgs;
    o.max_bytes = cfg.nats.max_bytes;
    o.done_index_max_ids = static_cast<std::size_t>(cfg.nats.done_index_max_ids);
    o.keep_trying = keep_trying;
    o.connection_name = role;
    return o;
}

std::optional<RabbitMqOptions> rabbitMqOptions(const config::Config& cfg, const std::string& role) {
    if (!cfg.rabbitmq.enabled) return std::nullopt;
    RabbitMqOptions o;
    o.url = cfg.rabbitmq.url;
    o.confirm_timeout = std::chrono::milliseconds(cfg.rabbitmq.confirm_timeout_ms);
    o.connection_name = role;
    return o;
}

}  // namespace kanban::host::broker
