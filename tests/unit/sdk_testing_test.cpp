// kanban/testing.hpp, the plugin teams' kit: a handler run through the
// same trampolines as in kanband, without a host or a broker.
#include <kanban/testing.hpp>

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>

namespace {

using kanban::testing::TestHost;
using Status = kanban::Result::Status;

class Sample final : public kanban::Handler {
public:
    Sample(std::string_view settings, const kanban::Host& host) {
        if (settings.find("broken") != std::string_view::npos) throw std::invalid_argument("settings are broken");
        host.log(kanban::LogLevel::info, "sample ready");
    }
    kanban::Result handle(const kanban::WorkItem& item, kanban::Context& ctx) override {
        const std::string_view p = item.payload;
        if (p == "ok") return kanban::Result::ok();
        if (p == "bad") return kanban::Result::fail("malformed order");
        if (p == "throttled") return kanban::Result::retry("partner throttled", std::chrono::seconds(30));
        if (p == "throw") throw std::runtime_error("boom");
        if (p == "long-reason") return kanban::Result::fail(std::string(1000, 'x'));
        if (p == "work") {
            ctx.progress();
            ctx.progress();
            ctx.log(kanban::LogLevel::warning, "attempt " + std::to_string(item.attempt) + " of " + std::string(item.id));
            return kanban::Result::ok();
        }
        if (p == "until-cancelled") {
            while (!ctx.cancelled()) std::this_thread::yield();
            return kanban::Result::retry("stopped");
        }
        if (p == "time-left") return ctx.remaining() > std::chrono::seconds(50) ? kanban::Result::ok() : kanban::Result::fail("short");
        return kanban::Result::fail("unknown payload");
    }
};

TEST(SdkTesting, OutcomesAreWhatTheHostWouldSee) {
    TestHost<Sample> host;
    EXPECT_TRUE(host.handle({.payload = "ok"}).ok());
    const auto bad = host.handle({.payload = "bad"});
    EXPECT_EQ(bad.status, Status::fail);
    EXPECT_EQ(bad.reason, "malformed order");
    const auto throttled = host.handle({.payload = "throttled"});
    EXPECT_EQ(throttled.status, Status::retry);
    EXPECT_EQ(throttled.retry_after, std::chrono::seconds(30));
    EXPECT_FALSE(bad.retry_after);
    const auto thrown = host.handle({.payload = "throw"});
    EXPECT_EQ(thrown.status, Status::retry) << "a throw is transient";
    EXPECT_EQ(thrown.reason, "exception: boom");
    EXPECT_EQ(host.handle({.payload = "long-reason"}).reason.size(), TestHost<Sample>::kReasonCapacity - 1);
}

TEST(SdkTesting, ProgressLogsAttemptAndDeadlineReachTheHandler) {
    TestHost<Sample> host;
    ASSERT_EQ(host.hostLogs().size(), 1u);
    EXPECT_EQ(host.hostLogs()[0].message, "sample ready");
    const auto out = host.handle({.id = "order-7", .payload = "work", .attempt = 3});
    EXPECT_EQ(out.progress_calls, 2);
    ASSERT_EQ(out.logs.size(), 1u);
    EXPECT_EQ(out.logs[0].level, kanban::LogLevel::warning);
    EXPECT_EQ(out.logs[0].message, "attempt 3 of order-7");
    EXPECT_TRUE(host.handle({.payload = "time-left", .deadline = std::chrono::system_clock::now() + std::chrono::minutes(1)}).ok());
    EXPECT_FALSE(host.handle({.payload = "time-left", .deadline = std::chrono::system_clock::now() + std::chrono::seconds(5)}).ok());
}

TEST(SdkTesting, CancelAndAPassedDeadlineStopALongHandler) {
    TestHost<Sample> host;
    EXPECT_EQ(host.handle({.payload = "until-cancelled", .deadline = std::chrono::system_clock::now()}).reason, "stopped");
    std::thread stopper([&] { host.cancel(); });
    const auto out = host.handle({.payload = "until-cancelled", .deadline = std::chrono::system_clock::now() + std::chrono::hours(1)});
    stopper.join();
    EXPECT_EQ(out.reason, "stopped");
}

TEST(SdkTesting, AConstructorThatThrowsIsAFailedCreateWithItsMessage) {
    try {
        TestHost<Sample> host(R"({"mode": "broken"})");
        FAIL() << "created";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "create failed: settings are broken");
    }
}

}  // namespace

// Headers and follow-ups (ABI 1.1) through the kit.
class Chain final : public kanban::Handler {
public:
    explicit Chain(std::string_view) {}
    kanban::Result handle(const kanban::WorkItem& item, kanban::Context& ctx) override {
        const auto tenant = item.header("x-tenant");  // any case
        if (!tenant) return kanban::Result::fail("no tenant");
        std::string seen;
        for (kanban::Header h : item.headers) seen += std::string(h.name) + ";";
        ctx.log(kanban::LogLevel::info, seen);
        if (item.payload == "fan-out") {
            ctx.publish("email", "to " + std::string(*tenant));
            kanban::PublishOptions o;
            o.priority = kanban::Priority::high;
            o.headers = {{"X-Tenant", std::string(*tenant)}};
            o.delay = std::chrono::seconds(30);
            o.key = "invoice";
            ctx.publish("billing", "bill", o);
        }
        if (item.payload == "nowhere") ctx.publish("nowhere", "x");
        if (item.payload == "reserved") {
            kanban::PublishOptions o;
            o.headers = {{"kanban-deadline", "1"}};
            ctx.publish("email", "x", o);
        }
        return kanban::Result::ok();
    }
};

TEST(SdkTesting, HeadersAndFollowUpsAreSeenAsTheHostWouldGiveThem) {
    TestHost<Chain> host;
    host.setDomains({"email", "billing"});
    const auto out = host.handle({.id = "order-9", .payload = "fan-out", .headers = {{"X-Tenant", "acme"}, {"X-Trace", "1"}}});
    ASSERT_TRUE(out.ok()) << out.reason;
    ASSERT_EQ(out.logs.size(), 1u);
    EXPECT_EQ(out.logs[0].message, "X-Tenant;X-Trace;") << "headers iterate in order";
    ASSERT_EQ(out.follow_ups.size(), 2u);
    EXPECT_EQ(out.follow_ups[0].id, "order-9/1") << "the n-th follow-up without a key";
    EXPECT_EQ(out.follow_ups[0].domain, "email");
    EXPECT_EQ(out.follow_ups[0].payload, "to acme");
    EXPECT_FALSE(out.follow_ups[0].priority) << "the parent's";
    EXPECT_EQ(out.follow_ups[1].id, "order-9/invoice");
    EXPECT_EQ(out.follow_ups[1].priority, kanban::Priority::high);
    EXPECT_EQ(out.follow_ups[1].delay, std::chrono::seconds(30));
    ASSERT_EQ(out.follow_ups[1].headers.size(), 1u);
    EXPECT_EQ(out.follow_ups[1].headers[0].second, "acme");
    // The same item again: the same ids (what makes a redelivered parent harmless).
    EXPECT_EQ(host.handle({.id = "order-9", .payload = "fan-out", .headers = {{"X-Tenant", "acme"}}}).follow_ups[1].id,
              "order-9/invoice");

    EXPECT_EQ(host.handle({.payload = "fan-out"}).reason, "no tenant") << "an absent header is nullopt";
    const auto refused = host.handle({.payload = "nowhere", .headers = {{"X-Tenant", "acme"}}});
    EXPECT_EQ(refused.status, Status::retry) << "a refused publish throws PublishError, a retry";
    EXPECT_EQ(refused.reason, "exception: publish to nowhere: unknown domain \"nowhere\"");
    EXPECT_EQ(host.handle({.payload = "reserved", .headers = {{"X-Tenant", "acme"}}}).reason,
              "exception: publish to email: header \"kanban-deadline\" is reserved")
        << "the host's own headers are refused, as by kanband";
}
