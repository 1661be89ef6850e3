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

TEST(Echo, RefusesSettingsWithoutAnOutputFile) {
    EXPECT_THROW(kanban::testing::TestHost<echo::Echo>(R"({})"), std::runtime_error);
}

}  // namespace
