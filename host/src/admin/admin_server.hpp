// The admin HTTP listener on admin.listen. This first cut serves
// GET /healthz (the process is alive) and GET /readyz (a broker is usable
// and the host is not draining); the operations surface adds the rest.
#pragma once

#include "common/result.hpp"

#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace kanban::host::admin {

class AdminServer {
public:
    using Probe = std::function<bool()>;

    explicit AdminServer(Probe ready);
    ~AdminServer();  // stops and joins
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    // Binds host:port (port 0 = any free port) and serves on a thread.
    Status start(const std::string& host, int port);
    void stop();
    int port() const { return port_; }

private:
    Probe ready_;
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    int port_ = 0;
};

}  // namespace kanban::host::admin
