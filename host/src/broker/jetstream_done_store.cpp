#include "broker/jetstream_done_store.hpp"

#include <nats/nats.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <deque>
#include <mutex>
#include <random>
#include <utility>

#include "broker/done_log.hpp"
#include "broker/jetstream_done_mirror.hpp"
#include "broker/nats_util.hpp"
#include "common/base64.hpp"

namespace kanban::host::broker {
namespace {

// The idempotency record in the KV bucket, without the kvStore API. Done
// ids: a handled batch is one done-log message (done_log.hpp) written by
// flush() before the batch is acked; a lookup asks the host's local index
// (DoneMirror: one request per batch, none per item) and reads only the
// records it names. Attempt records (failures and redeliveries only) are
// one key per id: pipelined direct gets answered on this store's own
// inbox, one round trip for a batch.
class JetStreamDoneStore final : public DoneStore {
public:
    explicit JetStreamDoneStore(JetStream& owner)
        : owner_(owner),
          mirror_(owner.doneMirror()),
          writer_(writerName()),
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
        if (s == NATS_OK)
            s = natsConnection_SubscribeSync(&sub_, owner_.connection(), (std::string(inbox_) + ".*").c_str());
        if (s != NATS_OK) return Error{"idempotency store: cannot subscribe to its inbox: " + nats::error(s)};
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = kWaitMs;
        jo.PublishAsync.AckHandler = &JetStreamDoneStore::onAck;
        jo.PublishAsync.AckHandlerClosure = this;
        jo.PublishAsync.MaxPending = 4096;
        if (s = natsConnection_JetStream(&js_, owner_.connection(), &jo); s != NATS_OK)
            return Error{"idempotency store: cannot create JetStream context: " + nats::error(s)};
        return Ok{};
    }

    Result<std::vector<bool>> lookup(const std::vector<std::string_view>& ids) override {
        std::vector<bool> done(ids.size(), false);
        if (ids.empty()) return done;
        // One request for the batch: the local index then holds every
        // record the bucket had. A miss is an answer; a hit is checked
        // against the record it names (hashes collide).
        if (Status s = mirror_.sync(std::chrono::milliseconds(kWaitMs)); !s) return s.error();
        for (std::size_t i = 0; i < ids.size(); ++i) {
            for (std::uint64_t seq : mirror_.index().candidates(DoneIndex::hash(ids[i]))) {
                auto holds = recordHolds(seq, ids[i]);
                if (!holds) return holds.error();
                if (*holds) {
                    done[i] = true;
                    break;
                }
            }
        }
        return done;
    }

    Result<std::vector<std::optional<AttemptRecord>>> attempts(const std::vector<std::string_view>& ids) override {
        std::vector<std::string> keys;
        keys.reserve(ids.size());
        for (std::string_view id : ids) keys.push_back(attemptKey(id));
        auto values = getMany(keys, "attempt lookup");
        if (!values) return values.error();
        std::vector<std::optional<AttemptRecord>> out(ids.size());
        for (std::size_t i = 0; i < ids.size(); ++i)
            if ((*values)[i]) out[i] = decodeAttemptRecord(*(*values)[i]);  // a deleted key reads as empty: none
        return out;
    }

    Status recordAttempt(std::string_view id, const AttemptRecord& record) override {
        const std::string subject = key_prefix_ + attemptKey(id);
        const std::string value = encodeAttemptRecord(record);
        jsPubAck* pa = nullptr;
        jsErrCode jerr = static_cast<jsErrCode>(0);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = kWaitMs;
        natsStatus s = js_Publish(&pa, js_, subject.c_str(), value.data(), static_cast<int>(value.size()), &po, &jerr);
        jsPubAck_Destroy(pa);
        if (s != NATS_OK) return Error{"attempt record: " + nats::error(s, jerr)};
        return Ok{};
    }

    void forgetAttempts(std::string_view id) override {
        const std::string subject = key_prefix_ + attemptKey(id);
        natsMsg* m = nullptr;
        natsStatus s = natsMsg_Create(&m, subject.c_str(), nullptr, nullptr, 0);
        if (s == NATS_OK) s = natsMsgHeader_Set(m, "KV-Operation", "DEL");
        if (s == NATS_OK) s = js_PublishMsgAsync(js_, &m, nullptr);
        natsMsg_Destroy(m);  // no-op when the library took it; a failure leaves a record that expires
    }

    void record(std::string_view id) override {
        appendDoneId(pending_, id);
        ++pending_ids_;
        // A batch is one record, but a slow one is recorded as it goes: a
        // crash then repeats at most the last kRecordEvery of handled work.
        if (const auto now = std::chrono::steady_clock::now(); now - last_publish_ >= kRecordEvery) publishPending(now);
    }

    std::size_t flush() override {
        publishPending(std::chrono::steady_clock::now());
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = kWaitMs;
        if (js_PublishAsyncComplete(js_, &po) != NATS_OK) {
            // Not confirmed in time: take them back (their late acks are dropped).
            natsMsgList late{};
            if (js_PublishAsyncGetPendingList(&late, js_) == NATS_OK) {
                for (int i = 0; i < late.Count; ++i) countFailed(late.Msgs[i]);
                natsMsgList_Destroy(&late);
            }
        }
        std::lock_guard lock(mu_);
        return std::exchange(failed_, 0);
    }

private:
    // Whether record `seq` of the bucket holds `id` (false: it does not, or
    // it expired). The last few log records read are kept: the repeats
    // after a crash come from the same few batches.
    Result<bool> recordHolds(std::uint64_t seq, std::string_view id) {
        for (const auto& [cached_seq, ids] : cache_)
            if (cached_seq == seq) return std::find(ids.begin(), ids.end(), id) != ids.end();
        const std::string body = "{\"seq\":" + std::to_string(seq) + "}";
        natsMsg* reply = nullptr;
        if (natsStatus s = natsConnection_Request(&reply, owner_.connection(), direct_get_subject_.c_str(), body.data(),
                                                  static_cast<int>(body.size()), kWaitMs);
            s != NATS_OK)
            return Error{"idempotency lookup: cannot read record " + std::to_string(seq) + " of the " +
                         owner_.doneBucket() + " bucket: " + nats::error(s)};
        std::vector<std::string> ids;
        if (const char* status = nats::header(reply, "Status"); status == nullptr) {
            const char* subject = nats::header(reply, "Nats-Subject");
            forEachRecordedId(subject != nullptr ? subject : "", key_prefix_, nats::header(reply, "KV-Operation") != nullptr,
                              nats::body(reply), [&](std::string_view one) { ids.emplace_back(one); });
        } else if (std::string_view(status) != "404") {
            const std::string text = status;
            natsMsg_Destroy(reply);
            return Error{"idempotency lookup: the server answered " + text + " reading record " + std::to_string(seq) +
                         " of the " + owner_.doneBucket() + " bucket"};
        }
        natsMsg_Destroy(reply);
        const bool holds = std::find(ids.begin(), ids.end(), id) != ids.end();
        if (cache_.size() == kCachedRecords) cache_.pop_front();
        cache_.emplace_back(seq, std::move(ids));
        return holds;
    }

    // The values of `keys` (nullopt: no such key), by pipelined direct gets
    // answered on this store's inbox: one round trip for all of them.
    Result<std::vector<std::optional<std::string>>> getMany(const std::vector<std::string>& keys, const char* what) {
        std::vector<std::optional<std::string>> values(keys.size());
        if (keys.empty()) return values;
        const std::string round = std::to_string(++round_);
        const std::string reply_prefix = std::string(inbox_) + "." + round + "-";
        for (std::size_t i = 0; i < keys.size(); ++i) {
            const std::string body = R"({"last_by_subj":")" + key_prefix_ + keys[i] + R"("})";
            const std::string reply = reply_prefix + std::to_string(i);
            if (natsStatus s = natsConnection_PublishRequest(owner_.connection(), direct_get_subject_.c_str(),
                                                             reply.c_str(), body.data(), static_cast<int>(body.size()));
                s != NATS_OK)
                return Error{std::string(what) + ": " + nats::error(s)};
        }
        std::vector<bool> answered(keys.size(), false);
        std::size_t remaining = keys.size();
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
        while (remaining > 0) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())
                    .count();
            natsMsg* m = nullptr;
            natsStatus s = left > 0 ? natsSubscription_NextMsg(&m, sub_, left) : NATS_TIMEOUT;
            if (s == NATS_TIMEOUT)
                return Error{std::string(what) + ": " + std::to_string(remaining) + " of " + std::to_string(keys.size()) +
                             " answers missing from the " + owner_.doneBucket() + " bucket after " +
                             std::to_string(kWaitMs) + " ms"};
            if (s != NATS_OK) return Error{std::string(what) + ": " + nats::error(s)};
            const std::string_view subject = natsMsg_GetSubject(m);
            std::optional<std::size_t> index;
            if (subject.substr(0, reply_prefix.size()) == reply_prefix) {
                std::size_t i = 0;
                const std::string_view tail = subject.substr(reply_prefix.size());
                if (auto [p, ec] = std::from_chars(tail.data(), tail.data() + tail.size(), i);
                    ec == std::errc() && p == tail.data() + tail.size() && i < keys.size())
                    index = i;
            }
            const char* status = nats::header(m, "Status");
            const std::string status_text = status != nullptr ? status : "";
            const char* description = nats::header(m, "Description");
            const std::string description_text = description != nullptr ? description : "";
            const char* operation = nats::header(m, "KV-Operation");
            const bool deleted = operation != nullptr && *operation != '\0';  // DEL or PURGE: a tombstone
            std::string data(natsMsg_GetData(m) != nullptr ? natsMsg_GetData(m) : "",
                             static_cast<std::size_t>(natsMsg_GetDataLength(m)));
            natsMsg_Destroy(m);
            if (!index || answered[*index]) continue;  // a late answer to an earlier round
            if (status_text.empty()) {
                if (!deleted) values[*index] = std::move(data);  // the record itself came back
            } else if (status_text != "404") {
                return Error{std::string(what) + ": the server answered " + status_text + " " + description_text +
                             (status_text == "503" ? " (is the " + owner_.doneBucket() + " bucket missing?)" : "")};
            }
            answered[*index] = true;
            --remaining;
        }
        return values;
    }

    static constexpr std::int64_t kWaitMs = 2000;
    static constexpr std::size_t kCachedRecords = 8;
    static constexpr std::chrono::milliseconds kRecordEvery{10};

    // This store's records go to subjects of its own (any unique name).
    static std::string writerName() {
        static std::atomic<std::uint64_t> stores{0};
        std::random_device random;
        return std::to_string(::getpid()) + "-" + std::to_string(random()) + "-" + std::to_string(++stores);
    }

    // Starts storing the done ids gathered since the last call (one message).
    void publishPending(std::chrono::steady_clock::time_point now) {
        last_publish_ = now;
        if (pending_ids_ == 0) return;
        const std::string subject = doneLogSubject(owner_.doneBucket(), writer_, ++written_);
        natsMsg* m = nullptr;
        natsStatus s = natsMsg_Create(&m, subject.c_str(), nullptr, pending_.data(), static_cast<int>(pending_.size()));
        if (s == NATS_OK) s = js_PublishMsgAsync(js_, &m, nullptr);
        if (s != NATS_OK) {
            natsMsg_Destroy(m);  // no-op when the library took it
            std::lock_guard lock(mu_);
            failed_ += pending_ids_;
        }
        pending_.clear();
        pending_ids_ = 0;
    }

    // A record the store did not confirm: its done ids count as failed.
    void countFailed(natsMsg* msg) {
        std::size_t ids = 0;  // an attempt record's deletion holds none: best effort
        forEachRecordedId(natsMsg_GetSubject(msg), key_prefix_, false, nats::body(msg), [&](std::string_view) { ++ids; });
        std::lock_guard lock(mu_);
        failed_ += ids;
    }

    static void onAck(jsCtx*, natsMsg* msg, jsPubAck*, jsPubAckErr* pae, void* closure) {
        if (pae != nullptr) static_cast<JetStreamDoneStore*>(closure)->countFailed(msg);
        natsMsg_Destroy(msg);
    }

    JetStream& owner_;
    DoneMirror& mirror_;
    const std::string writer_;
    std::uint64_t written_ = 0;
    std::string pending_;  // the batch's done record, being built
    std::size_t pending_ids_ = 0;
    std::chrono::steady_clock::time_point last_publish_{};
    std::mutex mu_;  // failed_ is also counted from cnats' callback thread
    std::size_t failed_ = 0;
    std::deque<std::pair<std::uint64_t, std::vector<std::string>>> cache_;
    const std::string key_prefix_;
    const std::string direct_get_subject_;
    natsInbox* inbox_ = nullptr;
    natsSubscription* sub_ = nullptr;
    jsCtx* js_ = nullptr;
    std::uint64_t round_ = 0;
};

}  // namespace

Result<std::unique_ptr<DoneStore>> openJetStreamDoneStore(JetStream& owner) {
    auto store = std::make_unique<JetStreamDoneStore>(owner);
    if (Status s = store->open(); !s) return s.error();
    return std::unique_ptr<DoneStore>(std::move(store));
}

}  // namespace kanban::host::broker
