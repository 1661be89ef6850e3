#include "admin/admin_server.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <atomic>
#include <tuple>

#include "common/base64.hpp"
#include "console/console_page.hpp"


namespace kanban::host::admin {
namespace {

constexpr const char* kJson = "application/json";

// Probes (/healthz, /readyz) and scrapes must not wait behind other
// clients. httplib gives every open connection a pool thread for as long
// as it stays open (8 by default), so eight slow or idle clients used to
// starve the port. Many threads (they sleep while their client is idle),
// and idle or slow connections are dropped after a few seconds.
constexpr std::size_t kThreads = 64;
constexpr time_t kReadTimeoutS = 2;       // a request that does not come in this long
constexpr time_t kWriteTimeoutS = 5;      // a client that does not read its answer
constexpr time_t kKeepAliveTimeoutS = 2;  // an idle kept-alive connection
// Requests that read the dead-letter queue (listings, replays): at most this
// many at once, each page at most kMaxPageBytes of payload (1 MiB unless
// asked), so that clients listing a large DLQ cannot take the host's memory.
constexpr int kHeavyRequests = 2;
constexpr std::size_t kMaxPageBytes = 16u << 20;
// GET /items/status reads at most this many waiting items (and as many
// dead letters) per domain set, unless ?scan= says otherwise.
constexpr std::size_t kDefaultStatusScan = 100000;
constexpr std::size_t kMaxStatusScan = 10000000;

// One of the kHeavyRequests places, if one is free.
class Heavy {
public:
    explicit Heavy(std::atomic<int>& in_use) : in_use_(in_use) {
        taken_ = in_use_.fetch_add(1) < kHeavyRequests;
        if (!taken_) in_use_.fetch_sub(1);
    }
    ~Heavy() {
        if (taken_) in_use_.fetch_sub(1);
    }
    Heavy(const Heavy&) = delete;
    Heavy& operator=(const Heavy&) = delete;
    explicit operator bool() const { return taken_; }

private:
    std::atomic<int>& in_use_;
    bool taken_ = false;
};


void send(httplib::Response& res, const Reply& r) {
    res.status = r.status;
    // Replace invalid UTF-8 (a plugin's reason, a binary payload) instead of throwing.
    res.set_content(r.body.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", kJson);
}

// The request body as a JSON object, or nullopt after answering 400.
std::optional<nlohmann::json> jsonObject(const httplib::Request& req, httplib::Response& res) {
    nlohmann::json body;
    try {
        body = nlohmann::json::parse(req.body);
    } catch (const nlohmann::json::parse_error& e) {
        send(res, errorReply(400, std::string("malformed JSON: ") + e.what()));
        return std::nullopt;
    }
    if (!body.is_object()) {
        send(res, errorReply(400, "the body must be a JSON object"));
        return std::nullopt;
    }
    return body;
}

// The dead letters a replay or purge body names, or nullopt after answering 400.
std::optional<broker::DeadLetterFilter> deadLetterFilter(const httplib::Request& req, httplib::Response& res) {
    broker::DeadLetterFilter filter;
    if (req.body.empty()) return filter;
    auto body = jsonObject(req, res);
    if (!body) return std::nullopt;
    for (const char* key : {"id", "id_base64", "reason"})
        if (body->contains(key) && !(*body)[key].is_string()) {
            send(res, errorReply(400, std::string("\"") + key + "\" must be a string"));
            return std::nullopt;
        }
    if (body->contains("id")) filter.id = (*body)["id"].get<std::string>();
    // An id that is not UTF-8, as GET /dlq gives it.
    if (body->contains("id_base64")) {
        auto raw = fromBase64((*body)["id_base64"].get<std::string>());
        if (!raw) {
            send(res, errorReply(400, "\"id_base64\" must be a base64 string"));
            return std::nullopt;
        }
        filter.id = std::move(raw);
    }
    if (body->contains("reason")) filter.reason = (*body)["reason"].get<std::string>();
    return filter;
}

void busy(httplib::Response& res) {
    res.set_header("Retry-After", "1");
    send(res, errorReply(429, "the dead-letter queue is being read by " + std::to_string(kHeavyRequests) +
                                  " other requests; retry in a moment"));
}

// Constant-time comparison: the token must not leak through timing.
bool sameToken(const std::string& a, const std::string& b) {
    if (a.size() != b.size()) return false;
    unsigned char diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

// What answers without the token: liveness, readiness, the scrape (scrapers
// and probes carry no secrets) and the console page (no data in it).
bool isOpen(const httplib::Request& req) {
    if (req.method != "GET" && req.method != "HEAD") return false;
    return req.path == "/healthz" || req.path == "/readyz" || req.path == "/metrics" || req.path == "/";
}

}  // namespace

AdminServer::AdminServer(AdminApi& api, std::string token)
    : api_(api), token_(std::move(token)), server_(std::make_unique<httplib::Server>()) {
    auto& srv = *server_;
    srv.set_payload_max_length(kMaxBodyBytes);  // larger bodies: 413 before any handler runs
    srv.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
    srv.set_read_timeout(kReadTimeoutS, 0);
    srv.set_write_timeout(kWriteTimeoutS, 0);
    srv.set_keep_alive_timeout(kKeepAliveTimeoutS);

    // With a token, every request needs it, reads included (dead-letter
    // payloads are data), checked before routing. Exempt: the probes, the
    // scrape, and the console's page itself, which holds no data and asks
    // for the token before it reads anything.
    srv.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        if (token_.empty() || isOpen(req)) return httplib::Server::HandlerResponse::Unhandled;
        const std::string auth = req.get_header_value("Authorization");
        const std::string prefix = "Bearer ";
        if (auth.rfind(prefix, 0) == 0 && sameToken(auth.substr(prefix.size()), token_))
            return httplib::Server::HandlerResponse::Unhandled;
        res.set_header("WWW-Authenticate", "Bearer");
        send(res, errorReply(401, "this request needs Authorization: Bearer <token> (admin.token_file)"));
        spdlog::warn("admin: refused {} {} from {}: missing or wrong token", req.method, req.path, req.remote_addr);
        return httplib::Server::HandlerResponse::Handled;
    });

    // The console: one self-contained page that reads the endpoints below.
    srv.Get("/", [](const httplib::Request&, httplib::Response& res) {
        res.set_header("Cache-Control", "no-cache");
        // Nothing but this host: no external script, style or frame.
        res.set_header("Content-Security-Policy",
                       "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'");
        res.set_content(std::string(console::kPage), "text/html; charset=utf-8");
    });
    srv.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
    srv.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
        const std::string why = api_.notReady();
        res.status = why.empty() ? 200 : 503;
        res.set_content(why.empty() ? "ready\n" : "not ready: " + why + "\n", "text/plain");
    });
    srv.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(api_.metrics(), "text/plain; version=0.0.4; charset=utf-8");
    });
    srv.Get("/health", [this](const httplib::Request&, httplib::Response& res) { send(res, {200, api_.health()}); });
    srv.Post("/drain", [this](const httplib::Request&, httplib::Response& res) { send(res, api_.drain()); });
    srv.Post("/drain/cancel", [this](const httplib::Request&, httplib::Response& res) { send(res, api_.cancelDrain()); });
    srv.Get("/schedules", [this](const httplib::Request&, httplib::Response& res) { send(res, api_.schedules()); });
    srv.Post("/schedules", [this](const httplib::Request& req, httplib::Response& res) {
        if (auto body = jsonObject(req, res)) send(res, api_.addSchedule(*body));
    });
    srv.Delete(R"(/schedules/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
        send(res, api_.cancelSchedule(req.matches[1]));
    });
    srv.Get("/stalled", [this](const httplib::Request& req, httplib::Response& res) {
        send(res, api_.stalled(req.has_param("domain") ? req.get_param_value("domain") : ""));
    });
    // Pausing a domain stops its pulling on every host, until resumed.
    for (const char* action : {"pause", "resume"}) {
        const bool pause = std::string_view(action) == "pause";
        srv.Post(std::string(R"(/domains/([^/]+)/)") + action, [this, pause](const httplib::Request& req, httplib::Response& res) {
            send(res, api_.setPaused(req.matches[1], pause));
        });
    }
    // The log level, changed at runtime without a reload (until the next
    // start or a reload that changes log.level).
    srv.Get("/log-level", [this](const httplib::Request&, httplib::Response& res) { send(res, api_.logLevel()); });
    srv.Put("/log-level", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = jsonObject(req, res);
        if (!body) return;
        if (!body->contains("level") || !(*body)["level"].is_string()) {
            send(res, errorReply(400, "the body must be {\"level\": \"trace|debug|info|warning|error\"}"));
            return;
        }
        send(res, api_.setLogLevel((*body)["level"].get<std::string>()));
    });
    // Dead-letter listings and replays read the DLQ: at most kHeavyRequests
    // run at once (each bounded by its page), the others are told to come back.
    srv.Get(R"(/dlq/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
        broker::DeadLetterQuery query;
        for (auto [name, field, most] : {std::tuple{"limit", &query.limit, std::size_t{10000}},
                                         std::tuple{"max_bytes", &query.max_bytes, kMaxPageBytes}}) {
            if (!req.has_param(name)) continue;
            try {
                *field = std::clamp<std::size_t>(std::stoul(req.get_param_value(name)), 1, most);
            } catch (const std::exception&) {
                send(res, errorReply(400, std::string(name) + " must be a positive number"));
                return;
            }
        }
        if (req.has_param("reason")) query.filter.reason = req.get_param_value("reason");
        if (req.has_param("after")) {
            try {
                query.after = std::stoull(req.get_param_value("after"));
            } catch (const std::exception&) {
                send(res, errorReply(400, "after must be a sequence number (a page's next_after)"));
                return;
            }
        }
        Heavy heavy(heavy_);
        if (!heavy) return busy(res);
        send(res, api_.deadLetters(req.matches[1], query));
    });
    // Replay and purge take the same body: {} (all), {"id"}, {"id_base64"}
    // and/or {"reason"} (those whose reason contains it).
    for (const char* action : {"replay", "purge"}) {
        const bool replay = std::string_view(action) == "replay";
        srv.Post(std::string(R"(/dlq/([^/]+)/)") + action, [this, replay](const httplib::Request& req, httplib::Response& res) {
            auto filter = deadLetterFilter(req, res);
            if (!filter) return;
            Heavy heavy(heavy_);
            if (!heavy) return busy(res);
            send(res, replay ? api_.replay(req.matches[1], *filter) : api_.purge(req.matches[1], *filter));
        });
    }

    // Where an item is: a heavy request (it may read many stored items).
    srv.Get("/items/status", [this](const httplib::Request& req, httplib::Response& res) {
        std::optional<std::string> id;
        if (req.has_param("id")) id = req.get_param_value("id");
        if (req.has_param("id_base64")) id = fromBase64(req.get_param_value("id_base64"));
        if (!id || id->empty()) {
            send(res, errorReply(400, "give the work id as ?id=ID (or ?id_base64=B64 for an id that is not UTF-8)"));
            return;
        }
        std::size_t scan = kDefaultStatusScan;
        if (req.has_param("scan")) {
            try {
                scan = std::clamp<std::size_t>(std::stoul(req.get_param_value("scan")), 1, kMaxStatusScan);
            } catch (const std::exception&) {
                send(res, errorReply(400, "scan must be a positive number"));
                return;
            }
        }
        Heavy heavy(heavy_);
        if (!heavy) return busy(res);
        send(res, api_.itemStatus(*id, req.has_param("domain") ? req.get_param_value("domain") : "", scan));
    });

    // Unknown routes and httplib's own refusals (413) get a JSON message too.
    srv.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
        if (res.status == 413)
            send(res, errorReply(413, "request body larger than " + std::to_string(kMaxBodyBytes) + " bytes"));
        else if (res.status == 404 && res.body.empty())
            send(res, errorReply(404, "no such endpoint: " + req.method + " " + req.path));
    });
    srv.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            what = e.what();
        } catch (...) {
        }
        spdlog::error("admin: {} {} failed: {}", req.method, req.path, what);
        send(res, errorReply(500, what));
    });

    // httplib sets SO_REUSEPORT by default, which would let a second daemon
    // share our port silently; a busy port must be an error instead.
    srv.set_socket_options([](socket_t sock) {
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
    spdlog::info("admin: listening on {}:{}{}", host, port_, token_.empty() ? "" : " (token required for changes)");
    return Ok{};
}

void AdminServer::stop() {
    if (thread_.joinable()) {
        server_->stop();
        thread_.join();
    }
}

}  // namespace kanban::host::admin
