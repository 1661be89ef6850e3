// Hot reload on SIGHUP (docs/reliability.md F16, F17, F22, B15, B26): plugin
// generations swapped under load, refused reloads that change nothing,
// coalesced SIGHUP storms, and a soak that must not leak.
#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>

namespace kanban::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class Reload : public DaemonTest {
protected:
    // The domain's plugin lives at a path the test replaces.
    const std::string plugin = dir.file("orders.so");
    const std::string v1 = kFixtures + "/recorder.so";
    const std::string v2 = kFixtures + "/recorder_v2.so";

    // Installs `from` at the plugin path by rename (atomic) or by cp (in place).
    void install(const std::string& from, bool in_place) {
        if (in_place) {
            // cp truncates and rewrites the same inode, as an operator's `cp` does
            fs::copy_file(from, plugin, fs::copy_options::overwrite_existing);
        } else {
            fs::copy_file(from, plugin + ".new", fs::copy_options::overwrite_existing);
            fs::rename(plugin + ".new", plugin);
        }
    }

    double value(Kanband& kd, const std::string& sample) {
        return metric(kd.http("GET", "/metrics").body, sample).value_or(-1);
    }

    bool reloads(Kanband& kd, const std::string& result, double n) {
        return value(kd, R"(kanban_config_reloads_total{result=")" + result + "\"}") == n;
    }

    std::string version(Kanband& kd) {
        const std::string text = kd.http("GET", "/metrics").body;
        if (metric(text, R"(kanban_plugin_info{domain="orders",plugin="recorder",version="2.0.0"})")) return "2.0.0";
        if (metric(text, R"(kanban_plugin_info{domain="orders",plugin="recorder",version="1.0.0"})")) return "1.0.0";
        return "";
    }
};

// F16 and B15: under a steady flow, v1 -> v2 by rename, then back to v1 by
// cp over the file in place. Nothing lost, nothing handled twice; every
// item ran on one version, v2 items only after the first swap began.
TEST_F(Reload, PluginSwappedUnderLoadLosesNothing) {
    install(v1, false);
    HostOptions o;
    o.workers = 4;
    o.max_workers = 4;
    Kanband& kd = start({{"orders", plugin, recorderSettings(out, 1)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    Subprocess ctl({kKanbanctl, "--config", cfg, "publish", "--domain", "orders", "--priority", "normal", "--payload",
                    "x", "--count", "10000"},
                   dir.file("ctl.out"), dir.file("ctl.err"));
    ASSERT_TRUE(waitFor([&] { return readCalls(out).size() >= 2000; }, 30s)) << kd.log();

    install(v2, /*in_place=*/false);
    const auto before_swap = readCalls(out).size();
    kd.proc().signal(SIGHUP);
    ASSERT_TRUE(waitFor([&] { return reloads(kd, "success", 1); }, 10s)) << kd.log();
    EXPECT_EQ(version(kd), "2.0.0");
    const auto at_first_swap = readCalls(out).size();
    ASSERT_TRUE(waitFor([&] { return readCalls(out).size() >= at_first_swap + 2000; }, 30s)) << kd.log();

    install(v1, /*in_place=*/true);
    kd.proc().signal(SIGHUP);
    ASSERT_TRUE(waitFor([&] { return reloads(kd, "success", 2); }, 10s)) << kd.log();
    EXPECT_EQ(version(kd), "1.0.0");

    ASSERT_EQ(ctl.wait(60s), 0) << readFile(dir.file("ctl.err"));
    const auto ids = readLines(dir.file("ctl.out"));
    ASSERT_EQ(ids.size(), 10000u);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, ids); }, 60s)) << kd.log();
    const auto calls = readCalls(out);
    for (const auto& [id, n] : okCounts(calls)) EXPECT_EQ(n, 1) << id;
    std::map<std::string, int> by_version;
    for (const auto& c : calls) ++by_version[c.version];
    std::cout << "[ measured ] items per version: v1 " << by_version["1.0.0"] << ", v2 " << by_version["2.0.0"] << "\n";
    EXPECT_GT(by_version["2.0.0"], 0);
    EXPECT_EQ(by_version["1.0.0"] + by_version["2.0.0"], static_cast<int>(calls.size()));
    // Before the SIGHUP only v1 ran.
    for (std::size_t i = 0; i < before_swap; ++i) ASSERT_EQ(calls[i].version, "1.0.0") << "v2 ran before the reload, call " << i;
    EXPECT_TRUE(kd.logHas("plugin swapped domain=orders plugin=recorder version 1.0.0 -> 2.0.0"));
    EXPECT_TRUE(kd.logHas("plugin swapped domain=orders plugin=recorder version 2.0.0 -> 1.0.0"));
}

// F17 and B1/B6/B9/B11 at reload: broken TOML, a missing .so, a wrong-ABI
// .so, a create() that fails. Each is refused and counted, the old
// generation keeps serving, and a good reload then applies.
TEST_F(Reload, RefusedReloadsChangeNothing) {
    install(v1, false);
    Kanband& kd = start({{"orders", plugin, recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const std::string good = readFile(cfg);
    const std::string ctl_cfg = dir.file("ctl.toml");  // kanbanctl keeps a valid config
    writeFile(ctl_cfg, good);
    struct Bad {
        std::string what, config, log;
    };
    const std::vector<Bad> bad = {
        {"broken TOML", good + "\n[workers\n", cfg + ":"},
        {"missing .so", makeConfig(nats, {{"orders", dir.file("nosuch.so"), recorderSettings(out)}}), "nosuch.so"},
        {"wrong ABI", makeConfig(nats, {{"orders", kFixtures + "/abi_major_mismatch.so", ""}}), "ABI"},
        {"create() fails", makeConfig(nats, {{"orders", kFixtures + "/create_fails.so", ""}}), "create() failed"},
    };
    double failures = 0;
    for (const auto& b : bad) {
        writeFile(cfg, b.config);
        kd.proc().signal(SIGHUP);
        ++failures;
        ASSERT_TRUE(waitFor([&] { return reloads(kd, "failure", failures); }, 10s)) << b.what << "\n" << kd.log();
        EXPECT_EQ(value(kd, "kanban_config_last_reload_successful"), 0.0) << b.what;
        EXPECT_TRUE(kd.logHas("reload refused")) << b.what;
        EXPECT_TRUE(kd.logHas(b.log)) << b.what << ": the log does not name the problem";
        const auto ids = publish(ctl_cfg, "orders", "normal", 3);  // the old generation still serves
        ASSERT_TRUE(waitFor([&] { return allHandled(out, ids); }, 10s)) << b.what << "\n" << kd.log();
        for (const auto& c : readCalls(out)) EXPECT_EQ(c.version, "1.0.0");
    }
    EXPECT_THAT(kd.log(), ::testing::ContainsRegex(cfg + ":[0-9]+:[0-9]+: "));  // path:line:col
    writeFile(cfg, good);
    install(v2, false);
    kd.proc().signal(SIGHUP);
    ASSERT_TRUE(waitFor([&] { return reloads(kd, "success", 1); }, 10s)) << kd.log();
    EXPECT_EQ(value(kd, "kanban_config_last_reload_successful"), 1.0);
    EXPECT_EQ(version(kd), "2.0.0");
}

// Settings apply live, new domains start and removed ones drain and stop;
// a section that needs a restart is named in the log.
TEST_F(Reload, SettingsAndDomainsApplyLive) {
    install(v1, false);
    HostOptions o;
    o.max_attempts = 5;
    o.backoff_initial_ms = 50;
    o.backoff_max_ms = 50;
    o.health_interval_ms = 100;
    Kanband& kd = start({{"orders", plugin, recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const std::string extra_out = dir.file("extra.txt");
    const std::string ctl_cfg = dir.file("ctl.toml");  // kanbanctl knows both domains throughout
    writeFile(ctl_cfg, makeConfig(nats, {{"orders", plugin, recorderSettings(out)}, {"extra", v1, recorderSettings(extra_out)}}, o));

    HostOptions changed = o;
    changed.max_attempts = 2;                                           // [retry]
    changed.workers = 3;                                                // [workers], applied by the coordinator
    changed.failure_threshold = 2;                                      // [circuit_breaker] (1000 before)
    changed.open_ms = 600000;
    changed.extra_toml = "[[schedule]]\nname = \"added\"\ndomain = \"extra\"\nevery_ms = 100\n";  // a config job
    std::string next = makeConfig(nats, {{"orders", plugin, recorderSettings(out)}, {"extra", v1, recorderSettings(extra_out)}},
                                  changed);
    next.replace(next.find("[nats]\nservers = [\""), std::string("[nats]\nservers = [\"").size(),
                 "[nats]\nservers = [\"nats://127.0.0.1:1\", \"");  // needs a restart: logged, not applied
    writeFile(cfg, next);
    kd.proc().signal(SIGHUP);
    ASSERT_TRUE(waitFor([&] { return reloads(kd, "success", 1); }, 10s)) << kd.log();
    EXPECT_TRUE(kd.logHas("domain added domain=extra"));
    EXPECT_TRUE(kd.logHas("reload: [nats] needs a restart"));

    const auto extra = publish(ctl_cfg, "extra", "normal", 3);
    ASSERT_TRUE(waitFor([&] { return allHandled(extra_out, extra); }, 10s)) << kd.log();
    // The new config job runs on the new domain (after its canary).
    ASSERT_TRUE(waitFor([&] {
        for (const auto& c : readCalls(extra_out))
            if (c.id.rfind("sched:added:", 0) == 0) return true;
        return false;
    }, 10s)) << kd.log();
    // workers.min 2 -> 3 through the coordinator.
    ASSERT_TRUE(waitFor([&] {
        const auto h = nlohmann::json::parse(kd.http("GET", "/health").body);
        return h["domains"]["orders"]["workers"] == 3;
    }, 10s)) << kd.http("GET", "/health").body;
    // max_attempts 5 -> 2, and failure_threshold 2: its two failures open the breaker.
    const auto retried = publish(ctl_cfg, "orders", "normal", 1, "retry");
    ASSERT_TRUE(waitFor([&] { return kd.logHas("item dead-lettered domain=orders id=" + retried[0]); }, 10s)) << kd.log();
    EXPECT_EQ(callsFor(readCalls(out), retried[0]).size(), 2u) << "max_attempts 2 did not apply";
    EXPECT_TRUE(kd.logHas("circuit opened domain=orders: 2 consecutive failures")) << "failure_threshold 2 did not apply";

    HostOptions last = changed;
    last.extra_toml.clear();  // the job targets the domain that goes
    writeFile(cfg, makeConfig(nats, {{"orders", plugin, recorderSettings(out)}}, last));
    kd.proc().signal(SIGHUP);
    ASSERT_TRUE(waitFor([&] { return reloads(kd, "success", 2); }, 10s)) << kd.log();
    // (its workers retire off the control thread)
    EXPECT_TRUE(waitFor([&] { return kd.logHas("domain removed domain=extra"); }, 20s)) << kd.log();
    EXPECT_TRUE(kd.logHas("schedule removed job=added"));
    // [nats] was never applied: this file's [nats] is what runs, so there is
    // nothing to restart for (a reload that took the unapplied servers for
    // applied would warn here a second time).
    const std::string log = kd.log();
    std::size_t warnings = 0;
    for (auto at = log.find("reload: [nats] needs a restart"); at != std::string::npos;
         at = log.find("reload: [nats] needs a restart", at + 1))
        ++warnings;
    EXPECT_EQ(warnings, 1u) << log;
    const auto health = nlohmann::json::parse(kd.http("GET", "/health").body);
    EXPECT_FALSE(health["domains"].contains("extra"));
    const auto parked = publish(ctl_cfg, "extra", "normal", 2);
    // (a tick of the removed job published just before the reload may wait there too)
    ASSERT_TRUE(waitFor([&] { return value(kd, "kanban_orphaned_items") >= 2.0; }, 10s)) << kd.log();
    for (const auto& id : parked) EXPECT_TRUE(callsFor(readCalls(extra_out), id).empty()) << "a removed domain still handles items";
}

// Under systemd (Type=notify): READY at start, RELOADING then READY around a
// reload, STOPPING at SIGTERM, read from a NOTIFY_SOCKET of the test's own.
TEST_F(Reload, NotifiesSystemdAroundReloadsAndStop) {
    install(v1, false);
    const std::string path = dir.file("notify.sock");
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);  // this test process only; kanband inherits it
    Kanband& kd = start({{"orders", plugin, recorderSettings(out)}});
    ::unsetenv("NOTIFY_SOCKET");
    std::string seen;
    auto waitMessage = [&](const std::string& text) {
        return waitFor(
            [&] {
                char buf[512];
                const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n > 0) seen += std::string(buf, static_cast<std::size_t>(n)) + "|";
                return seen.find(text) != std::string::npos;
            },
            10s, 5ms);
    };
    EXPECT_TRUE(waitMessage("READY=1")) << seen;
    seen.clear();
    install(v2, false);
    kd.proc().signal(SIGHUP);
    EXPECT_TRUE(waitMessage("READY=1")) << seen;
    EXPECT_LT(seen.find("RELOADING=1"), seen.find("READY=1")) << seen;
    seen.clear();
    kd.proc().signal(SIGTERM);
    EXPECT_TRUE(waitMessage("STOPPING=1")) << seen;
    // The stop may take the longest handler timeout (10 s here) plus 15 s:
    // systemd is told so, whatever TimeoutStopSec says.
    EXPECT_NE(seen.find("EXTEND_TIMEOUT_USEC=25000000"), std::string::npos) << seen;
    EXPECT_NE(seen.find("STATUS=draining"), std::string::npos) << seen;
    EXPECT_EQ(kd.proc().wait(10s), 0);
    ::close(fd);
}

// B26: 50 SIGHUPs within a second are coalesced; the final config applies
// and the daemon keeps serving.
TEST_F(Reload, SighupStormIsCoalesced) {
    install(v1, false);
    Kanband& kd = start({{"orders", plugin, recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    install(v2, false);
    for (int i = 0; i < 50; ++i) kd.proc().signal(SIGHUP);
    ASSERT_TRUE(waitFor([&] { return version(kd) == "2.0.0"; }, 10s)) << kd.log();
    ASSERT_TRUE(waitFor([&] { return kd.logHas("reload done"); }, 5s));
    const double ok = value(kd, R"(kanban_config_reloads_total{result="success"})");
    std::cout << "[ measured ] 50 SIGHUPs ran " << ok << " reloads\n";
    EXPECT_GE(ok, 1);
    EXPECT_LE(ok, 50);
    EXPECT_EQ(value(kd, R"(kanban_config_reloads_total{result="failure"})"), 0.0);
    const auto ids = publish(cfg, "orders", "normal", 5);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, ids); }, 10s)) << kd.log();
    EXPECT_TRUE(kd.proc().running());
}

// F22: 200 reloads alternating v1 and v2. Open fds, threads and mapped
// plugin copies stay bounded; RSS growth is reported.
TEST_F(Reload, ReloadSoakDoesNotLeak) {
    install(v1, false);
    Kanband& kd = start({{"orders", plugin, recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const std::string proc = "/proc/" + std::to_string(kd.proc().pid());
    auto count = [](const std::string& d) {
        return std::distance(fs::directory_iterator(d), fs::directory_iterator{});
    };
    auto rssKb = [&] {
        for (const auto& line : readLines(proc + "/status"))
            if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
        return -1L;
    };
    auto mappedPlugins = [&] {  // the private copies the plugin generations were loaded from
        std::set<std::string> files;
        for (const auto& line : readLines(proc + "/maps")) {
            std::istringstream f(line);
            std::string field, path;
            for (int i = 0; i < 5; ++i) f >> field;
            f >> path;
            if (path.find("/kanband-orders-") != std::string::npos) files.insert(path);
        }
        return files.size();
    };
    // Warm up first: threads and buffers that appear on first use are not leaks.
    install(v2, false);
    kd.proc().signal(SIGHUP);
    ASSERT_TRUE(waitFor([&] { return reloads(kd, "success", 1); }, 10s)) << kd.log();
    const auto warm = publish(cfg, "orders", "normal", 5);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, warm); }, 10s)) << kd.log();
    const auto fds0 = count(proc + "/fd"), threads0 = count(proc + "/task");
    const auto rss0 = rssKb();
    const auto maps0 = mappedPlugins();
    for (int i = 1; i <= 200; ++i) {
        install(i % 2 == 1 ? v1 : v2, false);
        kd.proc().signal(SIGHUP);
        ASSERT_TRUE(waitFor([&] { return reloads(kd, "success", i + 1); }, 10s)) << "reload " << i << "\n" << kd.log();
    }
    const auto ids = publish(cfg, "orders", "normal", 5);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, ids); }, 10s)) << kd.log();
    const auto fds1 = count(proc + "/fd"), threads1 = count(proc + "/task");
    const auto rss1 = rssKb();
    const auto maps1 = mappedPlugins();
    std::cout << "[ measured ] 200 reloads: fds " << fds0 << " -> " << fds1 << ", threads " << threads0 << " -> "
              << threads1 << ", RSS " << rss0 << " -> " << rss1 << " kB, mapped plugin files " << maps0 << " -> "
              << maps1 << "\n";
    EXPECT_LE(fds1, fds0 + 2);
    EXPECT_LE(threads1, threads0 + 1);
    EXPECT_EQ(maps0, 1u);
    EXPECT_LE(maps1, maps0 + 1) << "old generations stay mapped";
    if (KANBAN_SANITIZED) {
        // ASan keeps freed memory in quarantine (and TSan its shadow): RSS says
        // nothing there. Their leak checks at exit cover that build instead.
        std::cout << "[ note ] sanitizer build: RSS not judged\n";
    } else {
        EXPECT_LT(rss1 - rss0, 20 * 1024) << "RSS grew by more than 20 MB";
    }
}

}  // namespace
}  // namespace kanban::test
