#include "config/config.hpp"

#include "common/names.hpp"
#include "scheduler/cron.hpp"

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

namespace kanban::host::config {
namespace {

namespace fs = std::filesystem;
constexpr std::int64_t kMaxI64 = std::numeric_limits<std::int64_t>::max();

// Collects `path:line:col: message` lines and remembers where each key was.
class Diagnostics {
public:
    explicit Diagnostics(std::string path) : path_(std::move(path)) {}

    void at(const toml::source_region& where, const std::string& message) {
        lines_.push_back(path_ + ":" + std::to_string(where.begin.line) + ":" +
                         std::to_string(where.begin.column) + ": " + message);
    }
    void atKey(const std::string& key, const std::string& message) {
        auto it = where_.find(key);
        if (it != where_.end())
            at(it->second, message);
        else
            lines_.push_back(path_ + ": " + message);
    }
    void remember(const std::string& key, const toml::source_region& where) { where_[key] = where; }

    bool empty() const { return lines_.empty(); }
    std::string joined() const {
        std::string out;
        for (const auto& l : lines_) out += (out.empty() ? "" : "\n") + l;
        return out;
    }

private:
    std::string path_;
    std::vector<std::string> lines_;
    std::map<std::string, toml::source_region> where_;
};

std::string typeName(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::table: return "table";
        case toml::node_type::array: return "array";
        case toml::node_type::string: return "string";
        case toml::node_type::integer: return "integer";
        case toml::node_type::floating_point: return "float";
        case toml::node_type::boolean: return "boolean";
        case toml::node_type::date: return "date";
        case toml::node_type::time: return "time";
        case toml::node_type::date_time: return "date-time";
        default: return "nothing";
    }
}

// Typed access to one table; every key read is marked known, finish()
// reports the rest as unknown (a typo must never be silently ignored).
class Section {
public:
    Section(const toml::table* table, std::string prefix, Diagnostics& diag)
        : table_(table), prefix_(std::move(prefix)), diag_(diag) {}

    const toml::node* node(std::string_view key) {
        known_.insert(std::string(key));
        if (table_ == nullptr) return nullptr;
        const toml::node* n = table_->get(key);
        if (n != nullptr) diag_.remember(full(key), n->source());
        return n;
    }

    void integer(std::string_view key, std::int64_t& out, std::int64_t min, std::int64_t max) {
        const toml::node* n = node(key);
        if (n == nullptr) return;
        if (!n->is_integer()) return wrongType(*n, key, "an integer");
        const std::int64_t v = n->as_integer()->get();
        if (v < min || v > max) {
            std::string range = max == kMaxI64 ? "at least " + std::to_string(min)
                                               : "between " + std::to_string(min) + " and " + std::to_string(max);
            diag_.at(n->source(), full(key) + " must be " + range + ", got " + std::to_string(v));
            return;
        }
        out = v;
    }

    void optionalInteger(std::string_view key, std::optional<std::int64_t>& out, std::int64_t min) {
        if (table_ == nullptr || table_->get(key) == nullptr) {
            node(key);
            return;
        }
        std::int64_t v = min - 1;  // integer() writes only a valid value
        integer(key, v, min, kMaxI64);
        if (v >= min) out = v;
    }

    void number(std::string_view key, double& out, double min, double max) {
        const toml::node* n = node(key);
        if (n == nullptr) return;
        if (!n->is_number()) return wrongType(*n, key, "a number");
        const double v = n->is_integer() ? static_cast<double>(n->as_integer()->get()) : n->as_floating_point()->get();
        if (!(v >= min && v <= max)) {
            diag_.at(n->source(), full(key) + " must be between " + std::to_string(min).substr(0, 4) + " and " +
                                      std::to_string(max).substr(0, 4) + ", got " + std::to_string(v));
            return;
        }
        out = v;
    }

    void boolean(std::string_view key, bool& out) {
        const toml::node* n = node(key);
        if (n == nullptr) return;
        if (!n->is_boolean()) return wrongType(*n, key, "a boolean");
        out = n->as_boolean()->get();
    }

    bool string(std::string_view key, std::string& out) {
        const toml::node* n = node(key);
        if (n == nullptr) return false;
        if (!n->is_string()) {
            wrongType(*n, key, "a string");
            return false;
        }
        out = n->as_string()->get();
        return true;
    }

    void stringArray(std::string_view key, std::vector<std::string>& out) {
        const toml::node* n = node(key);
        if (n == nullptr) return;
        const toml::array* a = n->as_array();
        if (a == nullptr) return wrongType(*n, key, "an array of strings");
        std::vector<std::string> values;
        for (const toml::node& e : *a) {
            if (!e.is_string()) return diag_.at(e.source(), full(key) + " must contain only strings");
            values.push_back(e.as_string()->get());
        }
        out = std::move(values);
    }

    void finish() {
        if (table_ == nullptr) return;
        for (auto&& [k, v] : *table_) {
            if (known_.count(std::string(k.str())) != 0) continue;
            diag_.at(k.source(), "unknown key '" + full(k.str()) + "'");
        }
    }

    // An error located at `key` of this section (or at the section if absent).
    void error(std::string_view key, const std::string& message) { diag_.atKey(full(key), message); }
    void errorAtTable(const std::string& message) {
        if (table_ != nullptr) diag_.at(table_->source(), message);
    }

    std::string full(std::string_view key) const { return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key); }

private:
    void wrongType(const toml::node& n, std::string_view key, const char* expected) {
        diag_.at(n.source(), full(key) + " must be " + expected + ", got " + typeName(n));
    }

    const toml::table* table_;
    std::string prefix_;
    Diagnostics& diag_;
    std::set<std::string> known_;
};

// Returns the sub-table `key` of `root` (nullptr if absent), reporting a
// non-table value.
const toml::table* subTable(Section& root, std::string_view key, Diagnostics& diag) {
    const toml::node* n = root.node(key);
    if (n == nullptr) return nullptr;
    if (!n->is_table()) {
        diag.at(n->source(), "'" + std::string(key) + "' must be a table ([" + std::string(key) + "]), got " + typeName(*n));
        return nullptr;
    }
    return n->as_table();
}

bool isLoopbackHost(const std::string& host) {
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string resolvePath(const fs::path& base_dir, const std::string& p) {
    fs::path path(p);
    if (path.is_absolute()) return path.lexically_normal().string();
    return (base_dir / path).lexically_normal().string();
}

void parseAdmin(Section& s, AdminConfig& admin, Diagnostics& diag, const fs::path& base_dir) {
    s.string("listen", admin.listen);
    s.string("token_file", admin.token_file);
    s.finish();

    // "host:port" or "[v6]:port"
    const std::string& l = admin.listen;
    std::string host, port;
    if (!l.empty() && l.front() == '[') {
        auto close = l.find(']');
        if (close != std::string::npos && close + 1 < l.size() && l[close + 1] == ':') {
            host = l.substr(1, close - 1);
            port = l.substr(close + 2);
        }
    } else if (auto colon = l.rfind(':'); colon != std::string::npos) {
        host = l.substr(0, colon);
        port = l.substr(colon + 1);
    }
    int port_num = -1;
    if (!port.empty() && port.find_first_not_of("0123456789") == std::string::npos && port.size() <= 5)
        port_num = std::stoi(port);
    if (host.empty() || port_num < 0 || port_num > 65535) {
        diag.atKey("admin.listen", "admin.listen must be \"host:port\" (e.g. \"127.0.0.1:9090\"), got \"" + l + "\"");
        return;
    }
    admin.host = host;
    admin.port = port_num;

    if (admin.token_file.empty()) {
        if (!isLoopbackHost(host))
            diag.atKey("admin.listen", "admin.listen \"" + l +
                                           "\" is not a loopback address: set admin.token_file so that the admin "
                                           "API requires a bearer token");
        return;
    }
    admin.token_file = resolvePath(base_dir, admin.token_file);
    struct stat st {};
    if (::stat(admin.token_file.c_str(), &st) != 0) {
        diag.atKey("admin.token_file", "admin.token_file " + admin.token_file + ": cannot be read");
    } else if ((st.st_mode & S_IROTH) != 0) {
        diag.atKey("admin.token_file", "admin.token_file " + admin.token_file +
                                           " is world-readable: chmod o-r it (it holds a secret)");
    }
}

std::string settingsToJson(const toml::table& t) {
    std::ostringstream out;
    out << toml::json_formatter{t};
    return nlohmann::json::parse(out.str()).dump();
}

// The tables of an array of tables `[[key]]` (empty when absent), reporting
// any other shape.
std::vector<const toml::table*> arrayOfTables(const toml::node* n, const std::string& key, Diagnostics& diag) {
    std::vector<const toml::table*> out;
    if (n == nullptr) return out;
    const toml::array* arr = n->as_array();
    if (arr == nullptr || !arr->is_array_of_tables()) {
        diag.at(n->source(), "'" + key + "' must be an array of tables ([[" + key + "]])");
        return out;
    }
    for (const toml::node& e : *arr) out.push_back(e.as_table());
    return out;
}

// The policy tables, global or a domain's override (`prefix` names it in
// errors); the keys a domain may override are the ones read here.
void parseWorkers(Section& s, WorkersConfig& w, bool global) {
    s.integer("pull_batch", w.pull_batch, 1, 1000);
    s.integer("min", w.min, 1, 1000);
    s.integer("max", w.max, 1, 1000);
    if (global) {
        s.integer("starvation_ms", w.starvation_ms, 0, kMaxI64);
        s.integer("hosts", w.hosts, 1, 1000);
    }
    s.finish();
    if (w.min > w.max)
        s.error("min", s.full("min") + " (" + std::to_string(w.min) + ") must not exceed " + s.full("max") + " (" +
                           std::to_string(w.max) + ")");
}

void parseRetry(Section& s, RetryConfig& r) {
    s.integer("max_attempts", r.max_attempts, 1, 1000);
    s.integer("backoff_initial_ms", r.backoff_initial_ms, 1, kMaxI64);
    s.integer("backoff_max_ms", r.backoff_max_ms, 1, kMaxI64);
    s.number("jitter", r.jitter, 0.0, 0.99);
    s.finish();
    if (r.backoff_initial_ms > r.backoff_max_ms)
        s.error("backoff_initial_ms", s.full("backoff_initial_ms") + " must not exceed " + s.full("backoff_max_ms"));
}

void parseBreaker(Section& s, CircuitBreakerConfig& b) {
    s.integer("failure_threshold", b.failure_threshold, 1, kMaxI64);
    s.integer("open_ms", b.open_ms, 1, kMaxI64);
    s.finish();
}

// A domain's [domain.<key>] sub-table, or nullptr (absent, or not a table: reported).
const toml::table* domainTable(Section& s, const std::string& prefix, const char* key, Diagnostics& diag) {
    const toml::node* n = s.node(key);
    if (n == nullptr) return nullptr;
    if (!n->is_table()) {
        diag.at(n->source(), prefix + "." + key + " must be a table ([domain." + key + "]), got " + typeName(*n));
        return nullptr;
    }
    return n->as_table();
}

// Reads the required, valid, unique `name` of one [[domain]] or [[schedule]].
void uniqueName(Section& s, const std::string& prefix, const char* kind, bool (*valid)(std::string_view),
                const char* rule, std::set<std::string>& seen, std::string& out) {
    if (!s.string("name", out))
        s.errorAtTable(prefix + ": missing required key 'name'");
    else if (!valid(out))
        s.error("name", std::string(kind) + " name \"" + out + "\" must match " + rule);
    else if (!seen.insert(out).second)
        s.error("name", "duplicate " + std::string(kind) + " \"" + out + "\"");
}

void parseDomains(Section& root, Config& cfg, Diagnostics& diag, const fs::path& base_dir) {
    const toml::node* n = root.node("domain");
    if (n == nullptr) {
        diag.atKey("", "no [[domain]] configured: kanband needs at least one domain");
        return;
    }
    std::set<std::string> seen;
    const auto tables = arrayOfTables(n, "domain", diag);
    for (std::size_t i = 0; i < tables.size(); ++i) {
        const std::string prefix = "domain[" + std::to_string(i) + "]";
        Section s(tables[i], prefix, diag);
        DomainConfig d;
        uniqueName(s, prefix, "domain", &isValidDomainName, "[a-z0-9_-]+ (at most 64 characters)", seen,
                   d.name);
        s.string("plugin", d.plugin);
        s.integer("timeout_ms", d.timeout_ms, 1, 24LL * 3600 * 1000);
        s.integer("max_in_flight", d.max_in_flight, 0, 100000);
        if (std::string rate; s.string("rate_limit", rate)) {
            if (auto parsed = flow::parseRateLimit(rate))
                d.rate_limit = *parsed;
            else
                s.error("rate_limit", prefix + ".rate_limit must be \"<count>/s\", \"<count>/m\" or \"<count>/h\" "
                                      "with a count from 1 to 1000000, got \"" + rate + "\"");
        }
        s.integer("rate_burst", d.rate_burst, 1, 1000000);
        if (d.rate_burst > 1 && !d.rate_limit) s.error("rate_burst", prefix + ".rate_burst needs rate_limit");
        std::string isolation;
        if (s.string("isolation", isolation)) {
            if (isolation == "process")
                d.isolation = Isolation::process;
            else if (isolation != "thread")
                s.error("isolation", prefix + ".isolation must be \"thread\" or \"process\", got \"" + isolation + "\"");
        }
        if (const toml::table* r = domainTable(s, prefix, "runner", diag)) {
            Section rs(r, prefix + ".runner", diag);
            rs.integer("memory_max_mb", d.runner.memory_max_mb, 0, 1 << 20);
            rs.integer("recycle_after_items", d.runner.recycle_after_items, 0, kMaxI64);
            rs.finish();
        }
        // Per-domain policies: unset keys inherit the global tables (parsed before).
        d.workers = cfg.workers;
        d.retry = cfg.retry;
        d.circuit_breaker = cfg.circuit_breaker;
        if (const toml::table* t = domainTable(s, prefix, "workers", diag)) {
            Section ws(t, prefix + ".workers", diag);
            parseWorkers(ws, d.workers, /*global=*/false);
        }
        if (const toml::table* t = domainTable(s, prefix, "retry", diag)) {
            Section rs(t, prefix + ".retry", diag);
            parseRetry(rs, d.retry);
        }
        if (const toml::table* t = domainTable(s, prefix, "circuit_breaker", diag)) {
            Section bs(t, prefix + ".circuit_breaker", diag);
            parseBreaker(bs, d.circuit_breaker);
        }
        if (const toml::node* st = s.node("settings")) {
            if (!st->is_table())
                diag.at(st->source(), prefix + ".settings must be a table ([domain.settings]), got " + typeName(*st));
            else
                d.settings_json = settingsToJson(*st->as_table());
        }
        s.finish();

        if (d.plugin.empty()) d.plugin = d.name;
        if (d.plugin.find('/') != std::string::npos)
            d.plugin_path = resolvePath(base_dir, d.plugin);
        else
            d.plugin_path = (fs::path(cfg.plugins_dir) / (d.plugin + ".so")).string();
        cfg.domains.push_back(std::move(d));
    }
}

void parseSchedules(Section& root, Config& cfg, Diagnostics& diag) {
    std::set<std::string> seen;
    const auto tables = arrayOfTables(root.node("schedule"), "schedule", diag);
    for (std::size_t i = 0; i < tables.size(); ++i) {
        const toml::table* t = tables[i];
        const std::string prefix = "schedule[" + std::to_string(i) + "]";
        Section s(t, prefix, diag);
        ScheduleConfig job;
        uniqueName(s, prefix, "schedule", &isValidIdentifier, "[A-Za-z0-9_-]+", seen, job.name);
        if (!s.string("domain", job.domain))
            diag.at(t->source(), prefix + ": missing required key 'domain'");
        else if (cfg.findDomain(job.domain) == nullptr)
            diag.atKey(prefix + ".domain", "schedule \"" + job.name + "\" targets unknown domain \"" + job.domain + "\"");
        std::string prio;
        if (s.string("priority", prio)) {
            if (auto p = parsePriority(prio))
                job.priority = *p;
            else
                diag.atKey(prefix + ".priority", "priority must be one of high, normal, low; got \"" + prio + "\"");
        }
        s.optionalInteger("every_ms", job.every_ms, 1);
        std::string cron;
        if (s.string("cron", cron)) {
            job.cron = cron;
            if (auto parsed = scheduler::parseCron(cron); !parsed) diag.atKey(prefix + ".cron", parsed.message());
        }
        const bool has_every = t->get("every_ms") != nullptr;
        if (has_every && job.cron)
            diag.at(t->source(), prefix + ": set either every_ms or cron, not both");
        else if (!has_every && !job.cron)
            diag.at(t->source(), prefix + ": one of every_ms or cron is required");
        s.optionalInteger("deadline_ms", job.deadline_ms, 1);
        s.string("payload", job.payload);
        s.finish();
        cfg.schedules.push_back(std::move(job));
    }
}

}  // namespace

const DomainConfig* Config::findDomain(std::string_view name) const {
    for (const auto& d : domains)
        if (d.name == name) return &d;
    return nullptr;
}

Result<Config> parseConfig(std::string_view toml_text, const std::string& path) {
    toml::table root;
    try {
        root = toml::parse(toml_text, std::string_view(path));
    } catch (const toml::parse_error& e) {
        const auto& b = e.source().begin;
        return Error{path + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) + ": " +
                     std::string(e.description())};
    }

    Config cfg;
    cfg.path = path;
    Diagnostics diag(path);
    const fs::path base_dir = fs::absolute(fs::path(path)).parent_path();
    Section top(&root, "", diag);

    {
        Section s(subTable(top, "nats", diag), "nats", diag);
        s.stringArray("servers", cfg.nats.servers);
        if (cfg.nats.servers.empty()) diag.atKey("nats.servers", "nats.servers must list at least one server");
        if (s.string("stream", cfg.nats.stream) && !isValidIdentifier(cfg.nats.stream))
            diag.atKey("nats.stream", "nats.stream \"" + cfg.nats.stream + "\" must match [A-Za-z0-9_-]+");
        s.integer("replicas", cfg.nats.replicas, 1, 5);
        if (cfg.nats.replicas % 2 == 0)
            diag.atKey("nats.replicas", "nats.replicas " + std::to_string(cfg.nats.replicas) +
                                            ": an even count survives no more node losses than one fewer (a quorum "
                                            "needs a majority); use 1, 3 or 5");
        s.integer("max_msgs", cfg.nats.max_msgs, 1, kMaxI64);
        s.integer("max_bytes", cfg.nats.max_bytes, 1, kMaxI64);
        s.integer("done_index_max_ids", cfg.nats.done_index_max_ids, 1000, 1'000'000'000);
        s.finish();
    }
    {
        Section s(subTable(top, "rabbitmq", diag), "rabbitmq", diag);
        s.boolean("enabled", cfg.rabbitmq.enabled);
        if (s.string("url", cfg.rabbitmq.url)) {
            std::string& u = cfg.rabbitmq.url;
            if (u.rfind("amqps://", 0) == 0)
                diag.atKey("rabbitmq.url", "rabbitmq.url: amqps:// (TLS) is not supported by this version; use amqp://");
            else if (u.rfind("amqp://", 0) != 0)
                diag.atKey("rabbitmq.url", "rabbitmq.url must start with amqp://");
            // "amqp://h:5672/" means vhost "" to rabbitmq-c; users mean the default vhost "/".
            const auto scheme_end = u.find("://") + 3;
            if (u.size() > scheme_end && u.back() == '/' && u.find('/', scheme_end) == u.size() - 1) u.pop_back();
        }
        s.integer("confirm_timeout_ms", cfg.rabbitmq.confirm_timeout_ms, 1, 600000);
        s.finish();
    }
    {
        Section s(subTable(top, "admin", diag), "admin", diag);
        parseAdmin(s, cfg.admin, diag, base_dir);
    }
    {
        Section s(subTable(top, "plugins", diag), "plugins", diag);
        if (s.string("dir", cfg.plugins_dir)) cfg.plugins_dir = resolvePath(base_dir, cfg.plugins_dir);
        s.finish();
    }
    {
        Section s(subTable(top, "state", diag), "state", diag);
        if (s.string("dir", cfg.state_dir) && !cfg.state_dir.empty()) cfg.state_dir = resolvePath(base_dir, cfg.state_dir);
        s.finish();
    }
    {
        Section s(subTable(top, "log", diag), "log", diag);
        if (s.string("level", cfg.log_level)) {
            static const std::set<std::string> kLevels{"trace", "debug", "info", "warning", "error"};
            if (kLevels.count(cfg.log_level) == 0)
                diag.atKey("log.level", "log.level must be one of trace, debug, info, warning, error; got \"" +
                                            cfg.log_level + "\"");
        }
        if (s.string("format", cfg.log_format) && cfg.log_format != "text" && cfg.log_format != "json")
            diag.atKey("log.format", "log.format must be \"text\" or \"json\"; got \"" + cfg.log_format + "\"");
        s.finish();
    }
    {
        Section s(subTable(top, "workers", diag), "workers", diag);
        parseWorkers(s, cfg.workers, /*global=*/true);
    }
    {
        Section s(subTable(top, "retry", diag), "retry", diag);
        parseRetry(s, cfg.retry);
    }
    {
        Section s(subTable(top, "circuit_breaker", diag), "circuit_breaker", diag);
        parseBreaker(s, cfg.circuit_breaker);
    }
    {
        Section s(subTable(top, "coordinator", diag), "coordinator", diag);
        s.integer("health_interval_ms", cfg.coordinator.health_interval_ms, 1, kMaxI64);
        s.integer("depth_window", cfg.coordinator.depth_window, 1, 100000);
        s.integer("stall_threshold_ms", cfg.coordinator.stall_threshold_ms, 1, kMaxI64);
        s.finish();
    }
    {
        Section s(subTable(top, "scheduler", diag), "scheduler", diag);
        s.integer("backpressure_depth", cfg.scheduler.backpressure_depth, 1, kMaxI64);
        s.integer("canary_timeout_ms", cfg.scheduler.canary_timeout_ms, 1, 24LL * 3600 * 1000);
        s.finish();
    }
    {
        Section s(subTable(top, "tracing", diag), "tracing", diag);
        if (s.string("otlp_endpoint", cfg.tracing.otlp_endpoint) && !cfg.tracing.otlp_endpoint.empty() &&
            cfg.tracing.otlp_endpoint.rfind("http://", 0) != 0)
            diag.atKey("tracing.otlp_endpoint", "tracing.otlp_endpoint must be an http:// URL (OTLP/HTTP, e.g. "
                                                "\"http://127.0.0.1:4318/v1/traces\"); got \"" +
                                                    cfg.tracing.otlp_endpoint + "\"");
        s.number("sample_ratio", cfg.tracing.sample_ratio, 0.0, 1.0);
        if (s.string("service_name", cfg.tracing.service_name) && cfg.tracing.service_name.empty())
            diag.atKey("tracing.service_name", "tracing.service_name must not be empty");
        s.integer("max_queue", cfg.tracing.max_queue, 1, 1'000'000);
        s.finish();
    }
    parseDomains(top, cfg, diag, base_dir);
    parseSchedules(top, cfg, diag);
    top.finish();

    if (!diag.empty()) return Error{diag.joined()};
    return cfg;
}

Result<Config> loadConfigFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Error{path + ": cannot open config file: " + std::strerror(errno)};
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return Error{path + ": cannot read config file: " + std::strerror(errno)};
    return parseConfig(text.str(), path);
}

}  // namespace kanban::host::config
