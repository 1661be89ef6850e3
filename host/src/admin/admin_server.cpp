#include "admin/admin_server.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

namespace kanban::host::admin {

AdminServer::AdminServer(Probe ready) : ready_(std::move(ready)), server_(std::make_unique<httplib::Server>()) {
    server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
        res.set_content("ok\n", "text/plain");
    });
    server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
        const bool ready = ready_();
        res.status = ready ? 200 : 503;
        res.set_content(ready ? "ready\n" : "not ready\n", "text/plain");
    });
    // httplib sets SO_REUSEPORT by default, which would let a second daemon
    // share our port silently; a busy port must be an error instead.
    server_->set_socket_options([](socket_t sock) {
        int yes = 1;
        ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
}

AdminServer::~AdminServer() { stop(); }

Status AdminServer::start(const std::string& host, int port) {
    if (port == 0) {
        port_ = server_->bind_to_any_port(host);
        if (port_ <= 0) return Error{"admin: cannot bind " + host + ":0"};
    } else {
        if (!server_->bind_to_port(host, port))
            return Error{"admin: cannot listen on " + host + ":" + std::to_string(port) + " (address in use?)"};
        port_ = port;
    }
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    spdlog::info("admin: listening on {}:{}", host, port_);
    return Ok{};
}

void AdminServer::stop() {
    if (thread_.joinable()) {
        server_->stop();
        thread_.join();
    }
}

}  // namespace kanban::host::admin
