// broker::JetStreamLeases (max_in_flight slots) against a real nats-server:
// every change is compare-and-set, so no slot ever has two holders.
#include "broker/jetstream_leases.hpp"

#include "support.hpp"

#include <gtest/gtest.h>

namespace kanban::host::broker {
namespace {

class Leases : public ::testing::Test {
protected:
    void SetUp() override {
        JetStreamOptions o;
        o.servers = {nats_.url()};
        o.keep_trying = false;
        auto js = JetStream::connect(o);
        ASSERT_TRUE(js.ok()) << js.message();
        js_ = std::move(*js);
        leases_ = std::make_unique<JetStreamLeases>(*js_);
    }
    kanban::test::NatsServer nats_;
    std::unique_ptr<JetStream> js_;
    std::unique_ptr<JetStreamLeases> leases_;
};

TEST_F(Leases, NSlotsAreHeldAtOnceAndAReleaseFreesOne) {
    std::vector<flow::Lease> held;
    for (int i = 0; i < 3; ++i) {
        auto got = leases_->acquire("d", 3, 60000);
        ASSERT_TRUE(got.ok()) << got.message();
        ASSERT_TRUE(got->has_value()) << "slot " << i;
        held.push_back(**got);
    }
    EXPECT_NE(held[0].key, held[1].key);
    EXPECT_NE(held[1].key, held[2].key);
    auto full = leases_->acquire("d", 3, 60000);
    ASSERT_TRUE(full.ok());
    EXPECT_FALSE(full->has_value()) << "a fourth holder of three slots";
    auto other = leases_->acquire("e", 1, 60000);
    ASSERT_TRUE(other.ok());
    EXPECT_TRUE(other->has_value()) << "domains have their own slots";
    leases_->release(held[1]);
    auto again = leases_->acquire("d", 3, 60000);
    ASSERT_TRUE(again.ok());
    ASSERT_TRUE(again->has_value());
    EXPECT_EQ((*again)->key, held[1].key);
}

// A holder that died frees its slot when its time runs out; its late
// release then does not free the new holder's slot.
TEST_F(Leases, AnExpiredSlotIsTakenOverAndTheOldHoldersReleaseLeavesItHeld) {
    auto first = leases_->acquire("d", 1, 1);  // held for 1 ms
    ASSERT_TRUE(first.ok() && first->has_value());
    flow::Lease old = **first;
    std::optional<flow::Lease> taken;
    ASSERT_TRUE(kanban::test::waitFor(
        [&] {
            auto got = leases_->acquire("d", 1, 60000);
            if (got.ok() && got->has_value()) taken = **got;
            return taken.has_value();
        },
        std::chrono::seconds(10)));
    leases_->release(old);  // too late: it no longer holds the slot
    auto third = leases_->acquire("d", 1, 60000);
    ASSERT_TRUE(third.ok());
    EXPECT_FALSE(third->has_value()) << "the old holder's release freed the new holder's slot";
    leases_->release(*taken);
    auto fourth = leases_->acquire("d", 1, 60000);
    ASSERT_TRUE(fourth.ok());
    EXPECT_TRUE(fourth->has_value());
}

TEST_F(Leases, NoServerIsAnErrorNotAFreeSlot) {
    nats_.stop();
    ASSERT_TRUE(kanban::test::waitFor([&] { return !js_->connected(); }, std::chrono::seconds(10)));
    auto got = leases_->acquire("d", 2, 60000);
    EXPECT_FALSE(got.ok());
}

}  // namespace
}  // namespace kanban::host::broker
