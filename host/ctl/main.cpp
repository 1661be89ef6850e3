// kanbanctl: a thin client over the host library and the admin API
// (docs/design.md §6). Exit codes: ctl_common.hpp.
#include <CLI/CLI.hpp>
#include <nats/nats.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "admin_client.hpp"
#include "admin_verbs.hpp"
#include "config/config.hpp"
#include "ctl_common.hpp"
#include "plugin/check_config.hpp"
#include "publish.hpp"
#include "version.hpp"

using namespace kanban::ctl;
namespace config = kanban::host::config;

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
    pub->add_option("--deadline-ms", pa.deadline_ms, "deadline, milliseconds from now (from --delay/--at when given)")
        ->check(CLI::PositiveNumber);
    auto* delay_opt = pub->add_option("--delay", pa.delay, "hand it to a handler no earlier than this from now (1500ms, 30s, 5m, 2h, 1d)");
    auto* at_opt = pub->add_option("--at", pa.at, "hand it to a handler no earlier than this RFC 3339 time (2026-12-24T18:00:00Z)");
    delay_opt->excludes(at_opt);
    pub->add_option("--count", pa.count, "number of items")->check(CLI::Range(1, 10'000'000));
    pub->add_option("--header", pa.headers, "a header K=V for the handler to read (repeatable)");
    pub->add_flag("--trace", pa.trace,
                  "start a trace for each item (its traceparent header; a publish span to [tracing] otlp_endpoint "
                  "when set); prints the trace ids on stderr");

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
    drain_cmd->add_flag("--json", json, "print the JSON answer (with --wait: the last GET /health)");
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
    dlq_list->add_option("--reason", dlq_reason, "only those whose reason code is this (handler_failed, retries_exhausted, ...) or whose reason contains it");
    auto* dlq_replay = dlq_cmd->add_subcommand("replay", "publish dead-lettered items again (all, or --id)");
    dlq_replay->add_option("DOMAIN", dlq_domain, "domain")->required();
    auto* id_opt = dlq_replay->add_option("--id", dlq_id, "only this work id");
    dlq_replay->add_option("--id-base64", dlq_id_base64, "only this work id, given in base64 (an id that is not UTF-8, "
                                                         "as id_base64 in dlq list --json)")
        ->excludes(id_opt);
    dlq_replay->add_option("--reason", dlq_reason, "only those whose reason code is this (handler_failed, retries_exhausted, ...) or whose reason contains it");
    dlq_replay->add_flag("--json", json, "print the JSON answer");
    auto* dlq_purge = dlq_cmd->add_subcommand("purge", "remove dead-lettered items for good (all, --id or --reason)");
    dlq_purge->add_option("DOMAIN", dlq_domain, "domain")->required();
    auto* purge_id_opt = dlq_purge->add_option("--id", dlq_id, "only this work id");
    dlq_purge->add_option("--id-base64", dlq_id_base64, "only this work id, given in base64")->excludes(purge_id_opt);
    dlq_purge->add_option("--reason", dlq_reason, "only those whose reason code is this (handler_failed, retries_exhausted, ...) or whose reason contains it");
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

    std::string status_id, status_id_base64, status_domain;
    std::size_t status_scan = 0;
    auto* status_cmd = app.add_subcommand("status", "where a work item is: waiting, in flight, done, dead-lettered or unknown");
    auto* status_id_opt = status_cmd->add_option("ID", status_id, "work id");
    status_cmd->add_option("--id-base64", status_id_base64, "the work id in base64 (an id that is not UTF-8)")
        ->excludes(status_id_opt);
    status_cmd->add_option("--domain", status_domain, "look only in this domain");
    status_cmd->add_option("--scan", status_scan, "read at most this many waiting items (default 100000)")
        ->check(CLI::PositiveNumber);
    status_cmd->add_flag("--json", json, "print the JSON of GET /items/status");

    std::string pause_domain;
    auto* domain_cmd = app.add_subcommand("domain", "domain commands (pausing holds on every host and across restarts)");
    domain_cmd->require_subcommand(1);
    auto* domain_pause = domain_cmd->add_subcommand("pause", "stop pulling the domain's items on every host");
    domain_pause->add_option("DOMAIN", pause_domain, "domain")->required();
    domain_pause->add_flag("--json", json, "print the JSON answer");
    auto* domain_resume = domain_cmd->add_subcommand("resume", "pull the domain's items again on every host");
    domain_resume->add_option("DOMAIN", pause_domain, "domain")->required();
    domain_resume->add_flag("--json", json, "print the JSON answer");

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
        if (*status_cmd && status_id.empty() && status_id_base64.empty()) throw CLI::RequiredError("ID or --id-base64");
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
    if (*health_cmd || *drain_cmd || *dlq_cmd || *sched_cmd || *log_cmd || *stalled_cmd || *domain_cmd ||
        *status_cmd) {
        AdminClient admin;
        rc = admin.setup(config_path, admin_addr);
        if (rc == kExitOk) {
            if (*health_cmd) rc = health(admin, json);
            if (*drain_cmd) rc = drain(admin, wait, timeout_s, cancel_drain, json);
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
            if (*status_cmd) rc = itemStatus(admin, status_id, status_id_base64, status_domain, status_scan, json);
            if (*domain_pause || *domain_resume) rc = domainPause(admin, pause_domain, domain_pause->parsed(), json);
        }
    }
    nats_Close();
    return rc;
}
