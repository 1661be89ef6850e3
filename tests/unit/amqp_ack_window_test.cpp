// The acks of a batch as one multiple basic.ack (broker/amqp_ack_window).
#include "broker/amqp_ack_window.hpp"

#include <gtest/gtest.h>

namespace kanban::host::broker::amqp {
namespace {

AckWindow deliveredOneTo(std::uint64_t n) {
    AckWindow w;
    for (std::uint64_t t = 1; t <= n; ++t) w.delivered(t);
    return w;
}

TEST(AckWindow, ABatchAckedInAnyOrderGoesOutAsOneMultipleAck) {
    AckWindow w = deliveredOneTo(5);
    for (std::uint64_t t : {3, 1, 5, 2, 4}) w.ack(t);
    EXPECT_EQ(w.open(), 0u);
    const auto a = w.take();
    EXPECT_EQ(a.multiple_upto, 5u);
    EXPECT_TRUE(a.single.empty());
    EXPECT_TRUE(w.take().empty()) << "sent acks are forgotten";
}

TEST(AckWindow, AMultipleAckNeverCoversADeliveryStillInAHandler) {
    AckWindow w = deliveredOneTo(5);
    for (std::uint64_t t : {1, 2, 4, 5}) w.ack(t);
    EXPECT_EQ(w.open(), 1u);
    const auto a = w.take();
    EXPECT_EQ(a.multiple_upto, 2u);
    EXPECT_EQ(a.single, (std::vector<std::uint64_t>{4, 5})) << "acks behind the open one go one by one";
    w.ack(3);
    const auto b = w.take();
    EXPECT_EQ(b.multiple_upto, 3u);
    EXPECT_TRUE(b.single.empty());
}

TEST(AckWindow, ARejectedDeliveryIsSkippedButNeverNamed) {
    AckWindow w = deliveredOneTo(4);
    w.ack(1);
    w.ack(2);
    w.settled(3);  // rejected: the broker no longer counts it
    w.settled(4);
    const auto a = w.take();
    EXPECT_EQ(a.multiple_upto, 2u) << "the broker refuses a multiple ack naming a tag it no longer holds";
    EXPECT_TRUE(a.single.empty());
    EXPECT_EQ(w.open(), 0u);

    AckWindow only_rejected = deliveredOneTo(2);
    only_rejected.settled(1);
    only_rejected.settled(2);
    EXPECT_TRUE(only_rejected.take().empty());
}

TEST(AckWindow, NothingIsSentTwiceAndUnknownTagsAreIgnored) {
    AckWindow w = deliveredOneTo(3);
    w.ack(2);
    w.ack(2);
    w.ack(9);
    w.settled(2);  // already acked: stays an ack
    const auto a = w.take();
    EXPECT_EQ(a.multiple_upto, 0u);
    EXPECT_EQ(a.single, (std::vector<std::uint64_t>{2}));
    EXPECT_TRUE(w.take().empty());
    EXPECT_EQ(w.open(), 2u);
}

TEST(AckWindow, ANewChannelStartsEmpty) {
    AckWindow w = deliveredOneTo(3);
    w.ack(1);
    w.clear();
    EXPECT_EQ(w.open(), 0u);
    EXPECT_TRUE(w.take().empty()) << "tags of the old channel mean nothing on the new one";
}

}  // namespace
}  // namespace kanban::host::broker::amqp
