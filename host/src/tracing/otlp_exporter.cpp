#include "tracing/otlp_exporter.hpp"

#include "tracing/trace_context.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <utility>

namespace kanban::host::tracing {
namespace {

nlohmann::json anyValue(const Attribute::Value& v);

nlohmann::json attributes(const std::vector<Attribute>& attrs) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& a : attrs) out.push_back(nlohmann::json{{"key", a.key}, {"value", anyValue(a.value)}});
    return out;
}

nlohmann::json anyValue(const Attribute::Value& v) {
    if (const auto* s = std::get_if<std::string>(&v)) return {{"stringValue", *s}};
    if (const auto* i = std::get_if<std::int64_t>(&v)) return {{"intValue", std::to_string(*i)}};
    if (const auto* d = std::get_if<double>(&v)) return {{"doubleValue", *d}};
    return {{"boolValue", std::get<bool>(v)}};
}

}  // namespace

std::string otlpJson(const std::vector<Span>& spans, const Resource& resource) {
    nlohmann::json out_spans = nlohmann::json::array();
    for (const auto& s : spans) {
        nlohmann::json j = {{"traceId", hex(s.trace_id.data(), s.trace_id.size())},
                            {"spanId", hex(s.span_id.data(), s.span_id.size())},
                            {"name", s.name},
                            {"kind", static_cast<int>(s.kind)},
                            {"startTimeUnixNano", std::to_string(s.start_unix_ns)},
                            {"endTimeUnixNano", std::to_string(s.end_unix_ns)},
                            {"attributes", attributes(s.attributes)}};
        if (s.parent_span_id) j["parentSpanId"] = hex(s.parent_span_id->data(), s.parent_span_id->size());
        if (s.status != StatusCode::unset) {
            j["status"] = {{"code", static_cast<int>(s.status)}};
            if (!s.status_message.empty()) j["status"]["message"] = s.status_message;
        }
        out_spans.push_back(std::move(j));
    }
    std::vector<Attribute> res{{"service.name", resource.service_name}};
    if (!resource.service_version.empty()) res.push_back({"service.version", resource.service_version});
    if (!resource.host_name.empty()) res.push_back({"host.name", resource.host_name});
    const nlohmann::json body = {
        {"resourceSpans",
         {{{"resource", {{"attributes", attributes(res)}}},
           {"scopeSpans",
            {{{"scope", {{"name", "tps-kanban"}, {"version", resource.service_version}}}, {"spans", out_spans}}}}}}}};
    return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
    std::unique_lock lock(mu_);
    for (;;) {
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
        if (ok && options_.on_exported) options_.on_exported(batch.size());
        if (!ok) drop(batch.size());
        lock.lock();
        if (ok) exported_ += batch.size();
        settled_ += batch.size();
        idle_cv_.notify_all();
    }
}

}  // namespace kanban::host::tracing
