// The echo handler's own test: a plain GoogleTest with the SDK's fake host
// (kanban/testing.hpp), no kanband and no broker.
#include "echo.hpp"

#include <kanban/testing.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

namespace {

std::string tempFile() {
    char path[] = "/tmp/echo-test-XXXXXX";
    const int fd = ::mkstemp(path);
    if (fd >= 0) ::close(fd);
    return path;
}

TEST(Echo, WritesEachIdOnItsOwnLine) {
    const std::string out = tempFile();
    {
        kanban::testing::TestHost<echo::Echo> host(R"({"out": ")" + out + R"("})");
        ASSERT_EQ(host.hostLogs().size(), 1u);
        EXPECT_EQ(host.hostLogs()[0].message, "echo plugin ready");
        EXPECT_TRUE(host.handle({.id = "order-1"}).ok());
        EXPECT_TRUE(host.handle({.id = "order-2", .attempt = 2}).ok());
    }
    std::ifstream in(out);
    std::string a, b, rest;
    std::getline(in, a);
    std::getline(in, b);
    EXPECT_EQ(a, "order-1");
    EXPECT_EQ(b, "order-2");
    EXPECT_FALSE(std::getline(in, rest));
    std::remove(out.c_str());
}

TEST(Echo, WritesTheTenantAndForwardsWhereTheHeaderSays) {
    const std::string out = tempFile();
    {
        kanban::testing::TestHost<echo::Echo> host(R"({"out": ")" + out + R"("})");
        host.setDomains({"audit"});
        const auto done = host.handle({.id = "order-3", .payload = "{}",
                                       .headers = {{"X-Tenant", "acme"}, {"X-Forward-To", "audit"}}});
        ASSERT_TRUE(done.ok()) << done.reason;
        ASSERT_EQ(done.follow_ups.size(), 1u);
        EXPECT_EQ(done.follow_ups[0].id, "order-3/1");
        EXPECT_EQ(done.follow_ups[0].domain, "audit");
        EXPECT_EQ(done.follow_ups[0].payload, "{}");
        ASSERT_EQ(done.follow_ups[0].headers.size(), 1u);
        EXPECT_EQ(done.follow_ups[0].headers[0].second, "acme");
        const auto refused = host.handle({.id = "order-4", .headers = {{"X-Forward-To", "nowhere"}}});
        EXPECT_EQ(refused.status, kanban::Result::Status::retry);
        EXPECT_TRUE(refused.follow_ups.empty());
    }
    std::ifstream in(out);
    std::string line, rest;
    std::getline(in, line);
    EXPECT_EQ(line, "order-3 acme");
    EXPECT_FALSE(std::getline(in, rest)) << "order-4 was not done";
    std::remove(out.c_str());
}

TEST(Echo, RefusesSettingsWithoutAnOutputFile) {
    EXPECT_THROW(kanban::testing::TestHost<echo::Echo>(R"({})"), std::runtime_error);
}

}  // namespace
