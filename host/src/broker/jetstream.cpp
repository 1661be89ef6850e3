#include "broker/jetstream.hpp"

#include "common/base64.hpp"
#include "common/clock.hpp"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <utility>

namespace kanban::host::broker {
namespace {

constexpr std::int64_t kNsPerMs = 1'000'000;
constexpr std::int64_t kDuplicateWindowNs = 120LL * 1000 * kNsPerMs;  // 2 min Nats-Msg-Id dedup
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
// Priority: levels are tried high → normal → low. Whether a level has work
// is decided from definitive answers, never from a short Fetch timing out
// (under load a reply can take longer than any short timeout, and a
// non-empty `high` would look empty): the consumer's NumPending (a JS API
// request that waits for its reply), or the NumPending metadata of the last
// message fetched from that level. A level found empty is not asked again
// for kEmptyRecheck while another level has work, so a new high item waits
// at most that long behind a lower-priority batch.
constexpr auto kEmptyRecheck = std::chrono::milliseconds(10);
// How long a Fetch waits on a level known to have work (it returns as soon
// as the first messages arrive; only a race with another worker that took
// them makes it wait this long).
constexpr std::int64_t kKnownWorkWaitMs = 50;
// How long a level that just had items is waited on before it is asked.
constexpr std::int64_t kTrickleWaitMs = 20;
// NumPending does not count items waiting for redelivery (a retry after its
// backoff, an expired ack wait). A level with none pending but some
// unacknowledged is probed with a short fetch at most every
// kRedeliveryProbeEvery, so a retried high item is not stuck behind a
// stream of fresh normal ones.
constexpr auto kRedeliveryProbeEvery = std::chrono::milliseconds(100);
constexpr std::int64_t kRedeliveryProbeMs = 5;
// A worker that found every level empty waits on one level at a time for at
// most this long (a pull request that expires), so a new item on another
// level is seen within it.
constexpr std::int64_t kIdleFetchMs = 100;
// Quiet: every level was found empty with nothing unacknowledged, so only a
// new publish can bring work (a retry or an expired ack wait needs an
// unacknowledged item). Then an idle worker stops asking the server: it
// waits on a plain subscription to the domain's work subjects, where every
// publish to them is delivered too, for up to the caller's idle_wait. The
// wait is local: no network traffic, no wake-ups; interrupt() ends it. A
// notice can only be missed while disconnected, so a disconnection ends
// quiet; the levels are asked again every kQuietRecheck all the same.
constexpr auto kQuietRecheck = std::chrono::seconds(60);
constexpr auto kQuietAfter = std::chrono::seconds(1);  // without work before a worker goes quiet
constexpr std::int64_t kQuietFlushMs = 2000;  // leaving quiet: see leaveQuiet()

std::string natsError(natsStatus s, jsErrCode jerr = static_cast<jsErrCode>(0)) {
    std::string text = natsStatus_GetText(s);
    natsStatus last = NATS_OK;
    const char* detail = nats_GetLastError(&last);
    // nats_GetLastError can be stale: use it only when it is about this status.
    if (detail != nullptr && *detail != '\0' && last == s) text += std::string(" (") + detail + ")";
    if (jerr != 0) text += " [jetstream error " + std::to_string(static_cast<int>(jerr)) + "]";
    return text;
}

// Disconnections so far (any connection of this process): a quiet worker
// may have missed a publish notice meanwhile (see kQuietRecheck).
std::atomic<std::uint64_t> g_disconnects{0};

void onDisconnected(natsConnection* nc, void*) {
    ++g_disconnects;
    // Also fired by our own natsConnection_Close(): only a live connection is news.
    if (!natsConnection_IsClosed(nc)) spdlog::warn("nats: disconnected; reconnecting");
}
void onReconnected(natsConnection* nc, void*) {
    char url[256] = {};
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    spdlog::info("nats: reconnected to {}", url);
}
void onConnected(natsConnection* nc, void*) {
    char url[256] = {};
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    spdlog::info("nats: connected to {}", url);
}
void onAsyncError(natsConnection*, natsSubscription*, natsStatus err, void*) {
    spdlog::warn("nats: asynchronous error: {}", natsStatus_GetText(err));
}

const char* header(natsMsg* m, const char* key) {
    const char* v = nullptr;
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK) return nullptr;
    return v;
}

std::optional<std::int64_t> parseInt64(const char* s) {
    if (s == nullptr) return std::nullopt;
    std::int64_t v = 0;
    const char* end = s + std::char_traits<char>::length(s);
    auto [p, ec] = std::from_chars(s, end, v);
    if (ec != std::errc() || p != end) return std::nullopt;
    return v;
}

class JetStreamDelivery final : public Delivery {
public:
    JetStreamDelivery(JetStream& owner, natsMsg* msg) : owner_(owner), msg_(msg) {}
    ~JetStreamDelivery() override { natsMsg_Destroy(msg_); }

    void ack() override { check(natsMsg_Ack(msg_, nullptr), "ack"); }
    void retryAfter(std::chrono::milliseconds delay) override {
        check(natsMsg_NakWithDelay(msg_, std::max<std::int64_t>(1, delay.count()), nullptr), "nak");
    }
    void release() override { check(natsMsg_Nak(msg_, nullptr), "nak"); }
    void defer(std::chrono::milliseconds) override {}  // the running worker's ack or nak settles it
    void progress() override { check(natsMsg_InProgress(msg_, nullptr), "in-progress"); }
    Status deadLetter(std::string_view reason) override {
        Status s = owner_.publishDeadLetter(msg_, stream_sequence, id, domain, attempt, reason);
        if (!s) return s;
        // The DLQ copy is stored; only now remove the original. A lost Term
        // means a redelivery whose DLQ publish is deduplicated by its id.
        if (natsStatus t = natsMsg_Term(msg_, nullptr); t != NATS_OK)
            return Error{"terminate after dead-lettering: " + natsError(t)};
        return Ok{};
    }

    std::uint64_t stream_sequence = 0;
    std::uint64_t pending_after = 0;  // messages still pending in this consumer

private:
    void check(natsStatus s, const char* what) {
        if (s != NATS_OK) spdlog::warn("nats: {} failed: {} domain={} id={}", what, natsError(s), domain, id);
    }
    JetStream& owner_;
    natsMsg* msg_;
};

class JetStreamConsumer final : public Consumer {
public:
    JetStreamConsumer(JetStream& owner, ConsumerSpec spec) : owner_(owner), spec_(std::move(spec)) {}
    ~JetStreamConsumer() override {
        // Destroy, not Unsubscribe: the durable consumer must outlive us.
        for (natsSubscription* s : subs_) natsSubscription_Destroy(s);
        leaveQuiet();
    }

    Status subscribe() {
        for (Priority p : kPriorities) {
            jsSubOptions so;
            jsSubOptions_Init(&so);
            const std::string durable = durableName(spec_.domain, p);
            const std::string subject = workSubject(spec_.domain, p);
            so.Stream = owner_.streamName().c_str();
            so.Consumer = durable.c_str();  // bind to the consumer declared by the host
            so.ManualAck = true;
            natsSubscription* sub = nullptr;
            jsErrCode jerr = static_cast<jsErrCode>(0);
            natsStatus s = js_PullSubscribe(&sub, owner_.js(), subject.c_str(), durable.c_str(), nullptr, &so, &jerr);
            if (s != NATS_OK) return Error{"pull subscribe " + durable + ": " + natsError(s, jerr)};
            subs_.push_back(sub);
            durables_.push_back(durable);
        }
        return Ok{};
    }

    Result<DeliveryBatch> fetch(int max, std::chrono::milliseconds idle_wait) override {
        if (quiet_ != nullptr) {
            if (!waitQuiet(idle_wait)) return DeliveryBatch{};
            leaveQuiet();
        }
        const auto now = std::chrono::steady_clock::now();
        // Anti-starvation first: a lower level not served for starvation_ms
        // is asked (one consumer-info round trip per period) and, if it has
        // waiting items, gets this batch.
        if (spec_.starvation_ms > 0) {
            const auto period = std::chrono::milliseconds(spec_.starvation_ms);
            for (std::size_t level = subs_.size() - 1; level > 0; --level) {
                Level& l = levels_[level];
                if (now - l.last_served < period) continue;
                l.last_served = now;  // asked: its clock restarts whether or not it has work
                auto st = state(level);
                if (!st) return st.error();
                if (st->pending == 0 && st->unacked == 0) continue;
                auto batch = fetchLevel(level, max, st->pending > 0 ? kKnownWorkWaitMs : kRedeliveryProbeMs);
                if (!batch || !batch->empty()) return batch;
            }
        }
        std::size_t settled_levels = 0;  // just seen with nothing pending or unacknowledged
        for (std::size_t level = 0; level < subs_.size(); ++level) {
            Level& l = levels_[level];
            if (l.empty_until > now) continue;
            // A level whose last fetch brought items is first asked with a
            // short fetch: under a trickle of items that saves the round trip
            // of asking. Its timing out proves nothing: then ask.
            if (!l.known_work && l.last_fetch_had_items) {
                auto batch = fetchLevel(level, max, kTrickleWaitMs);
                if (!batch || !batch->empty()) return batch;
            }
            if (!l.known_work) {
                auto st = state(level);
                if (!st) return st.error();
                if (st->pending == 0) {
                    l.empty_until = now + kEmptyRecheck;
                    if (st->unacked == 0) {
                        l.last_served = now;  // nothing waits there: nothing starves
                        ++settled_levels;
                        continue;
                    }
                    if (now < l.next_redelivery_probe) continue;
                    l.next_redelivery_probe = now + kRedeliveryProbeEvery;
                    auto batch = fetchLevel(level, max, kRedeliveryProbeMs);
                    if (!batch || !batch->empty()) return batch;
                    continue;
                }
            }
            auto batch = fetchLevel(level, max, kKnownWorkWaitMs);
            if (!batch || !batch->empty()) return batch;
            // The level had work, yet nothing came within the wait: a slow
            // reply under load, or another worker took it. Never fall
            // through to a lower level on a timeout; ask definitively next time.
            l.known_work = false;
            return batch;
        }
        // Quiet only after a while without work: entering and leaving costs
        // round trips, which a domain that is merely between items (a
        // steady trickle) should not pay.
        if (settled_levels == subs_.size() && now - last_work_ >= kQuietAfter) {
            if (enterQuiet()) {
                if (waitQuiet(idle_wait)) leaveQuiet();  // a publish came: look again next time
                return DeliveryBatch{};
            }
        }
        // Every level is empty: wait on one of them for at most kIdleFetchMs
        // (the others are asked again after it). The one that had work most
        // recently is the likeliest to get more (a pending pull request hands
        // a new item over at once); levels that never had any take turns.
        std::size_t level = next_idle_level_++ % subs_.size();
        for (std::size_t i = 0; i < subs_.size(); ++i)
            if (levels_[i].last_work > levels_[level].last_work) level = i;
        return fetchLevel(level, max, std::clamp<std::int64_t>(idle_wait.count(), 1, kIdleFetchMs));
    }

    // Ends a quiet wait (see Consumer::interrupt): unsubscribing wakes the
    // NextMsg that waits on the subscription.
    void interrupt() override {
        std::lock_guard lock(quiet_mu_);
        interrupted_ = true;
        if (quiet_ != nullptr) natsSubscription_Unsubscribe(quiet_);
    }

private:
    struct Level {
        std::chrono::steady_clock::time_point empty_until{};
        // When this level last got a batch or was seen empty (anti-starvation).
        std::chrono::steady_clock::time_point last_served = std::chrono::steady_clock::now();
        std::chrono::steady_clock::time_point next_redelivery_probe{};
        bool known_work = false;  // the last message fetched said more were pending
        std::chrono::steady_clock::time_point last_work{};  // when a fetch last returned items
        bool last_fetch_had_items = false;
    };
    struct LevelState {
        std::uint64_t pending = 0;  // never delivered
        std::uint64_t unacked = 0;  // delivered, not yet acked (in hand, or waiting for redelivery)
    };

    Result<LevelState> state(std::size_t level) {
        jsConsumerInfo* ci = nullptr;
        jsErrCode jerr = static_cast<jsErrCode>(0);
        // (natsSubscription_GetConsumerInfo refuses pull subscriptions bound
        // with so.Consumer in cnats 3.4: "Invalid Subscription".)
        const std::string& durable = durables_[level];
        if (natsStatus s = js_GetConsumerInfo(&ci, owner_.js(), owner_.streamName().c_str(), durable.c_str(), nullptr, &jerr);
            s != NATS_OK)
            return Error{"consumer info " + durable + ": " + natsError(s, jerr)};
        LevelState st{ci->NumPending, static_cast<std::uint64_t>(ci->NumAckPending)};
        jsConsumerInfo_Destroy(ci);
        return st;
    }

    // Subscribes to the domain's work subjects, then asks every level again
    // (so that no publish can fall between the answer and the
    // subscription): true and quiet when all are still settled.
    bool enterQuiet() {
        const std::string subject = "kanban.*." + spec_.domain;
        natsSubscription* sub = nullptr;
        const std::uint64_t disconnects = g_disconnects.load();
        if (natsConnection_SubscribeSync(&sub, owner_.connection(), subject.c_str()) != NATS_OK) return false;
        {
            std::lock_guard lock(quiet_mu_);
            quiet_ = sub;
        }
        if (!settled()) {
            leaveQuiet();
            return false;
        }
        quiet_disconnects_ = disconnects;
        quiet_until_ = std::chrono::steady_clock::now() + kQuietRecheck;
        spdlog::trace("quiet domain={}", spec_.domain);
        return true;
    }

    // Every level has nothing pending and nothing unacknowledged (false
    // when the server cannot say: the fetch path reports that).
    bool settled() {
        for (std::size_t level = 0; level < subs_.size(); ++level) {
            auto st = state(level);
            if (!st || st->pending != 0 || st->unacked != 0) return false;
        }
        return true;
    }

    // One quiet wait of up to `wait`. True: leave quiet and look at the
    // levels (a publish was noticed, a disconnection may have hidden one,
    // or the periodic check found work); false: nothing to do (the wait
    // passed or was interrupted).
    bool waitQuiet(std::chrono::milliseconds wait) {
        if (takeInterrupt()) return false;
        if (g_disconnects.load() != quiet_disconnects_ ||
            natsConnection_Status(owner_.connection()) != NATS_CONN_STATUS_CONNECTED)
            return true;
        auto now = std::chrono::steady_clock::now();
        if (now >= quiet_until_) {
            if (!settled()) return true;
            quiet_until_ = now + kQuietRecheck;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(quiet_until_ - now);
        natsMsg* notice = nullptr;
        // quiet_ changes only on this thread; interrupt() may unsubscribe it
        // meanwhile, which ends the wait.
        const natsStatus s = natsSubscription_NextMsg(&notice, quiet_, std::max<std::int64_t>(1, std::min(wait, left).count()));
        natsMsg_Destroy(notice);
        if (takeInterrupt()) {
            leaveQuiet();  // the subscription may be gone: start afresh next time
            return false;
        }
        return s != NATS_TIMEOUT;
    }

    bool takeInterrupt() {
        std::lock_guard lock(quiet_mu_);
        return std::exchange(interrupted_, false);
    }

    void leaveQuiet() {
        natsSubscription* sub = nullptr;
        {
            std::lock_guard lock(quiet_mu_);
            sub = std::exchange(quiet_, nullptr);
        }
        if (sub == nullptr) return;
        // cnats 3.4.1 can crash when a subscription is destroyed while its
        // read loop is delivering a message to it (nats.c #637, fixed in
        // 3.6), and notices come unasked. So: no more notices (UNSUB), then
        // a round trip, after which the read loop has handled all the
        // server sent before it; only then destroy.
        natsSubscription_Unsubscribe(sub);
        natsConnection_FlushTimeout(owner_.connection(), kQuietFlushMs);
        natsSubscription_Destroy(sub);
        for (Level& l : levels_) l.empty_until = {};
    }

    Result<DeliveryBatch> fetchLevel(std::size_t level, int max, std::int64_t wait_ms) {
        DeliveryBatch out;
        levels_[level].known_work = false;
        natsMsgList list{};
        jsErrCode jerr = static_cast<jsErrCode>(0);
        natsStatus s = natsSubscription_Fetch(&list, subs_[level], max, wait_ms, &jerr);
        if (s == NATS_TIMEOUT) return out;
        if (s != NATS_OK)
            return Error{"fetch " + durableName(spec_.domain, kPriorities[level]) + ": " + natsError(s, jerr)};
        std::unordered_set<std::uint64_t> seen;
        out.reserve(static_cast<std::size_t>(list.Count));
        for (int i = 0; i < list.Count; ++i) {
            natsMsg* m = list.Msgs[i];
            list.Msgs[i] = nullptr;  // ownership moves to the Delivery (or is released below)
            auto d = std::make_unique<JetStreamDelivery>(owner_, m);
            if (!decode(*d, m, kPriorities[level])) continue;
            // A pull request that timed out can still deliver later, next to a
            // redelivery of the same message: hand out one copy per batch.
            if (!seen.insert(d->stream_sequence).second) continue;
            levels_[level].known_work = d->pending_after > 0;
            spdlog::trace("fetched domain={} id={} seq={} attempt={}", d->domain, d->id, d->stream_sequence, d->attempt);
            out.push_back(std::move(d));
        }
        levels_[level].last_fetch_had_items = !out.empty();
        if (!out.empty()) levels_[level].last_served = levels_[level].last_work = last_work_ = std::chrono::steady_clock::now();
        natsMsgList_Destroy(&list);
        return out;
    }

    bool decode(JetStreamDelivery& d, natsMsg* m, Priority priority) {
        jsMsgMetaData* md = nullptr;
        if (natsMsg_GetMetaData(&md, m) != NATS_OK) {
            spdlog::warn("nats: message without JetStream metadata on {}", natsMsg_GetSubject(m));
            return false;
        }
        d.stream_sequence = md->Sequence.Stream;
        d.pending_after = md->NumPending;
        d.attempt = static_cast<std::uint32_t>(std::max<std::uint64_t>(1, md->NumDelivered));
        if (md->Timestamp > 0) d.published_unix_ns = md->Timestamp;
        jsMsgMetaData_Destroy(md);

        d.domain = spec_.domain;
        d.priority = priority;
        d.payload = std::string_view(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m)));
        if (const char* id = header(m, "Nats-Msg-Id"); id != nullptr && *id != '\0')
            d.id = id;
        else
            d.id = owner_.streamName() + "-" + std::to_string(d.stream_sequence);
        if (const char* dl = header(m, "Kanban-Deadline")) {
            d.deadline_unix_ms = parseInt64(dl);
            if (!d.deadline_unix_ms)
                spdlog::warn("ignoring non-numeric Kanban-Deadline \"{}\" domain={} id={}", dl, d.domain, d.id);
        }
        return true;
    }

    JetStream& owner_;
    ConsumerSpec spec_;
    std::vector<natsSubscription*> subs_;  // indexed like kPriorities
    std::vector<std::string> durables_;    // same index
    Level levels_[3];
    std::size_t next_idle_level_ = 0;
    std::chrono::steady_clock::time_point last_work_ = std::chrono::steady_clock::now();  // any level
    std::mutex quiet_mu_;                // quiet_ and interrupted_, against interrupt()
    natsSubscription* quiet_ = nullptr;  // while quiet: the domain's work subjects
    bool interrupted_ = false;
    std::chrono::steady_clock::time_point quiet_until_{};  // the next check with the server
    std::uint64_t quiet_disconnects_ = 0;
};

// The idempotency record in the KV bucket, written and read without the
// kvStore API so that a whole batch costs one round trip each way: lookups
// are pipelined direct-get requests (the bucket's stream allows direct
// gets) answered on this store's own inbox; records are asynchronous
// publishes to `$KV.<bucket>.<key>` awaited together by flush().
class JetStreamDoneStore final : public DoneStore {
public:
    explicit JetStreamDoneStore(JetStream& owner)
        : owner_(owner),
          key_prefix_("$KV." + owner.doneBucket() + "."),
          direct_get_subject_("$JS.API.DIRECT.GET.KV_" + owner.doneBucket()) {}

    ~JetStreamDoneStore() override {
        if (js_ != nullptr) {
            // Records still in flight would call back into a destroyed store.
            flush();
            jsCtx_Destroy(js_);
        }
        if (sub_ != nullptr) natsSubscription_Destroy(sub_);
        if (inbox_ != nullptr) natsInbox_Destroy(inbox_);
    }

    Status open() {
        natsStatus s = natsInbox_Create(&inbox_);
        if (s == NATS_OK) s = natsConnection_SubscribeSync(&sub_, owner_.connection(), (std::string(inbox_) + ".*").c_str());
        if (s != NATS_OK) return Error{"idempotency store: cannot subscribe to its inbox: " + natsError(s)};
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = kWaitMs;
        jo.PublishAsync.AckHandler = &JetStreamDoneStore::onAck;
        jo.PublishAsync.AckHandlerClosure = this;
        jo.PublishAsync.MaxPending = 4096;
        if (s = natsConnection_JetStream(&js_, owner_.connection(), &jo); s != NATS_OK)
            return Error{"idempotency store: cannot create JetStream context: " + natsError(s)};
        return Ok{};
    }

    Result<std::vector<bool>> lookup(const std::vector<std::string_view>& ids) override {
        std::vector<bool> done(ids.size(), false);
        if (ids.empty()) return done;
        const std::string round = std::to_string(++round_);
        const std::string reply_prefix = std::string(inbox_) + "." + round + "-";
        for (std::size_t i = 0; i < ids.size(); ++i) {
            const std::string body = R"({"last_by_subj":")" + key_prefix_ + doneKey(ids[i]) + R"("})";
            const std::string reply = reply_prefix + std::to_string(i);
            if (natsStatus s = natsConnection_PublishRequest(owner_.connection(), direct_get_subject_.c_str(), reply.c_str(),
                                                             body.data(), static_cast<int>(body.size()));
                s != NATS_OK)
                return Error{"idempotency lookup: " + natsError(s)};
        }
        std::vector<bool> answered(ids.size(), false);
        std::size_t remaining = ids.size();
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
        while (remaining > 0) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
            natsMsg* m = nullptr;
            natsStatus s = left > 0 ? natsSubscription_NextMsg(&m, sub_, left) : NATS_TIMEOUT;
            if (s == NATS_TIMEOUT)
                return Error{"idempotency lookup: " + std::to_string(remaining) + " of " + std::to_string(ids.size()) +
                             " answers missing from the " + owner_.doneBucket() + " bucket after " +
                             std::to_string(kWaitMs) + " ms"};
            if (s != NATS_OK) return Error{"idempotency lookup: " + natsError(s)};
            const std::string_view subject = natsMsg_GetSubject(m);
            std::optional<std::size_t> index;
            if (subject.substr(0, reply_prefix.size()) == reply_prefix) {
                std::size_t i = 0;
                const std::string_view tail = subject.substr(reply_prefix.size());
                if (auto [p, ec] = std::from_chars(tail.data(), tail.data() + tail.size(), i);
                    ec == std::errc() && p == tail.data() + tail.size() && i < ids.size())
                    index = i;
            }
            const char* status = header(m, "Status");
            const std::string status_text = status != nullptr ? status : "";
            const char* description = header(m, "Description");
            const std::string description_text = description != nullptr ? description : "";
            natsMsg_Destroy(m);
            if (!index || answered[*index]) continue;  // a late answer to an earlier round
            if (status_text.empty())
                done[*index] = true;  // the record itself came back
            else if (status_text != "404")
                return Error{"idempotency lookup: the server answered " + status_text + " " + description_text +
                             (status_text == "503" ? " (is the " + owner_.doneBucket() + " bucket missing?)" : "")};
            answered[*index] = true;
            --remaining;
        }
        return done;
    }

    void record(std::string_view id) override {
        const std::string subject = key_prefix_ + doneKey(id);
        natsMsg* m = nullptr;
        natsStatus s = natsMsg_Create(&m, subject.c_str(), nullptr, kValue, static_cast<int>(sizeof kValue - 1));
        if (s == NATS_OK) s = js_PublishMsgAsync(js_, &m, nullptr);
        if (s != NATS_OK) {
            natsMsg_Destroy(m);  // no-op when the library took it
            std::lock_guard lock(mu_);
            ++failed_;
        }
    }

    std::size_t flush() override {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = kWaitMs;
        if (js_PublishAsyncComplete(js_, &po) != NATS_OK) {
            // Not confirmed in time: take them back (their late acks are dropped).
            natsMsgList pending{};
            if (js_PublishAsyncGetPendingList(&pending, js_) == NATS_OK) {
                std::lock_guard lock(mu_);
                failed_ += static_cast<std::size_t>(pending.Count);
                natsMsgList_Destroy(&pending);
            }
        }
        std::lock_guard lock(mu_);
        return std::exchange(failed_, 0);
    }

private:
    static constexpr std::int64_t kWaitMs = 2000;
    static constexpr char kValue[] = "done";

    static void onAck(jsCtx*, natsMsg* msg, jsPubAck*, jsPubAckErr* pae, void* closure) {
        if (pae != nullptr) {
            auto* self = static_cast<JetStreamDoneStore*>(closure);
            std::lock_guard lock(self->mu_);
            ++self->failed_;
        }
        natsMsg_Destroy(msg);
    }

    JetStream& owner_;
    const std::string key_prefix_;
    const std::string direct_get_subject_;
    natsInbox* inbox_ = nullptr;
    natsSubscription* sub_ = nullptr;
    jsCtx* js_ = nullptr;
    std::uint64_t round_ = 0;
    std::mutex mu_;  // failed_ is also counted from cnats' callback thread
    std::size_t failed_ = 0;
};

}  // namespace

std::string durableName(std::string_view domain, Priority priority) {
    return std::string(domain) + "_" + std::string(priorityName(priority));
}
std::string workSubject(std::string_view domain, Priority priority) {
    return "kanban." + std::string(priorityName(priority)) + "." + std::string(domain);
}
std::string deadLetterSubject(std::string_view domain) { return "kanban.dlq." + std::string(domain); }

Result<std::unique_ptr<JetStream>> JetStream::connect(const JetStreamOptions& options) {
    std::unique_ptr<JetStream> self(new JetStream(options));
    natsOptions* o = nullptr;
    if (natsOptions_Create(&o) != NATS_OK) return Error{"nats: cannot allocate options"};
    std::vector<const char*> urls;
    for (const auto& s : options.servers) urls.push_back(s.c_str());
    natsStatus s = natsOptions_SetServers(o, urls.data(), static_cast<int>(urls.size()));
    if (s == NATS_OK) s = natsOptions_SetName(o, options.connection_name.c_str());
    // Without SendAsap cnats delays every buffered write up to 1 ms: every
    // fetch and ack would pay it (dependencies.md §10).
    if (s == NATS_OK) s = natsOptions_SetSendAsap(o, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, options.keep_trying ? -1 : 0);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, 2000);
    if (s == NATS_OK) s = natsOptions_SetFailRequestsOnDisconnect(o, true);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, &onAsyncError, nullptr);
    if (s == NATS_OK && options.keep_trying) {
        s = natsOptions_SetDisconnectedCB(o, &onDisconnected, nullptr);
        if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, &onReconnected, nullptr);
        if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(o, true, &onConnected, nullptr);
    }
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        return Error{"nats: invalid options: " + natsError(s)};
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
        return Error{"nats: cannot connect to " + servers + ": " + natsError(s)};
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;  // JS API and publish-ack timeout, ms
    if (natsStatus js = natsConnection_JetStream(&self->js_, self->nc_, &jo); js != NATS_OK)
        return Error{"nats: cannot create JetStream context: " + natsError(js)};
    return self;
}

JetStream::~JetStream() {
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
        {options_.stream, {"kanban.high.*", "kanban.normal.*", "kanban.low.*"}, js_WorkQueuePolicy},
        {deadLetterStream(), {"kanban.dlq.*"}, js_LimitsPolicy},
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
        if (s != NATS_OK) return Error{"nats: cannot declare stream " + spec.name + ": " + natsError(s, jerr)};
    }

    // The idempotency record. A bucket that exists with other settings (say,
    // another TTL chosen by an operator) is used as it is.
    const std::string bucket = doneBucket();
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = bucket.c_str();
    kc.Description = "TPS Kanban: ids of completed work items";
    kc.History = 1;
    kc.TTL = options_.done_ttl_ms * kNsPerMs;
    kc.StorageType = js_FileStorage;
    kc.Replicas = options_.replicas;
    kvStore* kv = nullptr;
    natsStatus s = js_CreateKeyValue(&kv, js_, &kc);
    if (s != NATS_OK) s = js_KeyValue(&kv, js_, bucket.c_str());
    if (s != NATS_OK) return Error{"nats: cannot declare key-value bucket " + bucket + ": " + natsError(s)};
    kvStore_Destroy(kv);
    streams_ready_ = true;
    return Ok{};
}

Status JetStream::ensureConsumer(const ConsumerSpec& spec, Priority priority) {
    const std::string durable = durableName(spec.domain, priority);
    const std::string subject = workSubject(spec.domain, priority);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable.c_str();
    cc.FilterSubject = subject.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = ackWaitFor(spec.timeout_ms).count() * kNsPerMs;
    // The host counts attempts and dead-letters at max_attempts; the server's
    // limit is only a safety net above that.
    cc.MaxDeliver = spec.max_attempts + 2;
    cc.MaxAckPending = spec.max_ack_pending;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_AddConsumer(nullptr, js_, options_.stream.c_str(), &cc, nullptr, &jerr);
    if (s != NATS_OK && jerr != 0) {
        // It exists with another configuration (e.g. a changed timeout): update it.
        s = js_UpdateConsumer(nullptr, js_, options_.stream.c_str(), &cc, nullptr, &jerr);
    }
    if (s != NATS_OK) return Error{"nats: cannot declare consumer " + durable + ": " + natsError(s, jerr)};
    return Ok{};
}

Result<std::unique_ptr<Consumer>> JetStream::openConsumer(const ConsumerSpec& spec) {
    // Opening a consumer is rare (start, or recovery after an error), and a
    // broker that lost its state needs the streams back: always re-declare.
    streams_ready_ = false;
    if (Status s = ensureStreams(); !s) return s.error();
    for (Priority p : kPriorities)
        if (Status s = ensureConsumer(spec, p); !s) return s.error();
    auto consumer = std::make_unique<JetStreamConsumer>(*this, spec);
    if (Status s = consumer->subscribe(); !s) return s.error();
    return std::unique_ptr<Consumer>(std::move(consumer));
}

Result<std::unique_ptr<DoneStore>> JetStream::openDoneStore() {
    auto store = std::make_unique<JetStreamDoneStore>(*this);
    if (Status s = store->open(); !s) return s.error();
    return std::unique_ptr<DoneStore>(std::move(store));
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
        if (s == NATS_OK) s = natsMsgHeader_Set(m, key.c_str(), value.c_str());
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        return Error{"publish to " + subject + ": cannot build message: " + natsError(s)};
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
        std::string why = natsError(s, jerr);
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
    return publishSync(workSubject(request.domain, request.priority), request.payload, headers);
}

Status JetStream::publishDeadLetter(natsMsg* original, std::uint64_t stream_sequence, const std::string& id,
                                    const std::string& domain, std::uint32_t attempts, std::string_view reason) {
    // The DLQ copy's dedup key is the original's place in the work stream:
    // a crash between this publish and the Term redelivers the same stored
    // message, whose second DLQ copy is then dropped. (Keying it by the work
    // id would drop a legitimate second dead-lettering of a replayed item.)
    Headers headers{{"Nats-Msg-Id", "dlq:" + options_.stream + ":" + std::to_string(stream_sequence)},
                    {"Kanban-Original-Id", id},
                    {"Kanban-Reason", std::string(reason)},
                    {"Kanban-Attempts", std::to_string(attempts)},
                    {"Kanban-Original-Subject", natsMsg_GetSubject(original)}};
    for (const char* key : {"Kanban-Deadline", "Kanban-Created"})
        if (const char* v = header(original, key)) headers.emplace_back(key, v);
    const std::string_view body(natsMsg_GetData(original), static_cast<std::size_t>(natsMsg_GetDataLength(original)));
    auto ack = publishSync(deadLetterSubject(domain), body, headers);
    if (!ack) return Error{"dead-letter " + ack.message()};
    return Ok{};
}

Result<std::array<std::uint64_t, 3>> JetStream::queueDepth(std::string_view domain) {
    std::array<std::uint64_t, 3> depth{};
    for (Priority p : kPriorities) {
        const std::string durable = durableName(domain, p);
        jsConsumerInfo* ci = nullptr;
        jsErrCode jerr = static_cast<jsErrCode>(0);
        natsStatus s = js_GetConsumerInfo(&ci, js_, options_.stream.c_str(), durable.c_str(), nullptr, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) continue;
        if (s != NATS_OK) return Error{"consumer info " + durable + ": " + natsError(s, jerr)};
        depth[static_cast<std::size_t>(p)] = ci->NumPending + static_cast<std::uint64_t>(ci->NumAckPending);
        jsConsumerInfo_Destroy(ci);
    }
    return depth;
}

Result<std::vector<JetStream::DeadLetter>> JetStream::deadLetters(std::string_view domain, std::size_t limit) {
    std::vector<DeadLetter> out;
    const std::string stream = deadLetterStream();
    const std::string subject = deadLetterSubject(domain);
    for (std::uint64_t next = 1; out.size() < limit;) {
        jsDirectGetMsgOptions o;
        jsDirectGetMsgOptions_Init(&o);
        o.Sequence = next;
        o.NextBySubject = subject.c_str();
        natsMsg* m = nullptr;
        natsStatus s = js_DirectGetMsg(&m, js_, stream.c_str(), nullptr, &o);
        if (s == NATS_NOT_FOUND) break;  // no more on this subject
        if (s != NATS_OK) return Error{"read dead letters of " + std::string(domain) + ": " + natsError(s)};
        DeadLetter dl;
        const char* seq = header(m, "Nats-Sequence");
        dl.sequence = seq != nullptr ? parseInt64(seq).value_or(0) : 0;
        if (const char* v = header(m, "Kanban-Original-Id")) dl.id = v;
        if (const char* v = header(m, "Kanban-Reason")) dl.reason = v;
        if (const char* v = header(m, "Kanban-Original-Subject")) dl.original_subject = v;
        if (const char* v = header(m, "Kanban-Attempts")) dl.attempts = static_cast<std::uint32_t>(parseInt64(v).value_or(0));
        if (const char* v = header(m, "Nats-Time-Stamp")) dl.dead_lettered_at = v;  // RFC 3339, from the server
        dl.payload.assign(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m)));
        natsMsg_Destroy(m);
        if (dl.sequence == 0) return Error{"read dead letters of " + std::string(domain) + ": reply without Nats-Sequence"};
        next = dl.sequence + 1;
        out.push_back(std::move(dl));
    }
    return out;
}

Status JetStream::removeDeadLetter(std::uint64_t sequence) {
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (natsStatus s = js_DeleteMsg(js_, deadLetterStream().c_str(), sequence, nullptr, &jerr); s != NATS_OK)
        return Error{"replayed, but could not remove dead letter " + std::to_string(sequence) + " (it may be replayed twice): " +
                     natsError(s, jerr)};
    return Ok{};
}

Result<kvStore*> JetStream::scheduleStore() {
    const std::string bucket = scheduleBucket();
    kvStore* kv = nullptr;
    if (js_KeyValue(&kv, js_, bucket.c_str()) == NATS_OK) return kv;
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = bucket.c_str();
    kc.Description = "TPS Kanban: schedules added at run time";
    kc.History = 1;
    kc.StorageType = js_FileStorage;
    kc.Replicas = options_.replicas;
    if (natsStatus s = js_CreateKeyValue(&kv, js_, &kc); s != NATS_OK)
        return Error{"nats: cannot open key-value bucket " + bucket + ": " + natsError(s)};
    return kv;
}

Status JetStream::putSchedule(const std::string& name, const std::string& json) {
    auto kv = scheduleStore();
    if (!kv) return kv.error();
    std::uint64_t rev = 0;
    natsStatus s = kvStore_Put(&rev, *kv, name.c_str(), json.data(), static_cast<int>(json.size()));
    kvStore_Destroy(*kv);
    if (s != NATS_OK) return Error{"nats: cannot store schedule " + name + ": " + natsError(s)};
    return Ok{};
}

Result<bool> JetStream::deleteSchedule(const std::string& name) {
    auto kv = scheduleStore();
    if (!kv) return kv.error();
    kvEntry* e = nullptr;
    natsStatus s = kvStore_Get(&e, *kv, name.c_str());
    if (s == NATS_NOT_FOUND) {
        kvStore_Destroy(*kv);
        return false;
    }
    kvEntry_Destroy(e);
    if (s == NATS_OK) s = kvStore_Delete(*kv, name.c_str());
    kvStore_Destroy(*kv);
    if (s != NATS_OK) return Error{"nats: cannot delete schedule " + name + ": " + natsError(s)};
    return true;
}

Result<std::map<std::string, std::string>> JetStream::storedSchedules() {
    auto kv = scheduleStore();
    if (!kv) return kv.error();
    std::map<std::string, std::string> out;
    kvKeysList keys{};
    natsStatus s = kvStore_Keys(&keys, *kv, nullptr);
    if (s == NATS_NOT_FOUND) s = NATS_OK;  // an empty bucket
    for (int i = 0; s == NATS_OK && i < keys.Count; ++i) {
        kvEntry* e = nullptr;
        natsStatus g = kvStore_Get(&e, *kv, keys.Keys[i]);
        if (g == NATS_NOT_FOUND) continue;  // deleted meanwhile
        if (g != NATS_OK) {
            s = g;
            break;
        }
        out[keys.Keys[i]] = std::string(static_cast<const char*>(kvEntry_Value(e)), static_cast<std::size_t>(kvEntry_ValueLen(e)));
        kvEntry_Destroy(e);
    }
    kvKeysList_Destroy(&keys);
    kvStore_Destroy(*kv);
    if (s != NATS_OK) return Error{"nats: cannot read schedules: " + natsError(s)};
    return out;
}

Result<SubjectCounts> JetStream::subjectCounts(bool dead_letters) {
    const std::string stream = dead_letters ? deadLetterStream() : options_.stream;
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = dead_letters ? "kanban.dlq.*" : "kanban.*.*";
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (natsStatus s = js_GetStreamInfo(&si, js_, stream.c_str(), &o, &jerr); s != NATS_OK)
        return Error{"stream info " + stream + ": " + natsError(s, jerr)};
    SubjectCounts out;
    if (si->State.Subjects != nullptr)
        for (int i = 0; i < si->State.Subjects->Count; ++i)
            out.emplace_back(si->State.Subjects->List[i].Subject, si->State.Subjects->List[i].Msgs);
    jsStreamInfo_Destroy(si);
    return out;
}

Result<std::optional<std::int64_t>> JetStream::oldestItemUnixMs(std::string_view domain) {
    std::optional<std::int64_t> oldest;
    for (Priority p : kPriorities) {
        const std::string subject = workSubject(domain, p);
        jsDirectGetMsgOptions o;
        jsDirectGetMsgOptions_Init(&o);
        o.Sequence = 1;
        o.NextBySubject = subject.c_str();
        natsMsg* m = nullptr;
        natsStatus s = js_DirectGetMsg(&m, js_, options_.stream.c_str(), nullptr, &o);
        if (s == NATS_NOT_FOUND) continue;
        if (s != NATS_OK) return Error{"oldest item of " + subject + ": " + natsError(s)};
        // "2026-11-29T12:07:38.384768356Z" (UTC, RFC 3339)
        std::optional<std::int64_t> ms;
        if (const char* ts = header(m, "Nats-Time-Stamp")) {
            std::tm tm{};
            double seconds = 0;
            if (std::sscanf(ts, "%d-%d-%dT%d:%d:%lf", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                            &seconds) == 6) {
                tm.tm_year -= 1900;
                tm.tm_mon -= 1;
                tm.tm_sec = 0;
                ms = static_cast<std::int64_t>(timegm(&tm)) * 1000 + static_cast<std::int64_t>(seconds * 1000.0);
            }
        }
        natsMsg_Destroy(m);
        if (ms && (!oldest || *ms < *oldest)) oldest = ms;
    }
    return oldest;
}

std::string doneKey(std::string_view id) { return base64(id, /*url_safe=*/true); }

}  // namespace kanban::host::broker
