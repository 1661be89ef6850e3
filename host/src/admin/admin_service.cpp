#include "admin/admin_service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "common/base64.hpp"
#include "log/json_formatter.hpp"
#include "version.hpp"

namespace kanban::host::admin {
namespace {

bool isValidUtf8(const std::string& s) {
    try {
        (void)nlohmann::json(s).dump();  // strict: throws on invalid UTF-8
        return true;
    } catch (const nlohmann::json::type_error&) {
        return false;
    }
}

nlohmann::json statusJson(const scheduler::JobStatus& st) {
    nlohmann::json j = scheduler::jobToJson(st.spec);
    j["source"] = st.source;
    j["state"] = std::string(scheduler::stateName(st.state));
    if (!st.reason.empty()) j["reason"] = st.reason;
    j["published"] = st.published;
    j["skipped"] = st.skipped;
    j["throttled"] = st.throttled;
    j["next_tick_ms"] = st.next_tick_ms ? nlohmann::json(*st.next_tick_ms) : nlohmann::json(nullptr);
    j["last_tick_ms"] = st.last_tick_ms ? nlohmann::json(*st.last_tick_ms) : nlohmann::json(nullptr);
    return j;
}

}  // namespace

std::string AdminService::notReady() {
    if (draining_.load()) return "draining";
    if (!p_.brokers.healthy()) return "no broker connected with its topology declared";
    if (std::string why = p_.brokers.warmingUp(); !why.empty()) return why;
    if (p_.control_trouble) return p_.control_trouble();
    return "";
}

nlohmann::json AdminService::health() {
    const bool connected = p_.brokers.healthy();
    const auto cfg = p_.cfg();
    const auto entries = p_.domains.snapshot();
    std::vector<std::string> names;
    for (const auto& e : entries) names.push_back(e.name);
    // Live depths (no lock held); ages and dead letters from the coordinator's last tick.
    const broker::QueueReport report = p_.brokers.inspect(names, {});
    const auto tick = p_.coordinator.snapshot();
    const auto stall = std::chrono::milliseconds(cfg->coordinator.stall_threshold_ms);

    nlohmann::json domains = nlohmann::json::object();
    std::size_t workers = 0, target = 0, failed = 0;
    std::uint64_t busy = 0;  // running domains: waiting + in flight
    std::size_t dead_letters_pending = 0;
    for (const auto& e : entries) {
        nlohmann::json d;
        const auto& m = p_.metrics.domain(e.name);
        const std::size_t w = e.pool ? e.pool->workers() : 0;
        const std::size_t t = e.pool ? e.pool->target() : 0;
        d["status"] = e.pool ? "running" : "failed";
        const auto paused_since = p_.pauses.pausedSince(e.name);
        d["paused"] = paused_since.has_value();
        if (paused_since) d["paused_since_unix_ms"] = *paused_since;
        d["workers_pulling"] = e.pool ? e.pool->pulling() : 0;
        if (!e.error.empty()) d["error"] = e.error;
        d["workers"] = w;
        d["target_workers"] = t;
        nlohmann::json by_priority = nlohmann::json::object();  // NATS only: RabbitMQ has one queue per domain
        if (const auto* nats = report.find("nats", e.name))
            for (Priority p : kPriorities)
                by_priority[std::string(priorityName(p))] = nats->depth[static_cast<std::size_t>(p)];
        const auto* rabbit = report.find("rabbitmq", e.name);
        const std::uint64_t depth = report.depth(e.name);
        d["depth"] = depth;
        d["depth_by_priority"] = by_priority;
        d["depth_rabbitmq"] = rabbit != nullptr ? rabbit->total() : 0;
        d["in_flight"] = static_cast<std::uint64_t>(m.in_flight->Value());
        const auto at_tick = tick->domains.find(e.name);
        d["oldest_item_age_seconds"] = at_tick != tick->domains.end() ? at_tick->second.oldest_item_age_s : 0.0;
        d["dead_letters"] = at_tick != tick->domains.end() ? at_tick->second.dead_letters : 0;
        // Settled as dead letters, refused by the DLQ (full, unreachable):
        // still in the work queue, offered to the DLQ again without a handler call.
        const std::size_t pending = e.pool ? e.pool->deadLettersPending() : 0;
        d["dead_letters_pending"] = pending;
        if (pending > 0) d["warning"] = std::to_string(pending) + " dead letter(s) the dead-letter queue refused (full?)";
        d["circuit"] = e.pool ? std::string(worker::CircuitBreaker::name(e.pool->circuit())) : "closed";
        d["isolation"] = e.pool && e.pool->isolated() ? "process" : "thread";
        if (e.pool && e.pool->isolated()) {
            d["runners"] = e.pool->runners();
            if (const auto crash = e.pool->lastCrash()) {
                d["last_crash"] = {{"id", isValidUtf8(crash->id) ? crash->id : "base64:" + base64(crash->id)},
                                   {"what", crash->what},
                                   {"at_unix_ms", crash->at_unix_ms}};
                // Held: the breaker stopped the line after runners crashing in a row.
                const auto in_row = e.pool->crashesInRow();
                if (in_row > 0 && e.pool->circuit() != worker::CircuitBreaker::State::closed)
                    d["held"] = "its runners crashed or were killed " + std::to_string(in_row) +
                                " time(s) in a row (last: " + crash->what +
                                (crash->id.empty() || !isValidUtf8(crash->id) ? "" : " on id " + crash->id) +
                                "); pulling waits for the circuit breaker";
            }
        }
        d["stalled"] = e.pool ? e.pool->stalled(stall) : 0;
        d["plugin"] =
            e.pool ? nlohmann::json{{"name", e.plugin_name}, {"version", e.plugin_version}} : nlohmann::json(nullptr);
        d["processed"] = {{"ok", m.processedValue(metrics::Outcome::ok)},
                          {"retry", m.processedValue(metrics::Outcome::retry)},
                          {"fail", m.processedValue(metrics::Outcome::fail)},
                          {"timeout", m.processedValue(metrics::Outcome::timeout)}};
        workers += w;
        target += t;
        dead_letters_pending += pending;
        if (!e.pool)
            ++failed;
        else
            busy += depth + static_cast<std::uint64_t>(m.in_flight->Value());
        domains[e.name] = std::move(d);
    }
    const bool draining = draining_.load();
    const bool drained = draining && connected && busy == 0;
    std::string status = "ok";
    if (!connected)
        status = "unavailable";
    else if (drained)
        status = "drained";
    else if (draining)
        status = "draining";
    else if (failed > 0 || dead_letters_pending > 0)
        status = "degraded";
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    return {{"status", status},
            {"backend", connected ? nlohmann::json(p_.brokers.backendName()) : nlohmann::json(nullptr)},
            {"backends", {{"nats", p_.brokers.reachable("nats")}, {"rabbitmq", p_.brokers.reachable("rabbitmq")}}},
            {"current_workers", workers},
            {"target_workers", target},
            {"queue_depth_samples", tick->depth_samples},
            {"queue_draining", draining},
            {"drained", drained},
            {"timestamp", std::chrono::duration<double>(now).count()},
            {"version", KANBAN_VERSION},
            {"domains", domains}};
}

Reply AdminService::drain() {
    if (!draining_.exchange(true))
        spdlog::warn("drain requested: /readyz now answers 503; workers keep processing until the queues are empty");
    return {202, {{"queue_draining", true}}};
}

// A drain only holds readiness and the scheduler back (workers never stop
// for it), so it can be undone: ready again, scheduled ticks resume.
Reply AdminService::cancelDrain() {
    if (draining_.exchange(false))
        spdlog::warn("drain cancelled: /readyz answers 200 again and scheduled ticks resume");
    return {200, {{"queue_draining", false}}};
}

Reply AdminService::schedules() {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& st : p_.scheduler.list()) list.push_back(statusJson(st));
    return {200, {{"schedules", list}}};
}

bool AdminService::isConfigJob(const std::string& name) const {
    const auto c = p_.cfg();
    return std::any_of(c->schedules.begin(), c->schedules.end(), [&](const auto& j) { return j.name == name; });
}

Reply AdminService::addSchedule(const nlohmann::json& body) {
    const auto cfg = p_.cfg();
    auto job = scheduler::jobFromJson(body, *cfg);
    if (!job) return errorReply(400, job.message());
    if (isConfigJob(job->name))
        return errorReply(409, "schedule \"" + job->name + "\" is defined in " + cfg->path + "; change it there");
    if (!p_.schedule_store.available())
        return errorReply(503, "runtime schedules are stored in NATS (JetStream KV), which is not reachable now");
    if (Status s = p_.schedule_store.put(job->name, scheduler::jobToJson(*job).dump()); !s)
        return errorReply(503, s.message());
    p_.scheduler.add(*job, "api");
    auto st = p_.scheduler.find(job->name);
    return {201, st ? statusJson(*st) : scheduler::jobToJson(*job)};
}

Reply AdminService::cancelSchedule(const std::string& name) {
    if (isConfigJob(name))
        return errorReply(409, "schedule \"" + name + "\" is defined in " + p_.cfg()->path + "; remove it there");
    if (!p_.schedule_store.available())
        return errorReply(503, "runtime schedules are stored in NATS (JetStream KV), which is not reachable now");
    auto deleted = p_.schedule_store.remove(name);
    if (!deleted) return errorReply(503, deleted.message());
    const bool local = p_.scheduler.remove(name);
    if (!*deleted && !local) return errorReply(404, "no schedule named \"" + name + "\"");
    return {200, {{"cancelled", name}}};
}

Reply AdminService::deadLetters(const std::string& domain, const broker::DeadLetterQuery& query) {
    if (p_.cfg()->findDomain(domain) == nullptr) return errorReply(404, "unknown domain \"" + domain + "\"");
    // Every broker's dead-letter queue; one that is unreachable is reported, not fatal.
    const broker::DeadLetterListing listing = p_.brokers.deadLetters(domain, query);
    if (!listing.answered) {
        nlohmann::json why = listing.unavailable;
        return errorReply(503, "no broker answered: " + why.dump());
    }
    nlohmann::json items = nlohmann::json::array();
    for (const auto& dl : listing.items) {
        nlohmann::json j{{"sequence", dl.sequence},
                         {"reason", dl.reason},
                         {"reason_code", dl.reason_code},
                         {"attempts", dl.attempts},
                         {"original_subject", dl.original_subject},
                         {"dead_lettered_at", dl.dead_lettered_at},
                         {"backend", dl.backend}};
        // An id that is not UTF-8 cannot be a JSON string as it is: it is
        // given in base64 too, and replay takes it back in that form.
        j["id"] = dl.id;  // (shown with U+FFFD where it is not UTF-8)
        if (!isValidUtf8(dl.id)) j["id_base64"] = base64(dl.id);
        if (isValidUtf8(dl.payload))
            j["payload"] = dl.payload;
        else
            j["payload_base64"] = base64(dl.payload);
        // The item's own headers, as [name, value] pairs (a name may repeat).
        nlohmann::json headers = nlohmann::json::array();
        for (const auto& [name, value] : dl.headers) headers.push_back({name, value});
        j["headers"] = std::move(headers);
        items.push_back(std::move(j));
    }
    nlohmann::json reply{{"domain", domain}, {"count", items.size()}, {"items", items}, {"more", listing.more}};
    if (listing.more) reply["next_after"] = listing.next_after;
    if (!listing.unavailable.empty()) reply["unavailable"] = listing.unavailable;
    return {200, reply};
}

Reply AdminService::replay(const std::string& domain, const broker::DeadLetterFilter& filter) {
    if (p_.cfg()->findDomain(domain) == nullptr) return errorReply(404, "unknown domain \"" + domain + "\"");
    const auto& id = filter.id;
    const broker::ReplayReport report = p_.brokers.replay(domain, filter);
    if (!report.answered) return errorReply(503, "no broker answered: " + report.unavailable);
    nlohmann::json replayed = nlohmann::json::array(), failed = nlohmann::json::array();
    for (const auto& [item_id, error] : report.results) {
        if (error.empty()) {
            replayed.push_back(item_id);
            p_.metrics.publishedInc(domain);
            spdlog::info("dead letter replayed domain={} id={}", domain, item_id);
        } else {
            failed.push_back({{"id", item_id}, {"error", error}});
            p_.metrics.publishErrorInc(p_.brokers.backendName(), "replay");
        }
    }
    if (id && replayed.empty() && failed.empty())
        return errorReply(404, "no dead letter with id \"" + *id + "\" in domain \"" + domain + "\"");
    return {failed.empty() ? 200 : 409, {{"replayed", replayed}, {"failed", failed}}};
}

Reply AdminService::purge(const std::string& domain, const broker::DeadLetterFilter& filter) {
    if (p_.cfg()->findDomain(domain) == nullptr) return errorReply(404, "unknown domain \"" + domain + "\"");
    const broker::ReplayReport report = p_.brokers.purge(domain, filter);
    if (!report.answered) return errorReply(503, "no broker answered: " + report.unavailable);
    nlohmann::json purged = nlohmann::json::array(), failed = nlohmann::json::array();
    for (const auto& [item_id, error] : report.results) {
        if (error.empty())
            purged.push_back(item_id);
        else
            failed.push_back({{"id", item_id}, {"error", error}});
    }
    spdlog::warn("dead letters purged domain={} count={}{}{}", domain, purged.size(),
                 filter.id ? " id=" + *filter.id : "", filter.reason.empty() ? "" : " reason~\"" + filter.reason + "\"");
    if (filter.id && purged.empty() && failed.empty())
        return errorReply(404, "no dead letter with id \"" + *filter.id + "\" in domain \"" + domain + "\"");
    nlohmann::json body{{"purged", purged}, {"failed", failed}};
    if (!report.unavailable.empty()) body["unavailable"] = report.unavailable;
    return {failed.empty() ? 200 : 409, body};
}

Reply AdminService::stalled(const std::string& domain) {
    const auto cfg = p_.cfg();
    if (!domain.empty() && cfg->findDomain(domain) == nullptr) return errorReply(404, "unknown domain \"" + domain + "\"");
    const auto threshold = std::chrono::milliseconds(cfg->coordinator.stall_threshold_ms);
    nlohmann::json items = nlohmann::json::array();
    for (const auto& e : p_.domains.snapshot()) {
        if (!e.pool || (!domain.empty() && e.name != domain)) continue;
        for (const auto& s : e.pool->stalledItems(threshold)) {
            nlohmann::json j{{"domain", e.name}, {"id", s.id}, {"attempt", s.attempt}, {"in_handler_seconds", s.in_handler_seconds}};
            if (!isValidUtf8(s.id)) j["id_base64"] = base64(s.id);
            items.push_back(std::move(j));
        }
    }
    return {200, {{"stall_threshold_ms", threshold.count()}, {"items", items}}};
}

Reply AdminService::setPaused(const std::string& domain, bool paused) {
    if (p_.cfg()->findDomain(domain) == nullptr) return errorReply(404, "unknown domain \"" + domain + "\"");
    auto changed = p_.pauses.set(domain, paused);
    if (!changed) return errorReply(503, changed.message());
    if (*changed)
        spdlog::warn("domain={} {} through the admin API (on every host)", domain, paused ? "paused" : "resumed");
    nlohmann::json j{{"domain", domain}, {"paused", paused}, {"changed", *changed}};
    if (const auto since = p_.pauses.pausedSince(domain)) j["paused_since_unix_ms"] = *since;
    return {200, j};
}

Reply AdminService::itemStatus(const std::string& id, const std::string& domain, std::size_t max_scan) {
    const auto cfg = p_.cfg();
    std::vector<std::string> domains;
    if (!domain.empty()) {
        if (cfg->findDomain(domain) == nullptr) return errorReply(404, "unknown domain \"" + domain + "\"");
        domains.push_back(domain);
    } else {
        for (const auto& d : cfg->domains) domains.push_back(d.name);
    }
    const status::ItemStatus st = p_.items.locate(id, domains, max_scan);
    nlohmann::json j{{"id", isValidUtf8(id) ? id : "base64:" + base64(id)}, {"state", status::stateName(st.state)}};
    if (!st.domain.empty()) j["domain"] = st.domain;
    if (!st.backend.empty()) j["backend"] = st.backend;
    if (st.priority) j["priority"] = priorityName(*st.priority);
    if (st.sequence > 0) j["sequence"] = st.sequence;
    if (st.published_unix_ms) j["published_unix_ms"] = *st.published_unix_ms;
    if (st.in_handler_here) {
        j["where"] = "in a handler on this host";
        j["in_handler_seconds"] = st.in_handler_seconds;
    } else if (st.state == status::State::in_flight) {
        j["where"] = "handed to a worker and not settled yet: in a handler or a fetched batch on some host, or waiting "
                     "for its retry";
    }
    if (st.attempts > 0) j["attempts"] = st.attempts;
    if (!st.reason.empty()) j[st.state == status::State::dead_lettered ? "reason" : "last_reason"] = st.reason;
    if (!st.dead_lettered_at.empty()) j["dead_lettered_at"] = st.dead_lettered_at;
    j["searched"] = {{"domains", domains}, {"waiting_scanned", st.waiting_scanned},
                     {"waiting_complete", st.waiting_complete}};
    if (!st.unavailable.empty()) j["unavailable"] = st.unavailable;
    if (st.state == status::State::unknown) {
        std::string why = "not in a handler here, not recorded as done (the record covers the last 24 h), not "
                          "dead-lettered";
        why += st.waiting_complete ? ", not waiting" : ", not among the first " + std::to_string(st.waiting_scanned) +
                                                           " waiting items (raise scan= to look further)";
        if (!st.unavailable.empty()) why += "; some places could not be searched (see unavailable)";
        j["note"] = why;
    }
    return {200, j};
}

Reply AdminService::logLevel() { return {200, {{"level", log::levelName(spdlog::get_level())}}}; }

Reply AdminService::setLogLevel(const std::string& level) {
    static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warning", "error"};
    if (std::find(std::begin(kLevels), std::end(kLevels), level) == std::end(kLevels))
        return errorReply(400, "level must be one of trace, debug, info, warning, error; got \"" + level + "\"");
    const std::string previous(log::levelName(spdlog::get_level()));
    spdlog::set_level(log::levelFrom(level));
    spdlog::warn("log level changed from {} to {} through the admin API (until a restart or a reload that changes "
                 "log.level)", previous, level);
    return {200, {{"level", level}, {"previous", previous}}};
}

}  // namespace kanban::host::admin
