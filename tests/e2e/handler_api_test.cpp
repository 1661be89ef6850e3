// What a handler can see and do (ABI 1.1), end to end on a real
// nats-server: headers set by kanbanctl publish --header reach the handler
// through retries and a dead-letter replay (in kanband and in a runner
// process); follow-ups of a parent handled twice are published once; a
// trace publisher -> parent -> child arrives at an OTLP receiver.
#include "harness.hpp"
#include "otlp_receiver.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

namespace kanban::test {
namespace {

using ::testing::HasSubstr;

std::string firstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

class HandlerHeaders : public DaemonTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(HandlerHeaders, SetByKanbanctlTheyReachTheHandlerThroughRetriesAndADeadLetterReplay) {
    HostOptions o;
    o.max_attempts = 2;
    o.backoff_initial_ms = 50;
    o.backoff_max_ms = 200;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out), 10000,
                          std::string("isolation = \"") + GetParam() + "\"\n"}},
                        o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    auto r = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "orders", "--payload", "retry", "--header",
                         "X-Tenant=acme", "--header", "X-Correlation=c 42"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string id = firstLine(r.out);
    NatsProbe probe(nats.url());
    ASSERT_TRUE(waitFor([&] { return probe.deadLetters("orders").size() == 1; }, 20s)) << kd.log();
    auto dlq = nlohmann::json::parse(kd.http("GET", "/dlq/orders").body);
    // (The order of different names is not kept: NATS stores headers by name.)
    EXPECT_THAT(dlq["items"][0]["headers"].get<std::vector<std::vector<std::string>>>(),
                ::testing::UnorderedElementsAre(std::vector<std::string>{"X-Tenant", "acme"},
                                                std::vector<std::string>{"X-Correlation", "c 42"}))
        << dlq.dump();

    ASSERT_TRUE(probe.setDuplicateWindow(100));  // a replay within the window would be dropped
    CommandResult replay;
    ASSERT_TRUE(waitFor(
        [&] {
            replay = kanbanctl(cfg, kd, {"dlq", "replay", "orders", "--id", id});
            return replay.exit_code == 0;
        },
        10s))
        << replay.out << replay.err;
    ASSERT_TRUE(waitFor([&] { return callsFor(readCalls(out), id).size() == 4; }, 20s)) << kd.log();
    for (const Call& c : callsFor(readCalls(out), id)) {
        EXPECT_EQ(c.headers.size(), 2u) << "only the publisher's own: no Nats-* or Kanban-* bookkeeping";
        EXPECT_EQ(c.headers.at("X-Tenant"), "acme") << "attempt " << c.attempt;
        EXPECT_EQ(c.headers.at("X-Correlation"), "c 42");
    }

    auto bad = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "orders", "--payload", "x", "--header",
                           "Kanban-Deadline=1"});
    EXPECT_EQ(bad.exit_code, 64);
    EXPECT_THAT(bad.err, HasSubstr("reserved"));
    bad = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "orders", "--payload", "x", "--header", "novalue"});
    EXPECT_EQ(bad.exit_code, 64);
    EXPECT_THAT(bad.err, HasSubstr("expected NAME=VALUE"));
}

INSTANTIATE_TEST_SUITE_P(Isolation, HandlerHeaders, ::testing::Values("thread", "process"),
                         [](const auto& info) { return std::string(info.param); });

class FollowUps : public DaemonTest {};

// The parent overruns its 1 s timeout (it sleeps 3 s ignoring
// cancellation), so its ack wait (2 s) passes while it runs and the broker
// hands it to the second host, which runs it too: both calls return ok and
// both publish the same three children. The children's ids come from the
// parent's, so the stream keeps one copy of each and each is handled once.
TEST_F(FollowUps, AParentHandledTwiceYieldsExactlyOneSetOfChildren) {
    HostOptions o;
    o.workers = 1;
    o.max_workers = 1;
    o.pull_batch = 1;
    const std::vector<DomainSpec> domains{{"parent", kFixtures + "/recorder.so", recorderSettings(out), 1000},
                                          {"child", kFixtures + "/recorder.so", recorderSettings(out)}};
    Kanband& a = start(domains, o);
    Kanband b(dir, cfg, "second");
    ASSERT_TRUE(a.waitReady()) << a.log();
    ASSERT_TRUE(b.waitReady()) << b.log();
    const auto parent = publish(cfg, "parent", "normal", 1, "spawn-slow:child:3:3000");
    ASSERT_EQ(parent.size(), 1u);
    const std::vector<std::string> children{parent[0] + "/1", parent[0] + "/2", parent[0] + "/3"};
    const auto processed = [&](const std::string& domain) {
        double n = 0;
        for (Kanband* k : {&a, &b})
            n += metric(k->http("GET", "/metrics").body,
                        R"(kanban_items_processed_total{domain=")" + domain + R"(",outcome="timeout"})")
                     .value_or(0);
        return n;
    };
    // Both runs ended (ok after the deadline counts as a timeout, and is acked).
    ASSERT_TRUE(waitFor([&] { return processed("parent") == 2; }, 60s)) << a.log() << b.log();
    ASSERT_TRUE(waitFor([&] { return allHandled(out, children); }, 30s)) << a.log() << b.log();
    const auto calls = readCalls(out);
    EXPECT_EQ(okCounts(calls)[parent[0]], 2) << "the parent was handled twice";
    double published = 0;
    for (Kanband* k : {&a, &b})
        published += metric(k->http("GET", "/metrics").body, R"(kanban_items_published_total{domain="child"})").value_or(0);
    EXPECT_EQ(published, 3) << "the second set was dropped by the stream as duplicates";
    NatsProbe probe(nats.url());
    EXPECT_TRUE(waitFor([&] { return probe.streamMsgs("KANBAN") == std::optional<std::uint64_t>(0); }, 10s));
    for (const auto& c : children) {
        const auto got = callsFor(readCalls(out), c);
        ASSERT_EQ(got.size(), 1u) << c;
        EXPECT_EQ(got[0].headers.at("Kanban-Parent"), parent[0]);
    }
}

// A follow-up is published only when its parent's attempt returns ok.
TEST_F(FollowUps, AreNotPublishedByAnAttemptThatFails) {
    const std::vector<DomainSpec> domains{{"parent", kFixtures + "/recorder.so",
                                           recorderSettings(out) + R"(, down_while = ")" + dir.file("down") + "\""},
                                          {"child", kFixtures + "/recorder.so", recorderSettings(out)}};
    HostOptions o;
    o.backoff_initial_ms = 300;
    o.backoff_max_ms = 300;
    writeFile(dir.file("down"), "");
    Kanband& kd = start(domains, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const auto parent = publish(cfg, "parent", "normal", 1, "spawn:child:2");
    ASSERT_TRUE(waitFor([&] { return callsFor(readCalls(out), parent[0]).size() >= 1; }, 20s)) << kd.log();
    EXPECT_EQ(metric(kd.http("GET", "/metrics").body, R"(kanban_items_published_total{domain="child"})"), 0.0);
    ::unlink(dir.file("down").c_str());
    ASSERT_TRUE(waitFor([&] { return allHandled(out, {parent[0] + "/1", parent[0] + "/2"}); }, 20s)) << kd.log();
    EXPECT_EQ(okCounts(readCalls(out))[parent[0]], 1);
}

// In a runner process (isolation = "process") follow-ups cross the
// channel to kanband, which publishes them.
TEST_F(FollowUps, FromARunnerProcessArePublishedByKanband) {
    const std::vector<DomainSpec> domains{
        {"parent", kFixtures + "/recorder.so", recorderSettings(out), 10000, "isolation = \"process\"\n"},
        {"child", kFixtures + "/recorder.so", recorderSettings(out)}};
    Kanband& kd = start(domains);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const auto parents = publish(cfg, "parent", "normal", 3, "spawn:child:2");
    std::vector<std::string> children;
    for (const auto& p : parents) children.insert(children.end(), {p + "/1", p + "/2"});
    ASSERT_TRUE(waitFor([&] { return allHandled(out, children); }, 30s)) << kd.log();
    const auto calls = readCalls(out);
    for (const auto& c : children) {
        ASSERT_EQ(callsFor(calls, c).size(), 1u) << c;
        EXPECT_EQ(callsFor(calls, c)[0].headers.at("Kanban-Parent"), c.substr(0, c.rfind('/')));
    }
}

TEST(Tracing, ASpanTreePublisherParentChildArrivesAtAnOtlpReceiverWithOneTraceId) {
    OtlpReceiver rx;
    NatsServer nats;
    TempDir dir;
    const std::string out = dir.file("calls.txt"), cfg = dir.file("kanban.toml");
    HostOptions o;
    o.max_attempts = 1;
    o.extra_toml = "[tracing]\notlp_endpoint = \"" + rx.url() + "\"\n";
    writeFile(cfg, makeConfig(nats,
                              {{"parent", kFixtures + "/recorder.so", recorderSettings(out)},
                               {"child", kFixtures + "/recorder.so", recorderSettings(out)}},
                              o));
    Kanband kd(dir, cfg);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    auto r = runCommand({kKanbanctl, "--config", cfg, "publish", "--trace", "--domain", "parent", "--payload",
                         "spawn:child:1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string parent_id = firstLine(r.out);
    const auto at = r.err.find("trace ");
    ASSERT_NE(at, std::string::npos) << r.err;
    const std::string trace_id = r.err.substr(at + 6, 32);

    std::vector<nlohmann::json> spans;
    ASSERT_TRUE(waitFor([&] { return (spans = rx.spans()).size() >= 3; }, 30s)) << kd.log();
    std::map<std::string, nlohmann::json> by_name;
    for (const auto& s : spans) {
        EXPECT_EQ(s.at("traceId"), trace_id) << "one trace: " << s.dump();
        by_name[s.at("name").get<std::string>()] = s;
    }
    ASSERT_EQ(spans.size(), 3u);
    const auto& pub = by_name.at("publish parent");
    const auto& handle_parent = by_name.at("handle parent");
    const auto& handle_child = by_name.at("handle child");
    EXPECT_FALSE(pub.contains("parentSpanId")) << "kanbanctl --trace starts the trace";
    EXPECT_EQ(pub.at("kind"), 4);
    EXPECT_EQ(handle_parent.at("parentSpanId"), pub.at("spanId"));
    EXPECT_EQ(handle_parent.at("kind"), 5);
    EXPECT_EQ(handle_child.at("parentSpanId"), handle_parent.at("spanId"));
    std::map<std::string, nlohmann::json> attrs;
    for (const auto& a : handle_parent.at("attributes")) attrs[a.at("key")] = a.at("value");
    EXPECT_EQ(attrs["kanban.domain"]["stringValue"], "parent");
    EXPECT_EQ(attrs["kanban.id"]["stringValue"], parent_id);
    EXPECT_EQ(attrs["kanban.attempt"]["intValue"], "1");
    EXPECT_EQ(attrs["kanban.outcome"]["stringValue"], "ok");
    EXPECT_EQ(attrs["kanban.plugin.version"]["stringValue"], "1.0.0");
    EXPECT_TRUE(attrs.count("kanban.wait_ms"));

    // The handler saw its own attempt's context as `traceparent`.
    const auto calls = callsFor(readCalls(out), parent_id);
    ASSERT_EQ(calls.size(), 1u);
    EXPECT_EQ(calls[0].headers.at("traceparent"),
              "00-" + trace_id + "-" + handle_parent.at("spanId").get<std::string>() + "-01");

    // An item's log lines carry its trace id.
    r = runCommand({kKanbanctl, "--config", cfg, "publish", "--trace", "--domain", "parent", "--payload", "fail"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string failed_trace = r.err.substr(r.err.find("trace ") + 6, 32);
    EXPECT_TRUE(waitFor([&] { return kd.log().find("trace_id=" + failed_trace) != std::string::npos; }, 20s))
        << kd.log();
    // kanband exported its three attempts (the publish spans are kanbanctl's).
    EXPECT_TRUE(waitFor([&] { return metric(kd.http("GET", "/metrics").body, "kanban_spans_exported_total") >= 3.0; },
                        20s));
    EXPECT_EQ(metric(kd.http("GET", "/metrics").body, "kanban_spans_dropped_total"), 0.0);
}

}  // namespace
}  // namespace kanban::test
