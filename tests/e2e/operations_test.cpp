// The operations surface (docs/design.md §6), end to end: /metrics, /health,
// /drain, /schedules, /dlq, the token, and the kanbanctl verbs with their
// exit codes (docs/reliability.md B24, B25).
#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <iostream>
#include <map>
#include <sstream>

namespace kanban::test {
namespace {

using ::testing::HasSubstr;

class Operations : public DaemonTest {
protected:
    CommandResult ctl(Kanband& kd, std::vector<std::string> args) { return kanbanctl(cfg, kd, args); }
};

std::size_t countOutcome(const std::vector<Call>& calls, const std::string& outcome) {
    return static_cast<std::size_t>(
        std::count_if(calls.begin(), calls.end(), [&](const Call& c) { return c.outcome == outcome; }));
}

// The spec's test 8: after a known workload (n ok, m retried, k dead-lettered)
// /metrics shows exactly those counts. The expected numbers come from two
// independent witnesses: the recorder plugin's log of every call, and the
// dead-letter stream.
TEST_F(Operations, MetricsCountExactlyTheWorkloadDone) {
    HostOptions o;
    o.max_attempts = 3;
    o.backoff_initial_ms = 50;
    o.health_interval_ms = 200;
    o.max_workers = 2;  // no autoscaling in this count
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    publish(cfg, "orders", "normal", 20);
    publish(cfg, "orders", "high", 2, "retry");
    publish(cfg, "orders", "low", 3, "fail");
    ASSERT_TRUE(waitFor([&] { return probe.deadLetters("orders").size() == 5 && probe.streamMsgs("KANBAN") == 0; }, 30s))
        << kd.log();
    const auto calls = readCalls(out);
    ASSERT_EQ(countOutcome(calls, "ok"), 20u);
    ASSERT_EQ(countOutcome(calls, "fail"), 3u);
    const std::size_t retried = countOutcome(calls, "retry");
    ASSERT_GE(retried, 2u);

    std::string text;
    // The queue-depth gauges are sampled every health interval: wait for a sample after the work.
    ASSERT_TRUE(waitFor(
        [&] {
            text = kd.http("GET", "/metrics").body;
            return metric(text, R"(kanban_queue_depth{backend="nats",domain="orders",priority="normal"})") == 0.0 &&
                   metric(text, R"(kanban_items_in_flight{domain="orders"})") == 0.0 &&
                   metric(text, R"(kanban_dead_letter_queue_depth{backend="nats",domain="orders"})") == 5.0;
        },
        5s))
        << text;
    auto at = [&](const std::string& s) { return metric(text, s).value_or(-1); };
    EXPECT_EQ(at(R"(kanban_items_processed_total{domain="orders",outcome="ok"})"), 20);
    EXPECT_EQ(at(R"(kanban_items_processed_total{domain="orders",outcome="retry"})"), static_cast<double>(retried));
    EXPECT_EQ(at(R"(kanban_items_processed_total{domain="orders",outcome="fail"})"), 3);
    EXPECT_EQ(at(R"(kanban_items_processed_total{domain="orders",outcome="timeout"})"), 0);
    EXPECT_EQ(at(R"(kanban_items_dead_lettered_total{domain="orders",reason="handler_failed"})"), 3);
    EXPECT_EQ(at(R"(kanban_items_dead_lettered_total{domain="orders",reason="retries_exhausted"})") +
                  at(R"(kanban_items_dead_lettered_total{domain="orders",reason="max_deliveries_exceeded"})"),
              2);
    EXPECT_EQ(at(R"(kanban_items_acked_total{domain="orders"})"), 20);
    // Every retry call but an item's last one was handed back with a delay.
    EXPECT_EQ(at(R"(kanban_items_nacked_total{domain="orders"})"),
              static_cast<double>(retried) - at(R"(kanban_items_dead_lettered_total{domain="orders",reason="retries_exhausted"})"));
    EXPECT_EQ(at(R"(kanban_items_duplicate_total{domain="orders"})"), 0);
    const double pulled = at(R"(kanban_items_pulled_total{domain="orders",priority="high"})") +
                          at(R"(kanban_items_pulled_total{domain="orders",priority="normal"})") +
                          at(R"(kanban_items_pulled_total{domain="orders",priority="low"})");
    EXPECT_EQ(pulled, static_cast<double>(calls.size()));
    EXPECT_EQ(at(R"(kanban_handler_duration_seconds_count{domain="orders"})"), static_cast<double>(calls.size()));
    // First deliveries only; nats-server 2.9.10 can hand a redelivery out
    // again with delivery count 1 (docs/architecture.md: a pull request that
    // expired as it was served), which then counts as a first delivery.
    EXPECT_GE(at(R"(kanban_item_wait_seconds_count{domain="orders"})"), 25);
    EXPECT_LE(at(R"(kanban_item_wait_seconds_count{domain="orders"})"), 25.0 + static_cast<double>(retried));
    EXPECT_EQ(at(R"(kanban_build_info{version="0.1.0"})"), 1);
    EXPECT_EQ(at(R"(kanban_plugin_info{domain="orders",plugin="recorder",version="1.0.0"})"), 1);
    EXPECT_EQ(at(R"(kanban_backend_active{backend="nats"})"), 1);
    EXPECT_EQ(at(R"(kanban_workers{domain="orders"})"), 2);
    EXPECT_EQ(metric(text, "kanban_orphaned_items"), 0.0);
    EXPECT_THAT(text, HasSubstr("# TYPE kanban_handler_duration_seconds histogram"));
    EXPECT_THAT(text, HasSubstr(R"(kanban_handler_duration_seconds_bucket{domain="orders",le="0.005"})"));
}


// /health (docs/design.md §6 fields, per domain too) and `kanbanctl health`.
TEST_F(Operations, HealthDescribesEveryDomainIncludingOneThatFailedToStart) {
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)},
                         {"legacy", kFixtures + "/abi_major_mismatch.so", ""}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    publish(cfg, "orders", "normal", 3);
    ASSERT_TRUE(waitFor([&] { return readLines(out).size() == 3; }, 10s));

    // The acks follow the handler calls: wait until the broker has them.
    nlohmann::json h;
    ASSERT_TRUE(waitFor(
        [&] {
            auto r = kd.http("GET", "/health");
            if (r.status != 200) return false;
            h = nlohmann::json::parse(r.body);
            return h["domains"]["orders"]["depth"] == 0 && h["domains"]["orders"]["processed"]["ok"] == 3;
        },
        5s))
        << h.dump();
    EXPECT_EQ(h["status"], "degraded") << "a domain is not running";
    EXPECT_EQ(h["backend"], "nats");
    EXPECT_EQ(h["current_workers"], 2);
    EXPECT_EQ(h["target_workers"], 2);
    EXPECT_TRUE(h["queue_depth_samples"].is_array());
    EXPECT_EQ(h["queue_draining"], false);
    EXPECT_TRUE(h["timestamp"].is_number());
    const auto& orders = h["domains"]["orders"];
    EXPECT_EQ(orders["status"], "running");
    EXPECT_EQ(orders["workers"], 2);
    EXPECT_EQ(orders["target_workers"], 2);
    EXPECT_EQ(orders["depth"], 0);
    EXPECT_EQ(orders["circuit"], "closed");
    EXPECT_EQ(orders["stalled"], 0);
    EXPECT_EQ(orders["plugin"]["name"], "recorder");
    EXPECT_EQ(orders["plugin"]["version"], "1.0.0");
    EXPECT_EQ(orders["processed"]["ok"], 3);
    const auto& legacy = h["domains"]["legacy"];
    EXPECT_EQ(legacy["status"], "failed");
    EXPECT_THAT(legacy["error"].get<std::string>(), HasSubstr("plugin ABI 2.0 is not supported"));
    EXPECT_TRUE(legacy["plugin"].is_null());

    auto text = ctl(kd, {"health"});
    EXPECT_EQ(text.exit_code, 0) << text.err;
    EXPECT_THAT(text.out, HasSubstr("status: degraded"));
    EXPECT_THAT(text.out, ::testing::ContainsRegex("orders +running +2/2 +0 +0 +closed +thread +recorder 1.0.0"));
    EXPECT_THAT(text.out, HasSubstr("error: "));
    auto json = ctl(kd, {"health", "--json"});
    EXPECT_EQ(json.exit_code, 0);
    EXPECT_EQ(nlohmann::json::parse(json.out)["domains"]["orders"]["plugin"]["name"], "recorder");
}

// B24: every API error case answers with a JSON message.
TEST_F(Operations, AdminApiRefusesBadRequestsWithClearErrors) {
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    auto error = [](const Kanband::Http& r) { return nlohmann::json::parse(r.body).value("error", ""); };

    auto malformed = kd.http("POST", "/schedules", "{\"name\": ");
    EXPECT_EQ(malformed.status, 400);
    EXPECT_THAT(error(malformed), HasSubstr("malformed JSON"));
    auto not_object = kd.http("POST", "/schedules", "[1, 2]");
    EXPECT_EQ(not_object.status, 400);
    auto unknown_schedule = kd.http("DELETE", "/schedules/nosuch");
    EXPECT_EQ(unknown_schedule.status, 404);
    EXPECT_THAT(error(unknown_schedule), HasSubstr("no schedule named \"nosuch\""));
    auto big = kd.http("POST", "/schedules", std::string(100 * 1024, ' '));
    EXPECT_EQ(big.status, 413);
    auto unknown_route = kd.http("GET", "/nope");
    EXPECT_EQ(unknown_route.status, 404);
    EXPECT_THAT(error(unknown_route), HasSubstr("no such endpoint"));
    EXPECT_EQ(kd.http("GET", "/dlq/nosuch").status, 404);
    auto replay_unknown = kd.http("POST", "/dlq/nosuch/replay", "{}");
    EXPECT_EQ(replay_unknown.status, 404);
    EXPECT_THAT(error(replay_unknown), HasSubstr("unknown domain \"nosuch\""));
    EXPECT_EQ(kd.http("POST", "/dlq/orders/replay", "{\"id\": 5}").status, 400);
    EXPECT_EQ(kd.http("GET", "/dlq/orders?limit=x").status, 400);
    // Without a token configured, changes need none (loopback only).
    EXPECT_EQ(kd.http("POST", "/drain").status, 202);
    EXPECT_EQ(kd.httpStatus("/healthz"), 200);
}

// Token on: every request needs it, reads included (dead-letter payloads are
// data), except the probes, the scrape and the console page.
TEST_F(Operations, EveryRequestButProbesScrapesAndTheConsolePageNeedsTheBearerTokenWhenOneIsSet) {
    const std::string token_file = dir.file("token");
    writeFile(token_file, "s3cret-token\n");
    ::chmod(token_file.c_str(), 0600);
    HostOptions o;
    o.token_file = token_file;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();

    for (const char* open : {"/healthz", "/readyz", "/metrics", "/"})
        EXPECT_EQ(kd.http("GET", open).status, 200) << open;
    for (const char* closed : {"/health", "/dlq/orders", "/schedules", "/stalled", "/log-level"}) {
        const auto r = kd.http("GET", closed);
        EXPECT_EQ(r.status, 401) << closed;
        EXPECT_THAT(r.body, HasSubstr("Bearer")) << closed;
        EXPECT_EQ(kd.http("GET", closed, "", "wrong").status, 401) << closed;
        EXPECT_EQ(kd.http("GET", closed, "", "s3cret-token").status, 200) << closed;
    }
    EXPECT_EQ(kd.http("POST", "/drain").status, 401);
    EXPECT_EQ(kd.http("POST", "/drain", "", "wrong").status, 401);
    EXPECT_EQ(kd.http("DELETE", "/schedules/x").status, 401);
    EXPECT_EQ(kd.http("POST", "/dlq/orders/replay", "{}").status, 401);
    EXPECT_EQ(kd.httpStatus("/readyz"), 200) << "a refused drain changed nothing";
    EXPECT_EQ(kd.http("POST", "/drain", "", "s3cret-token").status, 202);
    EXPECT_EQ(kd.httpStatus("/readyz"), 503);

    // kanbanctl reads the token from admin.token_file, for reads too.
    auto health = ctl(kd, {"health"});
    EXPECT_EQ(health.exit_code, 0) << health.err;
    auto drain = ctl(kd, {"drain"});
    EXPECT_EQ(drain.exit_code, 0) << drain.err;
    // A world-readable token file is refused by the config check.
    ::chmod(token_file.c_str(), 0644);
    auto check = runCommand({kKanband, "--check-config", cfg});
    EXPECT_EQ(check.exit_code, 1);
    EXPECT_THAT(check.err, HasSubstr("token_file"));
}

// POST /drain and kanbanctl drain --wait: keeps working until every queue
// and every worker is empty, /readyz 503 meanwhile.
// Probes and scrapes do not depend on every client being well-behaved: with
// 50 connections that send nothing and 8 that send a request one byte at a
// time, /healthz, /readyz and /metrics still answer at once.
TEST_F(Operations, IdleAndSlowClientsDoNotStarveTheProbes) {
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    auto connectAdmin = [&] {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(kd.port()));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        return fd;
    };
    std::vector<int> idle;
    for (int i = 0; i < 50; ++i) idle.push_back(connectAdmin());
    std::atomic<bool> done{false};
    std::vector<std::thread> slow;
    for (int i = 0; i < 8; ++i)
        slow.emplace_back([&] {
            const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
            while (!done.load()) {  // a new slow client whenever the server drops one
                const int fd = connectAdmin();
                for (std::size_t at = 0; at < request.size() && !done.load(); ++at) {
                    if (::send(fd, request.data() + at, 1, MSG_NOSIGNAL) != 1) break;
                    std::this_thread::sleep_for(300ms);
                }
                ::close(fd);
            }
        });
    std::this_thread::sleep_for(500ms);  // every one of them connected and holding on
    std::chrono::milliseconds slowest{0};
    for (int round = 0; round < 5; ++round)
        for (const char* path : {"/healthz", "/readyz", "/metrics"}) {
            const auto t0 = std::chrono::steady_clock::now();
            const auto r = kd.http("GET", path);
            const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
            slowest = std::max(slowest, took);
            EXPECT_EQ(r.status, 200) << path;
            EXPECT_LT(took, 1000ms) << path << " waited behind other clients";
        }
    std::cout << "[ measured ] slowest probe with 50 idle and 8 slow clients: " << slowest.count() << " ms\n";
    done = true;
    for (auto& t : slow) t.join();
    for (int fd : idle) ::close(fd);
}

TEST_F(Operations, DrainWaitsUntilTheQueuesAreEmptyAndCanBeCancelled) {
    HostOptions o;
    o.health_interval_ms = 200;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out, 20)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const auto ids = publish(cfg, "orders", "normal", 60);
    auto drain = ctl(kd, {"drain", "--wait", "--timeout", "60"});
    EXPECT_EQ(drain.exit_code, 0) << drain.err;
    EXPECT_EQ(drain.out, "drained\n");
    EXPECT_EQ(readLines(out).size(), ids.size()) << "drain reported done before the work was";
    EXPECT_EQ(kd.httpStatus("/readyz"), 503);
    const auto h = nlohmann::json::parse(kd.http("GET", "/health").body);
    EXPECT_EQ(h["queue_draining"], true);
    EXPECT_EQ(h["drained"], true);
    EXPECT_EQ(h["status"], "drained");

    // drain --cancel: ready again, and work published now is handled.
    auto cancel = ctl(kd, {"drain", "--cancel"});
    EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
    EXPECT_EQ(cancel.out, "drain cancelled\n");
    EXPECT_EQ(kd.httpStatus("/readyz"), 200);
    const auto after = nlohmann::json::parse(kd.http("GET", "/health").body);
    EXPECT_EQ(after["queue_draining"], false);
    EXPECT_EQ(after["status"], "ok");
    const auto more = publish(cfg, "orders", "normal", 3);
    EXPECT_TRUE(waitFor([&] { return allHandled(out, more); }, 20s));
    EXPECT_EQ(ctl(kd, {"drain", "--cancel", "--wait"}).exit_code, 64) << "--cancel with --wait is a usage error";
    auto json = ctl(kd, {"drain", "--json"});
    EXPECT_EQ(json.exit_code, 0) << json.err;
    EXPECT_EQ(nlohmann::json::parse(json.out)["queue_draining"], true);
    json = ctl(kd, {"drain", "--cancel", "--json"});
    EXPECT_EQ(nlohmann::json::parse(json.out)["queue_draining"], false);
}

// GET /dlq/<domain>, POST /dlq/<domain>/replay and their kanbanctl verbs.
TEST_F(Operations, DeadLettersAreListedAndReplayed) {
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    const auto failed = publish(cfg, "orders", "normal", 2, "fail");
    const std::string binary("\xff\xfe", 2);
    ASSERT_TRUE(probe.publish("kanban.low.orders", binary, {{"Nats-Msg-Id", "binary-1"}, {"Kanban-Deadline", "1"}}));
    ASSERT_TRUE(waitFor([&] { return probe.deadLetters("orders").size() == 3; }, 10s)) << kd.log();

    auto list = ctl(kd, {"dlq", "list", "orders"});
    EXPECT_EQ(list.exit_code, 0) << list.err;
    EXPECT_THAT(list.out, HasSubstr(failed[0]));
    EXPECT_THAT(list.out, HasSubstr("reason=asked to fail"));
    EXPECT_THAT(list.err, HasSubstr("3 dead-lettered item(s) in orders"));
    auto json = nlohmann::json::parse(kd.http("GET", "/dlq/orders").body);
    ASSERT_EQ(json["count"], 3);
    std::map<std::string, nlohmann::json> by_id;
    for (const auto& item : json["items"]) by_id[item["id"].get<std::string>()] = item;
    ASSERT_TRUE(by_id.count(failed[0]) && by_id.count("binary-1")) << json.dump();
    EXPECT_EQ(by_id[failed[0]]["payload"], "fail");
    EXPECT_EQ(by_id[failed[0]]["attempts"], 1);
    EXPECT_EQ(by_id[failed[0]]["original_subject"], "kanban.normal.orders");
    EXPECT_EQ(by_id["binary-1"]["payload_base64"], "//4=") << "binary payloads are base64";
    EXPECT_EQ(by_id["binary-1"]["reason"], "deadline_exceeded");
    EXPECT_LT(json["items"][0]["sequence"], json["items"][1]["sequence"]) << "oldest first";

    // Within the 2-minute duplicate window the work stream would drop the
    // copy: the replay says so and the dead letter stays.
    auto early = ctl(kd, {"dlq", "replay", "orders", "--id", failed[0]});
    EXPECT_EQ(early.exit_code, 1);
    EXPECT_THAT(early.err, HasSubstr("less than 2 minutes ago"));
    EXPECT_EQ(probe.deadLetters("orders").size(), 3u);

    ASSERT_TRUE(probe.setDuplicateWindow(100));
    ASSERT_TRUE(waitFor(
        [&] {
            auto r = ctl(kd, {"dlq", "replay", "orders", "--id", failed[0]});
            return r.exit_code == 0 && r.out == failed[0] + "\n";
        },
        5s));
    // Handled again (and, failing again, dead-lettered again: not dropped as a duplicate).
    ASSERT_TRUE(waitFor([&] { return callsFor(readCalls(out), failed[0]).size() == 2; }, 10s)) << kd.log();
    ASSERT_TRUE(waitFor([&] { return probe.deadLetters("orders").size() == 3; }, 10s));
    auto unknown = ctl(kd, {"dlq", "replay", "orders", "--id", "nosuch"});
    EXPECT_EQ(unknown.exit_code, 1);
    EXPECT_THAT(unknown.err, HasSubstr("no dead letter with id \"nosuch\""));
    const std::string scrape = kd.http("GET", "/metrics").body;
    EXPECT_EQ(metric(scrape, R"(kanban_items_published_total{domain="orders"})"), 1.0);
}

// B25: distinct exit codes with a one-line reason.
TEST_F(Operations, KanbanctlAdminVerbsHaveDistinctExitCodes) {
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    auto one_line = [](const CommandResult& r) { return std::count(r.err.begin(), r.err.end(), '\n') == 1; };

    auto down = runCommand({kKanbanctl, "--config", cfg, "--admin", "127.0.0.1:1", "health"});
    EXPECT_EQ(down.exit_code, 69);
    EXPECT_THAT(down.err, HasSubstr("not answering at 127.0.0.1:1"));
    EXPECT_TRUE(one_line(down)) << down.err;
    auto port_zero = runCommand({kKanbanctl, "--config", cfg, "health"});  // admin.listen is 127.0.0.1:0 here
    EXPECT_EQ(port_zero.exit_code, 64);
    EXPECT_THAT(port_zero.err, HasSubstr("--admin"));
    auto no_config = runCommand({kKanbanctl, "--config", dir.file("missing.toml"), "health"});
    EXPECT_EQ(no_config.exit_code, 66);
    auto bad_flag = runCommand({kKanbanctl, "--config", cfg, "drain", "--forever"});
    EXPECT_EQ(bad_flag.exit_code, 64);
    EXPECT_TRUE(one_line(bad_flag)) << bad_flag.err;
    auto missing_arg = runCommand({kKanbanctl, "--config", cfg, "dlq", "list"});
    EXPECT_EQ(missing_arg.exit_code, 64);

    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    auto unknown = ctl(kd, {"dlq", "list", "nosuch"});
    EXPECT_EQ(unknown.exit_code, 1);
    EXPECT_THAT(unknown.err, HasSubstr("unknown domain \"nosuch\" (HTTP 404)"));
    EXPECT_TRUE(one_line(unknown)) << unknown.err;
    auto empty = ctl(kd, {"dlq", "list", "orders"});
    EXPECT_EQ(empty.exit_code, 0);
    EXPECT_EQ(empty.out, "");
}

// [log] format = "json": every line kanband writes is one JSON object; item
// lines carry domain, id and attempt. The level changes at runtime
// (kanbanctl log-level) without a reload.
TEST_F(Operations, JsonLogLinesParseAndTheLevelChangesAtRuntime) {
    HostOptions o;
    o.log_format = "json";
    o.log_level = "debug";
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const auto first = publish(cfg, "orders", "normal", 3);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, first); }, 30s));
    auto itemLine = [&](const std::string& id) {
        return kd.logHas("\"id\":\"" + id + "\"");
    };
    ASSERT_TRUE(waitFor([&] { return itemLine(first[2]); }, 10s)) << kd.log();

    auto level = ctl(kd, {"log-level"});
    EXPECT_EQ(level.exit_code, 0) << level.err;
    EXPECT_EQ(level.out, "debug\n");
    auto set = ctl(kd, {"log-level", "error"});
    EXPECT_EQ(set.exit_code, 0) << set.err;
    EXPECT_EQ(set.out, "log level debug -> error\n");
    EXPECT_EQ(ctl(kd, {"log-level", "loud"}).exit_code, 64);
    EXPECT_EQ(kd.http("PUT", "/log-level", R"({"level": "loud"})").status, 400);

    const auto second = publish(cfg, "orders", "normal", 3);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, second); }, 30s));
    EXPECT_EQ(ctl(kd, {"log-level"}).out, "error\n");

    bool found_item_fields = false;
    std::istringstream lines(kd.log());
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
        if (line.empty()) continue;
        ++n;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        ASSERT_TRUE(j.is_object()) << "not a JSON line: " << line;
        EXPECT_TRUE(j.contains("time") && j.contains("level") && j.contains("message")) << line;
        if (j.value("id", "") == first[0] && j.value("domain", "") == "orders" && j.contains("attempt")) {
            EXPECT_TRUE(j["attempt"].is_number()) << line;
            found_item_fields = true;
        }
        // After the change to error, nothing about the second batch at debug.
        for (const auto& id : second) EXPECT_NE(j.value("id", ""), id) << line;
    }
    EXPECT_GT(n, 5);
    EXPECT_TRUE(found_item_fields) << kd.log();
}

// dlq list --reason, dlq purge --id / --reason / all: only what was asked
// goes, for good; the rest stays.
TEST_F(Operations, DeadLettersAreFilteredByReasonAndPurgedByIdByReasonOrAll) {
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    const auto failed = publish(cfg, "orders", "normal", 3, "fail");  // reason "asked to fail"
    for (const char* id : {"late-1", "late-2"})  // reason "deadline_exceeded"
        ASSERT_TRUE(probe.publish("kanban.low.orders", "{}", {{"Nats-Msg-Id", id}, {"Kanban-Deadline", "1"}}));
    ASSERT_TRUE(waitFor([&] { return probe.deadLetters("orders").size() == 5; }, 10s)) << kd.log();

    auto late = ctl(kd, {"dlq", "list", "orders", "--reason", "deadline"});
    EXPECT_EQ(late.exit_code, 0) << late.err;
    EXPECT_THAT(late.out, HasSubstr("late-1"));
    EXPECT_THAT(late.out, ::testing::Not(HasSubstr(failed[0])));
    EXPECT_THAT(late.err, HasSubstr("2 dead-lettered item(s)"));
    EXPECT_EQ(nlohmann::json::parse(kd.http("GET", "/dlq/orders?reason=asked%20to%20fail").body)["count"], 3);
    // The reason code (the label of kanban_items_dead_lettered_total) matches exactly.
    const auto by_code = nlohmann::json::parse(kd.http("GET", "/dlq/orders?reason=handler_failed").body);
    EXPECT_EQ(by_code["count"], 3) << by_code.dump();
    EXPECT_EQ(by_code["items"][0]["reason_code"], "handler_failed");
    EXPECT_EQ(by_code["items"][0]["reason"], "asked to fail");

    // By id: that one only.
    auto one = ctl(kd, {"dlq", "purge", "orders", "--id", failed[0]});
    EXPECT_EQ(one.exit_code, 0) << one.err;
    EXPECT_EQ(one.out, failed[0] + "\n");
    EXPECT_EQ(probe.deadLetters("orders").size(), 4u);
    EXPECT_EQ(ctl(kd, {"dlq", "purge", "orders", "--id", failed[0]}).exit_code, 1) << "gone: 404";
    // By reason: the two late ones, not the failed ones.
    auto by_reason = ctl(kd, {"dlq", "purge", "orders", "--reason", "deadline_exceeded", "--json"});
    EXPECT_EQ(by_reason.exit_code, 0) << by_reason.err;
    auto purged = nlohmann::json::parse(by_reason.out)["purged"];
    EXPECT_EQ(purged, nlohmann::json::array({"late-1", "late-2"}));
    const auto left = probe.deadLetters("orders");
    ASSERT_EQ(left.size(), 2u);
    for (const auto& m : left) EXPECT_EQ(m.headers.at("Kanban-Reason"), "asked to fail");
    // Purged is not replayed: nothing reached the handler again.
    EXPECT_EQ(callsFor(readCalls(out), "late-1").size(), 0u);
    EXPECT_EQ(callsFor(readCalls(out), failed[0]).size(), 1u);
    // All.
    EXPECT_EQ(kd.http("POST", "/dlq/orders/purge", "{}").status, 200);
    EXPECT_TRUE(probe.deadLetters("orders").empty());
    EXPECT_EQ(kd.http("POST", "/dlq/orders/purge", R"({"reason": 5})").status, 400);
    EXPECT_EQ(kd.http("POST", "/dlq/nosuch/purge", "{}").status, 404);
}

// kanbanctl stalled: the ids in handlers longer than stall_threshold_ms, in
// both isolations; an item that returned is gone from the list.
TEST_F(Operations, StalledListsTheItemsInHandlersLongerThanTheThreshold) {
    HostOptions o;
    o.stall_threshold_ms = 300;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out), 30000},
                         {"apart", kFixtures + "/recorder.so", recorderSettings(dir.file("apart.txt")), 30000,
                          "isolation = \"process\"\n"}},
                        o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const auto slow = publish(cfg, "orders", "normal", 1, "sleep:4000");
    const auto slow_apart = publish(cfg, "apart", "normal", 1, "sleep:4000");
    const auto quick = publish(cfg, "orders", "high", 2);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, quick); }, 20s));
    nlohmann::json listed;
    ASSERT_TRUE(waitFor(
        [&] {
            listed = nlohmann::json::parse(kd.http("GET", "/stalled").body, nullptr, false);
            return listed.is_object() && listed["items"].size() == 2;
        },
        10s))
        << listed.dump();
    EXPECT_EQ(listed["stall_threshold_ms"], 300);
    std::map<std::string, nlohmann::json> by_domain;
    for (const auto& item : listed["items"]) by_domain[item["domain"]] = item;
    EXPECT_EQ(by_domain["orders"]["id"], slow[0]);
    EXPECT_EQ(by_domain["apart"]["id"], slow_apart[0]);
    EXPECT_EQ(by_domain["orders"]["attempt"], 1);
    EXPECT_GT(by_domain["orders"]["in_handler_seconds"].get<double>(), 0.3);
    for (const auto& id : quick) EXPECT_THAT(listed.dump(), ::testing::Not(HasSubstr(id)));

    auto one = ctl(kd, {"stalled", "orders"});
    EXPECT_EQ(one.exit_code, 0) << one.err;
    EXPECT_THAT(one.out, HasSubstr("orders\t" + slow[0] + "\tattempt=1"));
    EXPECT_THAT(one.out, ::testing::Not(HasSubstr(slow_apart[0])));
    EXPECT_EQ(kd.http("GET", "/stalled?domain=nosuch").status, 404);
    // Once they returned, nothing is listed.
    ASSERT_TRUE(waitFor([&] { return allHandled(out, slow) && allHandled(dir.file("apart.txt"), slow_apart); }, 20s));
    EXPECT_TRUE(waitFor([&] { return nlohmann::json::parse(kd.http("GET", "/stalled").body)["items"].empty(); }, 5s));
}

}  // namespace
}  // namespace kanban::test
