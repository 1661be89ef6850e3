// Flow control per domain (issue 23): a domain's own retry, workers and
// breaker policies over the global tables.
#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <iostream>

namespace kanban::test {
namespace {

class FlowControl : public DaemonTest {
protected:
    double value(Kanband& kd, const std::string& sample) {
        return metric(kd.http("GET", "/metrics").body, sample).value_or(-1);
    }
};

std::size_t attempts(const std::string& out, const std::string& id) { return callsFor(readCalls(out), id).size(); }

// The most calls in a handler at once, each taken as the last `ms` before
// it was recorded (the recorder writes when the call ends, after sleeping at
// least `ms`): a lower bound of the true overlap, so a bound on it is sound.
std::size_t mostAtOnce(const std::vector<Call>& calls, std::int64_t ms) {
    std::vector<std::pair<std::int64_t, int>> edges;
    for (const auto& c : calls) {
        edges.emplace_back(c.epoch_us - ms * 1000, +1);
        edges.emplace_back(c.epoch_us, -1);
    }
    std::sort(edges.begin(), edges.end());  // an end sorts before a start at the same instant
    std::size_t now = 0, most = 0;
    for (const auto& [t, d] : edges) {
        now = static_cast<std::size_t>(static_cast<int>(now) + d);
        most = std::max(most, now);
    }
    return most;
}

// [domain.retry] max_attempts = 2 dead-letters after 2 calls while the
// global 4 applies to the other domain; a SIGHUP changes it live.
TEST_F(FlowControl, ADomainsRetryPolicyOverridesTheGlobalOneAndReloadsLive) {
    HostOptions o;
    o.max_attempts = 4;
    o.backoff_initial_ms = 20;
    o.backoff_max_ms = 50;
    const std::string partner_out = dir.file("partner.txt");
    auto domains = [&](int partner_attempts) {
        return std::vector<DomainSpec>{
            {"health", kFixtures + "/recorder.so", recorderSettings(out)},
            {"partner", kFixtures + "/recorder.so", recorderSettings(partner_out), 10000,
             "[domain.retry]\nmax_attempts = " + std::to_string(partner_attempts) + "\n"}};
    };
    Kanband& kd = start(domains(2), o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());

    const auto partner = publish(cfg, "partner", "normal", 1, "retry");
    const auto health = publish(cfg, "health", "normal", 1, "retry");
    ASSERT_TRUE(waitFor([&] { return probe.deadLetters("partner").size() == 1 && probe.deadLetters("health").size() == 1; },
                        30s))
        << kd.log();
    EXPECT_EQ(attempts(partner_out, partner[0]), 2u) << "the domain's max_attempts";
    EXPECT_EQ(attempts(out, health[0]), 4u) << "the global max_attempts";
    EXPECT_EQ(probe.deadLetters("partner")[0].headers.at("Kanban-Attempts"), "2");

    // Live: the domain's override changes on SIGHUP, the other domain keeps the global one.
    writeConfig(domains(3), o);
    kd.proc().signal(SIGHUP);
    ASSERT_TRUE(waitFor([&] { return value(kd, R"(kanban_config_reloads_total{result="success"})") == 1; }, 20s))
        << kd.log();
    const auto again = publish(cfg, "partner", "normal", 1, "retry");
    ASSERT_TRUE(waitFor([&] { return probe.deadLetters("partner").size() == 2; }, 30s)) << kd.log();
    EXPECT_EQ(attempts(partner_out, again[0]), 3u) << "the reloaded override";
}

// Result::retry(reason, delay): the handler's delay replaces the backoff
// (a partner's Retry-After), capped by the domain's backoff_max_ms.
TEST_F(FlowControl, AHandlerChosenRetryDelayIsRespectedWithinTheBackoffMaximum) {
    HostOptions o;
    o.max_attempts = 2;
    o.backoff_initial_ms = 20;  // the backoff alone would retry after ~20 ms
    o.backoff_max_ms = 60000;
    const std::string capped_out = dir.file("capped.txt");
    Kanband& kd = start({{"partner", kFixtures + "/recorder.so", recorderSettings(out)},
                         {"capped", kFixtures + "/recorder.so", recorderSettings(capped_out), 10000,
                          "[domain.retry]\nbackoff_max_ms = 300\n"}},
                        o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const auto later = publish(cfg, "partner", "normal", 1, "retry-after:1500");
    const auto capped = publish(cfg, "capped", "normal", 1, "retry-after:3600000");  // an hour, capped to 300 ms
    ASSERT_TRUE(waitFor([&] { return attempts(out, later[0]) == 2 && attempts(capped_out, capped[0]) == 2; }, 30s))
        << kd.log();
    const auto calls = callsFor(readCalls(out), later[0]);
    const double gap_ms = static_cast<double>(calls[1].epoch_us - calls[0].epoch_us) / 1000.0;
    std::cout << "[ measured ] handler-chosen delay 1500 ms: second attempt after " << gap_ms << " ms\n";
    EXPECT_GE(gap_ms, 1500.0) << "retried before the delay the handler asked for";
    EXPECT_THAT(kd.log(), ::testing::HasSubstr("id=" + later[0] + " attempt=1 delay_ms=1500"));
    EXPECT_THAT(kd.log(), ::testing::HasSubstr("id=" + capped[0] + " attempt=1 delay_ms=300"))
        << "capped by the domain's backoff_max_ms";
}

// max_in_flight = 2: two hosts with 4 workers each never have more than 2
// of the domain's items in handlers at once; an uncapped domain on the same
// hosts, same load, runs several at once (so the measure can see overlap).
TEST_F(FlowControl, MaxInFlightHoldsAcrossTwoHosts) {
    HostOptions o;
    o.workers = 4;
    o.max_workers = 4;
    o.hosts = 2;
    o.pull_batch = 1;  // so that the uncapped domain spreads over every worker
    const std::string free_out = dir.file("free.txt");
    writeConfig({{"capped", kFixtures + "/recorder.so", recorderSettings(out), 10000, "max_in_flight = 2\n"},
                 {"free", kFixtures + "/recorder.so", recorderSettings(free_out)}},
                o);
    Kanband a(dir, cfg, "a"), b(dir, cfg, "b");
    ASSERT_TRUE(a.waitReady()) << a.log();
    ASSERT_TRUE(b.waitReady()) << b.log();
    const auto capped = publish(cfg, "capped", "normal", 16, "sleep:300");
    const auto free = publish(cfg, "free", "normal", 16, "sleep:300");
    ASSERT_TRUE(waitFor([&] { return allHandled(out, capped) && allHandled(free_out, free); }, 60s))
        << a.log() << b.log();
    const auto capped_calls = readCalls(out);
    const auto free_calls = readCalls(free_out);
    const std::size_t capped_most = mostAtOnce(capped_calls, 300), free_most = mostAtOnce(free_calls, 300);
    std::cout << "[ measured ] most in handlers at once: capped " << capped_most << ", uncapped " << free_most << "\n";
    EXPECT_LE(capped_most, 2u) << "max_in_flight = 2 across both hosts";
    EXPECT_EQ(capped_calls.size(), 16u) << "each once";
    EXPECT_GT(free_most, 2u) << "the uncapped domain ran more at once: the measure sees overlap";
}

// rate_limit = "20/s": 200 items take no less than ~9 s in total over two
// hosts (one of them joining midway), no 2-second window holds much more
// than 40 of them, and a domain without a limit on the same hosts is done
// long before.
TEST_F(FlowControl, ARateLimitHoldsAcrossHostsThatComeAndGoWhileAnotherDomainRunsFree) {
    HostOptions o;
    o.workers = 4;
    o.max_workers = 4;
    o.hosts = 2;
    const std::string free_out = dir.file("free.txt");
    writeConfig({{"limited", kFixtures + "/recorder.so", recorderSettings(out), 10000, "rate_limit = \"20/s\"\n"},
                 {"free", kFixtures + "/recorder.so", recorderSettings(free_out)}},
                o);
    const auto limited = publish(cfg, "limited", "normal", 200);
    const auto free = publish(cfg, "free", "normal", 200);
    Kanband a(dir, cfg, "a");
    ASSERT_TRUE(a.waitReady()) << a.log();
    ASSERT_TRUE(waitFor([&] { return readCalls(out).size() >= 30; }, 60s)) << a.log();
    Kanband b(dir, cfg, "b");  // joins midway
    ASSERT_TRUE(b.waitReady()) << b.log();
    ASSERT_TRUE(waitFor([&] { return allHandled(out, limited) && allHandled(free_out, free); }, 90s))
        << a.log() << b.log();

    auto ends = [](const std::vector<Call>& calls) {
        std::vector<std::int64_t> t;
        for (const auto& c : calls) t.push_back(c.epoch_us);
        std::sort(t.begin(), t.end());
        return t;
    };
    const auto lim = ends(readCalls(out)), fr = ends(readCalls(free_out));
    ASSERT_EQ(lim.size(), 200u) << "each once";
    const double span_s = static_cast<double>(lim.back() - lim.front()) / 1e6;
    const double free_span_s = static_cast<double>(fr.back() - fr.front()) / 1e6;
    std::size_t most_in_2s = 0;
    for (std::size_t i = 0, j = 0; i < lim.size(); ++i) {
        while (lim[i] - lim[j] >= 2000000) ++j;
        most_in_2s = std::max(most_in_2s, i - j + 1);
    }
    std::cout << "[ measured ] 200 items at 20/s over 2 hosts: " << span_s << " s (unlimited domain: " << free_span_s
              << " s); most in any 2 s: " << most_in_2s << "\n";
    EXPECT_GE(span_s, 9.0) << "199 intervals of 50 ms";
    // 40 per 2 s, plus a start per host that a stalled machine may let
    // bunch with the next ones: far below what two hosts each limiting
    // themselves to 20/s would do (80).
    EXPECT_LE(most_in_2s, 48u);
    EXPECT_LT(free_span_s, span_s / 3) << "the unlimited domain was held back";
    EXPECT_GT(value(a, R"(kanban_rate_limited_seconds_total{domain="limited"})") +
                  value(b, R"(kanban_rate_limited_seconds_total{domain="limited"})"),
              0.0);
    EXPECT_EQ(value(a, R"(kanban_rate_limited_seconds_total{domain="free"})"), 0.0);
}

}  // namespace
}  // namespace kanban::test
