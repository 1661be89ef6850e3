// The JetStream backend against a real nats-server -js (one per test).
#include "broker/jetstream.hpp"

#include "support.hpp"

#include <nats/nats.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <regex>
#include <set>
#include <thread>

namespace kanban::host::broker {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class JetStreamTest : public ::testing::Test {
protected:
    void SetUp() override {
        JetStreamOptions o;
        o.servers = {nats_.url()};
        o.keep_trying = false;
        auto js = JetStream::connect(o);
        ASSERT_TRUE(js.ok()) << js.message();
        js_ = std::move(*js);
        ASSERT_TRUE(js_->ensureStreams().ok());
    }

    std::unique_ptr<Consumer> consumer(const std::string& domain, std::int64_t timeout_ms = 30000) {
        ConsumerSpec spec;
        spec.domain = domain;
        spec.timeout_ms = timeout_ms;
        auto c = js_->openConsumer(spec);
        EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.message());
        return c.ok() ? std::move(*c) : nullptr;
    }

    void publish(const std::string& domain, Priority p, const std::string& id, const std::string& payload = "{}") {
        PublishRequest r;
        r.domain = domain;
        r.priority = p;
        r.id = id;
        r.payload = payload;
        auto ack = js_->publish(r);
        ASSERT_TRUE(ack.ok()) << ack.message();
    }

    // Fetches until `n` deliveries arrived or the timeout passed.
    DeliveryBatch fetchN(Consumer& c, std::size_t n, int batch = 10, std::chrono::milliseconds timeout = 5s) {
        DeliveryBatch all;
        kanban::test::waitFor(
            [&] {
                auto got = c.fetch(batch, 50ms);
                EXPECT_TRUE(got.ok()) << (got.ok() ? "" : got.message());
                if (got)
                    for (auto& d : *got) all.push_back(std::move(d));
                return all.size() >= n;
            },
            timeout, 0ms);
        return all;
    }

    kanban::test::NatsServer nats_;
    std::unique_ptr<JetStream> js_;
};

TEST_F(JetStreamTest, PublishedItemIsPulledWithItsMetadataAndAckedOnce) {
    const std::string payload("bin\0ary\xff", 8);
    PublishRequest r{"payment", Priority::high, payload, "work-1", 1893456000000, std::nullopt, {}};
    auto ack = js_->publish(r);
    ASSERT_TRUE(ack.ok()) << ack.message();
    EXPECT_FALSE(ack->duplicate);

    auto c = consumer("payment");
    auto got = fetchN(*c, 1);
    ASSERT_EQ(got.size(), 1u);
    Delivery& d = *got[0];
    EXPECT_EQ(d.id, "work-1");
    EXPECT_EQ(d.domain, "payment");
    EXPECT_EQ(d.priority, Priority::high);
    EXPECT_EQ(std::string(d.payload), payload);  // byte-exact, NUL included
    EXPECT_EQ(d.attempt, 1u);
    EXPECT_EQ(d.deadline_unix_ms, 1893456000000);
    d.ack();
    got.clear();
    auto rest = c->fetch(10, 300ms);
    ASSERT_TRUE(rest.ok());
    EXPECT_TRUE(rest->empty());
}

TEST_F(JetStreamTest, SameIdIsStoredOnce) {
    publish("d", Priority::normal, "dup-1");
    PublishRequest again{"d", Priority::normal, "{}", "dup-1", std::nullopt, std::nullopt, {}};
    auto ack = js_->publish(again);
    ASSERT_TRUE(ack.ok());
    EXPECT_TRUE(ack->duplicate);
    auto c = consumer("d");
    auto got = fetchN(*c, 2, 10, 1s);
    EXPECT_EQ(got.size(), 1u);
}

TEST_F(JetStreamTest, HighBeforeNormalBeforeLowWithABacklogInAll) {
    // Published in the worst order: low first.
    for (int i = 0; i < 6; ++i) publish("p", Priority::low, "low-" + std::to_string(i));
    for (int i = 0; i < 6; ++i) publish("p", Priority::normal, "normal-" + std::to_string(i));
    for (int i = 0; i < 6; ++i) publish("p", Priority::high, "high-" + std::to_string(i));
    auto c = consumer("p");
    std::vector<Priority> order;
    std::vector<std::string> ids;
    while (order.size() < 18) {
        auto batch = c->fetch(4, 200ms);
        ASSERT_TRUE(batch.ok()) << batch.message();
        ASSERT_FALSE(batch->empty()) << "stalled after " << order.size();
        for (auto& d : *batch) {
            order.push_back(d->priority);
            ids.push_back(d->id);
            d->ack();
        }
    }
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end(),
                               [](Priority a, Priority b) { return static_cast<int>(a) < static_cast<int>(b); }))
        << ::testing::PrintToString(ids);
    EXPECT_EQ(ids.front(), "high-0");
    EXPECT_EQ(ids.back(), "low-5");
}

TEST_F(JetStreamTest, NeverHandsOutMoreThanTheBatch) {
    for (int i = 0; i < 25; ++i) publish("b", Priority::normal, "b-" + std::to_string(i));
    auto c = consumer("b");
    std::set<std::string> ids;
    while (ids.size() < 25) {
        auto batch = c->fetch(10, 200ms);
        ASSERT_TRUE(batch.ok()) << batch.message();
        ASSERT_FALSE(batch->empty());
        EXPECT_LE(batch->size(), 10u);
        for (auto& d : *batch) {
            EXPECT_TRUE(ids.insert(d->id).second) << "duplicate " << d->id;
            d->ack();
        }
    }
}

// Deliveries are counted (the safety net, and whether the attempt records
// are asked), but they are not attempts: the worker counts handler calls.
TEST_F(JetStreamTest, RetryAfterRedeliversAndCountsTheDelivery) {
    publish("r", Priority::normal, "r-1");
    // A short ack wait (2 s): nats-server 2.9.10 now and then loses the
    // redelivery a NakWithDelay schedules under load (the known behaviour,
    // see RetriedHighItemIsNotStuckBehindFreshNormalOnes); the ack wait then
    // redelivers it, still counted, still no earlier than the delay.
    auto c = consumer("r", 1000);
    auto first = fetchN(*c, 1);
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0]->deliveries, 1u);
    EXPECT_FALSE(first[0]->maybe_tried);
    const auto t0 = std::chrono::steady_clock::now();
    first[0]->retryAfter(300ms);
    first.clear();
    auto second = fetchN(*c, 1);
    ASSERT_EQ(second.size(), 1u);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);  // the delay was honoured
    EXPECT_EQ(second[0]->id, "r-1");
    // The broker's delivery count: 2. nats-server 2.9.10 now and then says 1
    // here: when the pull request it meant a redelivery for has just expired,
    // its delivery loop rewinds the consumer's stream position (consumer.go,
    // "We will redo this one": o.sseq--) and the message goes out again as a
    // first delivery. Its redelivery counter keeps counting, so the next
    // redelivery still says 3. The worker does not rely on the count alone
    // (docs/architecture.md, "Idempotency"); the flag must follow the count.
    EXPECT_TRUE(second[0]->deliveries == 2u || second[0]->deliveries == 1u) << second[0]->deliveries;
    EXPECT_EQ(second[0]->maybe_tried, second[0]->deliveries > 1);
    EXPECT_EQ(second[0]->attempt, 1u);  // no handler call is known from the message itself
    const auto second_count = second[0]->deliveries;
    second[0]->release();
    second.clear();
    auto third = fetchN(*c, 1, 10, 5s);
    ASSERT_EQ(third.size(), 1u);
    EXPECT_TRUE(third[0]->deliveries == 3u || third[0]->deliveries == 1u) << third[0]->deliveries;
    // The rewind needs a request expiring at that very moment: not twice in a row.
    EXPECT_GT(std::max(second_count, third[0]->deliveries), 1u);
}

TEST_F(JetStreamTest, DeadLetterStoresCopyWithHeadersThenRemovesOriginal) {
    publish("dl", Priority::low, "dl-1", "payload-bytes");
    auto c = consumer("dl");
    auto got = fetchN(*c, 1);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(got[0]->deadLetter("because", "handler_failed").ok());
    got.clear();

    natsMsg* m = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_GetLastMsg(&m, js_->js(), "KANBAN_DLQ", "kanban.dlq.dl", nullptr, &jerr), NATS_OK);
    auto hdr = [&](const char* k) {
        const char* v = nullptr;
        return natsMsgHeader_Get(m, k, &v) == NATS_OK ? std::string(v) : std::string("<missing>");
    };
    EXPECT_EQ(std::string(natsMsg_GetData(m), natsMsg_GetDataLength(m)), "payload-bytes");
    EXPECT_EQ(hdr("Kanban-Reason"), "because");
    EXPECT_EQ(hdr("Kanban-Reason-Code"), "handler_failed");
    EXPECT_EQ(hdr("Kanban-Attempts"), "1");
    EXPECT_EQ(hdr("Kanban-Original-Subject"), "kanban.low.dl");
    EXPECT_EQ(hdr("Kanban-Original-Id"), "dl-1");
    // Keyed by the original's stream position, not by the work id: a replayed
    // item that fails again is dead-lettered again, not dropped as a duplicate.
    EXPECT_EQ(hdr("Nats-Msg-Id"), "dlq:KANBAN:1");
    natsMsg_Destroy(m);

    // Terminated on a WorkQueue stream = removed (the Term is asynchronous).
    EXPECT_TRUE(kanban::test::waitFor(
        [&] {
            jsStreamInfo* si = nullptr;
            if (js_GetStreamInfo(&si, js_->js(), "KANBAN", nullptr, &jerr) != NATS_OK) return false;
            const bool empty = si->State.Msgs == 0;
            jsStreamInfo_Destroy(si);
            return empty;
        },
        5s));
}

TEST_F(JetStreamTest, ItemWithoutMsgIdGetsStreamSequenceId) {
    natsConnection* nc = nullptr;
    ASSERT_EQ(natsConnection_ConnectTo(&nc, nats_.url().c_str()), NATS_OK);
    jsCtx* js = nullptr;
    ASSERT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
    ASSERT_EQ(js_Publish(nullptr, js, "kanban.normal.raw", "{}", 2, nullptr, nullptr), NATS_OK);
    auto c = consumer("raw");
    auto got = fetchN(*c, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0]->id, "KANBAN-1");
    EXPECT_FALSE(got[0]->deadline_unix_ms.has_value());
    got[0]->ack();
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

TEST_F(JetStreamTest, DeclarationIsIdempotentAndFollowsConfigChanges) {
    ASSERT_TRUE(js_->ensureStreams().ok());
    auto a = consumer("x", 1000);
    auto b = consumer("x", 1000);  // a second worker binds to the same durable
    auto changed = consumer("x", 5000);
    ASSERT_TRUE(a && b && changed);
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_GetConsumerInfo(&ci, js_->js(), "KANBAN", "x_high", nullptr, &jerr), NATS_OK);
    EXPECT_EQ(ci->Config->AckWait, (5000 + 2500) * 1'000'000LL);  // ack wait > handler timeout
    EXPECT_EQ(std::string(ci->Config->FilterSubject), "kanban.high.x");
    EXPECT_EQ(ci->Config->MaxAckPending, 200);  // the spec's in-flight bound (workers.max × pull_batch)
    jsConsumerInfo_Destroy(ci);
}

// Opening a consumer (start, pool growth, a settings reload) neither
// withdraws readiness (/readyz is healthy()) nor declares the streams, the
// bucket or unchanged consumers again: a second worker's open costs no
// JetStream create or update request.
TEST_F(JetStreamTest, OpeningConsumersKeepsReadinessAndDeclaresNothingTwice) {
    auto first = consumer("grow", 1000);
    ASSERT_TRUE(first);
    ASSERT_TRUE(js_->healthy());

    // Every create or update request anyone sends from here on.
    natsConnection* watch = nullptr;
    ASSERT_EQ(natsConnection_ConnectTo(&watch, nats_.url().c_str()), NATS_OK);
    natsSubscription* sub = nullptr;
    ASSERT_EQ(natsConnection_SubscribeSync(&sub, watch, "$JS.API.>"), NATS_OK);
    ASSERT_EQ(natsConnection_Flush(watch), NATS_OK);

    std::atomic<bool> opening{true};
    std::atomic<int> unready{0};
    std::thread poll([&] {
        while (opening.load())
            if (!js_->healthy()) ++unready;
    });
    std::vector<std::unique_ptr<Consumer>> more;
    for (int i = 0; i < 20; ++i) more.push_back(consumer("grow", 1000));
    opening = false;
    poll.join();
    EXPECT_EQ(unready.load(), 0) << "readiness was withdrawn while consumers opened";

    ASSERT_EQ(natsConnection_Flush(js_->connection()), NATS_OK);
    ASSERT_EQ(natsConnection_Flush(watch), NATS_OK);
    std::vector<std::string> declarations;
    for (;;) {
        natsMsg* m = nullptr;
        if (natsSubscription_NextMsg(&m, sub, 200) != NATS_OK) break;
        const std::string subject = natsMsg_GetSubject(m);
        natsMsg_Destroy(m);
        if (subject.find(".CREATE.") != std::string::npos || subject.find(".UPDATE.") != std::string::npos)
            declarations.push_back(subject);
    }
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(watch);
    EXPECT_TRUE(declarations.empty()) << declarations.size() << " declarations, first " << declarations.front();

    // A changed consumer configuration (a reload) is declared again.
    auto changed = consumer("grow", 5000);
    ASSERT_TRUE(changed);
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_GetConsumerInfo(&ci, js_->js(), "KANBAN", "grow_normal", nullptr, &jerr), NATS_OK);
    EXPECT_EQ(ci->Config->AckWait, (5000 + 2500) * 1'000'000LL);
    jsConsumerInfo_Destroy(ci);
}

// A server that lost its topology (restarted with a new store): the next
// open declares the streams and consumers again.
TEST_F(JetStreamTest, AConsumerWhoseStreamWasDeletedIsDeclaredAgain) {
    ASSERT_TRUE(consumer("lost"));
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_DeleteStream(js_->js(), "KANBAN", nullptr, &jerr), NATS_OK);
    auto again = consumer("lost");
    ASSERT_TRUE(again);
    publish("lost", Priority::normal, "after");
    auto got = fetchN(*again, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0]->id, "after");
    EXPECT_TRUE(js_->healthy());
}

TEST(AckWait, IsLongerThanTheTimeoutByABoundedMargin) {
    EXPECT_EQ(ackWaitFor(100).count(), 1100);      // at least 1 s margin
    EXPECT_EQ(ackWaitFor(4000).count(), 6000);     // half the timeout
    EXPECT_EQ(ackWaitFor(30000).count(), 40000);   // at most 10 s margin
}

TEST_F(JetStreamTest, StreamsHaveExplicitLimitsAndAFullStreamIsAClearPublishError) {
    JetStreamOptions o;
    o.servers = {nats_.url()};
    o.keep_trying = false;
    o.max_msgs = 3;
    auto small = JetStream::connect(o);
    ASSERT_TRUE(small.ok());
    ASSERT_TRUE((*small)->openConsumer(ConsumerSpec{"full"}).ok());  // (re)declares with the new limits
    for (int i = 0; i < 3; ++i) publish("full", Priority::normal, "full-" + std::to_string(i));
    PublishRequest r{"full", Priority::normal, "{}", "full-3", std::nullopt, std::nullopt, {}};
    auto ack = (*small)->publish(r);
    ASSERT_FALSE(ack.ok()) << "a full stream must refuse (discard new), not drop silently";
    EXPECT_THAT(ack.message(), HasSubstr("stream full"));

    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_GetStreamInfo(&si, js_->js(), "KANBAN", nullptr, &jerr), NATS_OK);
    EXPECT_EQ(si->Config->Discard, js_DiscardNew);
    EXPECT_EQ(si->Config->MaxMsgs, 3);
    EXPECT_EQ(si->State.Msgs, 3u);  // the first three are still there
    jsStreamInfo_Destroy(si);
}

TEST_F(JetStreamTest, PayloadExactlyAtTheLimitIsAcceptedAndOneMoreByteIsRefusedNamingTheLimit) {
    PublishRequest r{"big", Priority::normal, "", "big-1", std::nullopt, std::nullopt, {}};
    // Find the limit from the error message of an obviously oversized payload.
    r.payload.assign(2 * 1024 * 1024, 'x');
    auto over = js_->publish(r);
    ASSERT_FALSE(over.ok());
    std::smatch m;
    const std::string msg = over.message();
    ASSERT_TRUE(std::regex_search(msg, m, std::regex("exceeds the limit of ([0-9]+) bytes"))) << msg;
    EXPECT_THAT(msg, HasSubstr("max_payload 1048576"));
    const std::size_t limit = std::stoul(m[1]);

    r.payload.assign(limit + 1, 'x');
    EXPECT_FALSE(js_->publish(r).ok());
    r.payload.assign(limit, 'x');
    auto at = js_->publish(r);
    ASSERT_TRUE(at.ok()) << at.message();  // the server agrees with our arithmetic
    auto c = consumer("big");
    auto got = fetchN(*c, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0]->payload.size(), limit);
}

TEST_F(JetStreamTest, InvalidPriorityTokenIsRefusedAtPublish) {
    natsConnection* nc = nullptr;
    ASSERT_EQ(natsConnection_ConnectTo(&nc, nats_.url().c_str()), NATS_OK);
    jsCtx* js = nullptr;
    ASSERT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
    // No stream captures kanban.urgent.*: the publisher is told, nothing is stranded.
    EXPECT_EQ(js_Publish(nullptr, js, "kanban.urgent.payment", "{}", 2, nullptr, nullptr), NATS_NO_RESPONDERS);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

TEST_F(JetStreamTest, SubjectCountsShowItemsOfEveryDomain) {
    publish("known", Priority::normal, "k-1");
    publish("nosuch", Priority::low, "n-1");
    publish("nosuch", Priority::low, "n-2");
    auto counts = js_->subjectCounts();
    ASSERT_TRUE(counts.ok()) << counts.message();
    std::map<std::string, std::uint64_t> m(counts->begin(), counts->end());
    EXPECT_EQ(m["kanban.normal.known"], 1u);
    EXPECT_EQ(m["kanban.low.nosuch"], 2u);
}

// Anti-starvation: with a high-priority backlog that outlasts starvation_ms,
// a waiting low item is still served; with 0 (strict), only after the backlog.
TEST_F(JetStreamTest, LowIsServedWithinTheStarvationBoundUnderAHighBacklog) {
    for (int i = 0; i < 3; ++i) publish("s", Priority::low, "low-" + std::to_string(i));
    for (int i = 0; i < 150; ++i) publish("s", Priority::high, "high-" + std::to_string(i));
    ConsumerSpec spec{"s"};
    spec.starvation_ms = 300;
    auto c = js_->openConsumer(spec);
    ASSERT_TRUE(c.ok());
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t handled = 0, first_low = 0;
    std::chrono::steady_clock::duration low_after{};
    while (first_low == 0 && handled < 153) {
        auto batch = (*c)->fetch(1, 200ms);
        ASSERT_TRUE(batch.ok()) << batch.message();
        for (auto& d : *batch) {
            ++handled;
            if (d->priority == Priority::low && first_low == 0) {
                first_low = handled;
                low_after = std::chrono::steady_clock::now() - t0;
            }
            d->ack();
        }
        std::this_thread::sleep_for(10ms);  // the work itself: ~150 items take over 1.5 s
    }
    ASSERT_NE(first_low, 0u);
    EXPECT_LT(first_low, 150u) << "low waited for the whole high backlog";
    // Not served at once: high goes first until low has waited starvation_ms
    // (counted from the consumer's start, just before t0).
    EXPECT_GT(first_low, 10u) << "served before it was starved: the order is not high first";
    EXPECT_GE(low_after, 250ms);
    EXPECT_LT(low_after, 1000ms);
}

TEST_F(JetStreamTest, StrictPriorityWhenStarvationIsDisabled) {
    for (int i = 0; i < 3; ++i) publish("t", Priority::low, "low-" + std::to_string(i));
    for (int i = 0; i < 60; ++i) publish("t", Priority::high, "high-" + std::to_string(i));
    ConsumerSpec spec{"t"};
    spec.starvation_ms = 0;
    auto c = js_->openConsumer(spec);
    ASSERT_TRUE(c.ok());
    std::vector<Priority> order;
    while (order.size() < 63) {
        auto batch = (*c)->fetch(1, 200ms);
        ASSERT_TRUE(batch.ok()) << batch.message();
        ASSERT_FALSE(batch->empty());
        for (auto& d : *batch) {
            order.push_back(d->priority);
            d->ack();
        }
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(std::count(order.begin(), order.begin() + 60, Priority::high), 60);
}

// A high item handed back with a delay comes back, through the redelivery
// probe, before 60 of 150 fresh normal items were served. Rarely, under
// heavy CPU load, nats-server 2.9.10 counts a redelivery after NakWithDelay
// that reaches no fetch, and the item returns only after its ack wait
// (README, "Known broker behaviour"): a round where that happened is
// reported and run again on a fresh domain, up to 3 rounds.
TEST_F(JetStreamTest, RetriedHighItemIsNotStuckBehindFreshNormalOnes) {
    std::size_t handled = 0;
    bool back = false;
    for (int round = 0; round < 3 && !back; ++round) {
        const std::string domain = "q" + std::to_string(round);
        publish(domain, Priority::high, "high-retry");
        ConsumerSpec spec{domain};
        spec.starvation_ms = 0;  // strict: only the redelivery probe can bring it back early
        auto c = js_->openConsumer(spec);
        ASSERT_TRUE(c.ok());
        auto first = fetchN(**c, 1, 10, 30s);  // (a generous time-out: once under TSan 5 s were not enough)
        ASSERT_EQ(first.size(), 1u);
        for (int i = 0; i < 150; ++i) publish(domain, Priority::normal, "n-" + std::to_string(i));
        first[0]->retryAfter(100ms);
        first.clear();
        handled = 0;
        while (!back && handled < 150) {
            auto batch = (*c)->fetch(1, 200ms);
            ASSERT_TRUE(batch.ok()) << batch.message();
            for (auto& d : *batch) {
                if (d->id == "high-retry") back = true;
                else ++handled;
                d->ack();
            }
            std::this_thread::sleep_for(10ms);
        }
        if (!back) std::cout << "[ note ] round " << round << ": the redelivery never reached a fetch (known server behaviour)\n";
    }
    EXPECT_TRUE(back) << "in 3 rounds";
    EXPECT_LT(handled, 60u) << "the high retry waited behind " << handled << " normal items";
}

// The idempotency record.
TEST_F(JetStreamTest, DoneStoreRemembersIdsAcrossConnectionsInOneRoundTripPerBatch) {
    auto store = js_->openDoneStore();
    ASSERT_TRUE(store.ok()) << store.message();
    // Ids with bytes a KV key cannot hold, and two that would collide if
    // "unsafe" characters were simply replaced.
    const std::vector<std::string> ids{"work_1", "sched:job:1700000000000", std::string("bin\0\xff id", 8), "a.b", "a_b",
                                       std::string(kMaxWorkIdBytes, 'z')};
    std::vector<std::string_view> views(ids.begin(), ids.end());
    auto before = (*store)->lookup(views);
    ASSERT_TRUE(before.ok()) << before.message();
    EXPECT_THAT(*before, ::testing::Each(false));

    (*store)->record(ids[1]);
    (*store)->record(ids[2]);
    (*store)->record(ids[3]);
    (*store)->record(ids[5]);
    EXPECT_EQ((*store)->flush(), 0u);

    // Another host (a second connection) sees the same record.
    JetStreamOptions o;
    o.servers = {nats_.url()};
    o.keep_trying = false;
    auto other = JetStream::connect(o);
    ASSERT_TRUE(other.ok());
    auto other_store = (*other)->openDoneStore();
    ASSERT_TRUE(other_store.ok());
    auto after = (*other_store)->lookup(views);
    ASSERT_TRUE(after.ok()) << after.message();
    EXPECT_EQ(*after, (std::vector<bool>{false, true, true, true, false, true}));

    // A large batch is answered in one go.
    std::vector<std::string> many;
    for (int i = 0; i < 500; ++i) many.push_back("m-" + std::to_string(i));
    for (int i = 0; i < 500; i += 2) (*store)->record(many[i]);
    EXPECT_EQ((*store)->flush(), 0u);
    auto big = (*other_store)->lookup(std::vector<std::string_view>(many.begin(), many.end()));
    ASSERT_TRUE(big.ok()) << big.message();
    for (int i = 0; i < 500; ++i) EXPECT_EQ((*big)[i], i % 2 == 0) << many[i];
}

TEST_F(JetStreamTest, DoneStoreThatCannotAnswerIsAnErrorNotANo) {
    auto store = js_->openDoneStore();
    ASSERT_TRUE(store.ok());
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_DeleteStream(js_->js(), "KV_KANBAN_DONE", nullptr, &jerr), NATS_OK);
    auto r = (*store)->lookup({"x"});
    ASSERT_FALSE(r.ok()) << "a missing bucket must not make every id look new";
    EXPECT_THAT(r.message(), HasSubstr("KANBAN_DONE"));
    (*store)->record("x");
    EXPECT_EQ((*store)->flush(), 1u);  // the record could not be stored, and we know it
}

TEST(JetStreamConnect, NoServerIsAClearErrorForTheCli) {
    JetStreamOptions o;
    o.servers = {"nats://127.0.0.1:1"};
    o.keep_trying = false;
    auto js = JetStream::connect(o);
    ASSERT_FALSE(js.ok());
    EXPECT_THAT(js.message(), HasSubstr("cannot connect to nats://127.0.0.1:1"));
}

}  // namespace
}  // namespace kanban::host::broker
