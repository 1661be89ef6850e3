// The operator's console (GET /) as a browser renders it: Debian's chromium,
// headless, against a kanband on a real nats-server. The rendered DOM must
// show the domains with their live counts and a dead letter; a screenshot is
// kept in <build>/test-artifacts/console.png for people to look at.
#include "harness.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <regex>

using namespace kanban::test;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

const std::string kChromium = "/usr/bin/chromium";

class Console : public DaemonTest {
protected:
    // chromium --headless: the DOM after the page's scripts ran (virtual
    // time lets its fetches finish), or a screenshot.
    CommandResult chromium(const std::string& url, const std::vector<std::string>& what) {
        std::vector<std::string> argv{kChromium,
                                      "--headless=new",
                                      "--no-sandbox",  // the tests run as root
                                      "--disable-gpu",
                                      "--disable-dev-shm-usage",
                                      "--no-first-run",
                                      "--user-data-dir=" + dir.file("chromium"),
                                      "--window-size=1500,620",
                                      "--virtual-time-budget=10000"};
        argv.insert(argv.end(), what.begin(), what.end());
        argv.push_back(url);
        return runCommand(argv, 90s);
    }

    // The text of the cell `field` in the row of `domain` ("" if absent).
    static std::string field(const std::string& dom, const std::string& domain, const std::string& name) {
        const auto row = dom.find("data-domain=\"" + domain + "\"");
        if (row == std::string::npos) return "";
        const auto end = dom.find("</tr>", row);
        const std::string tr = dom.substr(row, end - row);
        std::smatch m;
        if (!std::regex_search(tr, m, std::regex("data-field=\"" + name + "\">([^<]*)<"))) return "";
        return m[1];
    }
};

TEST_F(Console, ChromiumRendersTheDomainsTheirLiveCountsAndADeadLetter) {
    if (::access(kChromium.c_str(), X_OK) != 0) GTEST_SKIP() << "chromium is not installed (scripts/install-deps.sh)";
    HostOptions o;
    o.health_interval_ms = 200;  // dead-letter counts come from the coordinator's tick
    o.extra_toml = "[[schedule]]\nname = \"nightly\"\ndomain = \"orders\"\ncron = \"0 3 * * *\"\n";
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)},
                         {"billing", kFixtures + "/recorder.so", recorderSettings(dir.file("billing.txt"))}},
                        o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    const auto ids = publish(cfg, "orders", "normal", 3);
    ASSERT_EQ(ids.size(), 3u);
    ASSERT_TRUE(waitFor([&] { return allHandled(out, ids); }, 30s));
    auto bad = runCommand({kKanbanctl, "--config", cfg, "publish", "--domain", "orders", "--priority", "high",
                           "--payload", "fail", "--id", "bad-order-1"});
    ASSERT_EQ(bad.exit_code, 0) << bad.err;
    ASSERT_TRUE(waitFor(
        [&] {
            auto h = nlohmann::json::parse(kd.http("GET", "/health").body, nullptr, false);
            return h.is_object() && h["domains"]["orders"]["dead_letters"] == 1;
        },
        30s))
        << kd.http("GET", "/health").body;

    const std::string url = "http://" + kd.admin() + "/";
    auto dom = chromium(url, {"--dump-dom"});
    ASSERT_EQ(dom.exit_code, 0) << dom.err;
    EXPECT_THAT(dom.out, HasSubstr("data-loaded=\"true\"")) << dom.out;
    // The domains, their live counts, the schedule and the dead letter.
    EXPECT_EQ(field(dom.out, "orders", "processed-ok"), "3") << dom.out;
    EXPECT_EQ(field(dom.out, "orders", "processed-fail"), "1");
    EXPECT_EQ(field(dom.out, "orders", "dead-letters"), "1");
    EXPECT_EQ(field(dom.out, "orders", "circuit"), "closed");
    EXPECT_EQ(field(dom.out, "billing", "processed-ok"), "0");
    EXPECT_THAT(dom.out, HasSubstr("data-job=\"nightly\""));
    EXPECT_THAT(dom.out, HasSubstr("data-id=\"bad-order-1\""));
    EXPECT_THAT(dom.out, HasSubstr("asked to fail"));
    EXPECT_THAT(dom.out, HasSubstr(">replay</button>"));
    EXPECT_THAT(dom.out, HasSubstr(">purge</button>"));

    // A screenshot for people (docs/console.png is one of these).
    std::filesystem::create_directories(KANBAN_ARTIFACT_DIR);
    const std::string png = std::string(KANBAN_ARTIFACT_DIR) + "/console.png";
    std::filesystem::remove(png);
    auto shot = chromium(url, {"--screenshot=" + png, "--hide-scrollbars"});
    ASSERT_EQ(shot.exit_code, 0) << shot.err;
    struct stat st {};
    ASSERT_EQ(::stat(png.c_str(), &st), 0) << shot.err;
    EXPECT_GT(st.st_size, 10000) << "an empty screenshot";
}

// With a token, the page itself loads, reads nothing without the token, and
// asks for it.
TEST_F(Console, WithATokenThePageAsksForItAndShowsNoData) {
    if (::access(kChromium.c_str(), X_OK) != 0) GTEST_SKIP() << "chromium is not installed (scripts/install-deps.sh)";
    const std::string token_file = dir.file("token");
    writeFile(token_file, "console-secret\n");
    ::chmod(token_file.c_str(), 0600);
    HostOptions o;
    o.token_file = token_file;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    auto dom = chromium("http://" + kd.admin() + "/", {"--dump-dom"});
    ASSERT_EQ(dom.exit_code, 0) << dom.err;
    EXPECT_THAT(dom.out, HasSubstr("admin token required"));
    EXPECT_THAT(dom.out, HasSubstr("id=\"login\" style=\"display: block;\""));
    EXPECT_THAT(dom.out, ::testing::Not(HasSubstr("data-domain=\"orders\"")));
}

}  // namespace
