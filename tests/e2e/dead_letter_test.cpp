// Dead letters are never silent and never cost their handler another call
// (README, "Reliability"): a DLQ that is full keeps the item visible in the
// work queue, in /health and in the metrics, and takes it once there is room.
#include "harness.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <random>
#include <thread>

namespace kanban::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class DeadLetters : public DaemonTest {};

TEST_F(DeadLetters, AFullDeadLetterQueueStrandsNothingAndReRunsNoHandler) {
    HostOptions o;
    o.max_msgs = 3;  // each stream: the DLQ is full after three dead letters
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(probe.publish("kanban.normal.orders", "fail", {{"Nats-Msg-Id", "first-" + std::to_string(i)}}));
    ASSERT_TRUE(waitFor([&] { return probe.deadLetters("orders").size() == 3; }, 20s)) << kd.log();

    // Two more bad items: their handlers run once, the DLQ refuses them.
    for (const char* id : {"late-0", "late-1"}) ASSERT_TRUE(probe.publish("kanban.normal.orders", "fail", {{"Nats-Msg-Id", id}}));
    const auto scrape = [&](const std::string& sample) {
        return metric(kd.http("GET", "/metrics").body, sample).value_or(-1);
    };
    ASSERT_TRUE(waitFor([&] { return scrape(R"(kanban_dead_letters_pending{domain="orders"})") == 2; }, 20s)) << kd.log();
    // Offered again (without the handler) until there is room: the failures count up.
    ASSERT_TRUE(waitFor([&] { return scrape(R"(kanban_dead_letter_failures_total{domain="orders"})") >= 4; }, 20s))
        << kd.log();
    const auto health = nlohmann::json::parse(kd.http("GET", "/health").body);
    EXPECT_EQ(health["status"], "degraded");
    EXPECT_EQ(health["domains"]["orders"]["dead_letters_pending"], 2);
    EXPECT_THAT(health["domains"]["orders"]["warning"].get<std::string>(), HasSubstr("refused"));
    EXPECT_GE(health["domains"]["orders"]["depth"].get<int>(), 2) << "the items stay visible in the work queue";
    EXPECT_THAT(kd.log(), HasSubstr("dead-lettering failed domain=orders id=late-0"));

    // Room again: both land, and no handler ran twice.
    ASSERT_TRUE(probe.purge("KANBAN_DLQ"));
    ASSERT_TRUE(waitFor([&] { return probe.deadLetters("orders").size() == 2; }, 90s)) << kd.log();
    ASSERT_TRUE(waitFor([&] { return probe.streamMsgs("KANBAN") == 0u; }, 10s));
    EXPECT_TRUE(waitFor([&] { return scrape(R"(kanban_dead_letters_pending{domain="orders"})") == 0; }, 10s));
    for (const char* id : {"late-0", "late-1"}) EXPECT_EQ(callsFor(readCalls(out), id).size(), 1u) << id;
    for (const auto& m : probe.deadLetters("orders")) EXPECT_EQ(m.headers.at("Kanban-Reason"), "asked to fail");
}

// A field of /proc/<pid>/status, in KiB.
long statusKiB(pid_t pid, const std::string& field) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(f, line);)
        if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
    return -1;
}

// Eight clients page through a 135 MB dead-letter queue at once: kanband's
// peak RSS stays within 128 MiB of what it was before, /healthz answers
// throughout (see the bounds below), and every client sees every dead letter.
TEST_F(DeadLetters, ListingALargeQueueKeepsTheHostsMemoryAndProbes) {
    const int kItems = KANBAN_SANITIZED ? 8 : 150;  // (sanitized: JSON of 900 KB pages is slow there)
    constexpr std::size_t kBytes = 900 * 1024;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    std::mt19937 rng(7);
    std::string payload(kBytes, '\0');
    for (int i = 0; i < kItems; ++i) {
        for (auto& c : payload) c = static_cast<char>(rng());
        ASSERT_TRUE(probe.publish("kanban.dlq.orders", payload,
                                  {{"Kanban-Original-Id", "big-" + std::to_string(i)},
                                   {"Kanban-Reason", "too big to handle"},
                                   {"Kanban-Attempts", "1"},
                                   {"Kanban-Original-Subject", "kanban.normal.orders"}}));
    }
    const pid_t pid = kd.proc().pid();
    const long idle_kib = statusKiB(pid, "VmRSS");

    std::atomic<bool> listing{true};
    std::atomic<long> slowest_probe_ms{0}, probes{0}, slow_probes{0};
    std::thread prober([&] {
        while (listing.load()) {
            const auto t0 = std::chrono::steady_clock::now();
            const int status = kd.httpStatus("/healthz");
            const long ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
            slowest_probe_ms = std::max(slowest_probe_ms.load(), status == 200 ? ms : 100000L);
            if (status != 200 || ms >= 1000) ++slow_probes;
            ++probes;
            std::this_thread::sleep_for(50ms);
        }
    });
    std::vector<std::thread> clients;
    std::vector<int> seen(8, 0), busy(8, 0);
    for (int c = 0; c < 8; ++c)
        clients.emplace_back([&, c] {
            std::uint64_t after = 0;
            for (int round = 0; round < 20000; ++round) {
                const auto r = kd.http("GET", "/dlq/orders?after=" + std::to_string(after));
                if (r.status == 429) {
                    ++busy[c];
                    std::this_thread::sleep_for(20ms);
                    continue;
                }
                if (r.status != 200) return;
                const auto page = nlohmann::json::parse(r.body);
                seen[c] += static_cast<int>(page["items"].size());
                if (!page["more"].get<bool>()) return;
                after = page["next_after"].get<std::uint64_t>();
            }
        });
    for (auto& t : clients) t.join();
    listing = false;
    prober.join();

    const long peak_kib = statusKiB(pid, "VmHWM");
    std::cout << "[ measured ] RSS idle " << idle_kib / 1024 << " MiB, peak while 8 clients listed "
              << kItems * kBytes / (1 << 20) << " MiB of dead letters: " << peak_kib / 1024 << " MiB; slowest of "
              << probes.load() << " /healthz: " << slowest_probe_ms.load() << " ms (" << slow_probes.load()
              << " over 1 s)\n";
    for (int c = 0; c < 8; ++c) EXPECT_EQ(seen[c], kItems) << "client " << c << " (429s: " << busy[c] << ")";
    // Every probe answered within 5 s (the reported failure was 10 s of
    // silence), and all but 1 % within a kubelet probe's default 1 s (one
    // over it was seen on a CI shared with the broker fault tests).
    EXPECT_LT(slowest_probe_ms.load(), 5000);
    if (!KANBAN_SANITIZED) {  // (there, 8 items make too few probes for a ratio)
        EXPECT_LE(slow_probes.load() * 100, probes.load()) << slow_probes.load() << " of " << probes.load() << " over 1 s";
    }
    if (!KANBAN_SANITIZED) {  // (a sanitizer's shadow memory says nothing about ours)
        EXPECT_LT(peak_kib - idle_kib, 128 * 1024) << "peak RSS " << peak_kib << " KiB, idle " << idle_kib << " KiB";
    }
}

// An id that is not UTF-8 (ids are bytes) is shown in base64 as well, and
// replay takes it back in that form: it can be replayed by id.
TEST_F(DeadLetters, AnIdThatIsNotUtf8CanBeReplayedById) {
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    const std::string raw = "bin\xff\xfe-id";
    ASSERT_TRUE(probe.publish("kanban.dlq.orders", "{}",
                              {{"Kanban-Original-Id", raw},
                               {"Kanban-Reason", "asked to fail"},
                               {"Kanban-Attempts", "1"},
                               {"Kanban-Original-Subject", "kanban.normal.orders"}}));
    const auto listed = nlohmann::json::parse(kd.http("GET", "/dlq/orders").body);
    ASSERT_EQ(listed["items"].size(), 1u) << listed.dump();
    const auto& item = listed["items"][0];
    ASSERT_TRUE(item.contains("id_base64")) << item.dump();
    const auto r = kd.http("POST", "/dlq/orders/replay",
                           nlohmann::json{{"id_base64", item["id_base64"]}}.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(nlohmann::json::parse(r.body)["replayed"].size(), 1u) << r.body;
    ASSERT_TRUE(waitFor([&] { return callsFor(readCalls(out), raw).size() == 1; }, 20s)) << kd.log();
    EXPECT_TRUE(probe.deadLetters("orders").empty());
    EXPECT_EQ(kd.http("POST", "/dlq/orders/replay", R"({"id_base64": "not base64!"})").status, 400);
}

}  // namespace
}  // namespace kanban::test
