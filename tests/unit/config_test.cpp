#include "config/config.hpp"

#include "support.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include <sys/stat.h>

namespace kanban::host::config {
namespace {

using ::testing::HasSubstr;

constexpr const char* kMinimal = "[[domain]]\nname = \"payment\"\n";

Config parseOk(const std::string& text, const std::string& path = "/etc/k/kanban.toml") {
    auto r = parseConfig(text, path);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.message());
    return r.ok() ? std::move(*r) : Config{};
}

std::string parseError(const std::string& text, const std::string& path = "/etc/k/kanban.toml") {
    auto r = parseConfig(text, path);
    EXPECT_FALSE(r.ok()) << "expected an error for:\n" << text;
    return r.ok() ? std::string() : r.message();
}

TEST(Config, ShippedConfigParsesWithSpecDefaults) {
    auto r = loadConfigFile(KANBAN_SOURCE_DIR "/config/kanban.toml");
    ASSERT_TRUE(r.ok()) << r.message();
    const Config& c = *r;
    EXPECT_EQ(c.nats.servers, std::vector<std::string>{"nats://127.0.0.1:4222"});
    EXPECT_EQ(c.nats.stream, "KANBAN");
    EXPECT_EQ(c.admin.host, "127.0.0.1");
    EXPECT_EQ(c.admin.port, 9090);
    EXPECT_EQ(c.workers.pull_batch, 10);
    EXPECT_EQ(c.workers.starvation_ms, 30000);
    EXPECT_EQ(c.nats.max_msgs, 1000000);
    EXPECT_EQ(c.nats.max_bytes, 1073741824);
    EXPECT_EQ(c.retry.max_attempts, 5);
    ASSERT_EQ(c.domains.size(), 2u);
    EXPECT_EQ(c.domains[0].name, "payment");
    EXPECT_EQ(c.domains[0].plugin_path, "/usr/lib/tps-kanban/plugins/payment.so");
    EXPECT_EQ(c.domains[0].settings_json, R"({"currency":"EUR"})");
    EXPECT_EQ(c.domains[1].plugin_path, "/usr/lib/tps-kanban/plugins/health_check.so");
    EXPECT_EQ(c.domains[1].settings_json, "{}");
}

TEST(Config, MinimalConfigGetsEveryDefault) {
    const Config c = parseOk(kMinimal);
    const Config defaults;
    EXPECT_EQ(c.nats.servers, defaults.nats.servers);
    EXPECT_EQ(c.rabbitmq.url, "amqp://guest:guest@127.0.0.1:5672");
    EXPECT_TRUE(c.rabbitmq.enabled);
    EXPECT_EQ(c.rabbitmq.confirm_timeout_ms, 5000);
    EXPECT_EQ(c.log_level, "info");
    EXPECT_EQ(c.log_format, "text");
    EXPECT_EQ(c.workers.min, 2);
    EXPECT_EQ(c.workers.max, 20);
    EXPECT_EQ(c.workers.starvation_ms, 30000);
    EXPECT_EQ(c.workers.hosts, 1);
    EXPECT_EQ(c.nats.max_msgs, 1000000);
    EXPECT_EQ(c.nats.max_bytes, 1LL << 30);
    EXPECT_EQ(c.nats.done_index_max_ids, 1000000);
    EXPECT_EQ(c.retry.backoff_initial_ms, 100);
    EXPECT_EQ(c.retry.backoff_max_ms, 30000);
    EXPECT_EQ(c.circuit_breaker.failure_threshold, 3);
    EXPECT_EQ(c.circuit_breaker.open_ms, 30000);
    EXPECT_EQ(c.coordinator.health_interval_ms, 5000);
    EXPECT_EQ(c.coordinator.depth_window, 10);
    EXPECT_EQ(c.coordinator.stall_threshold_ms, 300000);
    EXPECT_EQ(c.scheduler.backpressure_depth, 100);
    EXPECT_EQ(c.domains.at(0).timeout_ms, 30000);
}

TEST(Config, MalformedTomlReportsLineAndColumn) {
    const std::string err = parseError("[workers]\nmin = 2\nmin = 3\n", "/tmp/bad.toml");
    EXPECT_EQ(err.rfind("/tmp/bad.toml:3:", 0), 0u) << err;
    EXPECT_THAT(err, HasSubstr("min"));
    const std::string unterminated = parseError("[nats]\nstream = \"KANBAN\n", "/tmp/bad.toml");
    EXPECT_EQ(unterminated.rfind("/tmp/bad.toml:2:", 0), 0u) << unterminated;
}

TEST(Config, UnknownKeyIsRejectedWithItsLocation) {
    const std::string err = parseError("[workers]\npul_batch = 5\n[[domain]]\nname = \"a\"\n", "k.toml");
    EXPECT_THAT(err, HasSubstr("k.toml:2:1: unknown key 'workers.pul_batch'"));
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\nplugn = \"x\"\n"), HasSubstr("unknown key 'domain[0].plugn'"));
    EXPECT_THAT(parseError("bogus = 1\n[[domain]]\nname = \"a\"\n"), HasSubstr("unknown key 'bogus'"));
}

TEST(Config, IsolationAndRunnerLimitsPerDomain) {
    const Config c = parseOk(
        "[[domain]]\nname = \"a\"\n"
        "[[domain]]\nname = \"b\"\nisolation = \"process\"\n[domain.runner]\nmemory_max_mb = 512\nrecycle_after_items = 1000\n"
        "[[domain]]\nname = \"c\"\nisolation = \"thread\"\n");
    EXPECT_EQ(c.domains.at(0).isolation, Isolation::thread);  // the default
    EXPECT_EQ(c.domains.at(0).runner, RunnerConfig{});
    EXPECT_EQ(c.domains.at(1).isolation, Isolation::process);
    EXPECT_EQ(c.domains.at(1).runner.memory_max_mb, 512);
    EXPECT_EQ(c.domains.at(1).runner.recycle_after_items, 1000);
    EXPECT_EQ(c.domains.at(2).isolation, Isolation::thread);
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\nisolation = \"fork\"\n", "c.toml"),
                HasSubstr("c.toml:3:13: domain[0].isolation must be \"thread\" or \"process\", got \"fork\""));
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\n[domain.runner]\nmemory_max_mb = -1\n", "c.toml"),
                HasSubstr("c.toml:4:17: domain[0].runner.memory_max_mb must be between 0 and"));
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\n[domain.runner]\nmax_memory = 1\n", "c.toml"),
                HasSubstr("unknown key 'domain[0].runner.max_memory'"));
}

// [domain.workers], [domain.retry], [domain.circuit_breaker]: unset keys
// inherit the global tables, whatever their order in the file.
TEST(Config, DomainPoliciesOverrideTheGlobalTablesKeyByKey) {
    const Config c = parseOk(R"(
[[domain]]
name = "partner"
[domain.workers]
max = 4
pull_batch = 1
[domain.retry]
max_attempts = 2
backoff_initial_ms = 1000
jitter = 0.5
[domain.circuit_breaker]
open_ms = 5000

[[domain]]
name = "health"

[workers]
min = 3
max = 10
[retry]
max_attempts = 4
backoff_max_ms = 60000
jitter = 0
[circuit_breaker]
failure_threshold = 7
)");
    const DomainConfig& partner = c.domains.at(0);
    EXPECT_EQ(partner.workers.min, 3);  // inherited
    EXPECT_EQ(partner.workers.max, 4);
    EXPECT_EQ(partner.workers.pull_batch, 1);
    EXPECT_EQ(partner.retry.max_attempts, 2);
    EXPECT_EQ(partner.retry.backoff_initial_ms, 1000);
    EXPECT_EQ(partner.retry.backoff_max_ms, 60000);  // inherited
    EXPECT_DOUBLE_EQ(partner.retry.jitter, 0.5);
    EXPECT_EQ(partner.circuit_breaker.failure_threshold, 7);  // inherited
    EXPECT_EQ(partner.circuit_breaker.open_ms, 5000);
    const DomainConfig& health = c.domains.at(1);
    EXPECT_EQ(health.workers, c.workers);
    EXPECT_EQ(health.retry, c.retry);
    EXPECT_EQ(health.retry.max_attempts, 4);
    EXPECT_DOUBLE_EQ(health.retry.jitter, 0.0);
    EXPECT_EQ(health.circuit_breaker, c.circuit_breaker);
}

TEST(Config, DomainPoliciesAreCheckedLikeTheGlobalOnes) {
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\n[domain.retry]\nmax_attempt = 2\n", "c.toml"),
                HasSubstr("c.toml:4:1: unknown key 'domain[0].retry.max_attempt'"));
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\n[domain.workers]\nhosts = 2\n", "c.toml"),
                HasSubstr("unknown key 'domain[0].workers.hosts'"))
        << "hosts is the cluster's, not a domain's";
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\n[domain.workers]\nmin = 30\n", "c.toml"),
                HasSubstr("domain[0].workers.min (30) must not exceed domain[0].workers.max (20)"));
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\n[domain.retry]\njitter = 1.5\n", "c.toml"),
                HasSubstr("c.toml:4:10: domain[0].retry.jitter must be between 0.00 and 0.99"));
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\n[domain.retry]\nbackoff_initial_ms = 40000\n", "c.toml"),
                HasSubstr("domain[0].retry.backoff_initial_ms must not exceed domain[0].retry.backoff_max_ms"));
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\ncircuit_breaker = 3\n", "c.toml"),
                HasSubstr("domain[0].circuit_breaker must be a table ([domain.circuit_breaker]), got integer"));
}

// rate_limit = "<count>/<s|m|h>" with rate_burst (default 1).
TEST(Config, RateLimitsParseAndBadOnesAreRejectedWithTheirPlace) {
    const Config c = parseOk(R"(
[[domain]]
name = "partner"
rate_limit = "50/s"
rate_burst = 5
[[domain]]
name = "nightly"
rate_limit = " 600 / m "
[[domain]]
name = "free"
)");
    EXPECT_EQ(c.domains.at(0).rate_limit, (kanban::host::flow::RateLimit{50, 1000}));
    EXPECT_EQ(c.domains.at(0).rate_burst, 5);
    EXPECT_EQ(c.domains.at(1).rate_limit, (kanban::host::flow::RateLimit{600, 60000}));
    EXPECT_EQ(c.domains.at(1).rate_burst, 1);
    EXPECT_FALSE(c.domains.at(2).rate_limit);
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\nrate_limit = \"50/d\"\n", "c.toml"),
                HasSubstr("c.toml:3:14: domain[0].rate_limit must be \"<count>/s\", \"<count>/m\" or \"<count>/h\""));
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\nrate_limit = \"0/s\"\n", "c.toml"), HasSubstr("got \"0/s\""));
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\nrate_limit = 50\n", "c.toml"),
                HasSubstr("domain[0].rate_limit must be a string, got integer"));
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\nrate_burst = 3\n", "c.toml"),
                HasSubstr("c.toml:3:14: domain[0].rate_burst needs rate_limit"));
    EXPECT_THAT(parseError("[[domain]]\nname = \"a\"\nrate_limit = \"5/s\"\nrate_burst = 0\n", "c.toml"),
                HasSubstr("domain[0].rate_burst must be between 1 and 1000000, got 0"));
}

TEST(Config, TracingIsOffByDefaultAndItsKeysAreChecked) {
    EXPECT_FALSE(parseOk(kMinimal).tracing.enabled());
    const Config c = parseOk(std::string(kMinimal) + R"(
[tracing]
otlp_endpoint = "http://127.0.0.1:4318/v1/traces"
sample_ratio = 0.25
service_name = "payments-kanband"
max_queue = 100
)");
    EXPECT_TRUE(c.tracing.enabled());
    EXPECT_EQ(c.tracing.otlp_endpoint, "http://127.0.0.1:4318/v1/traces");
    EXPECT_EQ(c.tracing.sample_ratio, 0.25);
    EXPECT_EQ(c.tracing.service_name, "payments-kanband");
    EXPECT_EQ(c.tracing.max_queue, 100);
    EXPECT_THAT(parseError("[tracing]\notlp_endpoint = \"https://collector:4318\"\n", "c.toml"),
                HasSubstr("c.toml:2:17: tracing.otlp_endpoint must be an http:// URL"));
    EXPECT_THAT(parseError("[tracing]\nsample_ratio = 1.5\n", "c.toml"),
                HasSubstr("c.toml:2:16: tracing.sample_ratio must be between 0.00 and 1.00"));
    EXPECT_THAT(parseError("[tracing]\nendpoint = \"x\"\n", "c.toml"), HasSubstr("tracing.endpoint"));
}

struct BadValue {
    const char* toml;
    const char* expected;
};

class ConfigBadValue : public ::testing::TestWithParam<BadValue> {};

TEST_P(ConfigBadValue, IsRejectedWithLocation) {
    const std::string err = parseError(GetParam().toml, "c.toml");
    EXPECT_THAT(err, HasSubstr(GetParam().expected));
    EXPECT_EQ(err.rfind("c.toml:", 0), 0u) << err;
    EXPECT_NE(err.find(':', 7), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    All, ConfigBadValue,
    ::testing::Values(
        BadValue{"[workers]\nmin = \"two\"\n[[domain]]\nname=\"a\"\n", "workers.min must be an integer, got string"},
        BadValue{"[workers]\nmin = 5\nmax = 2\n[[domain]]\nname=\"a\"\n", "workers.min (5) must not exceed workers.max (2)"},
        BadValue{"[workers]\npull_batch = 0\n[[domain]]\nname=\"a\"\n", "workers.pull_batch must be between 1 and 1000, got 0"},
        BadValue{"[[domain]]\nname=\"a\"\ntimeout_ms = 0\n", "domain[0].timeout_ms must be between 1"},
        BadValue{"[[domain]]\nname=\"a\"\ntimeout_ms = -5\n", "domain[0].timeout_ms must be between 1"},
        BadValue{"[retry]\nmax_attempts = 0\n[[domain]]\nname=\"a\"\n", "retry.max_attempts must be between 1"},
        BadValue{"[retry]\nbackoff_initial_ms = 500\nbackoff_max_ms = 100\n[[domain]]\nname=\"a\"\n",
                 "retry.backoff_initial_ms must not exceed retry.backoff_max_ms"},
        BadValue{"[circuit_breaker]\nfailure_threshold = 0\n[[domain]]\nname=\"a\"\n",
                 "circuit_breaker.failure_threshold must be at least 1"},
        BadValue{"[[domain]]\nname=\"a\"\n[[domain]]\nname=\"a\"\n", "duplicate domain \"a\""},
        BadValue{"[[domain]]\nname=\"Pay.ment\"\n", "must match [a-z0-9_-]+"},
        BadValue{"[[domain]]\nplugin=\"x\"\n", "missing required key 'name'"},
        BadValue{"[[domain]]\nname=\"a\"\n[[schedule]]\nname=\"s\"\ndomain=\"a\"\nevery_ms=10\ncron=\"* * * * *\"\n",
                 "set either every_ms or cron, not both"},
        BadValue{"[[domain]]\nname=\"a\"\n[[schedule]]\nname=\"s\"\ndomain=\"a\"\ncron=\"61 * * * *\"\n",
                 "minute field '61': value out of range 0-59"},
        BadValue{"[[domain]]\nname=\"a\"\n[[schedule]]\nname=\"s\"\ndomain=\"a\"\ncron=\"* * * * * *\"\n",
                 "must have 5 fields"},
        BadValue{"[[domain]]\nname=\"a\"\n[[schedule]]\nname=\"s\"\ndomain=\"nosuch\"\nevery_ms=10\n",
                 "targets unknown domain \"nosuch\""},
        BadValue{"[[domain]]\nname=\"a\"\n[[schedule]]\nname=\"s\"\ndomain=\"a\"\nevery_ms=10\npriority=\"urgent\"\n",
                 "priority must be one of high, normal, low"},
        BadValue{"[[domain]]\nname=\"a\"\n[[schedule]]\nname=\"s\"\ndomain=\"a\"\n", "one of every_ms or cron is required"},
        BadValue{"[admin]\nlisten = \"0.0.0.0:9090\"\n[[domain]]\nname=\"a\"\n", "is not a loopback address"},
        BadValue{"[admin]\nlisten = \"nonsense\"\n[[domain]]\nname=\"a\"\n", "admin.listen must be \"host:port\""},
        BadValue{"[log]\nlevel = \"loud\"\n[[domain]]\nname=\"a\"\n", "log.level must be one of"},
        BadValue{"[log]\nformat = \"xml\"\n[[domain]]\nname=\"a\"\n", "log.format must be \"text\" or \"json\""},
        BadValue{"[nats]\nstream = \"a.b\"\n[[domain]]\nname=\"a\"\n", "nats.stream \"a.b\" must match"},
        BadValue{"[rabbitmq]\nurl = \"http://x\"\n[[domain]]\nname=\"a\"\n", "must start with amqp://"},
        BadValue{"[rabbitmq]\nurl = \"amqps://h\"\n[[domain]]\nname=\"a\"\n", "(TLS) is not supported"},
        BadValue{"[rabbitmq]\nconfirm_timeout_ms = 0\n[[domain]]\nname=\"a\"\n", "confirm_timeout_ms"},
        BadValue{"[scheduler]\ncanary_timeout_ms = 0\n[[domain]]\nname=\"a\"\n", "canary_timeout_ms"},
        BadValue{"nats = 5\n[[domain]]\nname=\"a\"\n", "'nats' must be a table"},
        BadValue{"[nats]\nmax_msgs = 0\n[[domain]]\nname=\"a\"\n", "nats.max_msgs must be at least 1, got 0"},
        BadValue{"[nats]\nmax_bytes = -1\n[[domain]]\nname=\"a\"\n", "nats.max_bytes must be at least 1, got -1"},
        BadValue{"[nats]\ndone_index_max_ids = 10\n[[domain]]\nname=\"a\"\n",
                 "nats.done_index_max_ids must be between 1000 and 1000000000, got 10"},
        BadValue{"[workers]\nstarvation_ms = -1\n[[domain]]\nname=\"a\"\n", "workers.starvation_ms must be at least 0, got -1"},
        BadValue{"[workers]\nhosts = 0\n[[domain]]\nname=\"a\"\n", "workers.hosts must be between 1 and 1000, got 0"},
        BadValue{"[nats]\nreplicas = 2\n[[domain]]\nname=\"a\"\n", "nats.replicas 2: an even count"}),
    [](const ::testing::TestParamInfo<BadValue>& info) { return "case" + std::to_string(info.index); });

TEST(Config, ClusterSampleParsesForAThreeNodeCluster) {
    auto r = loadConfigFile(KANBAN_SOURCE_DIR "/config/cluster.toml");
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_EQ(r->nats.servers.size(), 3u);
    EXPECT_EQ(r->nats.replicas, 3);
    EXPECT_EQ(r->workers.hosts, 3);
    EXPECT_EQ(r->schedules.size(), 1u);
}

TEST(Config, NoDomainIsAnError) {
    EXPECT_THAT(parseError("[workers]\nmin = 1\n", "c.toml"), HasSubstr("no [[domain]] configured"));
}

TEST(Config, EveryProblemIsReportedOnItsOwnLine) {
    const std::string err = parseError("[workers]\npull_batch = 0\nmin = \"x\"\ntypo = 1\n[[domain]]\nname=\"a\"\n", "c.toml");
    EXPECT_THAT(err, HasSubstr("c.toml:2:14: workers.pull_batch"));
    EXPECT_THAT(err, HasSubstr("c.toml:3:7: workers.min must be an integer"));
    EXPECT_THAT(err, HasSubstr("c.toml:4:1: unknown key 'workers.typo'"));
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 2);
}

TEST(Config, PluginPathsResolveAsDocumented) {
    const Config c = parseOk(R"(
[plugins]
dir = "plugins"
[[domain]]
name = "a"
[[domain]]
name = "b"
plugin = "shared"
[[domain]]
name = "c"
plugin = "shared"
[[domain]]
name = "d"
plugin = "../custom/d.so"
[[domain]]
name = "e"
plugin = "/opt/x/e.so"
)",
                             "/etc/k/kanban.toml");
    EXPECT_EQ(c.domains[0].plugin_path, "/etc/k/plugins/a.so");
    EXPECT_EQ(c.domains[1].plugin_path, "/etc/k/plugins/shared.so");
    EXPECT_EQ(c.domains[2].plugin_path, "/etc/k/plugins/shared.so");
    EXPECT_EQ(c.domains[3].plugin_path, "/etc/custom/d.so");
    EXPECT_EQ(c.domains[4].plugin_path, "/opt/x/e.so");
}

TEST(Config, SettingsBecomeCompactJson) {
    const Config c = parseOk("[[domain]]\nname=\"a\"\n[domain.settings]\nurl = \"x\"\nretries = 3\nnested = { on = true }\n");
    EXPECT_EQ(c.domains[0].settings_json, R"({"nested":{"on":true},"retries":3,"url":"x"})");
}

TEST(Config, RabbitUrlTrailingSlashMeansDefaultVhost) {
    EXPECT_EQ(parseOk("[rabbitmq]\nurl = \"amqp://u:p@h:5672/\"\n[[domain]]\nname=\"a\"\n").rabbitmq.url, "amqp://u:p@h:5672");
    EXPECT_EQ(parseOk("[rabbitmq]\nurl = \"amqp://u:p@h:5672/v\"\n[[domain]]\nname=\"a\"\n").rabbitmq.url, "amqp://u:p@h:5672/v");
}

TEST(Config, AdminListenParsesIpv6AndTokenFileChecks) {
    const Config c = parseOk("[admin]\nlisten = \"[::1]:9191\"\n[[domain]]\nname=\"a\"\n");
    EXPECT_EQ(c.admin.host, "::1");
    EXPECT_EQ(c.admin.port, 9191);

    kanban::test::TempDir dir;
    const std::string token = dir.file("token");
    kanban::test::writeFile(token, "secret\n");
    ::chmod(token.c_str(), 0644);
    const std::string cfg = "[admin]\nlisten = \"0.0.0.0:9090\"\ntoken_file = \"" + token + "\"\n[[domain]]\nname=\"a\"\n";
    EXPECT_THAT(parseError(cfg), HasSubstr("is world-readable"));
    ::chmod(token.c_str(), 0640);
    EXPECT_EQ(parseOk(cfg).admin.token_file, token);
    EXPECT_THAT(parseError("[admin]\ntoken_file = \"/nonexistent/t\"\n[[domain]]\nname=\"a\"\n"), HasSubstr("cannot be read"));
}

TEST(Config, MissingFileIsAClearError) {
    auto r = loadConfigFile("/nonexistent/kanban.toml");
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.message(), HasSubstr("/nonexistent/kanban.toml: cannot open config file"));
}

}  // namespace
}  // namespace kanban::host::config
