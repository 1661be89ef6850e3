// The host <-> runner channel's encoding (runner/channel.hpp): a batch
// survives the trip byte for byte, ids arrive NUL-terminated, and frames
// split across reads are put back together.
#include "runner/channel.hpp"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

namespace kanban::host::runner {
namespace {

TEST(RunnerChannel, ABatchRoundTripsWithNulTerminatedIds) {
    const std::string binary("a\0b\xff", 4);
    std::vector<WireItem> items{{"id-1", "{}", 0, 1, 123, {}}, {"id-2", binary, 2, 7, -5, {}}, {"", "", 1, 1, 0, {}}};
    const BatchHeader h{30000, 1 << 20, 50};
    const std::string body = encodeBatch(h, items);
    BatchHeader back;
    auto decoded = decodeBatch(body, back);
    ASSERT_TRUE(decoded.ok()) << decoded.message();
    EXPECT_EQ(back.timeout_ms, 30000);
    EXPECT_EQ(back.memory_max_kib, 1 << 20);
    EXPECT_EQ(back.recycle_after_items, 50);
    ASSERT_EQ(decoded->size(), 3u);
    for (std::size_t i = 0; i < items.size(); ++i) {
        EXPECT_EQ((*decoded)[i].id, items[i].id);
        EXPECT_EQ((*decoded)[i].id.data()[items[i].id.size()], '\0') << "kanban_work_item.id is NUL-terminated";
        EXPECT_EQ((*decoded)[i].payload, items[i].payload);
        EXPECT_EQ((*decoded)[i].priority, items[i].priority);
        EXPECT_EQ((*decoded)[i].attempt, items[i].attempt);
        EXPECT_EQ((*decoded)[i].deadline_unix_ms, items[i].deadline_unix_ms);
    }
}

TEST(RunnerChannel, HeadersAndFollowUpsRoundTrip) {
    std::vector<WireItem> items{{"id-1", "{}", 0, 1, 123, {{"X-Tenant", "acme"}, {"X-Tenant", "b"}}}};
    BatchHeader back;
    auto decoded = decodeBatch(encodeBatch({}, items), back);
    ASSERT_TRUE(decoded.ok()) << decoded.message();
    EXPECT_EQ((*decoded)[0].headers, items[0].headers);

    std::vector<plugin::FollowUp> f(2);
    f[0] = {"p/1", "email", std::string("x\0y", 3), std::nullopt, {{"K", "V"}}, 0};
    f[1] = {"p/key", "billing", "", KANBAN_PRIORITY_LOW, {}, 1500};
    auto got = decodeFollowUps(encodeFollowUps(7, f));
    ASSERT_TRUE(got.ok()) << got.message();
    EXPECT_EQ(got->first, 7u);
    ASSERT_EQ(got->second.size(), 2u);
    EXPECT_EQ(got->second[0].payload, f[0].payload);
    EXPECT_EQ(got->second[0].headers, f[0].headers);
    EXPECT_FALSE(got->second[0].priority);
    EXPECT_EQ(got->second[1].priority, KANBAN_PRIORITY_LOW);
    EXPECT_EQ(got->second[1].delay_ms, 1500);
    EXPECT_EQ(got->second[1].id, "p/key");
    const std::string body = encodeFollowUps(7, f);
    EXPECT_FALSE(decodeFollowUps(std::string_view(body).substr(0, body.size() - 3)).ok()) << "truncated";
}

TEST(RunnerChannel, TruncatedOrOversizedBatchesAreRejected) {
    std::vector<WireItem> items{{"id-1", "payload", 1, 1, 1, {}}};
    const std::string body = encodeBatch({}, items);
    BatchHeader h;
    for (std::size_t cut = 0; cut < body.size(); ++cut) EXPECT_FALSE(decodeBatch(body.substr(0, cut), h).ok()) << cut;
    std::string too_many = body;
    const std::uint64_t n = kMaxBatch + 1;
    std::memcpy(too_many.data() + 24, &n, sizeof n);
    EXPECT_FALSE(decodeBatch(too_many, h).ok());
}

TEST(RunnerChannel, FramesSplitAcrossWritesAreReassembled) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    const std::string big(300000, 'x');
    const std::string bytes = frame(FrameType::batch, big) + frame(FrameType::batch_done, {});
    std::thread writer([&] {
        for (std::size_t off = 0; off < bytes.size(); off += 7777)
            ASSERT_TRUE(writeAll(sv[1], std::string_view(bytes).substr(off, 7777)).ok());
        ::close(sv[1]);
    });
    FrameReader reader(sv[0]);
    auto first = reader.next();
    ASSERT_TRUE(first.ok()) << first.message();
    EXPECT_EQ(first->first, FrameType::batch);
    EXPECT_EQ(first->second, big);
    auto second = reader.next();
    ASSERT_TRUE(second.ok());
    EXPECT_EQ(second->first, FrameType::batch_done);
    EXPECT_TRUE(second->second.empty());
    EXPECT_FALSE(reader.next().ok()) << "EOF is an error: the other end is gone";
    writer.join();
    ::close(sv[0]);
}

}  // namespace
}  // namespace kanban::host::runner
