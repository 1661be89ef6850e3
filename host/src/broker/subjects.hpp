// The wire grammar of work items (docs/design.md §3), in one place: NATS
// subjects and durable names, RabbitMQ exchanges, queues and routing keys.
// Nothing else in the host spells a subject or a queue name.
//
//   NATS      work       kanban.<priority>.<domain>   stream <stream>
//             dead letter kanban.dlq.<domain>          stream <stream>_DLQ
//             delayed    kanban.delayed.<priority>.<domain> stream <stream>_DELAYED
//                        (consumer `delayed_mover`, shared by every host)
//             consumer   <domain>_<priority>          (durable, pull)
//   RabbitMQ  exchange   kanban (topic), kanban.dlx (topic)
//             queues     kanban.<domain>, kanban.dlq.<domain>, kanban.retry.<domain>.<n>
//             routing    <priority>.<domain>
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <chrono>
#include <string>
#include <string_view>

#include "common/priority.hpp"

namespace kanban::host::broker {

// --- NATS ---------------------------------------------------------------

// `kanban.<priority>.<domain>`
std::string workSubject(std::string_view domain, Priority priority);
// `kanban.*.<domain>`: every priority level of one domain.
std::string domainWorkFilter(std::string_view domain);
// `kanban.dlq.<domain>`
std::string deadLetterSubject(std::string_view domain);
// `<domain>_<priority>`
std::string durableName(std::string_view domain, Priority priority);

// `kanban.delayed.<priority>.<domain>`: an item waiting for its Kanban-Not-Before.
std::string delayedSubject(std::string_view domain, Priority priority);
// The work subject a delayed item goes to when due; nullopt for any other subject.
std::optional<std::string> workSubjectOfDelayed(std::string_view subject);
inline constexpr const char* kDelayedFilter = "kanban.delayed.*.*";
inline constexpr const char* kDelayedMoverDurable = "delayed_mover";

// The work stream binds exactly these (not `kanban.>`, which would overlap
// the dead-letter subjects), indexed like kPriorities.
inline constexpr std::array<const char*, 3> kWorkStreamSubjects = {"kanban.high.*", "kanban.normal.*", "kanban.low.*"};
inline constexpr const char* kWorkFilter = "kanban.*.*";          // every work subject
inline constexpr const char* kDeadLetterFilter = "kanban.dlq.*";  // every dead-letter subject

// The domain of a work or dead-letter subject (its last token).
std::string_view subjectDomain(std::string_view subject);
// The priority of a work subject; nullopt for anything else.
std::optional<Priority> subjectPriority(std::string_view subject);

// Stream and bucket names derived from the work stream's.
std::string deadLetterStreamName(std::string_view stream);  // <stream>_DLQ
std::string doneBucketName(std::string_view stream);        // <stream>_DONE
std::string scheduleBucketName(std::string_view stream);    // <stream>_SCHEDULES
std::string controlBucketName(std::string_view stream);     // <stream>_CONTROL (paused domains)
std::string delayedStreamName(std::string_view stream);     // <stream>_DELAYED

// --- RabbitMQ -----------------------------------------------------------

inline constexpr const char* kAmqpExchange = "kanban";
inline constexpr const char* kAmqpDeadLetterExchange = "kanban.dlx";
// Retry queues per domain: one per attempt number, the last one shared by
// every attempt at or above it.
inline constexpr std::uint32_t kAmqpRetryQueues = 16;

std::string amqpQueue(std::string_view domain);                              // kanban.<domain>
std::string amqpDeadLetterQueue(std::string_view domain);                    // kanban.dlq.<domain>
std::string amqpRetryQueue(std::string_view domain, std::uint32_t attempt);  // kanban.retry.<domain>.<n>
// For a delay a handler chose: kanban.retry.<domain>.after.<B>, B the
// smallest power of two of ms >= the delay, so that the copies in one queue
// differ by at most 2x (a classic queue expires at its head only).
std::string amqpChosenDelayQueue(std::string_view domain, std::chrono::milliseconds delay);
std::string amqpRoutingKey(std::string_view domain, Priority priority);      // <priority>.<domain>
std::string amqpDomainBinding(std::string_view domain);                      // *.<domain>
// AMQP priority property: low 0, normal 1, high 2 (x-max-priority 2).
std::uint8_t amqpPriority(Priority p);
// From the routing key's first word, else from the property.
Priority priorityFromAmqp(std::string_view routing_key, std::optional<std::uint8_t> property);

}  // namespace kanban::host::broker
