// JetStream::findWaiting: one id among the stored items of the work stream.
// A work-queue stream allows no second consumer on a subject and has no
// index by message id, so the stream is read by sequence with direct gets,
// many requests in flight at once on one inbox (one request at a time costs
// a round trip per item: ~130 us here, 8x slower than a window of 256).
#include <nats/nats.h>

#include <set>

#include "broker/jetstream.hpp"
#include "broker/nats_util.hpp"

namespace kanban::host::broker {
namespace {

constexpr std::uint64_t kWindow = 256;            // direct gets in flight
constexpr std::int64_t kReplyTimeoutMs = 5000;    // a reply later than this: the server is not answering

struct Inbox {
    natsInbox* name = nullptr;
    natsSubscription* sub = nullptr;
    ~Inbox() {
        natsSubscription_Destroy(sub);
        natsInbox_Destroy(name);
    }
};

}  // namespace

Result<WaitingSearch> JetStream::findWaiting(const std::vector<std::string>& domains, std::string_view id,
                                             std::size_t max_scan) {
    if (!healthy()) return Error{"nats: not connected"};
    WaitingSearch out;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (natsStatus s = js_GetStreamInfo(&si, js_, options_.stream.c_str(), nullptr, &jerr); s != NATS_OK)
        return Error{"nats: stream info " + options_.stream + ": " + nats::error(s, jerr)};
    const std::uint64_t first = si->State.FirstSeq, last = si->State.LastSeq, stored = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    if (stored == 0 || last < first) return out;
    const std::uint64_t end = std::min<std::uint64_t>(last, first + max_scan - 1);  // inclusive
    out.complete = end == last;

    std::set<std::string, std::less<>> subjects;
    for (const auto& d : domains)
        for (Priority p : kPriorities) subjects.insert(workSubject(d, p));

    Inbox inbox;
    if (natsStatus s = natsInbox_Create(&inbox.name); s != NATS_OK) return Error{"nats: " + nats::error(s)};
    if (natsStatus s = natsConnection_SubscribeSync(&inbox.sub, nc_, inbox.name); s != NATS_OK)
        return Error{"nats: " + nats::error(s)};
    natsSubscription_SetPendingLimits(inbox.sub, -1, -1);
    const std::string api = "$JS.API.DIRECT.GET." + options_.stream;

    std::uint64_t next = first, replies = 0;
    const std::uint64_t requests = end - first + 1;
    while (replies < requests) {
        for (; next <= end && next - first - replies < kWindow; ++next) {
            const std::string body = "{\"seq\":" + std::to_string(next) + "}";
            if (natsStatus s = natsConnection_PublishRequest(nc_, api.c_str(), inbox.name, body.data(),
                                                             static_cast<int>(body.size()));
                s != NATS_OK)
                return Error{"nats: direct get: " + nats::error(s)};
        }
        natsMsg* m = nullptr;
        if (natsStatus s = natsSubscription_NextMsg(&m, inbox.sub, kReplyTimeoutMs); s != NATS_OK)
            return Error{"nats: reading the work stream: " + nats::error(s)};
        ++replies;
        // A sequence that was removed (acked) answers 404 without these headers.
        const char* seq = nats::header(m, "Nats-Sequence");
        const char* subject = nats::header(m, "Nats-Subject");
        const char* msg_id = nats::header(m, "Kanban-Id");  // a moved (delayed) item's work id
        if (msg_id == nullptr) msg_id = nats::header(m, "Nats-Msg-Id");
        if (seq != nullptr && subject != nullptr && msg_id != nullptr && std::string_view(msg_id) == id &&
            subjects.count(std::string_view(subject)) != 0) {
            WaitingItem item;
            item.domain = std::string(subjectDomain(subject));
            item.priority = subjectPriority(subject).value_or(Priority::normal);
            item.sequence = static_cast<std::uint64_t>(nats::parseInt64(seq).value_or(0));
            item.published_unix_ms = nats::parseTimestampMs(nats::header(m, "Nats-Time-Stamp"));
            natsMsg_Destroy(m);
            out.scanned = item.sequence - first + 1;
            // Delivered when the consumer of its level has handed out this
            // sequence or a later one (they go out in order) and it is still here.
            const std::string durable = durableName(item.domain, item.priority);
            jsConsumerInfo* ci = nullptr;
            if (js_GetConsumerInfo(&ci, js_, options_.stream.c_str(), durable.c_str(), nullptr, &jerr) == NATS_OK) {
                item.delivered = ci->Delivered.Stream >= item.sequence;
                jsConsumerInfo_Destroy(ci);
            }
            out.found = std::move(item);
            out.complete = true;
            return out;
        }
        natsMsg_Destroy(m);
    }
    out.scanned = requests;
    return out;
}

}  // namespace kanban::host::broker
