// The attempt bookkeeping's pure parts: the shared record's encoding, the
// in-flight journal a crashed process leaves behind, and the state
// directory's lock.
#include "broker/attempt_record.hpp"
#include "worker/attempt_ledger.hpp"
#include "worker/inflight_journal.hpp"

#include "support.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kanban::host {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(AttemptRecord, RoundTripsEveryField) {
    const broker::AttemptRecord r{3, true, "handler_crashed", "tabs\tand\nnewlines stay in the reason"};
    const auto back = broker::decodeAttemptRecord(broker::encodeAttemptRecord(r));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, r);
}

TEST(AttemptRecord, RefusesWhatItDidNotWrite) {
    for (const char* bad : {"", "x\t0\tl\tr", "3", "3\t2\tl\tr", "3\t0\tno-reason-field", "-1\t0\tl\tr"})
        EXPECT_FALSE(broker::decodeAttemptRecord(bad)) << bad;
}

TEST(AttemptRecord, KeysStayWithinTheBucketsAlphabet) {
    const std::string key = broker::attemptKey("ids/with spaces.and\xff bytes");
    EXPECT_EQ(key.rfind("attempts.", 0), 0u);
    for (char c : key.substr(9)) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << key;
}

TEST(AttemptLedger, KeepsTheNewestRecordsWithinItsCapacity) {
    worker::AttemptLedger ledger(2);
    ledger.put("a", {1, false, "retries_exhausted", ""});
    ledger.put("b", {1, false, "retries_exhausted", ""});
    ledger.put("a", {2, false, "retries_exhausted", ""});  // an update, not a new entry
    EXPECT_EQ(ledger.find("a")->calls, 2u);
    ledger.put("c", {1, false, "retries_exhausted", ""});
    EXPECT_FALSE(ledger.find("a"));  // the oldest went
    EXPECT_TRUE(ledger.find("b") && ledger.find("c"));
    ledger.erase("b");
    EXPECT_FALSE(ledger.find("b"));
}

// What a process that died in a handler leaves, the next one reads once.
TEST(InflightJournal, TheNextProcessFindsTheCallsThatNeverReturned) {
    test::TempDir dir;
    {
        auto state = worker::StateDir::open(dir.file("state"));
        ASSERT_TRUE(state) << state.message();
        auto orders = worker::InflightJournal::open(**state, "orders", 4);
        auto mail = worker::InflightJournal::open(**state, "mail", 2);
        ASSERT_TRUE(orders && mail);
        (*orders)->begin(0, "finished", 1);
        (*orders)->end(0);
        (*orders)->begin(2, "crasher", 3);   // never ends: the process "dies" here
        (*mail)->begin(1, "hung", 2);
        (*mail)->abandon(1);
    }
    auto state = worker::StateDir::open(dir.file("state"));
    ASSERT_TRUE(state) << state.message();
    auto found = (*state)->recover();
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    ASSERT_EQ(found.size(), 2u);
    EXPECT_EQ(found[0].domain, "orders");
    EXPECT_EQ(found[0].id, "crasher");
    EXPECT_EQ(found[0].attempt, 3u);
    EXPECT_FALSE(found[0].abandoned);
    EXPECT_EQ(found[1].domain, "mail");
    EXPECT_EQ(found[1].id, "hung");
    EXPECT_TRUE(found[1].abandoned);
    EXPECT_THAT((*state)->recover(), IsEmpty()) << "charged once, not at every start";
}

TEST(StateDir, IsHeldByOneProcessAtATime) {
    test::TempDir dir;
    auto first = worker::StateDir::open(dir.file("state"));
    ASSERT_TRUE(first) << first.message();
    auto second = worker::StateDir::open(dir.file("state"));
    ASSERT_FALSE(second);
    EXPECT_THAT(second.message(), HasSubstr("in use by another kanband"));
    first->reset();
    EXPECT_TRUE(worker::StateDir::open(dir.file("state")));
}

}  // namespace
}  // namespace kanban::host
