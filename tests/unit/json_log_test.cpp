// [log] format = "json": each line one JSON object with the fields a log
// shipper indexes, lifted from the message's key=value words.
#include "log/json_formatter.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/details/log_msg.h>

namespace {

using kanban::host::log::JsonFormatter;

nlohmann::json formatted(JsonFormatter& f, spdlog::level::level_enum level, std::string_view text) {
    spdlog::details::log_msg msg(spdlog::source_loc{}, "kanband", level, spdlog::string_view_t(text.data(), text.size()));
    spdlog::memory_buf_t buf;
    f.format(msg, buf);
    const std::string line(buf.data(), buf.size());
    EXPECT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line per record";
    return nlohmann::json::parse(line);
}

TEST(JsonLog, HasTimeLevelMessageAndTheItemFieldsOfItsMessage) {
    JsonFormatter f;
    const auto j = formatted(f, spdlog::level::warn, "retrying domain=payment id=order-7 attempt=2: timeout after 30000 ms");
    EXPECT_EQ(j["level"], "warning");
    EXPECT_EQ(j["message"], "retrying domain=payment id=order-7 attempt=2: timeout after 30000 ms");
    EXPECT_EQ(j["domain"], "payment");
    EXPECT_EQ(j["id"], "order-7");
    EXPECT_EQ(j["attempt"], 2);  // a number
    const std::string time = j["time"];
    ASSERT_EQ(time.size(), 24u) << time;  // 2026-12-05T18:30:00.123Z
    EXPECT_EQ(time[10], 'T');
    EXPECT_EQ(time.back(), 'Z');
}

TEST(JsonLog, AMessageWithoutFieldsHasNone) {
    JsonFormatter f;
    const auto j = formatted(f, spdlog::level::info, "admin: listening on 127.0.0.1:9090");
    EXPECT_EQ(j.size(), 3u) << j.dump();
    EXPECT_FALSE(j.contains("domain"));
}

TEST(JsonLog, QuotesNewlinesAndInvalidUtf8StayOneValidLine) {
    JsonFormatter f;
    const auto j = formatted(f, spdlog::level::err, "plugin said \"no\"\nthen \xff\xfe id=a\xffz");
    EXPECT_EQ(j["level"], "error");
    EXPECT_NE(j["message"].get<std::string>().find("\"no\"\nthen"), std::string::npos);
    EXPECT_NE(j["id"].get<std::string>().find("\xEF\xBF\xBD"), std::string::npos) << "replaced, not dropped";
}

TEST(JsonLog, FixedFieldsWinOverTheMessage) {
    JsonFormatter f({{"domain", "payment"}, {"runner_pid", "42"}});
    const auto j = formatted(f, spdlog::level::info, "item done domain=other id=x attempt=z");
    EXPECT_EQ(j["domain"], "payment");
    EXPECT_EQ(j["runner_pid"], "42");
    EXPECT_EQ(j["attempt"], "z");  // not a number: kept as text
}

TEST(JsonLog, LevelNamesAreTheConfigs) {
    using kanban::host::log::levelFrom;
    using kanban::host::log::levelName;
    for (const char* l : {"trace", "debug", "info", "warning", "error"}) EXPECT_EQ(levelName(levelFrom(l)), l);
}

}  // namespace
