// The work semantics (docs/design.md §3, §5) on each backend: NATS JetStream, and
// RabbitMQ with NATS unreachable (kanband and kanbanctl fail over to it).
// Everything is observed from outside: the recorder's log of handle()
// calls, the admin API and kanbanctl. Both brokers are real: a nats-server
// per test and a vhost per test on the run's rabbitmq-server.
#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <iostream>
#include <map>
#include <set>

namespace kanban::test {
namespace {

enum class Backend { nats, rabbitmq };

class Backends : public RabbitDaemonTest, public ::testing::WithParamInterface<Backend> {
protected:
    // NATS as the test's server, or (for the RabbitMQ runs) a port where
    // nothing listens; RabbitMQ enabled either way.
    HostOptions options() const {
        HostOptions o;
        o.rabbitmq_url = rabbit.url;
        if (GetParam() == Backend::rabbitmq) o.nats_url = "nats://127.0.0.1:" + std::to_string(dead_port);
        return o;
    }

    // The dead letters of `domain` as the admin API lists them, by id.
    std::map<std::string, nlohmann::json> deadLetters(Kanband& kd, const std::string& domain) {
        std::map<std::string, nlohmann::json> out;
        auto r = kd.http("GET", "/dlq/" + domain);
        if (r.status != 200) return out;
        const auto body = nlohmann::json::parse(r.body);
        for (const auto& item : body["items"]) out[item["id"].get<std::string>()] = item;
        return out;
    }

    const char* backendName() const { return GetParam() == Backend::nats ? "nats" : "rabbitmq"; }

    const int dead_port = freePort();
};

// Spec scenario 1: one worker, every item once, in publish order.
TEST_P(Backends, SingleWorkerHandlesEveryItemOnceInOrder) {
    HostOptions o = options();
    o.workers = 1;
    o.max_workers = 1;
    o.pull_batch = 3;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const auto ids = publish(cfg, "orders", "normal", 30);
    ASSERT_EQ(ids.size(), 30u);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, ids); }, 20s)) << kd.log();
    const auto calls = readCalls(out);
    ASSERT_EQ(calls.size(), ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        EXPECT_EQ(calls[i].id, ids[i]);
        EXPECT_EQ(calls[i].attempt, 1);
    }
    // Set by the coordinator's first tick, which may come after the work under a sanitizer.
    EXPECT_TRUE(waitFor(
        [&] {
            return metric(kd.http("GET", "/metrics").body,
                          std::string(R"(kanban_backend_active{backend=")") + backendName() + "\"}") == 1.0;
        },
        10s));
}

// Spec scenario 2: with a backlog in all three, high before normal before low.
TEST_P(Backends, BacklogIsServedHighBeforeNormalBeforeLow) {
    HostOptions o = options();
    o.workers = 1;
    o.max_workers = 1;
    o.pull_batch = 1;
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    const auto low = publish(cfg, "orders", "low", 5);
    const auto normal = publish(cfg, "orders", "normal", 5);
    const auto high = publish(cfg, "orders", "high", 5);
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    std::vector<std::string> all = high;
    all.insert(all.end(), normal.begin(), normal.end());
    all.insert(all.end(), low.begin(), low.end());
    ASSERT_TRUE(waitFor([&] { return allHandled(out, all); }, 20s)) << kd.log();
    const auto calls = readCalls(out);
    ASSERT_EQ(calls.size(), 15u);
    for (std::size_t i = 0; i < calls.size(); ++i) EXPECT_EQ(calls[i].priority, i < 5 ? "high" : i < 10 ? "normal" : "low") << i;
}

// Spec scenario 4: retries back off, then the dead-letter queue (with its
// headers, as the admin API lists them); `fail` goes there at once.
TEST_P(Backends, RetriesBackOffThenDeadLetter) {
    HostOptions o = options();
    o.max_attempts = 3;
    o.backoff_initial_ms = 200;
    o.backoff_max_ms = 5000;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out), 2000}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const auto retry = publish(cfg, "orders", "normal", 1, "retry");
    const auto failing = publish(cfg, "orders", "high", 1, "fail");
    const auto fine = publish(cfg, "orders", "low", 3);
    ASSERT_EQ(retry.size(), 1u);
    ASSERT_EQ(failing.size(), 1u);
    std::map<std::string, nlohmann::json> dlq;
    ASSERT_TRUE(waitFor([&] { return (dlq = deadLetters(kd, "orders")).size() == 2; }, 20s))
        << kd.http("GET", "/dlq/orders").body << kd.log();
    EXPECT_TRUE(allHandled(out, fine));

    const auto tries = callsFor(readCalls(out), retry[0]);
    ASSERT_EQ(tries.size(), 3u) << kd.log();
    for (std::size_t i = 0; i < tries.size(); ++i) {
        EXPECT_EQ(tries[i].attempt, static_cast<int>(i) + 1);
        if (i == 0) continue;
        const double gap_ms = static_cast<double>(tries[i].epoch_us - tries[i - 1].epoch_us) / 1000.0;
        const double base = 200.0 * static_cast<double>(1 << (i - 1));
        std::cout << "[ measured ] " << backendName() << " backoff gap " << gap_ms << " ms (base " << base << ")\n";
        EXPECT_GE(gap_ms, base * 0.8) << "shorter than the backoff minus jitter";
        EXPECT_LE(gap_ms, base + 500.0) << "far longer than the backoff";
    }
    ASSERT_TRUE(dlq.count(retry[0]));
    EXPECT_EQ(dlq[retry[0]]["reason"], "asked to retry");
    EXPECT_EQ(dlq[retry[0]]["reason_code"], "retries_exhausted");
    EXPECT_EQ(dlq[retry[0]]["attempts"], 3);
    EXPECT_EQ(dlq[retry[0]]["payload"], "retry");
    EXPECT_EQ(dlq[retry[0]]["backend"], backendName());
    EXPECT_THAT(dlq[retry[0]]["original_subject"].get<std::string>(), ::testing::EndsWith("normal.orders"));
    ASSERT_TRUE(dlq.count(failing[0]));
    EXPECT_EQ(dlq[failing[0]]["reason"], "asked to fail");
    EXPECT_EQ(dlq[failing[0]]["reason_code"], "handler_failed");
    EXPECT_EQ(dlq[failing[0]]["attempts"], 1);
    EXPECT_EQ(callsFor(readCalls(out), failing[0]).size(), 1u) << "fail is final";

    // Replay puts it back to work with its id (and the recorder fails it
    // again). On NATS the same id within the 2-minute duplicate window is
    // dropped by the stream: operations_test covers replay there.
    if (GetParam() == Backend::nats) return;
    // Purge by reason code on RabbitMQ's dead-letter queue: that one goes,
    // the other is handed back to the queue untouched.
    auto purged = kd.http("POST", "/dlq/orders/purge", R"({"reason":"retries_exhausted"})");
    EXPECT_EQ(purged.status, 200) << purged.body;
    EXPECT_EQ(nlohmann::json::parse(purged.body)["purged"], nlohmann::json::array({retry[0]})) << purged.body;
    dlq = deadLetters(kd, "orders");
    EXPECT_EQ(dlq.size(), 1u);
    EXPECT_TRUE(dlq.count(failing[0]));
    auto r = kd.http("POST", "/dlq/orders/replay", R"({"id":")" + failing[0] + "\"}");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(waitFor([&] { return callsFor(readCalls(out), failing[0]).size() == 2; }, 10s)) << r.body << kd.log();
}

// Headers a publisher set (ABI 1.1) on both brokers: the handler sees them
// on every attempt, the dead letter keeps them, and (RabbitMQ: no
// duplicate window to wait out) a replay gives them back.
TEST_P(Backends, HeadersSurviveRetriesTheDeadLetterQueueAndAReplay) {
    HostOptions o = options();
    o.max_attempts = 2;
    o.backoff_initial_ms = 50;
    o.backoff_max_ms = 100;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    auto r = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "orders", "--payload", "retry", "--header",
                         "X-Tenant=acme"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string id = r.out.substr(0, r.out.find('\n'));
    std::map<std::string, nlohmann::json> dlq;
    ASSERT_TRUE(waitFor([&] { return (dlq = deadLetters(kd, "orders")).size() == 1; }, 20s)) << kd.log();
    EXPECT_EQ(dlq[id]["headers"], nlohmann::json::parse(R"([["X-Tenant","acme"]])")) << dlq[id].dump();
    std::size_t expected = 2;
    if (GetParam() == Backend::rabbitmq) {
        auto replay = kd.http("POST", "/dlq/orders/replay", R"({"id":")" + id + "\"}");
        EXPECT_EQ(replay.status, 200) << replay.body;
        expected = 4;
    }
    ASSERT_TRUE(waitFor([&] { return callsFor(readCalls(out), id).size() == expected; }, 20s)) << kd.log();
    for (const Call& c : callsFor(readCalls(out), id)) {
        EXPECT_EQ(c.headers.size(), 1u) << backendName() << ": only the publisher's own headers";
        EXPECT_EQ(c.headers.at("X-Tenant"), "acme") << backendName() << " attempt " << c.attempt;
    }
}

// Result::retry(reason, delay) on both brokers: the item comes back no
// earlier than the handler asked, and on RabbitMQ a long chosen delay does
// not hold up other items' backoff (it waits in a queue of its own: a
// classic queue expires messages at its head only).
TEST_P(Backends, AHandlerChosenDelayIsKeptAndHoldsNothingUp) {
    HostOptions o = options();
    o.max_attempts = 2;
    o.backoff_initial_ms = 50;
    o.backoff_max_ms = 600000;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const auto parked = publish(cfg, "orders", "normal", 1, "retry-after:600000");  // ten minutes
    ASSERT_TRUE(waitFor([&] { return callsFor(readCalls(out), parked[0]).size() == 1; }, 20s)) << kd.log();
    const auto later = publish(cfg, "orders", "normal", 1, "retry-after:1200");
    const auto backoff = publish(cfg, "orders", "normal", 1, "retry");
    ASSERT_TRUE(waitFor(
        [&] {
            const auto calls = readCalls(out);
            return callsFor(calls, later[0]).size() == 2 && callsFor(calls, backoff[0]).size() == 2;
        },
        30s))
        << kd.log();
    const auto calls = callsFor(readCalls(out), later[0]);
    const double gap_ms = static_cast<double>(calls[1].epoch_us - calls[0].epoch_us) / 1000.0;
    std::cout << "[ measured ] " << backendName() << " handler-chosen delay 1200 ms: back after " << gap_ms << " ms\n";
    EXPECT_GE(gap_ms, 1200.0 * 0.99) << "back before the delay the handler asked for";
    EXPECT_EQ(callsFor(readCalls(out), parked[0]).size(), 1u) << "the ten-minute retry came back early";
}

// A delayed item (kanbanctl publish --delay) is not handled before its
// time on either backend, spends no attempt waiting, and an item published
// after it is not held up (RabbitMQ: it waits in a delay queue of its own).
TEST_P(Backends, ADelayedItemWaitsForItsTimeWithoutAnAttempt) {
    HostOptions o = options();
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const std::int64_t before = epochMs();
    auto r = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "orders", "--payload", "later", "--delay",
                         "2s"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string delayed = r.out.substr(0, r.out.find('\n'));
    const auto now_item = publish(cfg, "orders", "normal", 1);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, {delayed}) && allHandled(out, now_item); }, 30s)) << kd.log();
    const auto calls = callsFor(readCalls(out), delayed);
    ASSERT_EQ(calls.size(), 1u);
    EXPECT_EQ(calls[0].attempt, 1) << "waiting is not an attempt";
    EXPECT_GE(calls[0].epoch_us, (before + 2000) * 1000) << backendName() << ": handled before its time";
    EXPECT_LT(callsFor(readCalls(out), now_item[0]).at(0).epoch_us, calls[0].epoch_us) << "held up behind it";
    std::cout << "[ measured ] " << backendName() << " --delay 2s: handled "
              << static_cast<double>(calls[0].epoch_us / 1000 - before - 2000) << " ms after its time\n";
}

// An expired deadline is dead-lettered without calling the handler.
TEST_P(Backends, ExpiredDeadlineIsDeadLetteredWithoutTheHandler) {
    HostOptions o = options();
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    auto r = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "orders", "--priority", "normal",
                         "--payload", "late", "--deadline-ms", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string late = r.out.substr(0, r.out.find('\n'));
    const auto fine = publish(cfg, "orders", "normal", 2);
    const std::int64_t published = epochMs();
    ASSERT_TRUE(waitFor([&] { return epochMs() > published + 5; }, 1s));  // the 1 ms deadline has passed
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    std::map<std::string, nlohmann::json> dlq;
    ASSERT_TRUE(waitFor([&] { return (dlq = deadLetters(kd, "orders")).count(late) == 1; }, 15s)) << kd.log();
    EXPECT_EQ(dlq[late]["reason"], "deadline_exceeded");
    ASSERT_TRUE(waitFor([&] { return allHandled(out, fine); }, 10s));
    EXPECT_TRUE(callsFor(readCalls(out), late).empty()) << "the handler saw an expired item";
}

// Idempotency: the same id published again after it was handled is not
// handled again (NATS: the broker's duplicate window; RabbitMQ: the
// host's record of completed ids).
TEST_P(Backends, SameIdAgainIsNotHandledTwice) {
    HostOptions o = options();
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    auto once = [&] {
        return runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "orders", "--priority", "normal",
                           "--payload", "x", "--id", "order-42"});
    };
    ASSERT_EQ(once().exit_code, 0);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, {"order-42"}); }, 10s)) << kd.log();
    ASSERT_EQ(once().exit_code, 0);
    const auto marker = publish(cfg, "orders", "normal", 1);  // handled after the copy was settled
    ASSERT_TRUE(waitFor([&] { return allHandled(out, marker); }, 10s)) << kd.log();
    if (GetParam() == Backend::rabbitmq) {
        EXPECT_TRUE(waitFor([&] { return kd.logHas("item already done, acked without calling the handler"); }, 5s));
    }
    EXPECT_EQ(callsFor(readCalls(out), "order-42").size(), 1u);
}

// B18: empty and binary payloads arrive byte-exact.
TEST_P(Backends, BinaryAndEmptyPayloadsArriveByteExact) {
    HostOptions o = options();
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    std::string binary;
    for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
    binary += std::string("\0\xff\xfe{not json", 13);
    writeFile(dir.file("binary.bin"), binary);
    writeFile(dir.file("empty.bin"), "");
    std::map<std::string, std::string> sent;
    for (const auto& [file, bytes] : {std::pair{"binary.bin", binary}, std::pair{"empty.bin", std::string()}}) {
        auto r = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "orders", "--priority", "normal", "--file",
                             dir.file(file)});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        sent[r.out.substr(0, r.out.find('\n'))] = bytes;
    }
    ASSERT_TRUE(waitFor([&] { return readCalls(out).size() == 2; }, 10s)) << kd.log();
    for (const auto& c : readCalls(out)) {
        ASSERT_TRUE(sent.count(c.id));
        EXPECT_EQ(c.payload_hex, sent[c.id].empty() ? "-" : toHex(sent[c.id])) << c.id;
    }
}

// Reliability F9: kill -9 of kanband mid-batch loses nothing. Another host
// takes over (its own local record, so with NATS down only the acks the
// dead one sent keep items from running again): what runs again is what a
// worker had in hand or handled in its last ~10 ms (done log, or acks sent
// together), not the handled part of its batch of 20.
TEST_P(Backends, KilledDaemonLosesNothing) {
    HostOptions o = options();
    o.workers = 2;
    o.max_workers = 2;
    o.pull_batch = 20;
    // timeout 2 s: on NATS the items in hand come back after the 3 s ack wait
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out, 10), 2000}}, o);
    const auto ids = publish(cfg, "orders", "normal", 200);
    ASSERT_EQ(ids.size(), 200u);
    {
        Kanband first(dir, cfg, "first");
        ASSERT_TRUE(waitFor([&] { return readCalls(out).size() >= 60; }, 20s)) << first.log();
        first.proc().signal(SIGKILL);
        ASSERT_TRUE(first.proc().wait(5s));
    }
    Kanband second(dir, cfg, "second");
    ASSERT_TRUE(waitFor([&] { return allHandled(out, ids); }, 60s)) << second.log();
    int twice = 0;
    for (const auto& [id, n] : okCounts(readCalls(out))) twice += n > 1 ? 1 : 0;
    std::cout << "[ measured ] " << backendName() << ": handled again after kill -9: " << twice
              << " (bound 2 per worker; the batch is 20)\n";
    EXPECT_LE(twice, 2 * o.workers);
}

INSTANTIATE_TEST_SUITE_P(Both, Backends, ::testing::Values(Backend::nats, Backend::rabbitmq),
                         [](const ::testing::TestParamInfo<Backend>& p) {
                             return p.param == Backend::nats ? "Nats" : "RabbitMq";
                         });

}  // namespace
}  // namespace kanban::test
