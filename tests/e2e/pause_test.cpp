// kanbanctl domain pause / resume (POST /domains/<d>/pause|resume): a pause
// holds on every host of the cluster and across restarts, and only for
// its domain (docs/operating.md, "Pausing a domain").
#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>

namespace kanban::test {
namespace {

using ::testing::HasSubstr;

class DomainPause : public DaemonTest {};

nlohmann::json domainHealth(Kanband& kd, const std::string& domain) {
    const auto j = nlohmann::json::parse(kd.http("GET", "/health").body, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j["domains"].contains(domain)) return nlohmann::json::object();
    return j["domains"][domain];
}

// The host knows the domain is paused (or not) and, if paused, none of its
// workers is in a fetch or a batch any more.
bool pauseInEffect(Kanband& kd, const std::string& domain, bool paused) {
    const auto d = domainHealth(kd, domain);
    return d.value("paused", !paused) == paused && (!paused || d.value("workers_pulling", 1) == 0);
}

TEST_F(DomainPause, HoldsOnEveryHostAndAcrossARestartUntilResumed) {
    HostOptions o;
    o.health_interval_ms = 200;
    o.hosts = 2;
    const std::string audit_out = dir.file("audit.txt");
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out)},
                 {"audit", kFixtures + "/recorder.so", recorderSettings(audit_out)}},
                o);
    std::optional<Kanband> a, b;
    a.emplace(dir, cfg, "a");
    b.emplace(dir, cfg, "b");
    ASSERT_TRUE(a->waitReady()) << a->log();
    ASSERT_TRUE(b->waitReady()) << b->log();
    EXPECT_EQ(domainHealth(*a, "orders")["paused"], false);

    // Asked on one host; the other follows at its next coordinator tick.
    auto pause = kanbanctl(cfg, *a, {"domain", "pause", "orders"});
    ASSERT_EQ(pause.exit_code, 0) << pause.err;
    EXPECT_EQ(pause.out, "orders paused on every host\n");
    ASSERT_TRUE(waitFor([&] { return pauseInEffect(*a, "orders", true) && pauseInEffect(*b, "orders", true); }, 20s))
        << domainHealth(*a, "orders").dump() << "\n" << domainHealth(*b, "orders").dump() << "\n" << b->log();
    EXPECT_EQ(metric(b->http("GET", "/metrics").body, R"(kanban_domain_paused{domain="orders"})"), 1);
    EXPECT_EQ(metric(b->http("GET", "/metrics").body, R"(kanban_domain_paused{domain="audit"})"), 0);
    EXPECT_EQ(domainHealth(*b, "audit")["paused"], false);
    EXPECT_TRUE(domainHealth(*b, "orders").contains("paused_since_unix_ms"));

    // The other domain on the same hosts goes on; by the time its items are
    // handled, the paused domain's would have been too.
    const auto orders = publish(cfg, "orders", "normal", 20);
    const auto audit = publish(cfg, "audit", "normal", 20);
    ASSERT_TRUE(waitFor([&] { return allHandled(audit_out, audit); }, 30s)) << a->log();
    EXPECT_TRUE(readCalls(out).empty()) << "an item of the paused domain was handled";
    EXPECT_EQ(domainHealth(*b, "orders")["depth"], 20) << "the items wait in the broker";

    // Both hosts stop; one starts again alone: it reads the pause before
    // any worker pulls, and handles the other domain's items meanwhile.
    a.reset();
    b.reset();
    a.emplace(dir, cfg, "a-again");  // a log of its own: the old one names the old port
    ASSERT_TRUE(a->waitReady()) << a->log();
    EXPECT_EQ(domainHealth(*a, "orders")["paused"], true);
    const auto more_audit = publish(cfg, "audit", "normal", 5);
    ASSERT_TRUE(waitFor([&] { return allHandled(audit_out, more_audit); }, 30s)) << a->log();
    EXPECT_TRUE(readCalls(out).empty()) << "an item of the paused domain was handled after a restart";

    // Resumed on the restarted host, with the second host back: every item is handled.
    b.emplace(dir, cfg, "b-again");
    ASSERT_TRUE(b->waitReady()) << b->log();
    EXPECT_EQ(domainHealth(*b, "orders")["paused"], true);
    auto resume = kanbanctl(cfg, *a, {"domain", "resume", "orders", "--json"});
    ASSERT_EQ(resume.exit_code, 0) << resume.err;
    const auto answer = nlohmann::json::parse(resume.out);
    EXPECT_EQ(answer["domain"], "orders");
    EXPECT_EQ(answer["paused"], false);
    EXPECT_EQ(answer["changed"], true);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, orders); }, 30s)) << a->log();
    ASSERT_TRUE(waitFor([&] { return pauseInEffect(*b, "orders", false); }, 20s));
    EXPECT_EQ(metric(a->http("GET", "/metrics").body, R"(kanban_domain_paused{domain="orders"})"), 0);

    auto again = kanbanctl(cfg, *b, {"domain", "resume", "orders"});
    EXPECT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(again.out, "orders resumed (it already was)\n");
    auto unknown = kanbanctl(cfg, *b, {"domain", "pause", "nope"});
    EXPECT_EQ(unknown.exit_code, 1);
    EXPECT_THAT(unknown.err, HasSubstr("unknown domain \"nope\" (HTTP 404)"));
    EXPECT_EQ(kanbanctl(cfg, *b, {"domain", "pause"}).exit_code, 64);
}

// A host is ready once it has declared the streams, which its workers do
// when they open their consumers: a paused worker still opens its consumer
// (and then pulls nothing), so a host whose every domain is paused starts ready.
TEST_F(DomainPause, AHostWhoseOnlyDomainIsPausedStartsReady) {
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    {
        Kanband first(dir, cfg, "first");
        ASSERT_TRUE(first.waitReady()) << first.log();
        ASSERT_EQ(kanbanctl(cfg, first, {"domain", "pause", "orders"}).exit_code, 0);
    }
    Kanband second(dir, cfg, "second");
    EXPECT_TRUE(second.waitReady()) << second.http("GET", "/readyz").body << second.log();
    EXPECT_EQ(domainHealth(second, "orders")["paused"], true);
}

// Without NATS (RabbitMQ only, or NATS down) a pause cannot be kept for
// every host: it is refused with the reason, and nothing changes.
TEST_F(DomainPause, IsRefusedWhenNatsCannotKeepIt) {
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    nats.stop();
    ASSERT_TRUE(waitFor([&] { return kd.http("POST", "/domains/orders/pause").status == 503; }, 30s)) << kd.log();
    const auto r = kd.http("POST", "/domains/orders/pause");
    EXPECT_THAT(r.body, HasSubstr("not reachable"));
    EXPECT_EQ(domainHealth(kd, "orders")["paused"], false);
}

}  // namespace
}  // namespace kanban::test
