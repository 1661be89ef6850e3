// The broker connections' options as the configuration gives them: one
// place for the daemon and kanbanctl.
#pragma once

#include <optional>
#include <string>

#include "broker/jetstream.hpp"
#include "broker/rabbitmq.hpp"
#include "config/config.hpp"

namespace kanban::host::broker {

// `role` names the connection ("kanband", "kanbanctl"). The daemon keeps
// trying while NATS is down; the CLI (`keep_trying` false) fails at once.
JetStreamOptions jetStreamOptions(const config::Config& cfg, const std::string& role, bool keep_trying);
// nullopt when rabbitmq.enabled is false.
std::optional<RabbitMqOptions> rabbitMqOptions(const config::Config& cfg, const std::string& role);

}  // namespace kanban::host::broker
