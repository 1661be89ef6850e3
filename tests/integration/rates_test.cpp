// broker::JetStreamRates (rate_limit's shared state) against a real
// nats-server: two hosts (two connections, each with its own cached view)
// reserving at once from several threads get starts that keep the limit
// between them; a reload to another limit does not inherit the old TAT.
#include "broker/jetstream_rates.hpp"

#include "common/clock.hpp"
#include "support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <thread>

namespace kanban::host::broker {
namespace {

class Rates : public ::testing::Test {
protected:
    void SetUp() override {
        for (auto& host : hosts_) {
            JetStreamOptions o;
            o.servers = {nats_.url()};
            o.keep_trying = false;
            auto js = JetStream::connect(o);
            ASSERT_TRUE(js.ok()) << js.message();
            host.js = std::move(*js);
            host.rates = std::make_unique<JetStreamRates>(*host.js);
        }
    }
    struct Host {
        std::unique_ptr<JetStream> js;
        std::unique_ptr<JetStreamRates> rates;
    };
    kanban::test::NatsServer nats_;
    std::array<Host, 2> hosts_;
};

TEST_F(Rates, TwoHostsReservingAtOnceKeepTheLimitBetweenThem) {
    const flow::RateLimit rate{1000, 1000};  // 1 ms apart: the test does not wait for the starts
    constexpr std::int64_t burst = 2;
    std::mutex mu;
    std::vector<std::int64_t> starts;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 50; ++i) {
                const std::int64_t n = 1 + (i + t) % burst;
                auto start = hosts_[t % 2].rates->reserve("partner", n, rate, burst);
                ASSERT_TRUE(start.ok()) << start.message();
                std::lock_guard lock(mu);
                for (std::int64_t k = 0; k < n; ++k) starts.push_back(*start);
            }
        });
    for (auto& t : threads) t.join();
    ASSERT_EQ(starts.size(), 4u * 75u);
    std::sort(starts.begin(), starts.end());
    const std::int64_t interval = rate.intervalUs();
    for (std::size_t i = 0; i + burst < starts.size(); ++i)
        ASSERT_GE(starts[i + burst] - starts[i], interval)
            << "more than " << burst << " starts within one interval at " << i;
    // Every reservation counted: the last start is at least (N - burst) intervals after the first.
    EXPECT_GE(starts.back() - starts.front(), static_cast<std::int64_t>(starts.size() - burst) * interval);
}

TEST_F(Rates, AnotherLimitDoesNotInheritTheOldBacklogOfStarts) {
    const flow::RateLimit slow{1, 3600 * 1000};
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(hosts_[0].rates->reserve("partner", 1, slow, 1).ok());
    const std::int64_t now = nowUnixNs() / 1000;
    auto later = hosts_[1].rates->reserve("partner", 1, slow, 1);
    ASSERT_TRUE(later.ok());
    EXPECT_GT(*later - now, std::int64_t{2} * 3600 * 1000000) << "1/h: the fourth start is three hours away";
    auto fast = hosts_[1].rates->reserve("partner", 1, flow::RateLimit{50, 1000}, 1);
    ASSERT_TRUE(fast.ok());
    EXPECT_LT(*fast - now, std::int64_t{60} * 1000000) << "after a reload to 50/s";
    auto other = hosts_[0].rates->reserve("audit", 1, slow, 1);
    ASSERT_TRUE(other.ok());
    EXPECT_LT(*other - now, std::int64_t{60} * 1000000) << "domains have their own state";
}

TEST_F(Rates, NoServerIsAnError) {
    nats_.stop();
    ASSERT_TRUE(kanban::test::waitFor([&] { return !hosts_[0].js->connected(); }, std::chrono::seconds(10)));
    EXPECT_FALSE(hosts_[0].rates->reserve("partner", 1, flow::RateLimit{5, 1000}, 1).ok());
}

}  // namespace
}  // namespace kanban::host::broker
