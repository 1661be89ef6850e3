#include "tracing/otlp_exporter.hpp"

#include "tracing/trace_context.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <utility>

namespace kanban::host::tracing {
namespace {

// The body is written directly, not through a JSON DOM: the export thread
// serialises every span kanband records, and at tens of thousands of
// attempts a second a DOM's allocations were most of its time.

void appendHex(std::string& out, const std::uint8_t* bytes, std::size_t n) {
    static constexpr char kDigits[] = "0123456789abcdef";
    for (std::size_t i = 0; i < n; ++i) {
        out += kDigits[bytes[i] >> 4];
        out += kDigits[bytes[i] & 0x0f];
    }
}

// Length of the valid UTF-8 sequence at s[i], or 0.
std::size_t utf8Length(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k)
        if ((b(i + k) & 0xc0) != 0x80) return 0;
    if (n == 2 && c < 0xc2) return 0;                                          // overlong
    if (n == 3 && ((c == 0xe0 && b(i + 1) < 0xa0) || (c == 0xed && b(i + 1) >= 0xa0))) return 0;  // overlong, surrogate
    if (n == 4 && ((c == 0xf0 && b(i + 1) < 0x90) || c > 0xf4 || (c == 0xf4 && b(i + 1) >= 0x90))) return 0;
    return n;
}

// A JSON string; bytes that are not UTF-8 become U+FFFD.
void appendString(std::string& out, std::string_view s) {
    out += '"';
    for (std::size_t i = 0; i < s.size();) {
        const char c = s[i];
        const std::size_t n = utf8Length(s, i);
        if (n == 0) {
            out += "\\ufffd";
            ++i;
            continue;
        }
        if (n > 1) {
            out.append(s, i, n);
            i += n;
            continue;
        }
        ++i;
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

void appendValue(std::string& out, const Attribute::Value& v) {
    if (const auto* s = std::get_if<std::string>(&v)) {
        out += "{\"stringValue\":";
        appendString(out, *s);
    } else if (const auto* i = std::get_if<std::int64_t>(&v)) {
        out += "{\"intValue\":\"" + std::to_string(*i) + "\"";
    } else if (const auto* d = std::get_if<double>(&v)) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.17g", std::isfinite(*d) ? *d : 0.0);
        out += "{\"doubleValue\":";
        out += buf;
    } else {
        out += std::get<bool>(v) ? "{\"boolValue\":true" : "{\"boolValue\":false";
    }
    out += '}';
}

void appendAttributes(std::string& out, const std::vector<Attribute>& attrs) {
    out += '[';
    for (std::size_t i = 0; i < attrs.size(); ++i) {
        if (i > 0) out += ',';
        out += "{\"key\":";
        appendString(out, attrs[i].key);
        out += ",\"value\":";
        appendValue(out, attrs[i].value);
        out += '}';
    }
    out += ']';
}

}  // namespace

std::string otlpJson(const std::vector<Span>& spans, const Resource& resource) {
    std::vector<Attribute> res{{"service.name", resource.service_name}};
    if (!resource.service_version.empty()) res.push_back({"service.version", resource.service_version});
    if (!resource.host_name.empty()) res.push_back({"host.name", resource.host_name});
    std::string out;
    out.reserve(256 + spans.size() * 700);
    out += "{\"resourceSpans\":[{\"resource\":{\"attributes\":";
    appendAttributes(out, res);
    out += "},\"scopeSpans\":[{\"scope\":{\"name\":\"tps-kanban\",\"version\":";
    appendString(out, resource.service_version);
    out += "},\"spans\":[";
    for (std::size_t k = 0; k < spans.size(); ++k) {
        const Span& s = spans[k];
        if (k > 0) out += ',';
        out += "{\"traceId\":\"";
        appendHex(out, s.trace_id.data(), s.trace_id.size());
        out += "\",\"spanId\":\"";
        appendHex(out, s.span_id.data(), s.span_id.size());
        out += '"';
        if (s.parent_span_id) {
            out += ",\"parentSpanId\":\"";
            appendHex(out, s.parent_span_id->data(), s.parent_span_id->size());
            out += '"';
        }
        out += ",\"name\":";
        appendString(out, s.name);
        out += ",\"kind\":" + std::to_string(static_cast<int>(s.kind));
        out += ",\"startTimeUnixNano\":\"" + std::to_string(s.start_unix_ns) + "\"";
        out += ",\"endTimeUnixNano\":\"" + std::to_string(s.end_unix_ns) + "\"";
        out += ",\"attributes\":";
        appendAttributes(out, s.attributes);
        if (s.status != StatusCode::unset) {
            out += ",\"status\":{\"code\":" + std::to_string(static_cast<int>(s.status));
            if (!s.status_message.empty()) {
                out += ",\"message\":";
                appendString(out, s.status_message);
            }
            out += '}';
        }
        out += '}';
    }
    out += "]}]}]}";
    return out;
}

std::unique_ptr<OtlpExporter> OtlpExporter::create(Options options, std::string& error) {
    const std::string url = options.endpoint;  // a copy: `options` is moved below
    if (url.rfind("http://", 0) != 0) {
        error = "OTLP endpoint \"" + url + "\" is not an http:// URL";
        return nullptr;
    }
    const auto slash = url.find('/', 7);
    std::unique_ptr<OtlpExporter> e(new OtlpExporter(std::move(options)));
    e->base_ = slash == std::string::npos ? url : url.substr(0, slash);
    e->path_ = slash == std::string::npos ? "/v1/traces" : url.substr(slash);
    e->thread_ = std::thread([p = e.get()] { p->run(); });
    return e;
}

OtlpExporter::OtlpExporter(Options options) : options_(std::move(options)) {}

OtlpExporter::~OtlpExporter() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool OtlpExporter::submit(Span span) {
    {
        std::lock_guard lock(mu_);
        if (queue_.size() < options_.max_queue && !stop_) {
            queue_.push_back(std::move(span));
            ++submitted_;
            if (queue_.size() >= options_.max_queue) full_ = true;
            if (queue_.size() >= options_.max_batch) cv_.notify_one();
            return true;
        }
    }
    drop(1);
    return false;
}

void OtlpExporter::drop(std::uint64_t n) {
    dropped_ += n;
    if (options_.on_dropped) options_.on_dropped(n);
}

bool OtlpExporter::flush(std::chrono::milliseconds within) {
    std::unique_lock lock(mu_);
    const std::uint64_t target = submitted_;
    cv_.notify_one();
    return idle_cv_.wait_for(lock, within, [&] { return settled_ >= target; });
}

std::uint64_t OtlpExporter::exported() const {
    std::lock_guard lock(mu_);
    return exported_;
}

std::uint64_t OtlpExporter::dropped() const { return dropped_.load(); }

void OtlpExporter::run() {
    httplib::Client client(base_);
    const auto t = options_.timeout;
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(t);
    const auto usecs = std::chrono::duration_cast<std::chrono::microseconds>(t - secs);
    client.set_connection_timeout(secs.count(), usecs.count());
    client.set_read_timeout(secs.count(), usecs.count());
    client.set_write_timeout(secs.count(), usecs.count());
    client.set_keep_alive(true);
    bool failing = false;  // log a failing collector once, and its recovery
    // After a failed export the next waits: 1 s, doubling to 30 s. Spans
    // meanwhile fill the queue and the rest are dropped before they are
    // built (full()), so a dead collector costs neither the workers nor
    // this thread (serialising batches only to fail them) anything.
    std::chrono::milliseconds pause{0};
    std::unique_lock lock(mu_);
    for (;;) {
        if (pause.count() > 0) cv_.wait_for(lock, pause, [&] { return stop_; });
        cv_.wait_for(lock, options_.interval,
                     [&] { return stop_ || queue_.size() >= options_.max_batch || settled_ < submitted_; });
        if (queue_.empty()) {
            if (stop_) return;
            continue;
        }
        std::vector<Span> batch;
        if (queue_.size() <= options_.max_batch) {
            batch.swap(queue_);
        } else {
            batch.assign(std::make_move_iterator(queue_.begin()),
                         std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(options_.max_batch)));
            queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(options_.max_batch));
        }
        full_ = false;
        lock.unlock();
        const std::string body = otlpJson(batch, options_.resource);
        const auto res = client.Post(path_, body, "application/json");
        const bool ok = res && res->status / 100 == 2;
        if (!ok && !failing)
            spdlog::warn("tracing: exporting {} spans to {}{} failed ({}); spans are dropped until it answers",
                         batch.size(), base_, path_,
                         res ? "HTTP " + std::to_string(res->status) : httplib::to_string(res.error()));
        else if (ok && failing)
            spdlog::info("tracing: exporting to {}{} again", base_, path_);
        failing = !ok;
        pause = ok ? std::chrono::milliseconds(0)
                   : std::min<std::chrono::milliseconds>(std::max(pause * 2, std::chrono::milliseconds(1000)),
                                                         std::chrono::seconds(30));
        if (ok && options_.on_exported) options_.on_exported(batch.size());
        if (!ok) drop(batch.size());
        lock.lock();
        if (ok) exported_ += batch.size();
        settled_ += batch.size();
        idle_cv_.notify_all();
    }
}

}  // namespace kanban::host::tracing
