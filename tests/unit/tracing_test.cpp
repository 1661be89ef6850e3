// Tracing (host/src/tracing): W3C trace context, the sampler, and the
// OTLP/JSON exporter against a small OTLP receiver in the test process.
#include "tracing/otlp_exporter.hpp"
#include "tracing/trace_context.hpp"
#include "tracing/tracer.hpp"

#include "otlp_receiver.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>

namespace kanban::host::tracing {
namespace {

using namespace std::chrono_literals;

using Receiver = kanban::test::OtlpReceiver;

Span span(const std::string& name) {
    Span s;
    s.trace_id = newTraceId();
    s.span_id = newSpanId();
    s.name = name;
    s.kind = SpanKind::consumer;
    s.start_unix_ns = 1'700'000'000'000'000'000;
    s.end_unix_ns = s.start_unix_ns + 5'000'000;
    return s;
}

std::unique_ptr<OtlpExporter> exporter(const std::string& url, std::size_t max_queue = 2048) {
    OtlpExporter::Options o;
    o.endpoint = url;
    o.resource.service_name = "kanband-test";
    o.max_queue = max_queue;
    o.max_batch = std::min<std::size_t>(512, max_queue);
    o.timeout = 1000ms;
    std::string error;
    auto e = OtlpExporter::create(std::move(o), error);
    EXPECT_TRUE(e) << error;
    return e;
}

TEST(TraceContext, ParsesAndFormatsW3CTraceparent) {
    const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    auto c = parseTraceparent(tp);
    ASSERT_TRUE(c);
    EXPECT_EQ(hex(c->trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(hex(c->span_id), "00f067aa0ba902b7");
    EXPECT_TRUE(c->sampled);
    EXPECT_EQ(formatTraceparent(*c), tp);
    EXPECT_FALSE(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")->sampled);
    for (const char* bad : {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
                            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
                            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero span id
                            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
                            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
        EXPECT_FALSE(parseTraceparent(bad)) << bad;
    EXPECT_TRUE(parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"))
        << "a later version may add fields";
}

TEST(TraceContext, NewTracesAreSampledAtTheRatio) {
    int sampled = 0;
    for (int i = 0; i < 10000; ++i) sampled += sampledAt(newTraceId(), 0.25) ? 1 : 0;
    EXPECT_GT(sampled, 2000);
    EXPECT_LT(sampled, 3000);
    const TraceId id = newTraceId();
    EXPECT_TRUE(sampledAt(id, 1.0));
    EXPECT_FALSE(sampledAt(id, 0.0));
    EXPECT_EQ(sampledAt(id, 0.5), sampledAt(id, 0.5)) << "every host decides the same for one trace";
}

TEST(OtlpExporter, SpansArriveAsOtlpJson) {
    Receiver rx;
    auto e = exporter(rx.url());
    Span parent = span("publish payment");
    parent.kind = SpanKind::producer;
    Span child = span("handle payment");
    child.trace_id = parent.trace_id;
    child.parent_span_id = parent.span_id;
    child.attributes = {{"kanban.domain", std::string("payment")}, {"kanban.attempt", std::int64_t{2}},
                        {"kanban.ratio", 0.5}, {"kanban.late", true},
                        {"kanban.id", std::string("q\"b\\s\n\x01\xff\xc3\xa9")}};
    child.status = StatusCode::error;
    child.status_message = "asked to retry";
    EXPECT_TRUE(e->submit(parent));
    EXPECT_TRUE(e->submit(child));
    ASSERT_TRUE(e->flush(10s));
    EXPECT_EQ(e->exported(), 2u);
    std::vector<nlohmann::json> spans;
    for (const auto& body : rx.bodies()) {
        const auto& rs = body.at("resourceSpans").at(0);
        EXPECT_EQ(rs.at("resource").at("attributes").at(0).at("key"), "service.name");
        EXPECT_EQ(rs.at("resource").at("attributes").at(0).at("value").at("stringValue"), "kanband-test");
        for (const auto& s : rs.at("scopeSpans").at(0).at("spans")) spans.push_back(s);
    }
    ASSERT_EQ(spans.size(), 2u);
    const auto& p = spans[0];
    const auto& c = spans[1];
    EXPECT_EQ(p.at("traceId"), hex(parent.trace_id));
    EXPECT_EQ(p.at("kind"), 4);
    EXPECT_FALSE(p.contains("parentSpanId"));
    EXPECT_EQ(c.at("traceId"), p.at("traceId"));
    EXPECT_EQ(c.at("parentSpanId"), p.at("spanId"));
    EXPECT_EQ(c.at("kind"), 5);
    EXPECT_EQ(c.at("startTimeUnixNano"), "1700000000000000000") << "64-bit integers as strings";
    EXPECT_EQ(c.at("status").at("code"), 2);
    EXPECT_EQ(c.at("status").at("message"), "asked to retry");
    EXPECT_EQ(c.at("attributes").at(1).at("value").at("intValue"), "2");
    EXPECT_EQ(c.at("attributes").at(2).at("value").at("doubleValue"), 0.5);
    EXPECT_EQ(c.at("attributes").at(3).at("value").at("boolValue"), true);
    EXPECT_EQ(c.at("attributes").at(4).at("value").at("stringValue"), "q\"b\\s\n\x01\xef\xbf\xbd\xc3\xa9")
        << "escaped; a byte that is not UTF-8 is U+FFFD, valid UTF-8 kept";
}

TEST(OtlpExporter, AHungCollectorNeverBlocksSubmitAndTheQueueIsBounded) {
    Receiver rx(/*hold=*/true);
    auto e = exporter(rx.url(), /*max_queue=*/100);
    // The first batch goes out and hangs in the collector; then the queue
    // fills to its bound and every further span is dropped at once.
    std::size_t accepted = 0;
    for (int i = 0; i < 1000; ++i) accepted += e->submit(span("s")) ? 1 : 0;
    EXPECT_LE(accepted, 200u) << "at most one batch in flight and a full queue";
    EXPECT_GE(e->dropped(), 800u);
    rx.release();
    ASSERT_TRUE(e->flush(30s));
    EXPECT_EQ(e->exported() + e->dropped(), 1000u) << "every span is accounted for";
}

TEST(OtlpExporter, ADeadEndpointDropsAndCountsItsBatches) {
    // A port with no listener: connection refused.
    int port = 0;
    {
        httplib::Server s;
        port = s.bind_to_any_port("127.0.0.1");
    }
    std::uint64_t counted = 0;
    OtlpExporter::Options o;
    o.endpoint = "http://127.0.0.1:" + std::to_string(port) + "/v1/traces";
    o.timeout = 500ms;
    o.on_dropped = [&](std::uint64_t n) { counted += n; };  // the export thread only, here
    std::string error;
    auto e = OtlpExporter::create(std::move(o), error);
    ASSERT_TRUE(e) << error;
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(e->submit(span("s")));
    ASSERT_TRUE(e->flush(30s));
    EXPECT_EQ(e->exported(), 0u);
    EXPECT_EQ(e->dropped(), 10u);
    EXPECT_EQ(counted, 10u);
    std::string why;
    OtlpExporter::Options tls;
    tls.endpoint = "https://collector:4318";
    EXPECT_FALSE(OtlpExporter::create(std::move(tls), why));
    EXPECT_THAT(why, ::testing::HasSubstr("not an http:// URL"));
}

TEST(Tracer, AnAttemptIsAChildOfItsItemsTraceparentAndFollowsItsSampling) {
    Receiver rx;
    config::TracingConfig cfg;
    cfg.otlp_endpoint = rx.url();
    cfg.sample_ratio = 0.0;  // traces kanband starts itself: none recorded
    std::string error;
    auto t = Tracer::create(cfg, "9.9.9", nullptr, nullptr, error);
    ASSERT_TRUE(t) << error;
    const std::string incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const ActiveSpan a = t->begin(incoming);
    EXPECT_EQ(hex(a.self.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    ASSERT_TRUE(a.parent);
    EXPECT_EQ(hex(*a.parent), "00f067aa0ba902b7");
    EXPECT_TRUE(a.self.sampled) << "the caller's decision, not the ratio";
    EXPECT_EQ(a.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-" + hex(a.self.span_id) + "-01");
    const ActiveSpan unsampled = t->begin("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    const ActiveSpan root = t->begin("not a traceparent");
    EXPECT_FALSE(root.parent);
    EXPECT_FALSE(root.self.sampled) << "sample_ratio 0";
    t->end(a, "handle payment", SpanKind::consumer, {}, false, "");
    t->end(unsampled, "handle payment", SpanKind::consumer, {}, false, "");
    t->end(root, "handle payment", SpanKind::consumer, {}, false, "");
    ASSERT_TRUE(t->flush(10s));
    EXPECT_EQ(t->exporter().exported(), 1u) << "only the sampled span is exported";
}

}  // namespace
}  // namespace kanban::host::tracing
