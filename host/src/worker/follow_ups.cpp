// DomainWorkers, what an attempt produces besides its status: the
// follow-ups a handler asked for (ctx.publish) and the attempt's span.
//
// Follow-ups are published after the handler returned ok and before the
// parent's done record and ack, so a crash in between only repeats the
// publication on the redelivery: each child's id is derived from the
// parent's id, so JetStream's deduplication (within its 2-minute window)
// or the children's own idempotency record (after it) absorbs the second
// copies, and no child is ever handled twice.
#include "worker/domain_workers.hpp"

#include "common/clock.hpp"
#include "plugin/host_api.hpp"

#include <spdlog/spdlog.h>

namespace kanban::host::worker {

Status DomainWorkers::publishFollowUps(const broker::Delivery& parent, const AttemptExtras& extras) {
    if (!settings_.publish) return Error{"this host cannot publish follow-ups"};
    for (const plugin::FollowUp& f : extras.follow_ups) {
        // A runner process cannot check domains: checked here.
        if (settings_.known_domain && !settings_.known_domain(f.domain))
            return Error{"unknown domain \"" + f.domain + "\" for follow-up " + f.id};
        broker::PublishRequest req;
        req.domain = f.domain;
        req.priority = f.priority ? static_cast<Priority>(*f.priority) : parent.priority;
        req.payload = f.payload;
        req.id = f.id;
        req.headers = f.headers;
        setHeader(req.headers, kParentHeader, parent.id);
        // The child's attempts are children of this attempt, unless the
        // handler gave it a trace context of its own.
        if (extras.span && findHeader(req.headers, kTraceParentHeader) == nullptr)
            req.headers.emplace_back(std::string(kTraceParentHeader), extras.span->traceparent);
        if (f.delay_ms > 0) req.not_before_unix_ms = nowUnixMs() + f.delay_ms;
        auto ack = settings_.publish(req);
        if (!ack) return Error{"follow-up " + f.id + " to " + f.domain + ": " + ack.message()};
        spdlog::debug("follow-up published domain={} id={} parent={}{}", f.domain, f.id, parent.id,
                      ack->duplicate ? " (a copy of one published before: dropped by the broker)" : "");
    }
    return Ok{};
}

std::optional<tracing::ActiveSpan> DomainWorkers::beginSpan(broker::Delivery& d) const {
    if (!settings_.tracer) return std::nullopt;
    auto span = settings_.tracer->begin(d.header("traceparent"));
    d.trace_id = tracing::hex(span.self.trace_id);
    return span;
}

void DomainWorkers::endSpan(const broker::Delivery& d, AttemptExtras& extras, std::string_view outcome, bool error,
                            std::string_view reason) const {
    if (!extras.span || !settings_.tracer) return;
    if (!settings_.tracer->wanted(*extras.span)) {  // not sampled, or the export queue is full
        settings_.tracer->discard(*extras.span);
        extras.span.reset();
        return;
    }
    std::vector<tracing::Attribute> attrs{
        {"kanban.domain", settings_.domain.name},
        {"kanban.id", d.id},
        {"kanban.attempt", static_cast<std::int64_t>(d.attempt)},
        {"kanban.outcome", std::string(outcome)},
        {"kanban.priority", std::string(priorityName(d.priority))},
        {"kanban.plugin.version", std::string(extras.plugin_version)},
        {"kanban.follow_ups", static_cast<std::int64_t>(extras.follow_ups.size())}};
    if (d.published_unix_ns)  // how long the item waited in the queue before this attempt
        attrs.push_back({"kanban.wait_ms", (extras.span->start_unix_ns - *d.published_unix_ns) / 1'000'000});
    settings_.tracer->end(*extras.span, "handle " + settings_.domain.name, tracing::SpanKind::consumer, std::move(attrs),
                          error, std::string(reason));
    extras.span.reset();
}

}  // namespace kanban::host::worker
