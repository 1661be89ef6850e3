// noop: does nothing and succeeds; measures the host's own cost in benchmarks.
#include <kanban/handler.hpp>

namespace {

class Noop final : public kanban::Handler {
public:
    explicit Noop(std::string_view /*settings_json*/) {}
    kanban::Result handle(const kanban::WorkItem&, kanban::Context&) override { return kanban::Result::ok(); }
};

}  // namespace

KANBAN_PLUGIN(Noop, "noop", "1.0.0")
