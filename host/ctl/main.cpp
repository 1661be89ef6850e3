// kanbanctl: a thin client over the host library (DESIGN §6).
//
// Exit codes: 0 ok; 64 usage (bad flag, bad value, unknown domain);
// 66 input file missing (--file, --config); 69 broker unreachable;
// 1 anything else. Errors are one line on stderr.
#include "broker/jetstream.hpp"
#include "common/clock.hpp"
#include "config/config.hpp"
#include "daemon/daemon.hpp"
#include "version.hpp"

#include <CLI/CLI.hpp>
#include <nats/nats.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

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

    broker::JetStreamOptions jo;
    jo.servers = cfg.nats.servers;
    jo.stream = cfg.nats.stream;
    jo.replicas = static_cast<int>(cfg.nats.replicas);
    jo.max_msgs = cfg.nats.max_msgs;
    jo.max_bytes = cfg.nats.max_bytes;
    jo.keep_trying = false;
    jo.connection_name = "kanbanctl";
    auto js = broker::JetStream::connect(jo);
    if (!js) return fail(kExitUnavailable, js.message());

    broker::PublishRequest req;
    req.domain = args.domain;
    req.priority = *parsePriority(args.priority);
    req.payload = std::move(payload);
    if (args.deadline_ms > 0) req.deadline_unix_ms = nowUnixMs() + args.deadline_ms;
    for (std::int64_t i = 0; i < args.count; ++i) {
        req.id = args.id.empty() ? broker::generateWorkId() : args.id;
        auto ack = (*js)->publish(req);
        if (!ack) {
            std::cout.flush();
            return fail((*js)->connected() ? kExitError : kExitUnavailable, ack.message());
        }
        if (ack->duplicate)
            std::cerr << "kanbanctl: note: " << req.id << " was already published (deduplicated)\n";
        std::cout << req.id << '\n';
    }
    std::cout.flush();
    return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
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
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);
        app.exit(e);
        return kExitUsage;
    }

    int rc = kExitError;
    if (*pub) rc = publish(config_path, pa);
    if (*check) rc = kanban::host::daemon::checkConfig(check_path);
    nats_Close();
    return rc;
}
