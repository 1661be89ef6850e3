#include "broker/subjects.hpp"

#include <algorithm>

namespace kanban::host::broker {

std::string workSubject(std::string_view domain, Priority priority) {
    return "kanban." + std::string(priorityName(priority)) + "." + std::string(domain);
}
std::string domainWorkFilter(std::string_view domain) { return "kanban.*." + std::string(domain); }
std::string deadLetterSubject(std::string_view domain) { return "kanban.dlq." + std::string(domain); }
std::string durableName(std::string_view domain, Priority priority) {
    return std::string(domain) + "_" + std::string(priorityName(priority));
}

std::string delayedSubject(std::string_view domain, Priority priority) {
    return "kanban.delayed." + std::string(priorityName(priority)) + "." + std::string(domain);
}

std::optional<std::string> workSubjectOfDelayed(std::string_view subject) {
    constexpr std::string_view kPrefix = "kanban.delayed.";
    if (subject.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
    const std::string_view rest = subject.substr(kPrefix.size());
    const auto dot = rest.find('.');
    if (dot == std::string_view::npos || dot + 1 == rest.size() || rest.find('.', dot + 1) != std::string_view::npos)
        return std::nullopt;
    const auto priority = parsePriority(rest.substr(0, dot));
    if (!priority) return std::nullopt;
    return workSubject(rest.substr(dot + 1), *priority);
}

std::string_view subjectDomain(std::string_view subject) {
    const auto dot = subject.rfind('.');
    return dot == std::string_view::npos ? subject : subject.substr(dot + 1);
}

std::optional<Priority> subjectPriority(std::string_view subject) {
    const auto first = subject.find('.');
    if (first == std::string_view::npos || subject.substr(0, first) != "kanban") return std::nullopt;
    const auto second = subject.find('.', first + 1);
    if (second == std::string_view::npos) return std::nullopt;
    return parsePriority(subject.substr(first + 1, second - first - 1));
}

std::string deadLetterStreamName(std::string_view stream) { return std::string(stream) + "_DLQ"; }
std::string doneBucketName(std::string_view stream) { return std::string(stream) + "_DONE"; }
std::string scheduleBucketName(std::string_view stream) { return std::string(stream) + "_SCHEDULES"; }
std::string controlBucketName(std::string_view stream) { return std::string(stream) + "_CONTROL"; }
std::string delayedStreamName(std::string_view stream) { return std::string(stream) + "_DELAYED"; }

std::string amqpQueue(std::string_view domain) { return "kanban." + std::string(domain); }
std::string amqpDeadLetterQueue(std::string_view domain) { return "kanban.dlq." + std::string(domain); }
std::string amqpRetryQueue(std::string_view domain, std::uint32_t attempt) {
    return "kanban.retry." + std::string(domain) + "." +
           std::to_string(std::clamp<std::uint32_t>(attempt, 1, kAmqpRetryQueues));
}
std::string amqpChosenDelayQueue(std::string_view domain, std::chrono::milliseconds delay) {
    std::uint64_t bucket = 1;
    while (bucket < static_cast<std::uint64_t>(std::max<std::int64_t>(1, delay.count())) && bucket < (1ULL << 62))
        bucket <<= 1;
    return "kanban.retry." + std::string(domain) + ".after." + std::to_string(bucket);
}
std::string amqpRoutingKey(std::string_view domain, Priority priority) {
    return std::string(priorityName(priority)) + "." + std::string(domain);
}
std::string amqpDomainBinding(std::string_view domain) { return "*." + std::string(domain); }

std::uint8_t amqpPriority(Priority p) {
    switch (p) {
        case Priority::high:
            return 2;
        case Priority::normal:
            return 1;
        case Priority::low:
            return 0;
    }
    return 1;
}

Priority priorityFromAmqp(std::string_view routing_key, std::optional<std::uint8_t> property) {
    if (auto dot = routing_key.find('.'); dot != std::string_view::npos)
        if (auto p = parsePriority(routing_key.substr(0, dot))) return *p;
    if (!property) return Priority::normal;
    return *property >= 2 ? Priority::high : (*property == 1 ? Priority::normal : Priority::low);
}

}  // namespace kanban::host::broker
