// The done log's local index and wire format (broker/done_index, done_log).
#include "broker/done_index.hpp"
#include "broker/done_log.hpp"
#include "common/base64.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

namespace kanban::host::broker {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr std::int64_t kDayMs = 24LL * 3600 * 1000;
constexpr std::int64_t kT0 = 1'800'000'000'000'000'000;  // ns

std::vector<std::uint64_t> hashes(const std::vector<std::string>& ids) {
    std::vector<std::uint64_t> out;
    for (const auto& id : ids) out.push_back(DoneIndex::hash(id));
    return out;
}

TEST(DoneIndex, NamesTheRecordsThatMayHoldAnIdAndNothingForOthers) {
    DoneIndex index(1000, kDayMs);
    index.add(1, kT0, hashes({"a", "b"}));
    index.add(2, kT0, {});  // an attempt record: counts as applied, holds nothing
    index.add(3, kT0, hashes({"c", "a"}));
    EXPECT_THAT(index.candidates(DoneIndex::hash("a")), ElementsAre(3u, 1u));
    EXPECT_THAT(index.candidates(DoneIndex::hash("b")), ElementsAre(1u));
    EXPECT_THAT(index.candidates(DoneIndex::hash("zzz")), IsEmpty());
    EXPECT_EQ(index.applied(), 3u);
    EXPECT_EQ(index.size(), 4u);
}

// Colliding hashes are all reported: the caller checks each record.
TEST(DoneIndex, EqualHashesFromDifferentRecordsAreAllCandidates) {
    DoneIndex index(1000, kDayMs);
    for (std::uint64_t seq = 1; seq <= 5; ++seq) index.add(seq, kT0, {42});
    index.add(6, kT0, {0});  // a hash of 0 is stored, not taken for "empty"
    EXPECT_THAT(index.candidates(42), ElementsAre(5u, 4u, 3u, 2u, 1u));
    EXPECT_THAT(index.candidates(0), ElementsAre(6u));
}

TEST(DoneIndex, AFullIndexForgetsItsOldestGenerationAndSaysFromWhere) {
    const std::size_t max_ids = 8 * DoneIndex::kGenerations;  // 8 ids a generation
    DoneIndex index(max_ids, kDayMs);
    std::uint64_t seq = 0;
    for (int i = 0; i < static_cast<int>(max_ids); ++i) index.add(++seq, kT0, hashes({"id-" + std::to_string(i)}));
    EXPECT_EQ(index.forgottenBelow(), 0u);
    EXPECT_EQ(index.size(), max_ids);
    index.add(++seq, kT0, hashes({"one more"}));
    EXPECT_EQ(index.size(), max_ids - 8 + 1);
    EXPECT_EQ(index.forgottenBelow(), 9u) << "records 1-8 went";
    EXPECT_THAT(index.candidates(DoneIndex::hash("id-0")), IsEmpty());
    EXPECT_THAT(index.candidates(DoneIndex::hash("id-8")), ElementsAre(9u));
    EXPECT_THAT(index.candidates(DoneIndex::hash("one more")), ElementsAre(seq));
}

// Records past the bucket's TTL expired on the server too: dropping them
// forgets nothing.
TEST(DoneIndex, GenerationsPastTheTtlExpireWithoutBeingForgotten) {
    DoneIndex index(16 * DoneIndex::kGenerations, /*ttl_ms=*/1000);
    index.add(1, kT0, hashes({"old"}));
    for (int i = 0; i < 16; ++i) index.add(2 + i, kT0, hashes({"x" + std::to_string(i)}));  // fills generation 1
    index.add(100, kT0 + 2'000'000'000LL, hashes({"new"}));
    EXPECT_THAT(index.candidates(DoneIndex::hash("old")), IsEmpty());
    EXPECT_THAT(index.candidates(DoneIndex::hash("new")), ElementsAre(100u));
    EXPECT_EQ(index.forgottenBelow(), 0u);
}

TEST(DoneIndex, WaitAppliedReturnsWhenTheMirrorGetsThereOrTimesOut) {
    DoneIndex index(1000, kDayMs);
    EXPECT_FALSE(index.waitApplied(1, std::chrono::milliseconds(10)));
    std::thread mirror([&] {
        for (std::uint64_t seq = 1; seq <= 50; ++seq) index.add(seq, kT0, {seq});
    });
    EXPECT_TRUE(index.waitApplied(50, std::chrono::seconds(30)));
    mirror.join();
    index.clear();
    EXPECT_EQ(index.applied(), 0u);
    EXPECT_THAT(index.candidates(7), IsEmpty());
}

TEST(DoneLog, IdsOfAnyBytesRoundTripAndDamageIsReported) {
    const std::vector<std::string> ids{"work_1", std::string("bin\0\xff\n id", 9), "", std::string(256, 'z')};
    std::string body;
    for (const auto& id : ids) appendDoneId(body, id);
    std::vector<std::string> back;
    EXPECT_TRUE(forEachDoneId(body, [&](std::string_view id) { back.emplace_back(id); }));
    EXPECT_EQ(back, ids);
    back.clear();
    EXPECT_FALSE(forEachDoneId(std::string_view(body).substr(0, body.size() - 1),
                               [&](std::string_view id) { back.emplace_back(id); }));
    EXPECT_EQ(back.size(), 3u) << "the ids before the damage are still read";
}

TEST(DoneLog, SubjectsOfTheBucketAreTold) {
    EXPECT_EQ(doneLogSubject("KANBAN_DONE", "w1", 7), "$KV.KANBAN_DONE.log.w1.7");
    EXPECT_EQ(classifyDoneSubject("log.w1.7").kind, DoneSubject::Kind::log);
    const DoneSubject old = classifyDoneSubject(base64("a.b id", /*url_safe=*/true));
    EXPECT_EQ(old.kind, DoneSubject::Kind::key) << "a record of an older host: one key per id";
    EXPECT_EQ(old.id, "a.b id");
    EXPECT_EQ(classifyDoneSubject("attempts." + base64("x", true)).kind, DoneSubject::Kind::other);
    EXPECT_EQ(classifyDoneSubject("").kind, DoneSubject::Kind::other);
}

}  // namespace
}  // namespace kanban::host::broker
