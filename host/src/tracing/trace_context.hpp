// W3C Trace Context (https://www.w3.org/TR/trace-context/): the
// `traceparent` header that carries a trace across the queue, and the ids
// of traces and spans.
//
//   traceparent: 00-<trace-id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>
//
// Flag 01 is "sampled": the caller recorded its span, so ours is recorded
// too (kanband follows an incoming decision as it is).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kanban::host::tracing {

using TraceId = std::array<std::uint8_t, 16>;
using SpanId = std::array<std::uint8_t, 8>;

struct SpanContext {
    TraceId trace_id{};
    SpanId span_id{};
    bool sampled = false;
};

// A valid traceparent (version 00, or a later one read as 00 says), or
// nullopt: wrong length, non-hex digits, upper case, all-zero ids.
std::optional<SpanContext> parseTraceparent(std::string_view text);
std::string formatTraceparent(const SpanContext& c);

std::string hex(const std::uint8_t* bytes, std::size_t n);
inline std::string hex(const TraceId& id) { return hex(id.data(), id.size()); }
inline std::string hex(const SpanId& id) { return hex(id.data(), id.size()); }

// Random, never all zero.
TraceId newTraceId();
SpanId newSpanId();

// Whether a new trace with this id is sampled at `ratio` (0..1): decided
// from the id's last 8 bytes, so every host decides the same for one id.
bool sampledAt(const TraceId& id, double ratio);

}  // namespace kanban::host::tracing
