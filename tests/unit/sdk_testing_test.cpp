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
