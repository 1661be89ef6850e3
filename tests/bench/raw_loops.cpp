#include "raw_loops.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <nats/nats.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string_view>
#include <unordered_set>
#include <cstdio>
#include <stdexcept>

namespace kanban::bench {

namespace {

double secondsSince(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

constexpr double kGiveUpSeconds = 120;

}  // namespace

// ---- cnats ----------------------------------------------------------------

RawNats::RawNats(const std::string& url) {
    natsOptions* o = nullptr;
    natsOptions_Create(&o);
    natsOptions_SetURL(o, url.c_str());
    natsOptions_SetSendAsap(o, true);  // docs/dependencies.md §10: else every flush waits up to 1 ms
    const natsStatus s = natsConnection_Connect(&nc_, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) throw std::runtime_error("raw nats: cannot connect to " + url);
    if (natsConnection_JetStream(&js_, nc_, nullptr) != NATS_OK) throw std::runtime_error("raw nats: no JetStream");
}

RawNats::~RawNats() {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
}

void RawNats::declare(const std::string& name) {
    for (const std::string& stream : {name, "KV_" + name + "_DONE"}) js_DeleteStream(js_, stream.c_str(), nullptr, nullptr);
    const std::string subject = name + ".*";
    const char* subjects[] = {subject.c_str()};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = name.c_str();
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Retention = js_WorkQueuePolicy;
    sc.Storage = js_FileStorage;
    if (js_AddStream(nullptr, js_, &sc, nullptr, nullptr) != NATS_OK) throw std::runtime_error("raw nats: stream");
    kvConfig kc;
    kvConfig_Init(&kc);
    const std::string bucket = name + "_DONE";
    kc.Bucket = bucket.c_str();
    kc.History = 1;
    kvStore* kv = nullptr;
    if (js_CreateKeyValue(&kv, js_, &kc) != NATS_OK) throw std::runtime_error("raw nats: bucket");
    kvStore_Destroy(kv);
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js_, ("KV_" + bucket).c_str(), nullptr, nullptr) == NATS_OK) {
        si->Config->AllowDirect = true;
        js_UpdateStream(nullptr, js_, si->Config, nullptr, nullptr);
        jsStreamInfo_Destroy(si);
    }
}

double RawNats::consume(const std::string& name, int n, int batch, Work work,
                        const std::function<void(const char* id)>& handle) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.MaxAckPending = batch * 4;
    natsSubscription* sub = nullptr;
    if (js_PullSubscribe(&sub, js_, (name + ".*").c_str(), "bench", nullptr, &so, nullptr) != NATS_OK)
        throw std::runtime_error("raw nats: pull subscribe");
    const std::string inbox = "_INBOX.bench." + name;
    natsSubscription* replies = nullptr;
    natsConnection_SubscribeSync(&replies, nc_, (inbox + ".>").c_str());
    const std::string bucket_stream = "KV_" + name + "_DONE";
    const std::string direct = "$JS.API.DIRECT.GET." + bucket_stream;
    const std::string key_prefix = "$KV." + name + "_DONE.";
    const auto idOf = [](natsMsg* m) {
        const char* id = nullptr;
        natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
        return id != nullptr ? id : "none";
    };
    // done_log: the local set of recorded ids, fed by an ordered consumer.
    struct Mirror {
        std::mutex mu;
        std::condition_variable cv;
        std::uint64_t applied = 0;
        std::unordered_set<std::string> ids;
    } mirror;
    natsSubscription* records = nullptr;
    if (work == Work::done_log) {
        jsSubOptions mo;
        jsSubOptions_Init(&mo);
        mo.Ordered = true;
        const auto onRecord = [](natsConnection*, natsSubscription*, natsMsg* m, void* closure) {
            auto* mr = static_cast<Mirror*>(closure);
            jsMsgMetaData* md = nullptr;
            if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
                std::lock_guard lock(mr->mu);
                std::string_view body(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m)));
                for (std::size_t at; !body.empty(); body.remove_prefix(at == std::string_view::npos ? body.size() : at + 1)) {
                    at = body.find('\n');
                    mr->ids.emplace(body.substr(0, at));
                }
                mr->applied = md->Sequence.Stream;
                jsMsgMetaData_Destroy(md);
            }
            mr->cv.notify_all();
            natsMsg_Destroy(m);
        };
        if (js_Subscribe(&records, js_, (key_prefix + ">").c_str(), onRecord, &mirror, nullptr, &mo, nullptr) != NATS_OK)
            throw std::runtime_error("raw nats: ordered consumer on the bucket");
    }
    std::uint64_t record_no = 0;
    int got = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (got < n && secondsSince(t0) < kGiveUpSeconds) {
        natsMsgList list{};
        if (natsSubscription_Fetch(&list, sub, batch, 1000, nullptr) != NATS_OK) continue;
        if (work == Work::key_per_id) {
            // The batch's lookups, pipelined: one round trip.
            for (int i = 0; i < list.Count; ++i) {
                const std::string body = R"({"last_by_subj":")" + key_prefix + idOf(list.Msgs[i]) + R"("})";
                natsConnection_PublishRequest(nc_, direct.c_str(), (inbox + "." + std::to_string(i)).c_str(), body.data(),
                                              static_cast<int>(body.size()));
            }
            for (int i = 0; i < list.Count; ++i) {
                natsMsg* r = nullptr;
                if (natsSubscription_NextMsg(&r, replies, 2000) == NATS_OK) natsMsg_Destroy(r);
            }
        } else if (work == Work::done_log) {
            jsStreamInfo* si = nullptr;
            std::uint64_t last = 0;
            if (js_GetStreamInfo(&si, js_, bucket_stream.c_str(), nullptr, nullptr) == NATS_OK) {
                last = si->State.LastSeq;
                jsStreamInfo_Destroy(si);
            }
            std::unique_lock lock(mirror.mu);
            mirror.cv.wait_for(lock, std::chrono::seconds(2), [&] { return mirror.applied >= last; });
            for (int i = 0; i < list.Count; ++i)
                if (mirror.ids.count(idOf(list.Msgs[i])) != 0) throw std::runtime_error("raw nats: an id done twice");
        }
        if (handle)
            for (int i = 0; i < list.Count; ++i) handle(idOf(list.Msgs[i]));
        if (work == Work::key_per_id) {
            // The records, pipelined, then the acks.
            for (int i = 0; i < list.Count; ++i)
                js_PublishAsync(js_, (key_prefix + idOf(list.Msgs[i])).c_str(), "done", 4, nullptr);
            js_PublishAsyncComplete(js_, nullptr);
        } else if (work == Work::done_log) {
            std::string body;
            for (int i = 0; i < list.Count; ++i) (body += idOf(list.Msgs[i])) += '\n';
            jsPubAck* pa = nullptr;
            js_Publish(&pa, js_, (key_prefix + "log.raw." + std::to_string(++record_no)).c_str(), body.data(),
                       static_cast<int>(body.size()), nullptr, nullptr);
            jsPubAck_Destroy(pa);
        }
        for (int i = 0; i < list.Count; ++i) natsMsg_Ack(list.Msgs[i], nullptr);
        got += list.Count;
        natsMsgList_Destroy(&list);
    }
    const double seconds = secondsSince(t0);
    if (records != nullptr) {
        natsSubscription_Unsubscribe(records);
        natsConnection_FlushTimeout(nc_, 2000);  // no callback in flight when it is destroyed (nats.c #637)
        natsSubscription_Destroy(records);
    }
    natsSubscription_Destroy(replies);
    natsSubscription_Destroy(sub);
    return got >= n ? n / seconds : 0;
}

// ---- rabbitmq-c -----------------------------------------------------------

RawAmqp::RawAmqp(int port) {
    c_ = amqp_new_connection();
    amqp_socket_t* s = amqp_tcp_socket_new(c_);
    timeval tv{5, 0};
    if (s == nullptr || amqp_socket_open_noblock(s, "127.0.0.1", port, &tv) != AMQP_STATUS_OK) {
        amqp_destroy_connection(c_);
        throw std::runtime_error("raw amqp: cannot connect to port " + std::to_string(port));
    }
    const amqp_rpc_reply_t r =
        amqp_login(c_, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        amqp_destroy_connection(c_);
        throw std::runtime_error("raw amqp: login refused");
    }
    amqp_channel_open(c_, 1);
    check("channel.open");
}

RawAmqp::~RawAmqp() {
    amqp_channel_close(c_, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c_);
}

void RawAmqp::check(const char* what) {
    if (amqp_get_rpc_reply(c_).reply_type != AMQP_RESPONSE_NORMAL)
        throw std::runtime_error(std::string("raw amqp: ") + what + " failed");
}

void RawAmqp::declareQueue(const std::string& queue, int max_priority) {
    amqp_table_entry_t arg;
    arg.key = amqp_cstring_bytes("x-max-priority");
    arg.value.kind = AMQP_FIELD_KIND_I32;
    arg.value.value.i32 = max_priority;
    const amqp_table_t args = max_priority > 0 ? amqp_table_t{1, &arg} : amqp_empty_table;
    amqp_queue_declare(c_, 1, amqp_cstring_bytes(queue.c_str()), 0, 1, 0, 0, args);
    check("queue.declare");
    amqp_queue_purge(c_, 1, amqp_cstring_bytes(queue.c_str()));
    check("queue.purge");
}

void RawAmqp::publish(const std::string& exchange, const std::string& routing_key, int n, const std::string& prefix,
                      std::optional<std::uint8_t> priority) {
    if (!confirming_) {
        amqp_confirm_select(c_, 1);
        check("confirm.select");
        confirming_ = true;
    }
    const std::string body(kPayload, 'x');
    std::uint64_t sent = 0, confirmed = 0;
    // Reads confirms until at most `outstanding` publishes wait for one.
    const auto confirmUntil = [&](std::uint64_t outstanding) {
        while (sent - confirmed > outstanding) {
            amqp_frame_t f;
            timeval tv{30, 0};
            if (amqp_simple_wait_frame_noblock(c_, &f, &tv) != AMQP_STATUS_OK)
                throw std::runtime_error("raw amqp: no confirm within 30 s");
            if (f.frame_type != AMQP_FRAME_METHOD) continue;
            if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) throw std::runtime_error("raw amqp: publish nacked");
            if (f.payload.method.id != AMQP_BASIC_ACK_METHOD) continue;
            const auto* ack = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
            confirmed = ack->multiple ? ack->delivery_tag : confirmed + 1;
        }
    };
    for (int i = 0; i < n; ++i) {
        const std::string id = prefix + "-" + std::to_string(i);
        amqp_basic_properties_t p{};
        p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
        p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
        p.message_id = amqp_cstring_bytes(id.c_str());
        if (priority) {
            p._flags |= AMQP_BASIC_PRIORITY_FLAG;
            p.priority = *priority;
        }
        if (amqp_basic_publish(c_, 1, amqp_cstring_bytes(exchange.c_str()), amqp_cstring_bytes(routing_key.c_str()), 0, 0,
                               &p, amqp_bytes_t{body.size(), const_cast<char*>(body.data())}) != AMQP_STATUS_OK)
            throw std::runtime_error("raw amqp: publish failed");
        ++sent;
        confirmUntil(4096);
    }
    confirmUntil(0);
}

double RawAmqp::consume(const std::string& queue, int n, int prefetch, int ack_every) {
    amqp_basic_qos(c_, 1, 0, static_cast<std::uint16_t>(prefetch), 0);
    check("basic.qos");
    amqp_basic_consume(c_, 1, amqp_cstring_bytes(queue.c_str()), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    check("basic.consume");
    int got = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (got < n && secondsSince(t0) < kGiveUpSeconds) {
        amqp_maybe_release_buffers(c_);
        amqp_envelope_t env;
        timeval tv{1, 0};
        const amqp_rpc_reply_t r = amqp_consume_message(c_, &env, &tv, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) continue;
            throw std::runtime_error("raw amqp: consume failed");
        }
        ++got;
        if (ack_every <= 1)
            amqp_basic_ack(c_, 1, env.delivery_tag, 0);
        else if (got % ack_every == 0 || got == n)
            amqp_basic_ack(c_, 1, env.delivery_tag, 1);
        amqp_destroy_envelope(&env);
    }
    const double seconds = secondsSince(t0);
    return got >= n ? n / seconds : 0;
}

}  // namespace kanban::bench
