// The admin HTTP API on admin.listen (docs/design.md §6). This class owns the
// transport rules: routing, bearer-token checks on every request but the
// probes, the scrape and the console page (401), request body limits (413), JSON parsing (400) and JSON errors for
// unknown routes (404). What the answers contain comes from an AdminApi,
// which admin::AdminService implements.
#pragma once

#include "admin/token.hpp"
#include "broker/inspection.hpp"
#include "common/result.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace kanban::host::admin {

struct Reply {
    int status = 200;
    nlohmann::json body;
};

inline Reply errorReply(int status, const std::string& message) { return {status, {{"error", message}}}; }

class AdminApi {
public:
    virtual ~AdminApi() = default;
    virtual std::string notReady() = 0;       // GET /readyz: empty when ready, else why not
    virtual std::string metrics() = 0;        // GET /metrics (Prometheus text)
    virtual nlohmann::json health() = 0;      // GET /health
    virtual Reply drain() = 0;                // POST /drain
    virtual Reply cancelDrain() = 0;          // POST /drain/cancel
    virtual Reply schedules() = 0;            // GET /schedules
    virtual Reply addSchedule(const nlohmann::json& body) = 0;  // POST /schedules
    virtual Reply cancelSchedule(const std::string& name) = 0;  // DELETE /schedules/<name>
    virtual Reply deadLetters(const std::string& domain, const broker::DeadLetterQuery& query) = 0;  // GET /dlq/<domain>
    virtual Reply replay(const std::string& domain, const broker::DeadLetterFilter& filter) = 0;  // POST /dlq/<domain>/replay
    virtual Reply purge(const std::string& domain, const broker::DeadLetterFilter& filter) = 0;   // POST /dlq/<domain>/purge
    virtual Reply stalled(const std::string& domain) = 0;        // GET /stalled[?domain=D]; "" = every domain
    virtual Reply setPaused(const std::string& domain, bool paused) = 0;  // POST /domains/<domain>/pause|resume
    // GET /items/status?id=ID[&domain=D][&scan=N]: where the item is.
    virtual Reply itemStatus(const std::string& id, const std::string& domain, std::size_t max_scan) = 0;
    virtual Reply logLevel() = 0;                                // GET /log-level
    virtual Reply setLogLevel(const std::string& level) = 0;     // PUT /log-level
};

inline constexpr std::size_t kMaxBodyBytes = 64 * 1024;

class AdminServer {
public:
    // `token`: required as "Authorization: Bearer <token>" on every request
    // except GET /healthz, /readyz, /metrics and / (the console page); empty
    // = no token (loopback only, enforced by the config check).
    AdminServer(AdminApi& api, std::string token);
    ~AdminServer();  // stops and joins
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    // Binds host:port (port 0 = any free port) and serves on a thread.
    Status start(const std::string& host, int port);
    void stop();
    int port() const { return port_; }

private:
    AdminApi& api_;
    std::string token_;
    std::atomic<int> heavy_{0};  // dead-letter requests running
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    int port_ = 0;
};

}  // namespace kanban::host::admin
