// What monitoring sees before anything happened: every series whose labels
// are known from the config is exported at 0 from the start (Prometheus'
// instrumentation guidance), so rate() and absent() in the packaged alert
// rules behave from the first scrape.
#include "harness.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <set>

using namespace kanban::test;
using namespace std::chrono_literals;

namespace {

class Monitoring : public DaemonTest {};

TEST_F(Monitoring, SeriesKnownFromTheConfigAreExportedAtZeroBeforeAnyTraffic) {
    HostOptions o;
    o.extra_toml = "[[schedule]]\nname = \"nightly\"\ndomain = \"orders\"\ncron = \"0 3 * * *\"\n";
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const std::string text = kd.http("GET", "/metrics").body;
    const std::vector<std::string> zero{
        R"(kanban_items_published_total{domain="orders"})",
        R"(kanban_items_pulled_total{domain="orders",priority="high"})",
        R"(kanban_items_processed_total{domain="orders",outcome="timeout"})",
        R"(kanban_items_dead_lettered_total{domain="orders",reason="handler_crashed"})",
        R"(kanban_items_acked_total{domain="orders"})",
        R"(kanban_domain_paused{domain="orders"})",
        R"(kanban_rate_limited_seconds_total{domain="orders"})",
        R"(kanban_items_nacked_total{domain="orders"})",
        R"(kanban_publish_errors_total{backend="nats",reason="replay"})",
        R"(kanban_publish_errors_total{backend="rabbitmq",reason="schedule"})",
        R"(kanban_scheduled_items_published_total{job="nightly"})",
        R"(kanban_scheduled_ticks_skipped_total{job="nightly",reason="backpressure"})",
        R"(kanban_schedule_canaries_total{job="nightly",outcome="failed"})",
        R"(kanban_runner_restarts_total{domain="orders",reason="crash"})",
        R"(kanban_failovers_total)",
        R"(kanban_config_reloads_total{result="failure"})",
    };
    for (const auto& sample : zero) EXPECT_EQ(metric(text, sample), 0.0) << sample << "\n" << text;
}

}  // namespace

namespace {

// The kanban_* series a file queries (histograms by their _bucket series).
std::set<std::string> queriedSeries(const std::string& path) {
    const std::string text = readFile(path);
    std::set<std::string> names;
    const std::regex name(R"(\bkanban_[a-z][a-z_]*[a-z])");
    for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator(); ++it)
        names.insert(it->str());
    return names;
}

// Every series the packaged dashboard and alert rules query exists in a
// live /metrics of a host that has done nothing yet.
TEST_F(Monitoring, EverySeriesTheDashboardAndTheAlertRulesQueryExistsFromStart) {
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const std::string text = kd.http("GET", "/metrics").body;
    const std::string dir = std::string(KANBAN_SOURCE_DIR) + "/packaging/monitoring/";
    for (const char* file : {"kanban.json", "kanban-alerts.yml"}) {
        const auto names = queriedSeries(dir + file);
        EXPECT_GE(names.size(), 5u) << file;
        for (const auto& n : names)
            EXPECT_TRUE(text.find("\n" + n + "{") != std::string::npos || text.find("\n" + n + " ") != std::string::npos)
                << file << " queries " << n << ", which /metrics does not export";
    }
}

}  // namespace
