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
    LocalDoneRecord r;
    ASSERT_TRUE(r.begin("x"));
    EXPECT_FALSE(r.begin("x")) << "a second worker may not run it concurrently";
    EXPECT_TRUE(r.begin("y"));
    r.end("x", /*done=*/false);  // failed: may run again, and is not done
    EXPECT_FALSE(r.contains("x"));
    ASSERT_TRUE(r.begin("x"));
    r.end("x", /*done=*/true);
    EXPECT_TRUE(r.contains("x")) << "done as soon as the run ends ok";
}

}  // namespace
}  // namespace kanban::host::worker
