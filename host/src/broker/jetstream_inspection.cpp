#include <nats/nats.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <set>

#include "broker/jetstream.hpp"
#include "broker/nats_util.hpp"

namespace kanban::host::broker {
namespace {

// At most this many dead letters are replayed by one request.
constexpr std::size_t kMaxReplay = 100000;

}  // namespace

Result<std::array<std::uint64_t, 3>> JetStream::queueDepth(std::string_view domain, const SubjectCounts* stored,
                                                           std::uint64_t* swept) {
    std::array<std::uint64_t, 3> depth{};
    for (Priority p : kPriorities) {
        const std::string durable = durableName(domain, p);
        jsConsumerInfo* ci = nullptr;
        jsErrCode jerr = static_cast<jsErrCode>(0);
        natsStatus s = js_GetConsumerInfo(&ci, js_, options_.stream.c_str(), durable.c_str(), nullptr, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) continue;
        if (s != NATS_OK) return Error{"consumer info " + durable + ": " + nats::error(s, jerr)};
        const std::uint64_t live = ci->NumPending + static_cast<std::uint64_t>(ci->NumAckPending);
        const std::uint64_t floor = ci->AckFloor.Stream;
        jsConsumerInfo_Destroy(ci);
        depth[static_cast<std::size_t>(p)] = live;
        if (stored == nullptr || swept == nullptr || floor == 0) continue;
        // The subject holds more than the consumer will ever deliver: the
        // rest is at or below its ack floor, so acknowledged (the one
        // consumer of a work-queue subject), and its removal was lost.
        // Counts read a moment apart can also differ by an item acked
        // meanwhile; purging below the floor is right either way.
        const std::string subject = workSubject(domain, p);
        const auto it = std::find_if(stored->begin(), stored->end(), [&](const auto& c) { return c.first == subject; });
        if (it == stored->end() || it->second <= live) continue;
        if (auto n = purgeBelow(subject, floor + 1))
            *swept += *n;
        else
            spdlog::warn("nats: removing acknowledged items left on {}: {}", subject, n.message());
    }
    return depth;
}

Result<std::uint64_t> JetStream::purgeBelow(const std::string& subject, std::uint64_t sequence) {
    // The purge request itself: js_PurgeStream does not say how many went.
    const std::string api = "$JS.API.STREAM.PURGE." + options_.stream;
    const std::string body = nlohmann::json{{"filter", subject}, {"seq", sequence}}.dump();
    natsMsg* reply = nullptr;
    if (natsStatus s = natsConnection_Request(&reply, nc_, api.c_str(), body.data(), static_cast<int>(body.size()),
                                              /*timeout ms, as the JS API calls*/ 5000);
        s != NATS_OK)
        return Error{nats::error(s)};
    const std::string text(natsMsg_GetData(reply), static_cast<std::size_t>(natsMsg_GetDataLength(reply)));
    natsMsg_Destroy(reply);
    const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.value("success", false)) return Error{"purge refused: " + text};
    return j.value("purged", std::uint64_t{0});
}

Result<DeadLetterPage> JetStream::deadLetters(std::string_view domain, const DeadLetterQuery& query) {
    DeadLetterPage page;
    page.next_after = query.after;
    const std::string stream = deadLetterStream();
    const std::string subject = deadLetterSubject(domain);
    std::size_t bytes = 0;
    for (std::uint64_t next = query.after + 1;;) {
        jsDirectGetMsgOptions o;
        jsDirectGetMsgOptions_Init(&o);
        o.Sequence = next;
        o.NextBySubject = subject.c_str();
        natsMsg* m = nullptr;
        natsStatus s = js_DirectGetMsg(&m, js_, stream.c_str(), nullptr, &o);
        if (s == NATS_NOT_FOUND) break;  // no more on this subject
        if (s != NATS_OK) return Error{"read dead letters of " + std::string(domain) + ": " + nats::error(s)};
        const auto size = static_cast<std::size_t>(natsMsg_GetDataLength(m));
        if (!page.items.empty() && (page.items.size() >= query.limit || bytes + size > query.max_bytes)) {
            natsMsg_Destroy(m);  // the next page's first
            page.more = true;
            break;
        }
        DeadLetter dl;
        const char* seq = nats::header(m, "Nats-Sequence");
        dl.sequence = seq != nullptr ? nats::parseInt64(seq).value_or(0) : 0;
        if (const char* v = nats::header(m, "Kanban-Original-Id")) dl.id = v;
        if (const char* v = nats::header(m, "Kanban-Reason")) dl.reason = v;
        if (const char* v = nats::header(m, "Kanban-Reason-Code")) dl.reason_code = v;
        if (const char* v = nats::header(m, "Kanban-Original-Subject")) dl.original_subject = v;
        if (const char* v = nats::header(m, "Kanban-Attempts"))
            dl.attempts = static_cast<std::uint32_t>(nats::parseInt64(v).value_or(0));
        if (const char* v = nats::header(m, "Nats-Time-Stamp")) dl.dead_lettered_at = v;  // RFC 3339, from the server
        dl.payload.assign(natsMsg_GetData(m), size);
        dl.backend = "nats";
        nats::userHeaders(m, dl.headers);
        natsMsg_Destroy(m);
        if (dl.sequence == 0)
            return Error{"read dead letters of " + std::string(domain) + ": reply without Nats-Sequence"};
        next = dl.sequence + 1;
        bytes += size;
        page.next_after = dl.sequence;
        page.items.push_back(std::move(dl));
    }
    return page;
}

Status JetStream::removeDeadLetter(std::uint64_t sequence) {
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (natsStatus s = js_DeleteMsg(js_, deadLetterStream().c_str(), sequence, nullptr, &jerr); s != NATS_OK)
        return Error{"replayed, but could not remove dead letter " + std::to_string(sequence) +
                     " (it may be replayed twice): " + nats::error(s, jerr)};
    return Ok{};
}

Result<SubjectCounts> JetStream::subjectCounts(bool dead_letters) {
    const std::string stream = dead_letters ? deadLetterStream() : options_.stream;
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = dead_letters ? kDeadLetterFilter : kWorkFilter;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (natsStatus s = js_GetStreamInfo(&si, js_, stream.c_str(), &o, &jerr); s != NATS_OK)
        return Error{"stream info " + stream + ": " + nats::error(s, jerr)};
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
        if (s != NATS_OK) return Error{"oldest item of " + subject + ": " + nats::error(s)};
        const auto ms = nats::parseTimestampMs(nats::header(m, "Nats-Time-Stamp"));
        natsMsg_Destroy(m);
        if (ms && (!oldest || *ms < *oldest)) oldest = ms;
    }
    return oldest;
}

Result<BackendReport> JetStream::inspect(const std::vector<std::string>& domains, const InspectOptions& options) {
    if (!connected()) return Error{"nats: not connected"};
    BackendReport report;
    // One request for every subject's count: a domain with nothing stored
    // is empty without asking its consumers (an idle domain costs nothing),
    // and what no asked domain consumes is an orphan.
    std::optional<std::set<std::string, std::less<>>> nonempty;
    auto stored = subjectCounts();
    if (stored) {
        const std::set<std::string, std::less<>> asked(domains.begin(), domains.end());
        nonempty.emplace();
        report.unclaimed.emplace();
        for (const auto& [subject, n] : *stored) {
            const auto domain = subjectDomain(subject);
            if (n > 0) nonempty->emplace(domain);
            if (asked.count(domain) == 0) (*report.unclaimed)[subject] = n;
        }
    } else {
        spdlog::debug("stream subject counts unavailable: {}", stored.message());
    }
    std::map<std::string, std::uint64_t, std::less<>> dead;
    bool dead_known = false;
    if (options.dead_letters)
        if (auto counts = subjectCounts(/*dead_letters=*/true)) {
            dead_known = true;
            for (const auto& [subject, n] : *counts) dead[std::string(subjectDomain(subject))] += n;
        }
    for (const auto& name : domains) {
        DomainCounts c;
        if (!nonempty || nonempty->count(name) != 0) {
            auto depth = options.sweep_acked && stored ? queueDepth(name, &*stored, &c.swept) : queueDepth(name);
            if (!depth) continue;  // unknown for this domain
            c.depth = *depth;
        }
        if (dead_known) c.dead_letters = dead.count(name) ? dead.find(name)->second : 0;
        // The oldest item needs the streams (a direct get on a stream that
        // does not exist waits for its timeout).
        if (options.oldest && c.total() == 0)
            c.oldest_unix_ms.emplace(std::nullopt);
        else if (options.oldest && healthy())
            if (auto oldest = oldestItemUnixMs(name)) c.oldest_unix_ms = *oldest;
        report.domains.emplace(name, c);
    }
    return report;
}

Result<ReplayResults> JetStream::settleDeadLetters(std::string_view domain, const DeadLetterFilter& filter,
                                                   const Republish& republish) {
    // Only what is there now: a replayed item that fails again is
    // dead-lettered anew (after `last`) and must not loop. Page by page, so
    // a large DLQ is never held in memory at once.
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (natsStatus s = js_GetStreamInfo(&si, js_, deadLetterStream().c_str(), nullptr, &jerr); s != NATS_OK)
        return Error{"stream info " + deadLetterStream() + ": " + nats::error(s, jerr)};
    const std::uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    ReplayResults out;
    DeadLetterQuery query;
    query.limit = 1000;
    for (;;) {
        auto page = deadLetters(domain, query);
        if (!page) return page.error();
        for (const auto& dl : page->items) {
            if (dl.sequence > last || out.size() >= kMaxReplay) return out;
            if (!filter.matches(dl)) continue;
            Status s = Ok{};
            if (!republish) {
                s = removeDeadLetter(dl.sequence);
            } else if (dl.id.empty()) {
                s = Error{"dead letter has no original id"};
            } else {
                PublishRequest req;
                req.domain = std::string(domain);
                req.priority = subjectPriority(dl.original_subject).value_or(Priority::normal);
                req.payload = dl.payload;
                req.id = dl.id;
                req.headers = dl.headers;
                s = republish(req);
                if (s) s = removeDeadLetter(dl.sequence);
            }
            out.emplace_back(dl.id, s ? "" : s.message());
        }
        if (!page->more) return out;
        query.after = page->next_after;
    }
}

}  // namespace kanban::host::broker
