#include "plugin/check_config.hpp"

#include <iostream>

#include "config/config.hpp"
#include "plugin/registry.hpp"

namespace kanban::host::plugin {

int checkConfig(const std::string& path) {
    auto cfg = config::loadConfigFile(path);
    if (!cfg) {
        std::cerr << cfg.message() << "\n";
        return 1;
    }
    int problems = 0;
    for (const auto& d : cfg->domains) {
        auto handler = loadHandler(d);
        if (!handler) {
            std::cerr << path << ": domain \"" << d.name << "\": " << handler.message() << "\n";
            ++problems;
        }
    }
    if (problems != 0) return 1;
    std::cout << path << ": OK (" << cfg->domains.size() << " domain" << (cfg->domains.size() == 1 ? "" : "s") << ", "
              << cfg->schedules.size() << " schedule" << (cfg->schedules.size() == 1 ? "" : "s") << ")\n";
    return 0;
}

}  // namespace kanban::host::plugin
