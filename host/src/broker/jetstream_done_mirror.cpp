#include "broker/jetstream_done_mirror.hpp"

#include "broker/done_log.hpp"
#include "broker/nats_util.hpp"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

namespace kanban::host::broker {
namespace {
// The first sync waits for the whole bucket to be read (a day of records
// at a high rate is many messages); later ones only for the last few.
constexpr std::chrono::milliseconds kBuildWait{60000};
}  // namespace

DoneMirror::DoneMirror(natsConnection* nc, jsCtx* js, std::string bucket, std::size_t max_ids, std::int64_t ttl_ms)
    : nc_(nc),
      js_(js),
      bucket_(std::move(bucket)),
      stream_("KV_" + bucket_),
      prefix_("$KV." + bucket_ + "."),
      index_(max_ids, ttl_ms) {}

DoneMirror::~DoneMirror() { stop(); }

void DoneMirror::stop() {
    natsSubscription* sub = nullptr;
    {
        std::lock_guard lock(sub_mu_);
        sub = std::exchange(sub_, nullptr);
    }
    if (sub != nullptr) {
        // No callback starts after the unsubscribe; one under way is
        // waited for (it holds apply_mu_), so the index outlives it.
        natsSubscription_Unsubscribe(sub);
        { std::lock_guard wait_for_callback(apply_mu_); }
        natsSubscription_Destroy(sub);
    }
}

Status DoneMirror::start(bool from_scratch) {
    std::lock_guard starting(start_mu_);
    return startLocked(from_scratch);
}

Status DoneMirror::startLocked(bool from_scratch) {
    ++generation_;
    stop();
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream_.c_str();
    so.Ordered = true;
    if (from_scratch) {
        index_.clear();
        built_ = false;
        so.Config.DeliverPolicy = js_DeliverAll;
    } else {
        so.Config.DeliverPolicy = js_DeliverByStartSequence;
        so.Config.OptStartSeq = index_.applied() + 1;
    }
    const std::string filter = prefix_ + ">";
    natsSubscription* sub = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (natsStatus s = js_Subscribe(&sub, js_, filter.c_str(), &DoneMirror::onMessage, this, nullptr, &so, &jerr);
        s != NATS_OK)
        return Error{"idempotency index: cannot read the " + bucket_ + " bucket: " + nats::error(s, jerr)};
    // cnats' default pending limits (65,536 messages, 64 MiB) bound what a
    // replay buffers; past them it drops, and the ordered consumer starts
    // again after the last record applied (a gap), losing nothing.
    std::lock_guard lock(sub_mu_);
    sub_ = sub;
    return Ok{};
}

void DoneMirror::onMessage(natsConnection*, natsSubscription* sub, natsMsg* m, void* closure) {
    auto* self = static_cast<DoneMirror*>(closure);
    {
        std::lock_guard lock(self->apply_mu_);
        if (natsSubscription_IsValid(sub)) self->apply(m);
    }
    natsMsg_Destroy(m);
}

void DoneMirror::apply(natsMsg* m) {
    jsMsgMetaData* md = nullptr;
    if (natsMsg_GetMetaData(&md, m) != NATS_OK) return;  // not a stream message (a status)
    const std::uint64_t seq = md->Sequence.Stream;
    const std::int64_t stored = md->Timestamp;
    jsMsgMetaData_Destroy(md);
    std::vector<std::uint64_t> hashes;
    if (!forEachRecordedId(natsMsg_GetSubject(m), prefix_, nats::header(m, "KV-Operation") != nullptr, nats::body(m),
                           [&](std::string_view id) { hashes.push_back(DoneIndex::hash(id)); }))
        spdlog::warn("idempotency index: record {} of {} is malformed; its readable ids are kept", seq, bucket_);
    index_.add(seq, stored, hashes);
}

std::string DoneMirror::building() {
    if (built_) return "";
    if (Status s = sync(std::chrono::milliseconds(0), /*resume_if_stalled=*/false); !s)
        return "the idempotency index is being built: " + s.message();
    return "";
}

Status DoneMirror::sync(std::chrono::milliseconds wait, bool resume_if_stalled) {
    // Read before the request: a stream's last sequence never goes below
    // what was applied before it was asked, unless the stream is new.
    const std::uint64_t applied_before = index_.applied();
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    if (natsStatus s = js_GetStreamInfo(&si, js_, stream_.c_str(), &jo, &jerr); s != NATS_OK)
        return Error{"idempotency lookup: cannot read the state of the " + bucket_ + " bucket: " + nats::error(s, jerr) +
                     (jerr == JSStreamNotFoundErr ? " (is the " + bucket_ + " bucket missing?)" : "")};
    const std::uint64_t last = si->State.LastSeq;
    const std::uint64_t msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    {
        // Decided under start_mu_: many workers sync at once, and only the
        // first of them may (re)start the subscription.
        std::lock_guard starting(start_mu_);
        bool restart = false;
        {
            std::lock_guard lock(sub_mu_);
            // Never subscribed, or the bucket was made anew (its records are gone).
            // (Not the stream's creation time: each replica of a clustered
            // bucket has its own, so a new leader would look like a new bucket.)
            restart = sub_ == nullptr || last < applied_before;
        }
        if (restart)
            if (Status s = startLocked(/*from_scratch=*/true); !s) return s;
    }
    // Only the first build may take long (and /readyz waits for it); a
    // rebuild later (a bucket made anew) hands batches back rather than
    // holding workers.
    const auto limit = ever_built_ || !resume_if_stalled ? wait : std::max(wait, kBuildWait);
    const std::uint64_t generation = generation_.load();
    const std::uint64_t applied_at_wait = index_.applied();
    if (msgs > 0 && resume_if_stalled && !index_.waitApplied(last, limit)) {
        // The ordered consumer stalled (a restarted server forgot it; cnats
        // would notice after missed heartbeats): read on from where it was.
        // Only when nothing arrived during the whole wait and nobody started
        // it again meanwhile: forty workers restarting one another's
        // subscription in turn would each kill the one before it delivered.
        std::lock_guard starting(start_mu_);
        if (generation_.load() == generation && index_.applied() == applied_at_wait) {
            spdlog::info("idempotency index: at record {} of {} after {} ms; reading the {} bucket again from there",
                         index_.applied(), last, limit.count(), bucket_);
            if (Status s = startLocked(/*from_scratch=*/false); !s) return s;
        }
    }
    if (msgs > 0 && !index_.waitApplied(last, limit))
        return Error{"idempotency lookup: the local index of the " + bucket_ + " bucket is at record " +
                     std::to_string(index_.applied()) + " of " + std::to_string(last)};
    ever_built_ = true;
    if (!built_.exchange(true))
        spdlog::info("idempotency index built: {} ids from {} records of the {} bucket", index_.size(), last, bucket_);
    if (const std::uint64_t below = index_.forgottenBelow(); below > warned_forgotten_.exchange(below))
        spdlog::warn("idempotency index full ({} ids): records of {} before {} are no longer known, so a duplicate of "
                     "those ids published after the 2-minute window would run again; raise nats.done_index_max_ids",
                     index_.size(), bucket_, below);
    return Ok{};
}

}  // namespace kanban::host::broker
