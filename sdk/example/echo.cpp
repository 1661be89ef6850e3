// echo: the plugin (its one exported symbol) for the handler in echo.hpp.
#include "echo.hpp"

KANBAN_PLUGIN(echo::Echo, "echo", "0.1.0")
