// The local idempotency record: bounded, and it knows which ids run now.
#include "worker/local_done_record.hpp"

#include <gtest/gtest.h>

namespace kanban::host::worker {
namespace {

TEST(LocalDoneRecord, ForgetsTheOldestIdsFirst) {
    LocalDoneRecord r(2);
    r.insert("a");
    r.insert("b");
    r.insert("c");
    EXPECT_FALSE(r.contains("a"));
    EXPECT_TRUE(r.contains("b"));
    EXPECT_TRUE(r.contains("c"));
    EXPECT_EQ(r.size(), 2u);
}

TEST(LocalDoneRecord, AnIdRunsOnOneWorkerAtATime) {
    using Claim = LocalDoneRecord::Claim;
    LocalDoneRecord r;
    ASSERT_EQ(r.begin("x"), Claim::claimed);
    EXPECT_EQ(r.begin("x"), Claim::running) << "a second worker may not run it concurrently";
    EXPECT_EQ(r.begin("y"), Claim::claimed);
    r.end("x", /*done=*/false);  // failed: may run again, and is not done
    EXPECT_FALSE(r.contains("x"));
    ASSERT_EQ(r.begin("x"), Claim::claimed);
    r.end("x", /*done=*/true);
    EXPECT_TRUE(r.contains("x")) << "done as soon as the run ends ok";
}

// F5's double run: a copy checked "not done" at the start of its batch, the
// other copy's run ended ok meanwhile; the claim must say done, not run it.
TEST(LocalDoneRecord, ACopyThatFinishedMeanwhileIsDoneNotClaimed) {
    using Claim = LocalDoneRecord::Claim;
    LocalDoneRecord r;
    ASSERT_EQ(r.begin("x"), Claim::claimed);  // worker 1 runs copy 1
    EXPECT_FALSE(r.contains("x"));           // worker 2's batch check for copy 2
    r.end("x", /*done=*/true);               // copy 1 ends ok
    EXPECT_EQ(r.begin("x"), Claim::done) << "copy 2 would run a second time";
}

}  // namespace
}  // namespace kanban::host::worker
