#include "ctl_common.hpp"

#include <filesystem>
#include <iostream>

namespace kanban::ctl {

int fail(int code, const std::string& message) {
    std::cerr << "kanbanctl: " << message << "\n";
    return code;
}

int loadConfig(const std::string& path, host::config::Config& out) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return fail(kExitNoInput, path + ": config file not found");
    auto cfg = host::config::loadConfigFile(path);
    if (!cfg) {
        // Several problems are several lines; the first says enough for a one-line reason.
        const std::string& m = cfg.message();
        return fail(kExitError, "invalid config: " + m.substr(0, m.find('\n')));
    }
    out = std::move(*cfg);
    return kExitOk;
}

std::string dump(const nlohmann::json& j) { return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace kanban::ctl
