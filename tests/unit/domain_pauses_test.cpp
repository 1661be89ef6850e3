// pause::DomainPauses against a fake store: what it applies, and that a
// store it cannot read changes nothing.
#include "pause/domain_pauses.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace kanban::host::pause {
namespace {

class FakeStore final : public PauseStore {
public:
    bool available() const override { return up; }
    Result<Paused> paused() override {
        if (!readable) return Error{"cannot read"};
        if (during_read) during_read();
        return state;
    }
    Result<bool> set(const std::string& domain, bool p, std::int64_t now) override {
        if (!writable) return Error{"cannot write"};
        const bool had = state.count(domain) != 0;
        if (p)
            state.emplace(domain, now);
        else
            state.erase(domain);
        return had != p;
    }

    Paused state;
    bool up = true, readable = true, writable = true;
    std::function<void()> during_read;
};

struct Applied {
    std::vector<std::pair<std::string, bool>> changes;
    DomainPauses::Apply fn() {
        return [this](const std::string& d, bool p) { changes.emplace_back(d, p); };
    }
};

TEST(DomainPauses, SyncAppliesOnlyWhatChanged) {
    FakeStore store;
    Applied applied;
    DomainPauses pauses(store, applied.fn());
    store.state = {{"a", 1}, {"b", 2}};
    ASSERT_TRUE(pauses.sync());
    EXPECT_TRUE(pauses.paused("a"));
    EXPECT_EQ(pauses.pausedSince("b"), 2);
    EXPECT_FALSE(pauses.paused("c"));
    ASSERT_TRUE(pauses.sync());  // the same state: nothing applied again
    store.state = {{"b", 2}, {"c", 3}};
    ASSERT_TRUE(pauses.sync());
    const std::vector<std::pair<std::string, bool>> expected{{"a", true}, {"b", true}, {"c", true}, {"a", false}};
    EXPECT_EQ(applied.changes, expected);
}

TEST(DomainPauses, AStoreThatCannotAnswerKeepsTheLastKnownState) {
    FakeStore store;
    Applied applied;
    DomainPauses pauses(store, applied.fn());
    store.state = {{"a", 1}};
    ASSERT_TRUE(pauses.sync());
    store.readable = false;
    store.state.clear();
    EXPECT_FALSE(pauses.sync());
    EXPECT_TRUE(pauses.paused("a"));
    store.up = false;
    EXPECT_FALSE(pauses.sync());
    auto refused = pauses.set("b", true);
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.message().find("not reachable"), std::string::npos);
    store.up = true;
    store.writable = false;
    EXPECT_FALSE(pauses.set("b", true));
    EXPECT_FALSE(pauses.paused("b")) << "a pause the store did not keep is not applied";
    EXPECT_EQ(applied.changes.size(), 1U);
}

TEST(DomainPauses, SetAppliesAtOnceAndSaysWhetherItChangedAnything) {
    FakeStore store;
    Applied applied;
    DomainPauses pauses(store, applied.fn());
    auto first = pauses.set("a", true);
    ASSERT_TRUE(first);
    EXPECT_TRUE(*first);
    EXPECT_TRUE(pauses.paused("a"));
    auto again = pauses.set("a", true);
    ASSERT_TRUE(again);
    EXPECT_FALSE(*again);
    ASSERT_TRUE(pauses.set("a", false));
    EXPECT_FALSE(pauses.paused("a"));
    const std::vector<std::pair<std::string, bool>> expected{{"a", true}, {"a", false}};
    EXPECT_EQ(applied.changes, expected);
}

// A tick that read the store before a pause was set must not undo it.
TEST(DomainPauses, ASyncThatReadBeforeASetDoesNotUndoIt) {
    FakeStore store;
    Applied applied;
    DomainPauses pauses(store, applied.fn());
    store.during_read = [&] {
        store.during_read = nullptr;
        Paused before = store.state;  // what this read returns
        ASSERT_TRUE(pauses.set("a", true));
        store.state = before;  // the read's answer predates the set
    };
    ASSERT_TRUE(pauses.sync());
    EXPECT_TRUE(pauses.paused("a"));
}

}  // namespace
}  // namespace kanban::host::pause
