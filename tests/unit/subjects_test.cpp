// The wire grammar (broker/subjects.hpp) and the broker options derived
// from the configuration (broker/broker_options.hpp).
#include "broker/subjects.hpp"

#include <gtest/gtest.h>

#include "broker/broker_options.hpp"

namespace kanban::host::broker {
namespace {

TEST(Subjects, NatsNamesFollowTheDesign) {
    EXPECT_EQ(workSubject("payment", Priority::high), "kanban.high.payment");
    EXPECT_EQ(domainWorkFilter("payment"), "kanban.*.payment");
    EXPECT_EQ(deadLetterSubject("payment"), "kanban.dlq.payment");
    EXPECT_EQ(durableName("payment", Priority::low), "payment_low");
    EXPECT_EQ(deadLetterStreamName("KANBAN"), "KANBAN_DLQ");
    EXPECT_EQ(doneBucketName("KANBAN"), "KANBAN_DONE");
    EXPECT_EQ(scheduleBucketName("KANBAN"), "KANBAN_SCHEDULES");
}

TEST(Subjects, ParsesWhatItWrites) {
    for (Priority p : kPriorities) {
        const std::string s = workSubject("health_check", p);
        EXPECT_EQ(subjectDomain(s), "health_check");
        EXPECT_EQ(subjectPriority(s), p);
    }
    EXPECT_EQ(subjectDomain(deadLetterSubject("mail")), "mail");
    EXPECT_EQ(subjectPriority("kanban.dlq.mail"), std::nullopt);
    EXPECT_EQ(subjectPriority("other.high.mail"), std::nullopt);
    EXPECT_EQ(subjectPriority("kanban"), std::nullopt);
}

TEST(Subjects, AmqpNamesFollowTheDesign) {
    EXPECT_EQ(amqpQueue("payment"), "kanban.payment");
    EXPECT_EQ(amqpDeadLetterQueue("payment"), "kanban.dlq.payment");
    EXPECT_EQ(amqpRoutingKey("payment", Priority::normal), "normal.payment");
    EXPECT_EQ(amqpDomainBinding("payment"), "*.payment");
    EXPECT_EQ(amqpRetryQueue("payment", 3), "kanban.retry.payment.3");
    EXPECT_EQ(amqpRetryQueue("payment", 99), "kanban.retry.payment.16") << "later attempts share the last queue";
    EXPECT_EQ(priorityFromAmqp("high.payment", std::nullopt), Priority::high);
    EXPECT_EQ(priorityFromAmqp("retry.payment", std::uint8_t{0}), Priority::low);
}

TEST(BrokerOptions, ComeFromTheConfigurationInOnePlace) {
    config::Config cfg;
    cfg.nats.servers = {"nats://a:1", "nats://b:2"};
    cfg.nats.stream = "WORK";
    cfg.nats.replicas = 3;
    cfg.nats.max_msgs = 10;
    cfg.nats.max_bytes = 20;
    cfg.rabbitmq.url = "amqp://x";
    cfg.rabbitmq.confirm_timeout_ms = 1234;
    const JetStreamOptions jo = jetStreamOptions(cfg, "kanbanctl", false);
    EXPECT_EQ(jo.servers, cfg.nats.servers);
    EXPECT_EQ(jo.stream, "WORK");
    EXPECT_EQ(jo.replicas, 3);
    EXPECT_EQ(jo.max_msgs, 10);
    EXPECT_EQ(jo.max_bytes, 20);
    EXPECT_FALSE(jo.keep_trying);
    EXPECT_EQ(jo.connection_name, "kanbanctl");
    const auto ro = rabbitMqOptions(cfg, "kanband");
    ASSERT_TRUE(ro);
    EXPECT_EQ(ro->url, "amqp://x");
    EXPECT_EQ(ro->confirm_timeout, std::chrono::milliseconds(1234));
    cfg.rabbitmq.enabled = false;
    EXPECT_FALSE(rabbitMqOptions(cfg, "kanband"));
}

}  // namespace
}  // namespace kanban::host::broker
