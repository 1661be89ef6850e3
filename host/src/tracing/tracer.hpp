// kanband's side of tracing: which spans are recorded, their contexts, and
// handing the finished ones to the OTLP exporter.
//
// One span per handler attempt (kind CONSUMER, named "handle <domain>"), a
// child of the item's incoming `traceparent` when it has a valid one
// (following its sampled flag), else the root of a new trace sampled at
// [tracing] sample_ratio. The handler sees the attempt's own context as
// its `traceparent` header, and its follow-ups carry it: their attempts
// are children of this one.
#pragma once

#include "config/config.hpp"
#include "tracing/otlp_exporter.hpp"
#include "tracing/trace_context.hpp"

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace kanban::host::tracing {

// A span begun and not yet finished.
struct ActiveSpan {
    SpanContext self;
    std::optional<SpanId> parent;
    std::string traceparent;  // of `self`, for the handler and the follow-ups
    std::int64_t start_unix_ns = 0;
};

// A new span's context: the child of `incoming` (a traceparent header's
// value) following its sampled flag, or, when it is empty or invalid, the
// root of a new trace sampled at `ratio`. Needs no exporter (kanbanctl
// publish --trace without [tracing] still starts a trace).
ActiveSpan startSpan(std::string_view incoming, double ratio);

class Tracer {
public:
    // Error: the exporter cannot be made (the endpoint is not http://).
    static std::shared_ptr<Tracer> create(const config::TracingConfig& cfg, const std::string& version,
                                          std::function<void(std::uint64_t)> on_dropped,
                                          std::function<void(std::uint64_t)> on_exported, std::string& error);

    // A new span: the child of `incoming` (a traceparent header's value;
    // empty or invalid: a new trace).
    ActiveSpan begin(std::string_view incoming) const { return startSpan(incoming, ratio_); }
    // Hands it to the exporter if it is sampled; never blocks. `error`:
    // the span's status is ERROR with `message`.
    void end(const ActiveSpan& span, std::string name, SpanKind kind, std::vector<Attribute> attributes, bool error,
             std::string message, std::int64_t end_unix_ns = 0);
    // Whether end() would keep a span of `span`: sampled, and room in the
    // export queue. A caller can skip building the attributes otherwise
    // (a dead collector then costs the hot path almost nothing).
    bool wanted(const ActiveSpan& span) const { return span.self.sampled && !exporter_->full(); }
    // A span not handed to end() because it was not wanted: a sampled one
    // is counted as dropped.
    void discard(const ActiveSpan& span) {
        if (span.self.sampled) exporter_->drop(1);
    }
    bool flush(std::chrono::milliseconds within) { return exporter_->flush(within); }
    OtlpExporter& exporter() { return *exporter_; }

private:
    Tracer() = default;
    double ratio_ = 1.0;
    std::unique_ptr<OtlpExporter> exporter_;
};

}  // namespace kanban::host::tracing
