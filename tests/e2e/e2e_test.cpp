// The real kanband and kanbanctl binaries against a real nats-server.
#include "harness.hpp"

#include <httplib.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <regex>
#include <set>
#include <thread>

namespace kanban::test {
namespace {

using ::testing::HasSubstr;

TEST(EndToEnd, ThousandItemsOverThreePrioritiesAreHandledExactlyOnce) {
    NatsServer nats;
    TempDir dir;
    const std::string out = dir.file("handled.txt");
    const std::string cfg = dir.file("kanban.toml");
    writeFile(cfg, makeConfig(nats, {{"orders", kFixtures + "/recorder.so", "out = \"" + out + "\""}}, 4));

    Kanband kd(dir, cfg);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    EXPECT_EQ(kd.httpStatus("/healthz"), 200);

    std::map<std::string, std::string> published;  // id -> priority
    const std::pair<const char*, int> plan[] = {{"high", 334}, {"normal", 333}, {"low", 333}};
    for (auto [prio, n] : plan)
        for (const auto& id : publish(cfg, "orders", prio, n)) published[id] = prio;
    ASSERT_EQ(published.size(), 1000u) << "kanbanctl printed duplicate or missing ids";

    ASSERT_TRUE(waitFor([&] { return readLines(out).size() >= 1000; }, 60s))
        << readLines(out).size() << " handled\n" << kd.log();
    // Stop first so that any redelivery would have been recorded by now.
    kd.proc().signal(SIGTERM);
    const auto code = kd.proc().wait(20s);
    ASSERT_TRUE(code.has_value()) << "kanband did not stop on SIGTERM";
    EXPECT_EQ(*code, 0) << kd.log();

    std::map<std::string, int> seen;
    for (const auto& line : readLines(out)) {
        std::istringstream f(line);
        std::string id, prio, attempt;
        f >> id >> prio >> attempt;
        ++seen[id];
        ASSERT_TRUE(published.count(id)) << "unexpected id " << id;
        EXPECT_EQ(prio, published[id]) << id;
        EXPECT_EQ(attempt, "1") << id;
    }
    EXPECT_EQ(seen.size(), 1000u);
    for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id << " handled " << n << " times";
    EXPECT_THAT(kd.log(), HasSubstr("kanband stopped"));
}

TEST(EndToEnd, FailedItemIsDeadLetteredAndTheDaemonKeepsServing) {
    NatsServer nats;
    TempDir dir;
    const std::string cfg = dir.file("kanban.toml");
    writeFile(cfg, makeConfig(nats, {{"payment", kPlugins + "/payment.so", ""}}));
    Kanband kd(dir, cfg);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    auto bad = publish(cfg, "payment", "normal", 1, R"({"amount": -5, "account": "a"})");
    auto good = publish(cfg, "payment", "normal", 1, R"({"amount": 5, "account": "acct-9"})");
    ASSERT_EQ(bad.size(), 1u);
    ASSERT_EQ(good.size(), 1u);
    ASSERT_TRUE(waitFor([&] { return kd.log().find("charged 5 EUR to acct-9") != std::string::npos; }, 10s)) << kd.log();
    ASSERT_TRUE(waitFor([&] { return kd.log().find("item dead-lettered domain=payment id=" + bad[0]) != std::string::npos; }, 10s));
    EXPECT_THAT(kd.log(), HasSubstr("reason=\"payload.amount must be positive\""));
    EXPECT_EQ(kd.httpStatus("/readyz"), 200);
}

TEST(EndToEnd, PluginForAnotherAbiMajorIsRefusedAndOtherDomainsRun) {
    NatsServer nats;
    TempDir dir;
    const std::string out = dir.file("handled.txt");
    const std::string cfg = dir.file("kanban.toml");
    const std::string bad_plugin = kFixtures + "/abi_major_mismatch.so";
    writeFile(cfg, makeConfig(nats, {{"legacy", bad_plugin, ""}, {"orders", kFixtures + "/recorder.so", "out = \"" + out + "\""}}));

    auto check = runCommand({kKanband, "--check-config", cfg});
    EXPECT_EQ(check.exit_code, 1);
    EXPECT_THAT(check.err, HasSubstr(bad_plugin + ": plugin ABI 2.0 is not supported by this host (ABI 1.1)"));

    Kanband kd(dir, cfg);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    EXPECT_THAT(kd.log(), HasSubstr("domain not started domain=legacy"));
    EXPECT_THAT(kd.log(), HasSubstr("plugin ABI 2.0 is not supported"));
    auto ids = publish(cfg, "orders", "normal", 3);
    EXPECT_TRUE(waitFor([&] { return readLines(out).size() == 3; }, 10s)) << kd.log();
}

TEST(EndToEnd, SurvivesANatsRestartWithoutSpinning) {
    NatsServer nats;
    TempDir dir;
    const std::string out = dir.file("handled.txt");
    const std::string cfg = dir.file("kanban.toml");
    writeFile(cfg, makeConfig(nats, {{"orders", kFixtures + "/recorder.so", "out = \"" + out + "\""}}));
    Kanband kd(dir, cfg);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    publish(cfg, "orders", "normal", 5);
    ASSERT_TRUE(waitFor([&] { return readLines(out).size() == 5; }, 10s)) << kd.log();

    nats.stop();
    EXPECT_TRUE(waitFor([&] { return kd.httpStatus("/readyz") == 503; }, 10s)) << "not ready during the outage";
    EXPECT_EQ(kd.httpStatus("/healthz"), 200);  // alive all along
    std::this_thread::sleep_for(2s);  // an outage of a known length, to bound the retries logged in it
    nats.start();
    ASSERT_TRUE(waitFor([&] { return kd.httpStatus("/readyz") == 200; }, 20s)) << kd.log();

    publish(cfg, "orders", "high", 5);
    EXPECT_TRUE(waitFor([&] { return readLines(out).size() == 10; }, 30s)) << kd.log();
    ASSERT_TRUE(kd.proc().running());
    // Retries back off (250 ms doubling, 2 workers): a spinning loop would log thousands.
    const std::string log = kd.log();
    std::size_t warnings = 0;
    for (std::size_t pos = 0; (pos = log.find(" warning ", pos)) != std::string::npos; ++pos) ++warnings;
    EXPECT_LT(warnings, 60u) << log;
}

TEST(EndToEnd, CheckConfigValidatesWithoutTouchingBrokers) {
    TempDir dir;
    const std::string good = dir.file("good.toml");
    // Points at a NATS port nobody listens on: --check-config must not care.
    writeFile(good, "[nats]\nservers = [\"nats://127.0.0.1:1\"]\n[plugins]\ndir = \"" + kPlugins +
                        "\"\n[[domain]]\nname = \"payment\"\n[domain.settings]\ncurrency = \"EUR\"\n");
    auto ok = runCommand({kKanband, "--check-config", good});
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_THAT(ok.out, HasSubstr("OK (1 domain, 0 schedules)"));

    const std::string bad = dir.file("bad.toml");
    writeFile(bad, "[workers]\nmin = 2\nmin = 3\n");
    auto r = runCommand({kKanband, "--check-config", bad});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, HasSubstr(bad + ":3:"));

    const std::string bad_settings = dir.file("settings.toml");
    writeFile(bad_settings, "[plugins]\ndir = \"" + kPlugins + "\"\n[[domain]]\nname = \"payment\"\n[domain.settings]\ncurrency = \"\"\n");
    auto s = runCommand({kKanband, "--check-config", bad_settings});
    EXPECT_EQ(s.exit_code, 1);
    EXPECT_THAT(s.err, HasSubstr("create() failed: settings.currency must not be empty"));

    auto via_ctl = runCommand({kKanbanctl, "config", "check", bad});
    EXPECT_EQ(via_ctl.exit_code, 1);
    EXPECT_THAT(via_ctl.err, HasSubstr(bad + ":3:"));

    // A bad config at startup exits non-zero.
    auto start = runCommand({kKanband, "--config", bad}, 10s);
    EXPECT_EQ(start.exit_code, 1);
}

TEST(EndToEnd, KanbanctlExitCodes) {
    NatsServer nats;
    TempDir dir;
    const std::string cfg = dir.file("kanban.toml");
    writeFile(cfg, makeConfig(nats, {{"payment", kPlugins + "/payment.so", ""}}));

    auto unknown = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "nosuch", "--payload", "{}"});
    EXPECT_EQ(unknown.exit_code, 64);
    EXPECT_EQ(unknown.err, "kanbanctl: unknown domain \"nosuch\" (configured: payment)\n");

    auto bad_prio = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "payment", "--priority", "urgent", "--payload", "{}"});
    EXPECT_EQ(bad_prio.exit_code, 64);
    EXPECT_EQ(std::count(bad_prio.err.begin(), bad_prio.err.end(), '\n'), 1) << bad_prio.err;

    auto no_payload = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "payment"});
    EXPECT_EQ(no_payload.exit_code, 64);

    auto no_file = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "payment", "--file", dir.file("missing.json")});
    EXPECT_EQ(no_file.exit_code, 66);
    EXPECT_THAT(no_file.err, HasSubstr("missing.json"));

    auto no_config = runCommand({kKanbanctl, "--config", dir.file("nope.toml"), "publish", "--domain", "payment", "--payload", "{}"});
    EXPECT_EQ(no_config.exit_code, 66);

    const std::string down = dir.file("down.toml");
    writeFile(down, "[nats]\nservers = [\"nats://127.0.0.1:1\"]\n[[domain]]\nname = \"payment\"\n");
    auto unreachable = runCommand({kKanbanctl, "--config", down, "publish", "--domain", "payment", "--payload", "{}"});
    EXPECT_EQ(unreachable.exit_code, 69);
    EXPECT_THAT(unreachable.err, HasSubstr("cannot connect"));

    const std::string file = dir.file("p.json");
    writeFile(file, R"({"amount": 1, "account": "a"})");
    auto with_id = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "payment", "--file", file, "--id", "my-id-1"});
    EXPECT_EQ(with_id.exit_code, 0) << with_id.err;
    EXPECT_EQ(with_id.out, "my-id-1\n");
}

TEST(EndToEnd, OutOfTreePluginBuiltAgainstTheInstalledSdkHandlesItems) {
    const char* plugin = std::getenv("KANBAN_SDK_CONSUMER_PLUGIN");
    ASSERT_NE(plugin, nullptr) << "run through ctest: the sdk_consumer_build fixture builds the plugin";
    NatsServer nats;
    TempDir dir;
    const std::string out = dir.file("echo.txt");
    const std::string cfg = dir.file("kanban.toml");
    writeFile(cfg, makeConfig(nats, {{"echo", plugin, "out = \"" + out + "\""}}));
    auto check = runCommand({kKanband, "--check-config", cfg});
    ASSERT_EQ(check.exit_code, 0) << check.err;

    Kanband kd(dir, cfg);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    EXPECT_THAT(kd.log(), HasSubstr("plugin loaded domain=echo plugin=echo version=0.1.0"));
    auto ids = publish(cfg, "echo", "normal", 5);
    ASSERT_TRUE(waitFor([&] { return readLines(out).size() == 5; }, 10s)) << kd.log();
    const auto handled = readLines(out);
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()), std::set<std::string>(handled.begin(), handled.end()));
}

}  // namespace
}  // namespace kanban::test
