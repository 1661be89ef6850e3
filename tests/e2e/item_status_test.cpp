// kanbanctl status ID (GET /items/status): where a work item is, from the
// record that owns each answer (docs/operating.md, "Where is an item?").
#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kanban::test {
namespace {

using ::testing::HasSubstr;

class ItemStatus : public DaemonTest {
protected:
    nlohmann::json status(Kanband& kd, const std::vector<std::string>& args) {
        std::vector<std::string> argv{"status"};
        argv.insert(argv.end(), args.begin(), args.end());
        argv.push_back("--json");
        last = kanbanctl(cfg, kd, argv);
        return nlohmann::json::parse(last.out, nullptr, /*allow_exceptions=*/false);
    }
    CommandResult last;
};

TEST_F(ItemStatus, SaysDoneDeadLetteredWaitingInFlightOrUnknown) {
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());

    // Done: the idempotency record knows it.
    const auto ok = publish(cfg, "orders", "normal", 1);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, ok); }, 20s));
    auto text = kanbanctl(cfg, kd, {"status", ok[0]});
    EXPECT_EQ(text.exit_code, 0) << text.err;
    EXPECT_EQ(text.out, ok[0] + ": done\n");
    EXPECT_EQ(status(kd, {ok[0]})["state"], "done");

    // Dead-lettered: with its reason and attempts, from the DLQ.
    const auto failed = publish(cfg, "orders", "normal", 1, "fail");
    ASSERT_TRUE(waitFor([&] { return probe.deadLetters("orders").size() == 1; }, 20s)) << kd.log();
    auto dead = status(kd, {failed[0]});
    EXPECT_EQ(dead["state"], "dead_lettered") << dead.dump();
    EXPECT_EQ(dead["domain"], "orders");
    EXPECT_EQ(dead["backend"], "nats");
    EXPECT_EQ(dead["attempts"], 1);
    EXPECT_THAT(dead.value("reason", ""), HasSubstr("asked to fail"));
    EXPECT_TRUE(dead.contains("dead_lettered_at"));
    text = kanbanctl(cfg, kd, {"status", failed[0]});
    EXPECT_EQ(text.exit_code, 0) << text.err;
    EXPECT_THAT(text.out, HasSubstr(failed[0] + ": dead-lettered in orders (nats) after 1 attempt(s)"));

    // In a handler on this host: with its attempt and time so far.
    const auto slow = publish(cfg, "orders", "high", 1, "sleep:4000");
    nlohmann::json running;
    // (Fetched but not yet started it is in flight too, without the handler's time.)
    ASSERT_TRUE(waitFor([&] { return (running = status(kd, {slow[0]})).contains("in_handler_seconds"); }, 20s))
        << running.dump();
    EXPECT_EQ(running["state"], "in_flight");
    EXPECT_EQ(running["where"], "in a handler on this host");
    EXPECT_EQ(running["attempts"], 1);
    EXPECT_EQ(running["domain"], "orders");

    // Waiting: the domain is paused, so its items stay in the stream.
    ASSERT_EQ(kanbanctl(cfg, kd, {"domain", "pause", "orders"}).exit_code, 0);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, slow); }, 20s));
    ASSERT_TRUE(waitFor(
        [&] { return nlohmann::json::parse(kd.http("GET", "/health").body)["domains"]["orders"]["workers_pulling"] == 0; },
        20s));
    const auto waiting = publish(cfg, "orders", "low", 3);
    auto w = status(kd, {waiting[2]});
    EXPECT_EQ(w["state"], "waiting") << w.dump();
    EXPECT_EQ(w["domain"], "orders");
    EXPECT_EQ(w["priority"], "low");
    EXPECT_GT(w.value("sequence", 0), 0);
    EXPECT_EQ(w["searched"]["waiting_scanned"], 3) << "read up to the item, not past it";
    text = kanbanctl(cfg, kd, {"status", waiting[2], "--domain", "orders"});
    EXPECT_EQ(text.exit_code, 0) << text.err;
    EXPECT_THAT(text.out, HasSubstr(waiting[2] + ": waiting in orders (low, sequence "));

    // The search is bounded: past the bound the answer is unknown, and says so.
    auto bounded = status(kd, {waiting[2], "--scan", "2"});
    EXPECT_EQ(last.exit_code, 1);
    EXPECT_EQ(bounded["state"], "unknown") << bounded.dump();
    EXPECT_EQ(bounded["searched"]["waiting_complete"], false);
    EXPECT_THAT(bounded.value("note", ""), HasSubstr("not among the first 2 waiting items"));

    // Unknown: found nowhere, everything searched.
    auto unknown = status(kd, {"no-such-id"});
    EXPECT_EQ(last.exit_code, 1);
    EXPECT_EQ(unknown["state"], "unknown");
    EXPECT_EQ(unknown["searched"]["waiting_complete"], true);
    EXPECT_EQ(unknown["searched"]["waiting_scanned"], 3);
    text = kanbanctl(cfg, kd, {"status", "no-such-id"});
    EXPECT_EQ(text.exit_code, 1);
    EXPECT_THAT(text.out, HasSubstr("no-such-id: unknown (not in a handler here, not recorded as done"));

    // Bad requests.
    auto bad_domain = kanbanctl(cfg, kd, {"status", "x", "--domain", "nope"});
    EXPECT_EQ(bad_domain.exit_code, 1);
    EXPECT_THAT(bad_domain.err, HasSubstr("unknown domain \"nope\" (HTTP 404)"));
    EXPECT_EQ(kanbanctl(cfg, kd, {"status"}).exit_code, 64);
    EXPECT_EQ(kd.http("GET", "/items/status").status, 400);
}

// Two hosts: the host running the handler says so; the other sees the item
// handed out and not settled. An item waiting for its retry is in flight
// too, with its attempts and the last reason.
TEST_F(ItemStatus, SeesItemsInOtherHostsHandlersAndWaitingForARetry) {
    HostOptions o;
    o.hosts = 2;
    o.backoff_initial_ms = 600000;  // the retry waits far longer than the test
    o.backoff_max_ms = 600000;
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    Kanband a(dir, cfg, "a"), b(dir, cfg, "b");
    ASSERT_TRUE(a.waitReady()) << a.log();
    ASSERT_TRUE(b.waitReady()) << b.log();

    const auto slow = publish(cfg, "orders", "normal", 1, "sleep:4000");
    nlohmann::json from_a, from_b;
    ASSERT_TRUE(waitFor(
        [&] {
            from_a = status(a, {slow[0]});
            from_b = status(b, {slow[0]});
            return from_a["state"] == "in_flight" && from_b["state"] == "in_flight" &&
                   (from_a.contains("in_handler_seconds") || from_b.contains("in_handler_seconds"));
        },
        20s))
        << from_a.dump() << "\n" << from_b.dump();
    const auto& here = from_a.contains("in_handler_seconds") ? from_a : from_b;
    const auto& there = from_a.contains("in_handler_seconds") ? from_b : from_a;
    EXPECT_EQ(here["where"], "in a handler on this host");
    EXPECT_THAT(there.value("where", ""), HasSubstr("handed to a worker and not settled yet"));
    EXPECT_EQ(there["priority"], "normal");
    ASSERT_TRUE(waitFor([&] { return allHandled(out, slow); }, 20s));

    const auto retried = publish(cfg, "orders", "normal", 1, "retry");
    ASSERT_TRUE(waitFor([&] { return callsFor(readCalls(out), retried[0]).size() == 1; }, 20s));
    nlohmann::json r;
    ASSERT_TRUE(waitFor([&] { return (r = status(a, {retried[0]})).value("attempts", 0) == 1; }, 20s)) << r.dump();
    EXPECT_EQ(r["state"], "in_flight");
    EXPECT_THAT(r.value("last_reason", ""), HasSubstr("asked to retry"));
    auto text = kanbanctl(cfg, a, {"status", retried[0]});
    EXPECT_THAT(text.out, HasSubstr("1 earlier attempt(s), last: "));
}

}  // namespace
}  // namespace kanban::test
