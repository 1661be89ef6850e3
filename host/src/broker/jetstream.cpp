#include "broker/jetstream.hpp"

#include "broker/jetstream_consumer.hpp"
#include "broker/jetstream_done_mirror.hpp"
#include "broker/jetstream_done_store.hpp"
#include "broker/nats_util.hpp"
#include "common/clock.hpp"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>
#include <utility>

namespace kanban::host::broker {
namespace {

constexpr std::int64_t kDuplicateWindowNs = 120LL * 1000 * nats::kNsPerMs;  // 2 min Nats-Msg-Id dedup
// How long a publish rides out a stream without a leader (cluster election).
constexpr auto kPublishRetryBudget = std::chrono::seconds(15);

// Errors a cluster gives while a stream or the metadata leader is re-elected.
bool transientPublishError(natsStatus s, jsErrCode jerr) {
    if (s == NATS_NO_RESPONDERS || s == NATS_TIMEOUT) return true;
    switch (jerr) {
        case JSClusterNotAvailErr:
        case JSClusterNotLeaderErr:
        case JSStreamNotFoundErr:  // a replica that has not caught up with the assignment yet
        case JSNotEnabledErr:
        case JSNotEnabledForAccountErr: return true;
        default: return false;
    }
}

}  // namespace

Result<std::unique_ptr<JetStream>> JetStream::connect(const JetStreamOptions& options) {
    std::unique_ptr<JetStream> self(new JetStream(options));
    natsOptions* o = nullptr;
    if (natsOptions_Create(&o) != NATS_OK) return Error{"nats: cannot allocate options"};
    std::vector<const char*> urls;
    for (const auto& s : options.servers) urls.push_back(s.c_str());
    natsStatus s = natsOptions_SetServers(o, urls.data(), static_cast<int>(urls.size()));
    if (s == NATS_OK) s = natsOptions_SetName(o, options.connection_name.c_str());
    // Without SendAsap cnats delays every buffered write up to 1 ms: every
    // fetch and ack would pay it (docs/dependencies.md §10).
    if (s == NATS_OK) s = natsOptions_SetSendAsap(o, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, options.keep_trying ? -1 : 0);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, 2000);
    // A server that stops answering (paused, wedged) while the TCP
    // connection stays up is given up after ~4 s, not the library's 4
    // minutes: readiness drops and the RabbitMQ fallback takes over.
    if (s == NATS_OK) s = natsOptions_SetPingInterval(o, 1000);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(o, 3);
    if (s == NATS_OK) s = natsOptions_SetFailRequestsOnDisconnect(o, true);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, &nats::onAsyncError, nullptr);
    if (s == NATS_OK && options.keep_trying) {
        s = natsOptions_SetDisconnectedCB(o, &nats::onDisconnected, nullptr);
        if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, &nats::onReconnected, nullptr);
        if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(o, true, &nats::onConnected, nullptr);
    }
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        return Error{"nats: invalid options: " + nats::error(s)};
    }
    s = natsConnection_Connect(&self->nc_, o);
    natsOptions_Destroy(o);
    if (s == NATS_NOT_YET_CONNECTED && options.keep_trying) {
        spdlog::warn("nats: no server reachable yet at {}; retrying in the background", options.servers.front());
        s = NATS_OK;
    }
    if (s != NATS_OK) {
        std::string servers;
        for (const auto& u : options.servers) servers += (servers.empty() ? "" : ",") + u;
        return Error{"nats: cannot connect to " + servers + ": " + nats::error(s)};
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;  // JS API and publish-ack timeout, ms
    if (natsStatus js = natsConnection_JetStream(&self->js_, self->nc_, &jo); js != NATS_OK)
        return Error{"nats: cannot create JetStream context: " + nats::error(js)};
    return self;
}

JetStream::JetStream(JetStreamOptions options) : options_(std::move(options)) {}

JetStream::~JetStream() {
    mirror_.reset();  // its subscription calls back into it until then
    if (js_ != nullptr) jsCtx_Destroy(js_);
    if (nc_ != nullptr) {
        natsConnection_Close(nc_);
        natsConnection_Destroy(nc_);
    }
}

bool JetStream::connected() const { return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED; }
bool JetStream::healthy() const { return connected() && streams_ready_.load(); }

Status JetStream::ensureStreams() {
    if (streams_ready_.load()) return Ok{};
    std::lock_guard lock(topology_mu_);
    if (streams_ready_.load()) return Ok{};

    struct Spec {
        std::string name;
        std::vector<const char*> subjects;
        jsRetentionPolicy retention;
    };
    const Spec specs[] = {
        {options_.stream, {kWorkStreamSubjects.begin(), kWorkStreamSubjects.end()}, js_WorkQueuePolicy},
        {deadLetterStream(), {kDeadLetterFilter}, js_LimitsPolicy},
        // Delayed items until their Kanban-Not-Before (broker::DelayedMover).
        {delayedStream(), {kDelayedFilter}, js_WorkQueuePolicy},
    };
    for (const Spec& spec : specs) {
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        sc.Name = spec.name.c_str();
        sc.Subjects = const_cast<const char**>(spec.subjects.data());
        sc.SubjectsLen = static_cast<int>(spec.subjects.size());
        sc.Retention = spec.retention;
        sc.Storage = js_FileStorage;
        sc.Replicas = options_.replicas;
        sc.Duplicates = kDuplicateWindowNs;
        sc.Discard = js_DiscardNew;  // overload is a visible publish error, never a silent drop
        sc.MaxMsgs = options_.max_msgs;
        sc.MaxBytes = options_.max_bytes;
        sc.AllowDirect = true;  // dead-letter listing and queue inspection read without a consumer
        jsErrCode jerr = static_cast<jsErrCode>(0);
        natsStatus s = js_AddStream(nullptr, js_, &sc, nullptr, &jerr);
        if (s != NATS_OK && jerr == JSStreamNameExistErr) s = js_UpdateStream(nullptr, js_, &sc, nullptr, &jerr);
        if (s != NATS_OK) return Error{"nats: cannot declare stream " + spec.name + ": " + nats::error(s, jerr)};
    }

    // The idempotency record. A bucket that exists with other settings (say,
    // another TTL chosen by an operator) is used as it is.
    const std::string bucket = doneBucket();
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = bucket.c_str();
    kc.Description = "TPS Kanban: ids of completed work items";
    kc.History = 1;
    kc.TTL = options_.done_ttl_ms * nats::kNsPerMs;
    kc.StorageType = js_FileStorage;
    kc.Replicas = options_.replicas;
    kvStore* kv = nullptr;
    natsStatus s = js_CreateKeyValue(&kv, js_, &kc);
    if (s != NATS_OK) s = js_KeyValue(&kv, js_, bucket.c_str());
    if (s != NATS_OK) return Error{"nats: cannot declare key-value bucket " + bucket + ": " + nats::error(s)};
    kvStore_Destroy(kv);
    streams_ready_ = true;
    return Ok{};
}

Status JetStream::ensureConsumer(const ConsumerSpec& spec, Priority priority) {
    const std::string durable = durableName(spec.domain, priority);
    // What the server's consumer is made of: declared again only when it changes.
    const std::string declared = std::to_string(spec.timeout_ms) + "/" + std::to_string(spec.max_attempts) + "/" +
                                 std::to_string(spec.max_ack_pending);
    {
        std::lock_guard lock(consumers_mu_);
        if (auto it = declared_consumers_.find(durable); it != declared_consumers_.end() && it->second == declared)
            return Ok{};
    }
    const std::string subject = workSubject(spec.domain, priority);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable.c_str();
    cc.FilterSubject = subject.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = ackWaitFor(spec.timeout_ms).count() * nats::kNsPerMs;
    // The host counts attempts (handler calls) and dead-letters at
    // max_attempts; the server's limit is only a safety net far above.
    cc.MaxDeliver = deliveryLimit(spec.max_attempts);
    cc.MaxAckPending = spec.max_ack_pending;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_AddConsumer(nullptr, js_, options_.stream.c_str(), &cc, nullptr, &jerr);
    if (s != NATS_OK && jerr != 0) {
        // It exists with another configuration (e.g. a changed timeout): update it.
        s = js_UpdateConsumer(nullptr, js_, options_.stream.c_str(), &cc, nullptr, &jerr);
    }
    if (s != NATS_OK) return Error{"nats: cannot declare consumer " + durable + ": " + nats::error(s, jerr)};
    std::lock_guard lock(consumers_mu_);
    declared_consumers_[durable] = declared;
    return Ok{};
}

Result<std::unique_ptr<Consumer>> JetStream::openConsumer(const ConsumerSpec& spec) {
    // Readiness (healthy()) is never withdrawn here: a worker opening a
    // consumer says nothing about the streams. Only a failure does, and
    // then the topology is declared again.
    auto open = [&]() -> Result<std::unique_ptr<Consumer>> {
        if (Status s = ensureStreams(); !s) return s.error();
        for (Priority p : kPriorities)
            if (Status s = ensureConsumer(spec, p); !s) return s.error();
        return subscribeJetStreamConsumer(*this, spec);
    };
    auto consumer = open();
    if (consumer || !connected()) return consumer;
    spdlog::info("nats: opening a consumer of domain={} failed ({}); declaring the topology again", spec.domain,
                 consumer.message());
    forgetTopology();
    return open();
}

void JetStream::forgetTopology() {
    streams_ready_ = false;
    std::lock_guard lock(consumers_mu_);
    declared_consumers_.clear();
}

Result<std::unique_ptr<DoneStore>> JetStream::openDoneStore() { return openJetStreamDoneStore(*this); }

std::string JetStream::doneIndexTrouble() {
    if (!healthy()) return "";  // not this one's trouble: readiness says why
    return doneMirror().building();
}

DoneMirror& JetStream::doneMirror() {
    std::lock_guard lock(mirror_mu_);
    if (!mirror_)
        mirror_ = std::make_unique<DoneMirror>(nc_, js_, doneBucket(), options_.done_index_max_ids, options_.done_ttl_ms);
    return *mirror_;
}

Result<PublishAck> JetStream::publishSync(const std::string& subject, std::string_view body, const Headers& headers) {
    // The server counts headers and body against its max_payload; say so
    // precisely instead of cnats' bare "Maximum Payload Exceeded".
    const std::int64_t max_payload = natsConnection_GetMaxPayload(nc_);
    if (max_payload > 0) {
        std::int64_t header_bytes = 12;  // "NATS/1.0\r\n" ... "\r\n"
        for (const auto& [key, value] : headers) header_bytes += static_cast<std::int64_t>(key.size() + value.size() + 4);
        const std::int64_t limit = max_payload - header_bytes;
        if (static_cast<std::int64_t>(body.size()) > limit)
            return Error{"publish to " + subject + ": payload of " + std::to_string(body.size()) +
                         " bytes exceeds the limit of " + std::to_string(limit) + " bytes (the NATS server's max_payload " +
                         std::to_string(max_payload) + " minus " + std::to_string(header_bytes) + " bytes of headers)",
                         /*refused=*/true};
    }
    natsMsg* m = nullptr;
    natsStatus s = natsMsg_Create(&m, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size()));
    for (const auto& [key, value] : headers)
        if (s == NATS_OK) s = natsMsgHeader_Add(m, key.c_str(), value.c_str());  // a name may repeat
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        return Error{"publish to " + subject + ": cannot build message: " + nats::error(s)};
    }
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_PublishMsg(&pa, js_, m, nullptr, &jerr);
    // No stream listens yet (first use on a fresh server): declare, retry once.
    if (s == NATS_NO_RESPONDERS && !streams_ready_.load()) {
        if (Status st = ensureStreams(); !st) {
            natsMsg_Destroy(m);
            return st.error();
        }
        s = js_PublishMsg(&pa, js_, m, nullptr, &jerr);
    }
    // In a cluster, a stream whose leader just died answers nothing until
    // its replicas elect another (a few seconds): no responders, a timeout,
    // or "JetStream not available". Every publish carries a Nats-Msg-Id, so
    // the stream drops a copy it already stored and a retry is safe. Retry
    // while the connection is up; a dropped connection is the caller's to
    // handle (fail over, or wait for the reconnect).
    const auto give_up = std::chrono::steady_clock::now() + kPublishRetryBudget;
    for (auto pause = std::chrono::milliseconds(50);
         s != NATS_OK && transientPublishError(s, jerr) && connected() &&
         std::chrono::steady_clock::now() + pause < give_up;
         pause = std::min(pause * 2, std::chrono::milliseconds(1000))) {
        std::this_thread::sleep_for(pause);
        jerr = static_cast<jsErrCode>(0);
        s = js_PublishMsg(&pa, js_, m, nullptr, &jerr);
    }
    natsMsg_Destroy(m);
    if (s == NATS_NO_RESPONDERS)
        return Error{"publish to " + subject + ": no stream answered for " +
                     std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kPublishRetryBudget).count()) +
                     " s (a stream leader election that did not end, or the stream was deleted)"};
    if (s != NATS_OK) {
        std::string why = nats::error(s, jerr);
        bool refused = false;
        switch (jerr) {
            case JSStreamStoreFailedErr:  // "maximum messages/bytes exceeded" with discard new
            case JSStreamLimitsErr:
            case JSInsufficientResourcesErr:
            case JSStorageResourcesExceededErr:
                // Backpressure, not an outage: the publisher must slow down
                // rather than fill the fallback broker.
                why += " (stream full: raise nats.max_msgs / nats.max_bytes, or let the queue drain)";
                refused = true;
                break;
            default: break;
        }
        return Error{"publish to " + subject + ": " + why, refused};
    }
    PublishAck ack{pa->Sequence, pa->Duplicate};
    jsPubAck_Destroy(pa);
    return ack;
}

Result<PublishAck> JetStream::publish(const PublishRequest& request) {
    if (request.id.empty()) return Error{"publish: empty work id", /*refused=*/true};
    Headers headers{{"Nats-Msg-Id", request.id}, {"Kanban-Created", std::to_string(nowUnixMs())}};
    if (request.deadline_unix_ms) headers.emplace_back("Kanban-Deadline", std::to_string(*request.deadline_unix_ms));
    for (const auto& h : request.headers)
        if (!reservedHeader(h.first)) headers.push_back(h);
    if (request.not_before_unix_ms && *request.not_before_unix_ms > nowUnixMs()) {
        // Waits in the delayed stream, out of the domain's way, until then.
        headers.emplace_back("Kanban-Not-Before", std::to_string(*request.not_before_unix_ms));
        return publishSync(delayedSubject(request.domain, request.priority), request.payload, headers);
    }
    return publishSync(workSubject(request.domain, request.priority), request.payload, headers);
}

Result<PublishAck> JetStream::publishCopy(natsMsg* original, const std::string& subject, const std::string& msg_id,
                                         const std::string& id) {
    Headers headers{{"Nats-Msg-Id", msg_id}, {"Kanban-Id", id}};
    for (const char* key : {"Kanban-Deadline", "Kanban-Created", "Kanban-Not-Before"})
        if (const char* v = nats::header(original, key)) headers.emplace_back(key, v);
    nats::userHeaders(original, headers);
    const std::string_view body(natsMsg_GetData(original), static_cast<std::size_t>(natsMsg_GetDataLength(original)));
    return publishSync(subject, body, headers);
}

Status JetStream::publishDeadLetter(natsMsg* original, std::uint64_t stream_sequence, const std::string& id,
                                    const std::string& domain, std::uint32_t attempts, std::string_view reason,
                                    std::string_view code) {
    // The DLQ copy's dedup key is the original's place in the work stream:
    // a crash between this publish and the Term redelivers the same stored
    // message, whose second DLQ copy is then dropped. (Keying it by the work
    // id would drop a legitimate second dead-lettering of a replayed item.)
    Headers headers{{"Nats-Msg-Id", "dlq:" + options_.stream + ":" + std::to_string(stream_sequence)},
                    {"Kanban-Original-Id", id},
                    {"Kanban-Reason", std::string(reason)},
                    {"Kanban-Reason-Code", std::string(code)},
                    {"Kanban-Attempts", std::to_string(attempts)},
                    {"Kanban-Original-Subject", natsMsg_GetSubject(original)}};
    for (const char* key : {"Kanban-Deadline", "Kanban-Created"})
        if (const char* v = nats::header(original, key)) headers.emplace_back(key, v);
    nats::userHeaders(original, headers);  // a replay gives them back
    const std::string_view body(natsMsg_GetData(original), static_cast<std::size_t>(natsMsg_GetDataLength(original)));
    auto ack = publishSync(deadLetterSubject(domain), body, headers);
    if (!ack) return Error{"dead-letter " + ack.message()};
    return Ok{};
}


}  // namespace kanban::host::broker
