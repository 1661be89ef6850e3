#include "broker/jetstream_delayed_mover.hpp"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include "broker/nats_util.hpp"
#include "common/clock.hpp"

namespace kanban::host::broker {
namespace {

constexpr int kBatch = 256;
// An idle fetch waits this long on the server (one request per this, per
// host); an item falling due meanwhile is delivered to it at once, and a
// stop ends it (stop() unsubscribes).
constexpr std::int64_t kIdleFetchMs = 15000;
// Holding a due item to move it takes one publish; past this the server hands it to another host.
constexpr std::int64_t kAckWaitMs = 30000;
constexpr std::int64_t kMaxWaiting = 1'000'000;

}  // namespace

void DelayedMover::start() {
    {
        std::lock_guard lock(mu_);
        stop_ = false;
    }
    thread_ = std::thread([this] { run(); });
}

void DelayedMover::stop() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    {
        // A fetch waiting on the server returns at once (the durable stays:
        // it was declared, not made by the subscription).
        std::lock_guard lock(sub_mu_);
        if (sub_ != nullptr) natsSubscription_Unsubscribe(sub_);
    }
    if (thread_.joinable()) thread_.join();
}

bool DelayedMover::sleepUnlessStopped(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [&] { return stop_; });
}

Status DelayedMover::subscribe() {
    if (Status s = nats_.ensureStreams(); !s) return s;
    const std::string stream = nats_.delayedStream();
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = kDelayedMoverDurable;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = kAckWaitMs * nats::kNsPerMs;
    cc.MaxDeliver = -1;     // each wait is a delivery: never a reason to give up
    // Every waiting item is pending (nak'd with its delay). cnats sends no
    // -1 ("unlimited"; the server would default to 1,000), so a bound: past
    // it, further items wait undelivered in the stream, never handled early
    // but seen only once earlier ones have moved.
    cc.MaxAckPending = kMaxWaiting;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_AddConsumer(nullptr, nats_.js(), stream.c_str(), &cc, nullptr, &jerr);
    if (s != NATS_OK && jerr != 0) s = js_UpdateConsumer(nullptr, nats_.js(), stream.c_str(), &cc, nullptr, &jerr);
    if (s != NATS_OK) return Error{"cannot declare consumer " + std::string(kDelayedMoverDurable) + ": " + nats::error(s, jerr)};
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Consumer = kDelayedMoverDurable;
    so.ManualAck = true;
    jerr = static_cast<jsErrCode>(0);
    natsSubscription* sub = nullptr;
    if (s = js_PullSubscribe(&sub, nats_.js(), kDelayedFilter, kDelayedMoverDurable, nullptr, &so, &jerr); s != NATS_OK)
        return Error{"pull subscribe " + std::string(kDelayedMoverDurable) + ": " + nats::error(s, jerr)};
    std::lock_guard lock(sub_mu_);
    {
        std::lock_guard stopping(mu_);
        if (stop_) {  // stop() found no subscription to end: none may wait now
            natsSubscription_Destroy(sub);
            return Error{"stopping"};
        }
    }
    sub_ = sub;
    return Ok{};
}

void DelayedMover::dropSubscription() {
    std::lock_guard lock(sub_mu_);
    if (sub_ != nullptr) natsSubscription_Destroy(sub_);
    sub_ = nullptr;
}

void DelayedMover::run() {
    auto retry_wait = std::chrono::milliseconds(250);
    bool warned = false;
    for (;;) {
        {
            std::lock_guard lock(mu_);
            if (stop_) break;
        }
        if (!nats_.connected()) {
            dropSubscription();
            sleepUnlessStopped(std::chrono::milliseconds(1000));
            continue;
        }
        if (sub_ == nullptr) {
            if (Status s = subscribe(); !s) {
                if (!warned && s.message() != "stopping") spdlog::warn("delayed items: {}; trying again", s.message());
                warned = true;
                sleepUnlessStopped(retry_wait);
                retry_wait = std::min(retry_wait * 2, std::chrono::milliseconds(5000));
                continue;
            }
            if (warned) spdlog::info("delayed items: moving again");
            warned = false;
            retry_wait = std::chrono::milliseconds(250);
        }
        natsMsgList list{};
        jsErrCode jerr = static_cast<jsErrCode>(0);
        const natsStatus s = natsSubscription_Fetch(&list, sub_, kBatch, kIdleFetchMs, &jerr);
        if (s == NATS_TIMEOUT) continue;  // nothing due
        if (s != NATS_OK) {
            spdlog::debug("delayed items: fetch failed ({}); subscribing again", nats::error(s, jerr));
            dropSubscription();
            sleepUnlessStopped(retry_wait);
            continue;
        }
        for (int i = 0; i < list.Count; ++i) handle(list.Msgs[i]);
        natsMsgList_Destroy(&list);
    }
    dropSubscription();
}

void DelayedMover::handle(natsMsg* m) {
    const char* nb_text = nats::header(m, "Kanban-Not-Before");
    const std::optional<std::int64_t> nb = nb_text != nullptr ? nats::parseInt64(nb_text) : std::nullopt;
    if (const std::int64_t left = nb ? *nb - nowUnixMs() : 0; left > 0) {
        if (natsStatus s = natsMsg_NakWithDelay(m, left, nullptr); s != NATS_OK)
            spdlog::debug("delayed items: nak failed ({}); the item comes back after the ack wait", nats::error(s));
        return;
    }
    const char* subject = natsMsg_GetSubject(m);
    const auto work = workSubjectOfDelayed(subject);
    jsMsgMetaData* md = nullptr;
    if (!work || natsMsg_GetMetaData(&md, m) != NATS_OK) {
        spdlog::error("delayed items: message on {} is not a delayed item; removed", subject);
        natsMsg_Term(m, nullptr);
        return;
    }
    const std::string msg_id = "delayed:" + nats_.delayedStream() + ":" + std::to_string(md->Sequence.Stream);
    jsMsgMetaData_Destroy(md);
    std::string id;
    if (const char* v = nats::header(m, "Kanban-Id"); v != nullptr && *v != '\0')
        id = v;
    else if (const char* v2 = nats::header(m, "Nats-Msg-Id"); v2 != nullptr && *v2 != '\0')
        id = v2;
    else
        id = msg_id;
    auto stored = nats_.publishCopy(m, *work, msg_id, id);
    if (!stored) {
        // Not moved: the item stays, and comes back after a short while.
        spdlog::warn("delayed items: id={} is due but not moved to {} ({}); trying again", id, *work, stored.message());
        natsMsg_NakWithDelay(m, 1000, nullptr);
        return;
    }
    if (natsStatus s = natsMsg_AckSync(m, nullptr, nullptr); s != NATS_OK)
        spdlog::debug("delayed items: ack of id={} failed ({}); a second move is dropped as a duplicate", id,
                      nats::error(s));
    spdlog::debug("delayed items: id={} moved to {}", id, *work);
}

}  // namespace kanban::host::broker
