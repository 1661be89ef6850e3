#include "publish.hpp"

#include <algorithm>
#include <fstream>
#include <optional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include "broker/broker_options.hpp"
#include "broker/failover.hpp"
#include "broker/jetstream.hpp"
#include "broker/rabbitmq.hpp"
#include "common/clock.hpp"
#include "common/headers.hpp"
#include "common/time_text.hpp"
#include "tracing/tracer.hpp"
#include "version.hpp"
#include "ctl_common.hpp"

namespace kanban::ctl {

using namespace kanban::host;

int publish(const std::string& config_path, const PublishArgs& args) {
    config::Config cfg;
    if (int rc = loadConfig(config_path, cfg); rc != kExitOk) return rc;
    if (cfg.findDomain(args.domain) == nullptr) {
        std::string known;
        for (const auto& d : cfg.domains) known += (known.empty() ? "" : ", ") + d.name;
        return fail(kExitUsage, "unknown domain \"" + args.domain + "\" (configured: " + known + ")");
    }
    if (!args.id.empty() && args.count != 1) return fail(kExitUsage, "--id can only be used with --count 1");
    if (args.id.size() > broker::kMaxWorkIdBytes)
        return fail(kExitUsage, "--id is " + std::to_string(args.id.size()) + " bytes long; the limit is " +
                                    std::to_string(broker::kMaxWorkIdBytes));
    for (unsigned char c : args.id)
        if (c < 0x20 || c == 0x7f) return fail(kExitUsage, "--id must not contain control characters");

    std::optional<std::int64_t> not_before;
    if (!args.delay.empty()) {
        const auto ms = parseDurationMs(args.delay);
        if (!ms) return fail(kExitUsage, "--delay \"" + args.delay + "\": expected a whole number and a unit (1500ms, 30s, 5m, 2h, 1d)");
        not_before = nowUnixMs() + *ms;
    }
    if (!args.at.empty()) {
        not_before = parseRfc3339Ms(args.at);
        if (!not_before)
            return fail(kExitUsage, "--at \"" + args.at + "\": expected an RFC 3339 time with its zone (2026-12-24T18:00:00Z)");
    }

    Headers headers;
    for (const std::string& h : args.headers) {
        const auto eq = h.find('=');
        if (eq == std::string::npos) return fail(kExitUsage, "--header \"" + h + "\": expected NAME=VALUE");
        std::string name = h.substr(0, eq), value = h.substr(eq + 1);
        if (std::string why = headerProblem(name, value); !why.empty()) return fail(kExitUsage, "--header: " + why);
        headers.emplace_back(std::move(name), std::move(value));
    }
    const std::string* incoming = findHeader(headers, kTraceParentHeader);
    if (incoming != nullptr && !tracing::parseTraceparent(*incoming))
        return fail(kExitUsage, "--header traceparent=\"" + *incoming +
                                    "\" is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)");
    std::shared_ptr<tracing::Tracer> tracer;
    if (args.trace && cfg.tracing.enabled()) {
        std::string error;
        tracer = tracing::Tracer::create(cfg.tracing, KANBAN_VERSION, nullptr, nullptr, error);
        if (!tracer) return fail(kExitError, "tracing: " + error);
    }

    std::string payload = args.payload;
    if (!args.file.empty()) {
        std::ifstream in(args.file, std::ios::binary);
        if (!in) return fail(kExitNoInput, args.file + ": cannot open payload file");
        std::ostringstream s;
        s << in.rdbuf();
        payload = s.str();
    }

    // NATS first; RabbitMQ when NATS is unreachable or stops answering
    // (broker/failover.hpp), like the daemon.
    auto js = broker::JetStream::connect(broker::jetStreamOptions(cfg, "kanbanctl", /*keep_trying=*/false));
    std::unique_ptr<broker::JetStream> nats;
    if (js) nats = std::move(*js);
    std::unique_ptr<broker::RabbitMq> rabbit;
    if (auto ro = broker::rabbitMqOptions(cfg, "kanbanctl")) rabbit = std::make_unique<broker::RabbitMq>(*ro);
    if (!nats && !rabbit) return fail(kExitUnavailable, js.message());
    broker::Failover brokers(nats.get(), rabbit.get());

    broker::PublishRequest req;
    req.domain = args.domain;
    req.priority = *parsePriority(args.priority);
    req.payload = std::move(payload);
    req.not_before_unix_ms = not_before;
    req.headers = headers;
    if (args.deadline_ms > 0) req.deadline_unix_ms = std::max(nowUnixMs(), not_before.value_or(0)) + args.deadline_ms;
    std::map<std::string, std::int64_t> by_backend;
    // After a failover, say where the items went (on stderr: stdout is the ids).
    auto summary = [&] {
        if (by_backend.size() < 2) return;
        std::cerr << "kanbanctl: published";
        for (const auto& [backend, n] : by_backend) std::cerr << " " << n << " to " << backend;
        std::cerr << "\n";
    };
    for (std::int64_t i = 0; i < args.count; ++i) {
        req.id = args.id.empty() ? broker::generateWorkId() : args.id;
        // --trace: the item's trace starts with this publish (a PRODUCER
        // span; its handler's attempts are children of it).
        std::optional<tracing::ActiveSpan> span;
        if (args.trace) {
            // Asked for: recorded whatever sample_ratio says.
            span = tracing::startSpan(incoming != nullptr ? *incoming : "", 1.0);
            setHeader(req.headers, kTraceParentHeader, span->traceparent);
        }
        auto ack = brokers.publish(req);
        if (span) {
            if (tracer)
                tracer->end(*span, "publish " + args.domain, tracing::SpanKind::producer,
                            {{"kanban.domain", args.domain}, {"kanban.id", req.id},
                             {"kanban.backend", std::string(brokers.lastPublishBackend())}},
                            !ack, ack ? "" : ack.message());
            std::cerr << "kanbanctl: trace " << tracing::hex(span->self.trace_id) << " for " << req.id << "\n";
        }
        if (!ack) {
            std::cout.flush();
            summary();
            return fail(ack.error().refused || brokers.healthy() ? kExitError : kExitUnavailable, ack.message());
        }
        ++by_backend[std::string(brokers.lastPublishBackend())];
        if (ack->duplicate)
            std::cerr << "kanbanctl: note: " << req.id << " was already published (deduplicated)\n";
        std::cout << req.id << '\n';
    }
    summary();
    std::cout.flush();
    if (tracer && !tracer->flush(std::chrono::seconds(5)))
        std::cerr << "kanbanctl: the publish spans could not be exported to " << cfg.tracing.otlp_endpoint << " in 5 s\n";
    return kExitOk;
}

}  // namespace kanban::ctl
