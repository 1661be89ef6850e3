// The JetStream backend against a real nats-server -js (one per test).
#include "broker/jetstream.hpp"

#include "support.hpp"

#include <nats/nats.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

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
    PublishRequest r{"payment", Priority::high, payload, "work-1", 1893456000000};
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
    PublishRequest again{"d", Priority::normal, "{}", "dup-1", std::nullopt};
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

TEST_F(JetStreamTest, RetryAfterRedeliversWithTheNextAttempt) {
    publish("r", Priority::normal, "r-1");
    auto c = consumer("r");
    auto first = fetchN(*c, 1);
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0]->attempt, 1u);
    const auto t0 = std::chrono::steady_clock::now();
    first[0]->retryAfter(300ms);
    first.clear();
    auto second = fetchN(*c, 1);
    ASSERT_EQ(second.size(), 1u);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);  // the delay was honoured
    EXPECT_EQ(second[0]->id, "r-1");
    EXPECT_EQ(second[0]->attempt, 2u);  // from the broker's delivery count
    second[0]->release();
    second.clear();
    auto third = fetchN(*c, 1, 10, 2s);
    ASSERT_EQ(third.size(), 1u);
    EXPECT_EQ(third[0]->attempt, 3u);
}

TEST_F(JetStreamTest, DeadLetterStoresCopyWithHeadersThenRemovesOriginal) {
    publish("dl", Priority::low, "dl-1", "payload-bytes");
    auto c = consumer("dl");
    auto got = fetchN(*c, 1);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(got[0]->deadLetter("because").ok());
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
    EXPECT_EQ(hdr("Kanban-Attempts"), "1");
    EXPECT_EQ(hdr("Kanban-Original-Subject"), "kanban.low.dl");
    EXPECT_EQ(hdr("Nats-Msg-Id"), "dl-1");
    natsMsg_Destroy(m);

    jsStreamInfo* si = nullptr;
    ASSERT_EQ(js_GetStreamInfo(&si, js_->js(), "KANBAN", nullptr, &jerr), NATS_OK);
    EXPECT_EQ(si->State.Msgs, 0u);  // terminated on a WorkQueue stream = removed
    jsStreamInfo_Destroy(si);
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
    EXPECT_EQ(ci->Config->AckWait, (5000 + 10000) * 1'000'000LL);  // ack wait > handler timeout
    EXPECT_EQ(std::string(ci->Config->FilterSubject), "kanban.high.x");
    jsConsumerInfo_Destroy(ci);
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
