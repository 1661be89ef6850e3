// isolation = "process" (README, "Handler isolation"): a plugin that
// crashes, hangs or leaks costs only its runner process and the item in its
// handler; kanband (same PID), the other items and the other domains go on.
#include "harness.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdlib>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>

namespace kanban::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

const std::string kProcess = "isolation = \"process\"\n";

long rssKiB(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0 && std::filesystem::exists("/proc/" + std::to_string(pid)); }

std::vector<std::string> ids(const std::string& prefix, int n) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
    return out;
}

double scrape(Kanband& kd, const std::string& sample) {
    return metric(kd.http("GET", "/metrics").body, sample).value_or(-1);
}

class Isolation : public DaemonTest {
protected:
    std::string other_out = dir.file("other.calls");

    void publishAll(NatsProbe& probe, const std::string& domain, const std::vector<std::string>& list,
                    const std::string& payload = "{}") {
        for (const auto& id : list) ASSERT_TRUE(probe.publish("kanban.normal." + domain, payload, {{"Nats-Msg-Id", id}}));
    }
};

// One CRASH (SIGSEGV) and one ABORT among 500 good items, while another
// domain flows: every good item is handled exactly once, kanband keeps its
// PID, each crasher is handed to the handler exactly max_attempts times and
// then dead-lettered as handler_crashed; the runners were replaced.
TEST_F(Isolation, ACrashCostsOnlyItsRunnerAndItsItem) {
    constexpr int kMaxAttempts = 3;
    HostOptions o;
    o.workers = 2;
    o.max_workers = 2;
    o.pull_batch = 10;
    o.max_attempts = kMaxAttempts;
    o.backoff_initial_ms = 50;
    o.backoff_max_ms = 200;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out), 5000, kProcess},
                 {"other", kFixtures + "/recorder.so", recorderSettings(other_out), 5000}},
                o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const pid_t pid = kd.proc().pid();
    NatsProbe probe(nats.url());
    const auto good = ids("g-", 500), other = ids("o-", 200);
    std::thread side([&] { publishAll(probe, "other", other); });
    publishAll(probe, "orders", {good.begin(), good.begin() + 200});
    ASSERT_TRUE(probe.publish("kanban.normal.orders", "CRASH", {{"Nats-Msg-Id", "crasher"}}));
    publishAll(probe, "orders", {good.begin() + 200, good.begin() + 350});
    ASSERT_TRUE(probe.publish("kanban.normal.orders", "ABORT", {{"Nats-Msg-Id", "aborter"}}));
    publishAll(probe, "orders", {good.begin() + 350, good.end()});
    side.join();

    ASSERT_TRUE(waitFor([&] { return allHandled(out, good) && probe.deadLetters("orders").size() == 2; }, 90s))
        << kd.log();
    ASSERT_TRUE(waitFor([&] { return allHandled(other_out, other); }, 30s)) << kd.log();
    EXPECT_TRUE(kd.proc().running());
    EXPECT_EQ(kd.proc().pid(), pid);

    for (const auto& [id, n] : okCounts(readCalls(out))) EXPECT_EQ(n, 1) << id << " handled ok more than once";
    for (const auto& c : readCalls(out))
        if (c.id != "crasher" && c.id != "aborter") {
            EXPECT_EQ(c.attempt, 1) << c.id << ": a good item was charged";
        }
    for (const std::string id : {"crasher", "aborter"}) {
        const auto calls = callsFor(readCalls(out), id);
        ASSERT_EQ(calls.size(), static_cast<std::size_t>(kMaxAttempts)) << id << "\n" << kd.log();
        for (int i = 0; i < kMaxAttempts; ++i) EXPECT_EQ(calls[i].attempt, i + 1) << id;
    }
    for (const auto& dl : probe.deadLetters("orders")) {
        EXPECT_THAT(dl.headers.at("Kanban-Reason"), HasSubstr("handler_crashed"));
        EXPECT_EQ(dl.headers.at("Kanban-Attempts"), std::to_string(kMaxAttempts));
    }
    EXPECT_EQ(scrape(kd, R"(kanban_items_dead_lettered_total{domain="orders",reason="handler_crashed"})"), 2);
    EXPECT_EQ(scrape(kd, R"(kanban_runner_restarts_total{domain="orders",reason="crash"})"), 2 * kMaxAttempts);
    EXPECT_EQ(scrape(kd, R"(kanban_runner_restarts_total{domain="other",reason="crash"})"), 0);
    EXPECT_THAT(kd.log(), HasSubstr("runner crashed domain=orders"));
    EXPECT_THAT(kd.log(), HasSubstr("id=crasher"));
    if (!KANBAN_SANITIZED) {  // (ASan turns it into an exit)
        EXPECT_THAT(kd.log(), HasSubstr("SIGSEGV"));
    }
    EXPECT_THAT(kd.log(), HasSubstr("SIGABRT"));

    const auto health = nlohmann::json::parse(kd.http("GET", "/health").body);
    const auto& orders = health["domains"]["orders"];
    EXPECT_EQ(orders["isolation"], "process");
    // One runner per worker at most (a worker whose runner just crashed
    // starts the next one with its next batch).
    ASSERT_TRUE(orders.contains("runners")) << orders.dump();
    EXPECT_LE(orders["runners"].get<int>(), 2);
    EXPECT_EQ(orders["runners"].get<int>(), scrape(kd, R"(kanban_runner_processes{domain="orders"})"));
    ASSERT_TRUE(orders.contains("last_crash")) << orders.dump();
    EXPECT_THAT(orders["last_crash"]["id"].get<std::string>(), ::testing::AnyOf("crasher", "aborter"));
    EXPECT_EQ(health["domains"]["other"]["isolation"], "thread");
    const auto text = runCommand({kKanbanctl, "--config", cfg, "--admin", kd.admin(), "health"});
    EXPECT_EQ(text.exit_code, 0) << text.err;
    EXPECT_THAT(text.out, ::testing::ContainsRegex("orders +running +[0-9]+/[0-9]+ +[0-9]+ +[0-9]+ +closed +process +recorder"));
    EXPECT_THAT(text.out, HasSubstr("last runner crash: "));
}

// A handler that never returns and ignores cancellation: its runner is
// killed after timeout_ms and the grace, the item counts a timeout each
// time and is dead-lettered after max_attempts; every good item published
// after it is handled.
TEST_F(Isolation, AHungHandlerIsKilledAndTheItemsBehindItAreHandled) {
    HostOptions o;
    o.workers = 1;
    o.max_workers = 1;
    o.pull_batch = 10;
    o.max_attempts = 2;
    o.backoff_initial_ms = 50;
    o.backoff_max_ms = 100;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out), /*timeout_ms=*/500, kProcess}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    ASSERT_TRUE(probe.publish("kanban.normal.orders", "HANG", {{"Nats-Msg-Id", "hanger"}}));
    const auto good = ids("g-", 50);
    publishAll(probe, "orders", good);

    ASSERT_TRUE(waitFor([&] { return allHandled(out, good) && probe.deadLetters("orders").size() == 1; }, 60s))
        << kd.log();
    const auto dl = probe.deadLetters("orders");
    EXPECT_EQ(dl[0].headers.at("Kanban-Original-Id"), "hanger");
    EXPECT_THAT(dl[0].headers.at("Kanban-Reason"), HasSubstr("timeout"));
    EXPECT_EQ(callsFor(readCalls(out), "hanger").size(), 2u);
    EXPECT_EQ(scrape(kd, R"(kanban_runner_restarts_total{domain="orders",reason="timeout"})"), 2);
    EXPECT_EQ(scrape(kd, R"(kanban_items_processed_total{domain="orders",outcome="timeout"})"), 2);
    for (const auto& [id, n] : okCounts(readCalls(out))) EXPECT_EQ(n, 1) << id;
}

// A plugin that keeps 1 MiB per item, with memory_max_mb set by a reload
// to 40 MiB above what a fresh runner uses here (sanitizers vary that a
// lot): runners are retired and replaced as they pass it; every item is
// handled exactly once, none is charged, nothing is dead-lettered.
TEST_F(Isolation, ALeakingPluginIsRecycledAndLosesNothing) {
    HostOptions o;
    o.workers = 1;
    o.max_workers = 1;
    o.pull_batch = 5;
    const DomainSpec orders{"orders", kFixtures + "/recorder.so", recorderSettings(out), 10000, kProcess};
    Kanband& kd = start({orders}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    ASSERT_TRUE(probe.publish("kanban.normal.orders", "{}", {{"Nats-Msg-Id", "warm"}}));
    ASSERT_TRUE(waitFor([&] { return allHandled(out, {"warm"}); }, 30s)) << kd.log();
    const auto runners = childProcesses(kd.proc().pid());
    ASSERT_EQ(runners.size(), 1u);
    const long fresh_mib = rssKiB(runners[0]) / 1024;
    ASSERT_GT(fresh_mib, 0);
    const long limit = fresh_mib + 40;
    DomainSpec limited = orders;
    limited.extra += "[domain.runner]\nmemory_max_mb = " + std::to_string(limit) + "\n";
    writeConfig({limited}, o);
    kd.proc().signal(SIGHUP);
    ASSERT_TRUE(waitFor([&] { return scrape(kd, R"(kanban_config_reloads_total{result="success"})") == 1; }, 30s))
        << kd.log();

    const auto leaks = ids("leak-", 150);
    publishAll(probe, "orders", leaks, "LEAK");
    ASSERT_TRUE(waitFor([&] { return allHandled(out, leaks); }, 90s)) << kd.log();
    std::cout << "[ measured ] a fresh runner: " << fresh_mib << " MiB; memory_max_mb " << limit << "; retired "
              << scrape(kd, R"(kanban_runner_restarts_total{domain="orders",reason="memory"})") << " times for 150 MiB\n";
    EXPECT_TRUE(probe.deadLetters("orders").empty());
    for (const auto& [id, n] : okCounts(readCalls(out))) EXPECT_EQ(n, 1) << id;
    for (const auto& c : readCalls(out)) EXPECT_EQ(c.attempt, 1) << c.id << ": a retirement charged an attempt";
    EXPECT_GE(scrape(kd, R"(kanban_runner_restarts_total{domain="orders",reason="memory"})"), 2) << kd.log();
    EXPECT_EQ(scrape(kd, R"(kanban_runner_restarts_total{domain="orders",reason="crash"})"), 0);
    EXPECT_THAT(kd.log(), HasSubstr("its RSS passed memory_max_mb"));
    // No runner grew far past the limit: each is retired after the item that
    // crossed it (an item costs 1 MiB, a few under TSan's shadow memory).
    for (pid_t r : childProcesses(kd.proc().pid())) EXPECT_LT(rssKiB(r) / 1024, limit + 16);
}

// recycle_after_items: a runner is replaced after that many items, and
// nothing is lost or repeated.
TEST_F(Isolation, RunnersAreRecycledAfterTheirItems) {
    HostOptions o;
    o.workers = 1;
    o.max_workers = 1;
    o.pull_batch = 4;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out), 10000,
                  kProcess + "[domain.runner]\nrecycle_after_items = 10\n"}},
                o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    const auto all = ids("r-", 60);
    publishAll(probe, "orders", all);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, all); }, 60s)) << kd.log();
    for (const auto& [id, n] : okCounts(readCalls(out))) EXPECT_EQ(n, 1) << id;
    // Handled by several processes (the recorder logs the thread id, a new
    // one per runner), each at most 10 + a batch's worth.
    std::map<long, int> per_runner;
    for (const auto& c : readCalls(out)) ++per_runner[c.tid];
    EXPECT_GE(per_runner.size(), 5u);
    for (const auto& [tid, n] : per_runner) EXPECT_LE(n, 10) << "runner thread " << tid;
    EXPECT_GE(scrape(kd, R"(kanban_runner_restarts_total{domain="orders",reason="recycle"})"), 5);
}

// Runners killed with SIGKILL from outside while items flow: nothing is
// lost, nothing is handled ok twice, nothing is dead-lettered.
TEST_F(Isolation, RunnersKilledFromOutsideLoseNothing) {
    HostOptions o;
    o.workers = 2;
    o.max_workers = 2;
    o.pull_batch = 10;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out, /*sleep_ms=*/5), 10000, kProcess}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    const auto all = ids("k-", 400);
    publishAll(probe, "orders", all);
    int kills = 0;
    while (kills < 5 && !allHandled(out, all)) {
        const auto runners = childProcesses(kd.proc().pid());
        if (runners.empty() || readCalls(out).size() < static_cast<std::size_t>(60 * (kills + 1))) {
            std::this_thread::sleep_for(20ms);  // (polling for the next moment to strike, not synchronisation)
            continue;
        }
        ::kill(runners.front(), SIGKILL);
        ++kills;
    }
    EXPECT_GE(kills, 3) << "the load ended before the runners could be killed";
    ASSERT_TRUE(waitFor([&] { return allHandled(out, all); }, 90s)) << kd.log();
    EXPECT_TRUE(probe.deadLetters("orders").empty());
    for (const auto& [id, n] : okCounts(readCalls(out))) EXPECT_EQ(n, 1) << id;
    EXPECT_EQ(scrape(kd, R"(kanban_runner_restarts_total{domain="orders",reason="crash"})"), kills);
    EXPECT_TRUE(kd.proc().running());
}

// SIGTERM while a handler hangs (ignoring cancellation): kanband exits 0
// within timeout_ms + the kill grace (2 s), and leaves no runner behind.
TEST_F(Isolation, StopWithAHungHandlerEndsWithinTimeoutAndGrace) {
    HostOptions o;
    o.workers = 1;
    o.max_workers = 1;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out), /*timeout_ms=*/1000, kProcess}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    ASSERT_TRUE(probe.publish("kanban.normal.orders", "HANG", {{"Nats-Msg-Id", "hanger"}}));
    ASSERT_TRUE(waitFor([&] { return !callsFor(readCalls(out), "hanger").empty(); }, 30s)) << kd.log();
    const auto runners = childProcesses(kd.proc().pid());
    ASSERT_FALSE(runners.empty());
    const auto t0 = std::chrono::steady_clock::now();
    kd.proc().signal(SIGTERM);
    const auto code = kd.proc().wait(30s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    ASSERT_EQ(code, std::optional<int>(0)) << kd.log();
    std::cout << "[ measured ] stop with a hung handler (timeout_ms 1000, grace 2000): " << took.count() << " ms\n";
    EXPECT_LT(took, 1000ms + 2000ms + 3000ms) << "(3 s of slack for a loaded machine)";
    for (pid_t r : runners) EXPECT_FALSE(alive(r)) << "runner " << r << " outlived kanband";
}

// kill -9 of kanband: its runners end too (no orphans), even one inside a
// handler that never returns.
TEST_F(Isolation, RunnersDoNotOutliveAKilledKanband) {
    HostOptions o;
    o.workers = 2;
    o.max_workers = 2;
    o.pull_batch = 1;  // one item per worker: "fine" does not wait behind the hanger
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out), 60000, kProcess}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    ASSERT_TRUE(probe.publish("kanban.normal.orders", "HANG", {{"Nats-Msg-Id", "hanger"}}));
    ASSERT_TRUE(probe.publish("kanban.normal.orders", "{}", {{"Nats-Msg-Id", "fine"}}));
    ASSERT_TRUE(waitFor([&] { return !callsFor(readCalls(out), "hanger").empty() && allHandled(out, {"fine"}); }, 30s));
    std::vector<pid_t> runners;
    ASSERT_TRUE(waitFor([&] { return (runners = childProcesses(kd.proc().pid())).size() == 2; }, 30s));
    kd.proc().signal(SIGKILL);
    kd.proc().wait(10s);
    for (pid_t r : runners) EXPECT_TRUE(waitFor([&] { return !alive(r); }, 10s)) << "runner " << r << " is an orphan";
}

// A runner has nothing of kanband's but its own two descriptors: no broker
// or admin socket, no systemd notification socket in its environment, no
// configuration on its command line.
TEST_F(Isolation, RunnersInheritNoSocketsSecretsOrNotifySocket) {
    ::setenv("NOTIFY_SOCKET", dir.file("notify.sock").c_str(), 1);
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out), 10000, kProcess}}, 1);
    ::unsetenv("NOTIFY_SOCKET");
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    ASSERT_TRUE(probe.publish("kanban.normal.orders", "{}", {{"Nats-Msg-Id", "one"}}));
    ASSERT_TRUE(waitFor([&] { return allHandled(out, {"one"}); }, 30s)) << kd.log();
    const auto runners = childProcesses(kd.proc().pid());
    ASSERT_FALSE(runners.empty());
    for (pid_t runner : runners) {
        const std::string proc = "/proc/" + std::to_string(runner);
        int sockets = 0;
        for (const auto& e : std::filesystem::directory_iterator(proc + "/fd")) {
            std::error_code ec;
            const std::string target = std::filesystem::read_symlink(e.path(), ec).string();
            if (target.rfind("socket:", 0) == 0) {
                ++sockets;
                EXPECT_EQ(e.path().filename().string(), "3") << "a socket of kanband's leaked into the runner: " << target;
            }
        }
        EXPECT_EQ(sockets, 1);
        const std::string env = readFile(proc + "/environ");
        EXPECT_EQ(env.find("NOTIFY_SOCKET"), std::string::npos);
        std::string cmdline = readFile(proc + "/cmdline");
        std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
        EXPECT_EQ(cmdline.find(cfg), std::string::npos) << cmdline;
        EXPECT_THAT(cmdline, HasSubstr("--runner"));
    }
}

// SIGHUP swaps the plugin (v1 -> v2 by rename) under load in process
// isolation: new runners load v2, the old ones finish their batch and exit;
// nothing is lost, nothing handled twice, v2 only after the swap.
TEST_F(Isolation, APluginSwappedUnderLoadLosesNothing) {
    const std::string plugin = dir.file("orders.so");
    std::filesystem::copy_file(kFixtures + "/recorder.so", plugin);
    HostOptions o;
    o.workers = 2;
    o.max_workers = 2;
    Kanband& kd = start({{"orders", plugin, recorderSettings(out, 1), 10000, kProcess}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    Subprocess ctl({kKanbanctl, "--config", cfg, "publish", "--domain", "orders", "--priority", "normal", "--payload",
                    "x", "--count", "3000"},
                   dir.file("ctl.out"), dir.file("ctl.err"));
    ASSERT_TRUE(waitFor([&] { return readCalls(out).size() >= 500; }, 60s)) << kd.log();
    const auto old_runners = childProcesses(kd.proc().pid());
    ASSERT_FALSE(old_runners.empty());

    std::filesystem::copy_file(kFixtures + "/recorder_v2.so", plugin + ".new");
    std::filesystem::rename(plugin + ".new", plugin);
    const auto before_swap = readCalls(out).size();
    kd.proc().signal(SIGHUP);
    ASSERT_TRUE(waitFor([&] { return scrape(kd, R"(kanban_config_reloads_total{result="success"})") == 1; }, 30s))
        << kd.log();
    ASSERT_EQ(ctl.wait(60s), 0) << readFile(dir.file("ctl.err"));
    const auto all = readLines(dir.file("ctl.out"));
    ASSERT_EQ(all.size(), 3000u);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, all); }, 60s)) << kd.log();
    const auto calls = readCalls(out);
    for (const auto& [id, n] : okCounts(calls)) EXPECT_EQ(n, 1) << id;
    std::map<std::string, int> by_version;
    for (const auto& c : calls) ++by_version[c.version];
    EXPECT_GT(by_version["2.0.0"], 0);
    for (std::size_t i = 0; i < before_swap; ++i) ASSERT_EQ(calls[i].version, "1.0.0") << "v2 ran before the reload";
    for (pid_t r : old_runners) EXPECT_TRUE(waitFor([&] { return !alive(r); }, 10s)) << "old runner " << r << " still runs";
    EXPECT_TRUE(kd.logHas("retired for the new plugin generation"));
    EXPECT_EQ(nlohmann::json::parse(kd.http("GET", "/health").body)["domains"]["orders"]["plugin"]["version"], "2.0.0");
}

// Runners that crash on every item: the domain is held by its breaker
// (no hot restart loop), /health says why, and the other domain flows.
TEST_F(Isolation, ADomainWhoseRunnersKeepCrashingIsHeld) {
    HostOptions o;
    o.workers = 1;
    o.max_workers = 1;
    o.pull_batch = 1;
    o.max_attempts = 1000;
    o.backoff_initial_ms = 10;
    o.backoff_max_ms = 10;
    o.failure_threshold = 3;
    o.open_ms = 60000;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out), 5000, kProcess},
                         {"other", kFixtures + "/recorder.so", recorderSettings(other_out), 5000}},
                        o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    publishAll(probe, "orders", ids("c-", 20), "CRASH");
    nlohmann::json orders;
    ASSERT_TRUE(waitFor([&] {
        orders = nlohmann::json::parse(kd.http("GET", "/health").body)["domains"]["orders"];
        return orders["circuit"] == "open";
    }, 60s)) << kd.log();
    ASSERT_TRUE(orders.contains("held")) << orders.dump();
    EXPECT_THAT(orders["held"].get<std::string>(), HasSubstr("crashed or were killed 3 time(s) in a row"));
    const double restarts = scrape(kd, R"(kanban_runner_restarts_total{domain="orders",reason="crash"})");
    EXPECT_EQ(restarts, 3);
    const auto others = ids("o-", 50);
    publishAll(probe, "other", others);
    ASSERT_TRUE(waitFor([&] { return allHandled(other_out, others); }, 30s)) << kd.log();
    // Still held: no runner was started for it while the others ran.
    EXPECT_EQ(scrape(kd, R"(kanban_runner_restarts_total{domain="orders",reason="crash"})"), restarts);
    EXPECT_EQ(readCalls(out).size(), 3u) << "handler calls of the crashing domain";
}

// A plugin a runner cannot load (another ABI major) is refused at start with
// the loader's message naming both versions; the other domains run.
TEST_F(Isolation, APluginARunnerCannotLoadIsRefusedAndOtherDomainsRun) {
    Kanband& kd = start({{"legacy", kFixtures + "/abi_major_mismatch.so", "", 5000, kProcess},
                         {"orders", kFixtures + "/recorder.so", recorderSettings(out), 5000, kProcess}},
                        1);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const auto legacy = nlohmann::json::parse(kd.http("GET", "/health").body)["domains"]["legacy"];
    EXPECT_EQ(legacy["status"], "failed");
    EXPECT_THAT(legacy["error"].get<std::string>(), HasSubstr("abi_major_mismatch.so"));
    EXPECT_THAT(legacy["error"].get<std::string>(), HasSubstr("ABI"));
    NatsProbe probe(nats.url());
    ASSERT_TRUE(probe.publish("kanban.normal.orders", "{}", {{"Nats-Msg-Id", "one"}}));
    ASSERT_TRUE(waitFor([&] { return allHandled(out, {"one"}); }, 30s)) << kd.log();
}

}  // namespace
}  // namespace kanban::test
