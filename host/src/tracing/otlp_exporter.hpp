// Exports spans with OTLP over HTTP in its JSON encoding
// (https://opentelemetry.io/docs/specs/otlp/#otlphttp), the small part of an
// OpenTelemetry SDK that kanband needs (Debian 12 has no OpenTelemetry C++
// SDK). Everything about the wire format and the export thread is here.
//
// submit() never blocks on the network: spans wait in a bounded queue that
// one thread of the exporter drains, a batch per POST, at least once per
// `interval`. A full queue drops the new span; a failed POST drops its
// batch (the collector is down: holding spans would only grow memory).
// Both are counted (on_dropped), never retried.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace kanban::host::tracing {

struct Attribute {
    using Value = std::variant<std::string, std::int64_t, double, bool>;
    std::string key;
    Value value;
};

// OTLP's SpanKind and Status.code values.
enum class SpanKind { internal = 1, server = 2, client = 3, producer = 4, consumer = 5 };
enum class StatusCode { unset = 0, ok = 1, error = 2 };

struct Span {
    std::array<std::uint8_t, 16> trace_id{};
    std::array<std::uint8_t, 8> span_id{};
    std::optional<std::array<std::uint8_t, 8>> parent_span_id;
    std::string name;
    SpanKind kind = SpanKind::internal;
    std::int64_t start_unix_ns = 0;
    std::int64_t end_unix_ns = 0;
    std::vector<Attribute> attributes;
    StatusCode status = StatusCode::unset;
    std::string status_message;
};

struct Resource {
    std::string service_name = "kanband";
    std::string service_version;
    std::string host_name;
};

// The body of one export request: ExportTraceServiceRequest as OTLP JSON
// (trace and span ids in hex, enums as numbers, 64-bit integers as strings).
std::string otlpJson(const std::vector<Span>& spans, const Resource& resource);

class OtlpExporter {
public:
    struct Options {
        std::string endpoint;  // http://host:port/path, e.g. http://127.0.0.1:4318/v1/traces
        Resource resource;
        std::size_t max_queue = 2048;
        std::size_t max_batch = 512;
        std::chrono::milliseconds interval{1000};
        std::chrono::milliseconds timeout{2000};  // connect, and read/write, per POST
        std::function<void(std::uint64_t)> on_dropped;   // from any thread
        std::function<void(std::uint64_t)> on_exported;  // from the export thread
    };

    // Error: the endpoint is not an http:// URL.
    static std::unique_ptr<OtlpExporter> create(Options options, std::string& error);
    ~OtlpExporter();  // exports what is queued (one try each), then stops
    OtlpExporter(const OtlpExporter&) = delete;
    OtlpExporter& operator=(const OtlpExporter&) = delete;

    // Queues a span for export; false when the queue is full (dropped).
    bool submit(Span span);
    // The queue is full (a collector that is down or slow): a caller can
    // count its span dropped (drop()) without building it. Lock-free.
    bool full() const { return full_.load(std::memory_order_relaxed); }
    void drop(std::uint64_t n);
    // Waits until every span submitted so far was exported or dropped;
    // false if `within` passed first.
    bool flush(std::chrono::milliseconds within);

    std::uint64_t exported() const;
    std::uint64_t dropped() const;

private:
    explicit OtlpExporter(Options options);
    void run();

    Options options_;
    std::string base_, path_;
    mutable std::mutex mu_;
    std::condition_variable cv_;       // work for the thread (mu_)
    std::condition_variable idle_cv_;  // a batch finished (mu_)
    std::vector<Span> queue_;          // mu_
    std::uint64_t submitted_ = 0;      // mu_: accepted into the queue
    std::uint64_t settled_ = 0;        // mu_: of those, exported or dropped
    std::uint64_t exported_ = 0;       // mu_
    std::atomic<std::uint64_t> dropped_{0};  // queue full or POST failed
    std::atomic<bool> full_{false};          // queue_.size() >= max_queue (written under mu_)
    bool stop_ = false;                // mu_
    std::thread thread_;
};

}  // namespace kanban::host::tracing
