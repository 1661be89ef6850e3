// The kanband configuration (docs/design.md §4): plain structs with the spec's
// defaults, loaded from TOML and validated before anything uses them.
#pragma once

#include "common/priority.hpp"
#include "common/result.hpp"
#include "flow/rate_limit.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kanban::host::config {

inline constexpr const char* kDefaultConfigPath = "/etc/tps-kanban/kanban.toml";

struct NatsConfig {
    std::vector<std::string> servers{"nats://127.0.0.1:4222"};
    std::string stream = "KANBAN";
    std::int64_t replicas = 1;
    // Limits of the work stream and of the dead-letter stream (discard new:
    // a full stream is a visible publish error, never a silent drop).
    std::int64_t max_msgs = 1'000'000;
    std::int64_t max_bytes = 1LL << 30;
    // Completed ids each host's index of the idempotency record holds at
    // most (about 23 bytes each when full); beyond it the oldest are forgotten.
    std::int64_t done_index_max_ids = 1'000'000;
    bool operator==(const NatsConfig&) const = default;
};

struct RabbitMqConfig {
    bool enabled = true;
    // Normalised: a bare trailing "/" (which rabbitmq-c reads as vhost "") is removed.
    std::string url = "amqp://guest:guest@127.0.0.1:5672";
    // A publish the broker has not confirmed in this time fails (a broker
    // blocked by a memory or disk alarm never answers).
    std::int64_t confirm_timeout_ms = 5000;
    bool operator==(const RabbitMqConfig&) const = default;
};

struct AdminConfig {
    std::string listen = "127.0.0.1:9090";
    std::string token_file;
    // Parsed from `listen`.
    std::string host = "127.0.0.1";
    int port = 9090;
    bool operator==(const AdminConfig&) const = default;
};

struct WorkersConfig {
    std::int64_t pull_batch = 10;
    std::int64_t min = 2;
    std::int64_t max = 20;
    // Anti-starvation: a lower priority level with waiting items that has
    // not been served for this long gets the next batch; 0 = strict priority.
    std::int64_t starvation_ms = 30000;
    // How many kanband hosts share the queues (at most): the consumers are
    // shared, so the server's in-flight cap, MaxAckPending, is
    // hosts × max × pull_batch. With 1, a second host could only take what
    // the first leaves under that cap.
    std::int64_t hosts = 1;
    bool operator==(const WorkersConfig&) const = default;
};

struct RetryConfig {
    std::int64_t max_attempts = 5;
    std::int64_t backoff_initial_ms = 100;
    std::int64_t backoff_max_ms = 30000;
    // Each delay is shortened by up to this fraction (random), so that
    // retries from many workers do not arrive in lockstep.
    double jitter = 0.2;
    bool operator==(const RetryConfig&) const = default;
};

struct CircuitBreakerConfig {
    std::int64_t failure_threshold = 3;
    std::int64_t open_ms = 30000;
    bool operator==(const CircuitBreakerConfig&) const = default;
};

struct CoordinatorConfig {
    std::int64_t health_interval_ms = 5000;
    std::int64_t depth_window = 10;
    std::int64_t stall_threshold_ms = 300000;
    bool operator==(const CoordinatorConfig&) const = default;
};

struct SchedulerConfig {
    std::int64_t backpressure_depth = 100;
    // A new job's canary must be handled within this, or the job pauses.
    std::int64_t canary_timeout_ms = 60000;
};

// Where a domain's handlers run.
enum class Isolation {
    thread,   // in kanband's worker threads: fastest; a crash in the plugin ends kanband
    process,  // in supervised runner processes: a crash, a hang or a leak costs only the runner
};

// [domain.runner]: when a runner process (isolation = "process") is replaced.
struct RunnerConfig {
    std::int64_t memory_max_mb = 0;        // retired after the item that took its RSS past this; 0 = no limit
    std::int64_t recycle_after_items = 0;  // retired after this many items; 0 = never
    bool operator==(const RunnerConfig&) const = default;
};

struct DomainConfig {
    std::string name;
    std::string plugin;       // as written ("payment", or a path containing '/')
    std::string plugin_path;  // resolved absolute or config-relative path of the .so
    std::int64_t timeout_ms = 30000;
    std::string settings_json = "{}";  // [domain.settings] as a compact JSON object
    // At most this many of the domain's items in hand at once across every
    // host (each worker then fetches one item per slot); 0 = no cap.
    std::int64_t max_in_flight = 0;
    // rate_limit = "50/s" (or /m, /h): starts per period across every host,
    // evenly spaced, at most rate_burst at once; no limit when unset.
    flow::RateLimit rate_limit;
    std::int64_t rate_burst = 1;
    Isolation isolation = Isolation::thread;
    RunnerConfig runner;
    // The global [workers], [retry] and [circuit_breaker] with this domain's
    // [domain.workers] (min, max, pull_batch), [domain.retry] and
    // [domain.circuit_breaker] keys over them: what its pool runs with.
    WorkersConfig workers;
    RetryConfig retry;
    CircuitBreakerConfig circuit_breaker;
    bool operator==(const DomainConfig&) const = default;
};

struct ScheduleConfig {
    std::string name;
    std::string domain;
    Priority priority = Priority::normal;
    std::optional<std::int64_t> every_ms;
    std::optional<std::string> cron;
    std::optional<std::int64_t> deadline_ms;
    std::string payload = "{}";
    bool operator==(const ScheduleConfig&) const = default;
};

// [tracing]: OpenTelemetry spans of handler attempts, exported with OTLP
// over HTTP (JSON). Off while otlp_endpoint is empty.
struct TracingConfig {
    std::string otlp_endpoint;  // e.g. "http://127.0.0.1:4318/v1/traces"
    // Of the traces kanband starts (an item without a traceparent); an
    // incoming traceparent's sampled flag is followed as it is.
    double sample_ratio = 1.0;
    std::string service_name = "kanband";
    std::int64_t max_queue = 2048;  // spans waiting for export; more are dropped (counted)
    bool enabled() const { return !otlp_endpoint.empty(); }
    bool operator==(const TracingConfig&) const = default;
};

struct Config {
    std::string path;  // the file it was loaded from
    NatsConfig nats;
    RabbitMqConfig rabbitmq;
    AdminConfig admin;
    std::string plugins_dir = "/usr/lib/tps-kanban/plugins";
    std::string log_level = "info";
    std::string log_format = "text";  // or "json": one object per line
    // Where kanband keeps what must outlive its process (the in-flight
    // journal). Empty: $STATE_DIRECTORY (systemd's StateDirectory=), else
    // /var/lib/tps-kanban.
    std::string state_dir;
    WorkersConfig workers;
    RetryConfig retry;
    CircuitBreakerConfig circuit_breaker;
    CoordinatorConfig coordinator;
    SchedulerConfig scheduler;
    TracingConfig tracing;
    std::vector<DomainConfig> domains;
    std::vector<ScheduleConfig> schedules;

    const DomainConfig* findDomain(std::string_view name) const;
};

// Parses and validates TOML text. `path` is used in messages and to resolve
// relative paths (plugins.dir, plugin paths) against its directory. On
// failure the error holds one line per problem, each `path:line:col: message`.
Result<Config> parseConfig(std::string_view toml_text, const std::string& path);

// Reads and parses a file (missing or unreadable file → `path: message`).
Result<Config> loadConfigFile(const std::string& path);

}  // namespace kanban::host::config
