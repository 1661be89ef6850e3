// health_check: the target of periodic health probes; always succeeds.
#include <kanban/handler.hpp>

namespace {

class HealthCheck final : public kanban::Handler {
public:
    explicit HealthCheck(std::string_view /*settings_json*/) {}
    kanban::Result handle(const kanban::WorkItem& /*item*/, kanban::Context& ctx) override {
        ctx.log(kanban::LogLevel::info, "health check ok");
        return kanban::Result::ok();
    }
};

}  // namespace

KANBAN_PLUGIN(HealthCheck, "health_check", "1.0.0")
