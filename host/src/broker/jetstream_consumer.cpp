#include "broker/jetstream_consumer.hpp"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <unordered_set>
#include <utility>

#include "broker/nats_util.hpp"

namespace kanban::host::broker {
namespace {

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
constexpr std::int64_t kQuietFlushMs = 2000;           // leaving quiet: see leaveQuiet()

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
    void headers(Headers& out) const override { nats::userHeaders(msg_, out); }
    std::string header(const char* name) const override {
        const char* v = nats::header(msg_, name);
        return v != nullptr ? v : "";
    }
    Status postpone(std::int64_t not_before_unix_ms) override {
        // Keyed by the original's place in the work stream: a crash before
        // the ack redelivers it, and its second copy is dropped.
        const std::string msg_id = "postponed:" + owner_.streamName() + ":" + std::to_string(stream_sequence);
        auto stored = owner_.publishCopy(msg_, delayedSubject(domain, priority), msg_id, id);
        if (!stored) return Error{"postpone until " + std::to_string(not_before_unix_ms) + ": " + stored.message()};
        ack();
        return Ok{};
    }
    Status deadLetter(std::string_view reason, std::string_view code) override {
        Status s = owner_.publishDeadLetter(msg_, stream_sequence, id, domain, attempt, reason, code);
        if (!s) return s;
        // The DLQ copy is stored; only now remove the original. A lost Term
        // means a redelivery whose DLQ publish is deduplicated by its id.
        if (natsStatus t = natsMsg_Term(msg_, nullptr); t != NATS_OK)
            return Error{"terminate after dead-lettering: " + nats::error(t)};
        return Ok{};
    }

    std::uint64_t stream_sequence = 0;
    std::uint64_t pending_after = 0;  // messages still pending in this consumer

private:
    void check(natsStatus s, const char* what) {
        if (s != NATS_OK) spdlog::warn("nats: {} failed: {} domain={} id={}", what, nats::error(s), domain, id);
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
            if (s != NATS_OK) return Error{"pull subscribe " + durable + ": " + nats::error(s, jerr)};
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
        bool known_work = false;                            // the last message fetched said more were pending
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
        if (natsStatus s =
                js_GetConsumerInfo(&ci, owner_.js(), owner_.streamName().c_str(), durable.c_str(), nullptr, &jerr);
            s != NATS_OK)
            return Error{"consumer info " + durable + ": " + nats::error(s, jerr)};
        LevelState st{ci->NumPending, static_cast<std::uint64_t>(ci->NumAckPending)};
        jsConsumerInfo_Destroy(ci);
        return st;
    }

    // Subscribes to the domain's work subjects, then asks every level again
    // (so that no publish can fall between the answer and the
    // subscription): true and quiet when all are still settled.
    bool enterQuiet() {
        const std::string subject = domainWorkFilter(spec_.domain);
        natsSubscription* sub = nullptr;
        const std::uint64_t disconnects = nats::disconnects();
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
        if (nats::disconnects() != quiet_disconnects_ ||
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
        const natsStatus s =
            natsSubscription_NextMsg(&notice, quiet_, std::max<std::int64_t>(1, std::min(wait, left).count()));
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
            return Error{"fetch " + durableName(spec_.domain, kPriorities[level]) + ": " + nats::error(s, jerr)};
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
            spdlog::trace("fetched domain={} id={} seq={} attempt={}", d->domain, d->id, d->stream_sequence,
                          d->attempt);
            out.push_back(std::move(d));
        }
        levels_[level].last_fetch_had_items = !out.empty();
        if (!out.empty())
            levels_[level].last_served = levels_[level].last_work = last_work_ = std::chrono::steady_clock::now();
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
        // Deliveries are not attempts: the worker counts handler calls
        // from the attempt records (AttemptRecord).
        d.deliveries = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(md->NumDelivered, 1, UINT32_MAX));
        d.maybe_tried = d.deliveries > 1;
        if (md->Timestamp > 0) d.published_unix_ns = md->Timestamp;
        jsMsgMetaData_Destroy(md);

        d.domain = spec_.domain;
        d.priority = priority;
        d.payload = std::string_view(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m)));
        // Kanban-Id: an item kanband moved (a delayed one) keeps its work id there.
        if (const char* id = nats::header(m, "Kanban-Id"); id != nullptr && *id != '\0')
            d.id = id;
        else if (const char* id = nats::header(m, "Nats-Msg-Id"); id != nullptr && *id != '\0')
            d.id = id;
        else
            d.id = owner_.streamName() + "-" + std::to_string(d.stream_sequence);
        if (const char* dl = nats::header(m, "Kanban-Deadline")) {
            d.deadline_unix_ms = nats::parseInt64(dl);
            if (!d.deadline_unix_ms)
                spdlog::warn("ignoring Kanban-Deadline \"{}\" domain={} id={}: {}", dl, d.domain, d.id,
                             nats::allDigits(dl) ? "out of range (epoch milliseconds fit in 19 digits)"
                                                 : "not a number (epoch milliseconds)");
        }
        if (const char* nb = nats::header(m, "Kanban-Not-Before")) {
            d.not_before_unix_ms = nats::parseInt64(nb);
            if (!d.not_before_unix_ms)
                spdlog::warn("ignoring Kanban-Not-Before \"{}\" domain={} id={}: not epoch milliseconds", nb, d.domain,
                             d.id);
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

}  // namespace

Result<std::unique_ptr<Consumer>> subscribeJetStreamConsumer(JetStream& owner, const ConsumerSpec& spec) {
    auto consumer = std::make_unique<JetStreamConsumer>(owner, spec);
    if (Status s = consumer->subscribe(); !s) return s.error();
    return std::unique_ptr<Consumer>(std::move(consumer));
}

}  // namespace kanban::host::broker
