// kanbanctl: a thin client over the host library and the admin API (docs/design.md §6).
//
// Exit codes: 0 ok; 64 usage (bad flag, bad value, unknown domain);
// 66 input file missing (--file, --config); 69 broker or daemon
// unreachable; 1 anything else (including a refusal by the daemon).
// Errors are one line on stderr.
#include "admin/token.hpp"
#include "broker/broker_options.hpp"
#include "broker/failover.hpp"
#include "broker/jetstream.hpp"
#include "broker/rabbitmq.hpp"
#include "common/clock.hpp"
#include "config/config.hpp"
#include "plugin/check_config.hpp"
#include "version.hpp"

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <map>
#include <nats/nats.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace {

using namespace kanban::host;

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 64;
constexpr int kExitNoInput = 66;
constexpr int kExitUnavailable = 69;

int fail(int code, const std::string& message) {
    std::cerr << "kanbanctl: " << message << "\n";
    return code;
}

struct PublishArgs {
    std::string domain;
    std::string priority = "normal";
    std::string payload;
    std::string file;
    std::string id;
    std::int64_t deadline_ms = 0;
    std::int64_t count = 1;
};

int loadConfig(const std::string& path, config::Config& out) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return fail(kExitNoInput, path + ": config file not found");
    auto cfg = config::loadConfigFile(path);
    if (!cfg) {
        // Several problems are several lines; the first says enough for a one-line reason.
        const std::string& m = cfg.message();
        return fail(kExitError, "invalid config: " + m.substr(0, m.find('\n')));
    }
    out = std::move(*cfg);
    return kExitOk;
}

int publish(const std::string& config_path, const PublishArgs& args) {
    config::Config cfg;
    if (int rc = loadConfig(config_path, cfg); rc != kExitOk) return rc;
    if (cfg.findDomain(args.domain) == nullptr) {
        std::string known;
        for (const auto& d : cfg.domains) known += (known.empty() ? "" : ", ") + d.name;
        return fail(kExitUsage, "unknown domain \"" + args.domain + "\" (configured: " + known + ")");
    }
    if (!args.id.empty() && args.count != 1) return fail(kExitUsage, "--id can only be used with --count 1");
    if (args.id.size() > broker::kMaxWorkIdBytes)
        return fail(kExitUsage, "--id is " + std::to_string(args.id.size()) + " bytes long; the limit is " +
                                    std::to_string(broker::kMaxWorkIdBytes));
    for (unsigned char c : args.id)
        if (c < 0x20 || c == 0x7f) return fail(kExitUsage, "--id must not contain control characters");

    std::string payload = args.payload;
    if (!args.file.empty()) {
        std::ifstream in(args.file, std::ios::binary);
        if (!in) return fail(kExitNoInput, args.file + ": cannot open payload file");
        std::ostringstream s;
        s << in.rdbuf();
        payload = s.str();
    }

    // NATS first; RabbitMQ when NATS is unreachable or stops answering
    // (broker/failover.hpp), like the daemon.
    auto js = broker::JetStream::connect(broker::jetStreamOptions(cfg, "kanbanctl", /*keep_trying=*/false));
    std::unique_ptr<broker::JetStream> nats;
    if (js) nats = std::move(*js);
    std::unique_ptr<broker::RabbitMq> rabbit;
    if (auto ro = broker::rabbitMqOptions(cfg, "kanbanctl")) rabbit = std::make_unique<broker::RabbitMq>(*ro);
    if (!nats && !rabbit) return fail(kExitUnavailable, js.message());
    broker::Failover brokers(nats.get(), rabbit.get());

    broker::PublishRequest req;
    req.domain = args.domain;
    req.priority = *parsePriority(args.priority);
    req.payload = std::move(payload);
    if (args.deadline_ms > 0) req.deadline_unix_ms = nowUnixMs() + args.deadline_ms;
    std::map<std::string, std::int64_t> by_backend;
    // After a failover, say where the items went (on stderr: stdout is the ids).
    auto summary = [&] {
        if (by_backend.size() < 2) return;
        std::cerr << "kanbanctl: published";
        for (const auto& [backend, n] : by_backend) std::cerr << " " << n << " to " << backend;
        std::cerr << "\n";
    };
    for (std::int64_t i = 0; i < args.count; ++i) {
        req.id = args.id.empty() ? broker::generateWorkId() : args.id;
        auto ack = brokers.publish(req);
        if (!ack) {
            std::cout.flush();
            summary();
            return fail(ack.error().refused || brokers.healthy() ? kExitError : kExitUnavailable, ack.message());
        }
        ++by_backend[std::string(brokers.lastPublishBackend())];
        if (ack->duplicate)
            std::cerr << "kanbanctl: note: " << req.id << " was already published (deduplicated)\n";
        std::cout << req.id << '\n';
    }
    summary();
    std::cout.flush();
    return kExitOk;
}

// The daemon's admin API, at --admin or the config's admin.listen, with the
// config's token for changes.
class AdminClient {
public:
    struct Response {
        int status = 0;
        nlohmann::json body;
    };

    // Returns an exit code when the address cannot be determined.
    int setup(const std::string& config_path, const std::string& admin_override) {
        config::Config cfg;
        const bool have_config = std::filesystem::exists(config_path);
        if (have_config) {
            if (int rc = loadConfig(config_path, cfg); rc != kExitOk) return rc;
        } else if (admin_override.empty()) {
            return fail(kExitNoInput, config_path + ": config file not found (or pass --admin HOST:PORT)");
        }
        std::string listen = admin_override.empty() ? cfg.admin.listen : admin_override;
        const auto colon = listen.rfind(':');
        if (colon == std::string::npos) return fail(kExitUsage, "admin address \"" + listen + "\" is not HOST:PORT");
        host_ = listen.substr(0, colon);
        if (host_.size() > 2 && host_.front() == '[' && host_.back() == ']') host_ = host_.substr(1, host_.size() - 2);
        try {
            port_ = std::stoi(listen.substr(colon + 1));
        } catch (const std::exception&) {
            port_ = -1;
        }
        if (port_ <= 0 || port_ > 65535)
            return fail(kExitUsage, "admin address \"" + listen + "\" has no usable port (pass --admin HOST:PORT)");
        if (have_config && !cfg.admin.token_file.empty()) {
            auto token = admin::readTokenFile(cfg.admin.token_file);
            if (!token) return fail(kExitNoInput, token.message());
            token_ = *token;
        }
        return kExitOk;
    }

    // nullopt: the daemon did not answer (the caller exits 69).
    std::optional<Response> call(const std::string& method, const std::string& path, const std::string& body = "") {
        httplib::Client c(host_, port_);
        c.set_connection_timeout(2);
        c.set_read_timeout(30);
        httplib::Headers headers;
        if (!token_.empty()) headers.emplace("Authorization", "Bearer " + token_);
        httplib::Result r = method == "GET"    ? c.Get(path.c_str(), headers)
                            : method == "POST" ? c.Post(path.c_str(), headers, body, "application/json")
                            : method == "PUT"  ? c.Put(path.c_str(), headers, body, "application/json")
                                               : c.Delete(path.c_str(), headers);
        if (!r) return std::nullopt;
        Response out;
        out.status = r->status;
        out.body = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
        return out;
    }

    std::string address() const { return host_ + ":" + std::to_string(port_); }

    int unreachable() const {
        return fail(kExitUnavailable, "kanband is not answering at " + address() + " (is it running? see admin.listen)");
    }

    static int refused(const Response& r) {
        std::string why = r.body.is_object() && r.body.contains("error") ? r.body["error"].get<std::string>()
                                                                          : "HTTP " + std::to_string(r.status);
        return fail(kExitError, why + " (HTTP " + std::to_string(r.status) + ")");
    }

private:
    std::string host_;
    int port_ = 0;
    std::string token_;
};

std::string dump(const nlohmann::json& j) { return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace); }

int health(AdminClient& admin, bool json) {
    auto r = admin.call("GET", "/health");
    if (!r) return admin.unreachable();
    if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
    const auto& h = r->body;
    if (json) {
        std::cout << dump(h) << "\n";
        return kExitOk;
    }
    std::printf("status: %s   backend: %s   workers: %zu/%zu   draining: %s\n", h.value("status", "?").c_str(),
                h["backend"].is_string() ? h["backend"].get<std::string>().c_str() : "none",
                h.value("current_workers", std::size_t{0}), h.value("target_workers", std::size_t{0}),
                h.value("queue_draining", false) ? (h.value("drained", false) ? "drained" : "yes") : "no");
    std::printf("%-20s %-8s %-8s %8s %8s %-9s %-9s %s\n", "domain", "status", "workers", "depth", "inflight", "circuit",
                "isolation", "plugin");
    for (const auto& [name, d] : h["domains"].items()) {
        const std::string plugin = d["plugin"].is_object()
                                       ? d["plugin"].value("name", "?") + " " + d["plugin"].value("version", "?")
                                       : "-";
        const std::string workers = std::to_string(d.value("workers", 0)) + "/" + std::to_string(d.value("target_workers", 0));
        std::printf("%-20s %-8s %-8s %8llu %8llu %-9s %-9s %s\n", name.c_str(), d.value("status", "?").c_str(),
                    workers.c_str(), static_cast<unsigned long long>(d.value("depth", 0ULL)),
                    static_cast<unsigned long long>(d.value("in_flight", 0ULL)), d.value("circuit", "?").c_str(),
                    d.value("isolation", "thread").c_str(), plugin.c_str());
        if (d.contains("error")) std::printf("    error: %s\n", d["error"].get<std::string>().c_str());
        if (d.contains("held")) std::printf("    held: %s\n", d["held"].get<std::string>().c_str());
        if (const auto crash = d.find("last_crash"); crash != d.end() && crash->is_object())
            std::printf("    last runner crash: %s, id %s\n", crash->value("what", "?").c_str(), crash->value("id", "?").c_str());
    }
    return kExitOk;
}

int drain(AdminClient& admin, bool wait, int timeout_s, bool cancel) {
    if (cancel) {
        auto r = admin.call("POST", "/drain/cancel");
        if (!r) return admin.unreachable();
        if (r->status != 200) return AdminClient::refused(*r);
        std::cout << "drain cancelled\n";
        return kExitOk;
    }
    auto r = admin.call("POST", "/drain");
    if (!r) return admin.unreachable();
    if (r->status != 202 && r->status != 200) return AdminClient::refused(*r);
    if (!wait) {
        std::cout << "draining\n";
        return kExitOk;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    for (;;) {
        auto h = admin.call("GET", "/health");
        if (!h) return admin.unreachable();
        if (h->status == 200 && h->body.is_object() && h->body.value("drained", false)) {
            std::cout << "drained\n";
            return kExitOk;
        }
        if (timeout_s > 0 && std::chrono::steady_clock::now() >= deadline)
            return fail(kExitError, "not drained after " + std::to_string(timeout_s) + " s");
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
}

// Pages through GET /dlq/<domain> (bounded by bytes as well as by count)
// until `limit` items, waiting when the host says it is busy (429).
int dlqList(AdminClient& admin, const std::string& domain, bool json, int limit, const std::string& reason) {
    nlohmann::json all{{"domain", domain}, {"items", nlohmann::json::array()}, {"more", false}};
    std::uint64_t after = 0;
    for (int busy = 0;;) {
        const std::size_t left = static_cast<std::size_t>(limit) - all["items"].size();
        auto r = admin.call("GET", "/dlq/" + domain + "?limit=" + std::to_string(left) + "&after=" + std::to_string(after) +
                                       (reason.empty() ? "" : "&reason=" + httplib::detail::encode_query_param(reason)));
        if (!r) return admin.unreachable();
        if (r->status == 429 && ++busy < 60) {
            std::this_thread::sleep_for(std::chrono::seconds(1));
            continue;
        }
        if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
        for (auto& item : r->body["items"]) all["items"].push_back(std::move(item));
        if (r->body.contains("unavailable")) all["unavailable"] = r->body["unavailable"];
        all["more"] = r->body.value("more", false);
        if (!all["more"].get<bool>() || all["items"].size() >= static_cast<std::size_t>(limit)) break;
        after = r->body.value("next_after", std::uint64_t{0});
    }
    all["count"] = all["items"].size();
    if (json) {
        std::cout << dump(all) << "\n";
        return kExitOk;
    }
    for (const auto& item : all["items"])
        std::printf("%llu\t%s\tattempts=%u\t%s\treason=%s\n", item.value("sequence", 0ULL), item.value("id", "").c_str(),
                    item.value("attempts", 0U), item.value("dead_lettered_at", "").c_str(), item.value("reason", "").c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "%zu dead-lettered item(s) in %s%s\n", all["items"].size(), domain.c_str(),
                 all["more"].get<bool>() ? " (more: raise --limit)" : "");
    return kExitOk;
}

// The items in handlers longer than stall_threshold_ms on this host.
int stalled(AdminClient& admin, const std::string& domain, bool json) {
    auto r = admin.call("GET", "/stalled" + (domain.empty() ? "" : "?domain=" + httplib::detail::encode_query_param(domain)));
    if (!r) return admin.unreachable();
    if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
    if (json) {
        std::cout << r->body.dump(2) << "\n";
        return kExitOk;
    }
    for (const auto& item : r->body["items"])
        std::printf("%s\t%s\tattempt=%u\tin_handler=%.1fs\n", item.value("domain", "").c_str(), item.value("id", "").c_str(),
                    item.value("attempt", 0U), item.value("in_handler_seconds", 0.0));
    std::fflush(stdout);
    std::fprintf(stderr, "%zu item(s) in a handler longer than %lld ms\n", r->body["items"].size(),
                 static_cast<long long>(r->body.value("stall_threshold_ms", 0LL)));
    return kExitOk;
}

// Without a level: prints the current one; with one: sets it at once.
int logLevel(AdminClient& admin, const std::string& level, bool json) {
    auto r = level.empty() ? admin.call("GET", "/log-level")
                           : admin.call("PUT", "/log-level", nlohmann::json{{"level", level}}.dump());
    if (!r) return admin.unreachable();
    if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
    if (json)
        std::cout << r->body.dump(2) << "\n";
    else if (level.empty())
        std::cout << r->body.value("level", "") << "\n";
    else
        std::cout << "log level " << r->body.value("previous", "") << " -> " << r->body.value("level", "") << "\n";
    return kExitOk;
}

int scheduleAdd(AdminClient& admin, const nlohmann::json& job) {
    auto r = admin.call("POST", "/schedules", job.dump());
    if (!r) return admin.unreachable();
    if (r->status != 201 || !r->body.is_object()) return AdminClient::refused(*r);
    std::cout << r->body.value("name", "") << " added (" << r->body.value("state", "") << ")\n";
    return kExitOk;
}

int scheduleList(AdminClient& admin, bool json) {
    auto r = admin.call("GET", "/schedules");
    if (!r) return admin.unreachable();
    if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
    if (json) {
        std::cout << r->body.dump(2) << "\n";
        return kExitOk;
    }
    std::printf("%-20s %-14s %-22s %-8s %-9s %10s  %s\n", "NAME", "DOMAIN", "WHEN", "SOURCE", "STATE", "PUBLISHED", "NOTE");
    for (const auto& j : r->body["schedules"]) {
        const std::string when = j.contains("every_ms") ? "every " + std::to_string(j["every_ms"].get<std::int64_t>()) + " ms"
                                                        : "cron " + j.value("cron", "");
        std::string note = j.value("reason", "");
        if (note.empty() && j.value("throttled", false)) note = "throttled (backpressure)";
        std::printf("%-20s %-14s %-22s %-8s %-9s %10llu  %s\n", j.value("name", "").c_str(), j.value("domain", "").c_str(),
                    when.c_str(), j.value("source", "").c_str(), j.value("state", "").c_str(),
                    static_cast<unsigned long long>(j.value("published", 0ULL)), note.c_str());
    }
    return kExitOk;
}

int scheduleCancel(AdminClient& admin, const std::string& name) {
    auto r = admin.call("DELETE", "/schedules/" + name);
    if (!r) return admin.unreachable();
    if (r->status != 200) return AdminClient::refused(*r);
    std::cout << name << " cancelled\n";
    return kExitOk;
}

// dlq replay / dlq purge: prints each id replayed or purged.
int dlqSettle(AdminClient& admin, bool replay, const std::string& domain, const std::string& id,
              const std::string& id_base64, const std::string& reason, bool json) {
    nlohmann::json body = nlohmann::json::object();
    if (!id_base64.empty()) body["id_base64"] = id_base64;
    if (!id.empty()) body["id"] = id;
    if (!reason.empty()) body["reason"] = reason;
    auto r = admin.call("POST", "/dlq/" + domain + (replay ? "/replay" : "/purge"), body.dump());
    if (!r) return admin.unreachable();
    if ((r->status != 200 && r->status != 409) || !r->body.is_object()) return AdminClient::refused(*r);
    if (json)
        std::cout << r->body.dump(2) << "\n";
    else
        for (const auto& done : r->body[replay ? "replayed" : "purged"]) std::cout << done.get<std::string>() << "\n";
    const auto& failed = r->body["failed"];
    if (failed.empty()) return kExitOk;
    return fail(kExitError, std::to_string(failed.size()) + (replay ? " not replayed" : " not purged") + "; first: " +
                                failed[0].value("id", "") + ": " + failed[0].value("error", ""));
}

}  // namespace

int main(int argc, char** argv) {
    // The library's notes (a failover, a lost connection) go to stderr:
    // stdout carries only results, such as the published ids.
    auto logger = spdlog::stderr_color_mt("kanbanctl");
    logger->set_pattern("kanbanctl: %v");
    logger->set_level(spdlog::level::warn);
    spdlog::set_default_logger(logger);
    CLI::App app{"kanbanctl: control TPS Kanban"};
    app.set_version_flag("--version", std::string("kanbanctl ") + KANBAN_VERSION);
    std::string config_path = config::kDefaultConfigPath;
    app.add_option("--config", config_path, "kanband configuration (brokers, domains, admin address)")
        ->capture_default_str();
    app.require_subcommand(1);

    PublishArgs pa;
    auto* pub = app.add_subcommand("publish", "publish work items; prints each work id on its own line");
    pub->add_option("--domain", pa.domain, "target domain")->required();
    pub->add_option("--priority", pa.priority, "high, normal or low")
        ->check(CLI::IsMember({"high", "normal", "low"}))
        ->capture_default_str();
    auto* payload_opt = pub->add_option("--payload", pa.payload, "payload text");
    auto* file_opt = pub->add_option("--file", pa.file, "read the payload from this file");
    payload_opt->excludes(file_opt);
    pub->add_option("--id", pa.id, "work id (default: generated)");
    pub->add_option("--deadline-ms", pa.deadline_ms, "deadline, milliseconds from now")->check(CLI::PositiveNumber);
    pub->add_option("--count", pa.count, "number of items")->check(CLI::Range(1, 10'000'000));

    std::string admin_addr;
    app.add_option("--admin", admin_addr, "kanband's admin address HOST:PORT (default: admin.listen from the config)");

    bool json = false;
    auto* health_cmd = app.add_subcommand("health", "show the daemon's health");
    health_cmd->add_flag("--json", json, "print the JSON of GET /health");

    bool wait = false;
    int timeout_s = 0;
    auto* drain_cmd = app.add_subcommand("drain", "stop taking new scheduled work and empty the queues");
    bool cancel_drain = false;
    auto* wait_flag = drain_cmd->add_flag("--wait", wait, "wait until every queue and every worker is empty");
    drain_cmd->add_flag("--cancel", cancel_drain, "undo a drain: ready again, scheduled ticks resume")->excludes(wait_flag);
    drain_cmd->add_option("--timeout", timeout_s, "with --wait: give up after this many seconds (0 = never)")
        ->check(CLI::NonNegativeNumber);

    std::string dlq_domain, dlq_id, dlq_id_base64, dlq_reason;
    int dlq_limit = 100;
    auto* dlq_cmd = app.add_subcommand("dlq", "dead-letter queue commands");
    dlq_cmd->require_subcommand(1);
    auto* dlq_list = dlq_cmd->add_subcommand("list", "list a domain's dead-lettered items, oldest first");
    dlq_list->add_option("DOMAIN", dlq_domain, "domain")->required();
    dlq_list->add_flag("--json", json, "print the JSON of GET /dlq/<domain>");
    dlq_list->add_option("--limit", dlq_limit, "at most this many")->check(CLI::Range(1, 10000));
    dlq_list->add_option("--reason", dlq_reason, "only those whose reason contains this text");
    auto* dlq_replay = dlq_cmd->add_subcommand("replay", "publish dead-lettered items again (all, or --id)");
    dlq_replay->add_option("DOMAIN", dlq_domain, "domain")->required();
    auto* id_opt = dlq_replay->add_option("--id", dlq_id, "only this work id");
    dlq_replay->add_option("--id-base64", dlq_id_base64, "only this work id, given in base64 (an id that is not UTF-8, "
                                                         "as id_base64 in dlq list --json)")
        ->excludes(id_opt);
    dlq_replay->add_option("--reason", dlq_reason, "only those whose reason contains this text");
    dlq_replay->add_flag("--json", json, "print the JSON answer");
    auto* dlq_purge = dlq_cmd->add_subcommand("purge", "remove dead-lettered items for good (all, --id or --reason)");
    dlq_purge->add_option("DOMAIN", dlq_domain, "domain")->required();
    auto* purge_id_opt = dlq_purge->add_option("--id", dlq_id, "only this work id");
    dlq_purge->add_option("--id-base64", dlq_id_base64, "only this work id, given in base64")->excludes(purge_id_opt);
    dlq_purge->add_option("--reason", dlq_reason, "only those whose reason contains this text");
    dlq_purge->add_flag("--json", json, "print the JSON answer");

    std::string sched_name, sched_domain, sched_priority = "normal", sched_cron, sched_payload = "{}";
    std::int64_t sched_every = 0, sched_deadline = 0;
    auto* sched_cmd = app.add_subcommand("schedule", "scheduled jobs (runtime jobs are stored in NATS, for every host)");
    sched_cmd->require_subcommand(1);
    auto* sched_add = sched_cmd->add_subcommand("add", "add a job (it starts with one canary item)");
    sched_add->add_option("--name", sched_name, "job name [A-Za-z0-9_-]+")->required();
    sched_add->add_option("--domain", sched_domain, "target domain")->required();
    sched_add->add_option("--priority", sched_priority, "high, normal or low")->check(CLI::IsMember({"high", "normal", "low"}));
    auto* every_opt = sched_add->add_option("--every-ms", sched_every, "period in milliseconds")->check(CLI::PositiveNumber);
    auto* cron_opt = sched_add->add_option("--cron", sched_cron, "5-field cron expression (UTC)");
    every_opt->excludes(cron_opt);
    sched_add->add_option("--deadline-ms", sched_deadline, "each item's deadline, after its tick")->check(CLI::PositiveNumber);
    sched_add->add_option("--payload", sched_payload, "payload of each item");
    auto* sched_list = sched_cmd->add_subcommand("list", "list jobs with their state");
    sched_list->add_flag("--json", json, "print the JSON of GET /schedules");
    auto* sched_cancel = sched_cmd->add_subcommand("cancel", "remove a runtime job from every host");
    sched_cancel->add_option("NAME", sched_name, "job name")->required();

    std::string stalled_domain;
    auto* stalled_cmd = app.add_subcommand("stalled", "list the items in handlers longer than stall_threshold_ms");
    stalled_cmd->add_option("DOMAIN", stalled_domain, "only this domain");
    stalled_cmd->add_flag("--json", json, "print the JSON of GET /stalled");

    std::string log_level;
    auto* log_cmd = app.add_subcommand("log-level", "show the daemon's log level, or change it now (no reload)");
    log_cmd->add_option("LEVEL", log_level, "trace, debug, info, warning or error")
        ->check(CLI::IsMember({"trace", "debug", "info", "warning", "error"}));
    log_cmd->add_flag("--json", json, "print the JSON answer");

    std::string check_path;
    auto* cfg_cmd = app.add_subcommand("config", "configuration commands");
    cfg_cmd->require_subcommand(1);
    auto* check = cfg_cmd->add_subcommand("check", "validate a configuration file and its plugins");
    check->add_option("PATH", check_path, "configuration file")->required();

    app.failure_message([](const CLI::App*, const CLI::Error& e) { return std::string("kanbanctl: ") + e.what() + "\n"; });
    try {
        app.parse(argc, argv);
        if (*pub && payload_opt->count() == 0 && file_opt->count() == 0)
            throw CLI::RequiredError("--payload or --file");
        if (*sched_add && every_opt->count() == 0 && cron_opt->count() == 0)
            throw CLI::RequiredError("--every-ms or --cron");
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);
        app.exit(e);
        return kExitUsage;
    }

    int rc = kExitError;
    if (*pub) rc = publish(config_path, pa);
    if (*check) rc = kanban::host::plugin::checkConfig(check_path);
    if (*health_cmd || *drain_cmd || *dlq_cmd || *sched_cmd || *log_cmd || *stalled_cmd) {
        AdminClient admin;
        rc = admin.setup(config_path, admin_addr);
        if (rc == kExitOk) {
            if (*health_cmd) rc = health(admin, json);
            if (*drain_cmd) rc = drain(admin, wait, timeout_s, cancel_drain);
            if (*dlq_list) rc = dlqList(admin, dlq_domain, json, dlq_limit, dlq_reason);
            if (*dlq_replay) rc = dlqSettle(admin, true, dlq_domain, dlq_id, dlq_id_base64, dlq_reason, json);
            if (*dlq_purge) rc = dlqSettle(admin, false, dlq_domain, dlq_id, dlq_id_base64, dlq_reason, json);
            if (*sched_add) {
                nlohmann::json job{{"name", sched_name}, {"domain", sched_domain}, {"priority", sched_priority},
                                   {"payload", sched_payload}};
                if (every_opt->count() != 0) job["every_ms"] = sched_every;
                if (cron_opt->count() != 0) job["cron"] = sched_cron;
                if (sched_deadline > 0) job["deadline_ms"] = sched_deadline;
                rc = scheduleAdd(admin, job);
            }
            if (*sched_list) rc = scheduleList(admin, json);
            if (*sched_cancel) rc = scheduleCancel(admin, sched_name);
            if (*log_cmd) rc = logLevel(admin, log_level, json);
            if (*stalled_cmd) rc = stalled(admin, stalled_domain, json);
        }
    }
    nats_Close();
    return rc;
}
