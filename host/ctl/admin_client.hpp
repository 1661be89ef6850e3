// The daemon's admin API as kanbanctl calls it: at --admin or the config's
// admin.listen, with the config's token.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace kanban::ctl {

class AdminClient {
public:
    struct Response {
        int status = 0;
        nlohmann::json body;
    };

    // Returns an exit code when the address cannot be determined.
    int setup(const std::string& config_path, const std::string& admin_override);
    // nullopt: the daemon did not answer (the caller exits 69).
    std::optional<Response> call(const std::string& method, const std::string& path, const std::string& body = "");
    std::string address() const { return host_ + ":" + std::to_string(port_); }
    // Prints why and returns the exit code.
    int unreachable() const;
    static int refused(const Response& r);

private:
    std::string host_;
    int port_ = 0;
    std::string token_;
};

}  // namespace kanban::ctl
