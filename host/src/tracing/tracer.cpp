#include "tracing/tracer.hpp"

#include "common/clock.hpp"

#include <unistd.h>

namespace kanban::host::tracing {

std::shared_ptr<Tracer> Tracer::create(const config::TracingConfig& cfg, const std::string& version,
                                       std::function<void(std::uint64_t)> on_dropped,
                                       std::function<void(std::uint64_t)> on_exported, std::string& error) {
    OtlpExporter::Options o;
    o.endpoint = cfg.otlp_endpoint;
    o.resource.service_name = cfg.service_name;
    o.resource.service_version = version;
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) == 0) o.resource.host_name = host;
    o.max_queue = static_cast<std::size_t>(cfg.max_queue);
    o.max_batch = std::min<std::size_t>(512, o.max_queue);
    o.on_dropped = std::move(on_dropped);
    o.on_exported = std::move(on_exported);
    auto exporter = OtlpExporter::create(std::move(o), error);
    if (!exporter) return nullptr;
    std::shared_ptr<Tracer> t(new Tracer());
    t->ratio_ = cfg.sample_ratio;
    t->exporter_ = std::move(exporter);
    return t;
}

ActiveSpan startSpan(std::string_view incoming, double ratio) {
    ActiveSpan s;
    s.start_unix_ns = nowUnixNs();
    if (auto parent = parseTraceparent(incoming)) {
        s.self.trace_id = parent->trace_id;
        s.self.sampled = parent->sampled;
        s.parent = parent->span_id;
    } else {
        s.self.trace_id = newTraceId();
        s.self.sampled = sampledAt(s.self.trace_id, ratio);
    }
    s.self.span_id = newSpanId();
    s.traceparent = formatTraceparent(s.self);
    return s;
}

void Tracer::end(const ActiveSpan& active, std::string name, SpanKind kind, std::vector<Attribute> attributes,
                 bool error, std::string message, std::int64_t end_unix_ns) {
    if (!active.self.sampled) return;
    if (exporter_->full()) {
        exporter_->drop(1);
        return;
    }
    Span s;
    s.trace_id = active.self.trace_id;
    s.span_id = active.self.span_id;
    s.parent_span_id = active.parent;
    s.name = std::move(name);
    s.kind = kind;
    s.start_unix_ns = active.start_unix_ns;
    s.end_unix_ns = end_unix_ns != 0 ? end_unix_ns : nowUnixNs();
    s.attributes = std::move(attributes);
    s.status = error ? StatusCode::error : StatusCode::unset;
    s.status_message = std::move(message);
    exporter_->submit(std::move(s));
}

}  // namespace kanban::host::tracing
