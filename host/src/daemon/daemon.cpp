#include "daemon/daemon.hpp"

#include "admin/admin_server.hpp"
#include "broker/failover.hpp"
#include "broker/jetstream.hpp"
#include "broker/rabbitmq.hpp"
#include "common/base64.hpp"
#include "common/clock.hpp"
#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "plugin/plugin.hpp"
#include "scheduler/scheduler.hpp"
#include "version.hpp"
#include "worker/domain_workers.hpp"

#include <nlohmann/json.hpp>

#include <nats/nats.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <sys/stat.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <csignal>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <vector>

namespace kanban::host::daemon {
namespace {

// Added to the longest handler timeout in the EXTEND_TIMEOUT_USEC sent with
// STOPPING=1: time to hand unstarted items back and close the connections.
constexpr std::int64_t kStopMarginMs = 15000;

sigset_t handledSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

void setupLogging(const std::string& level) {
    auto logger = spdlog::stderr_color_mt("kanband");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::from_str(level == "warning" ? "warn" : level));
}

Result<std::shared_ptr<const plugin::Instance>> loadHandler(const config::DomainConfig& d) {
    auto lib = plugin::Library::load(d.plugin_path);
    if (!lib) return lib.error();
    return plugin::Instance::create(std::move(*lib), d.settings_json);
}

// Items on a subject that no configured domain consumes stay in the stream
// (nothing is lost, DESIGN §5) and are reported: logged whenever the
// picture changes. A configured domain whose plugin failed is not orphaned:
// its items wait for the fix.
class OrphanWatch {
public:
    explicit OrphanWatch(const config::Config& cfg) { setDomains(cfg); }
    void setDomains(const config::Config& cfg) {
        std::lock_guard lock(mu_);
        domains_.clear();
        for (const auto& d : cfg.domains) domains_.insert(d.name);
    }

    // From the work stream's per-subject counts (nullopt: NATS did not
    // answer): the number of orphaned items, or the last known number.
    std::uint64_t check(const std::optional<broker::SubjectCounts>& counts) {
        if (!counts) return total_;
        std::map<std::string, std::uint64_t> orphaned;
        std::uint64_t total = 0;
        std::lock_guard lock(mu_);
        for (const auto& [subject, n] : *counts)
            if (domains_.count(subject.substr(subject.rfind('.') + 1)) == 0) {
                orphaned[subject] = n;
                total += n;
            }
        total_ = total;
        if (orphaned == last_) return total_;
        for (const auto& [subject, n] : orphaned)
            spdlog::warn("orphaned items: {} on {}; no configured domain consumes it (they stay in the stream)", n, subject);
        if (orphaned.empty()) spdlog::info("no orphaned items left");
        last_ = std::move(orphaned);
        return total_;
    }

private:
    std::mutex mu_;
    std::set<std::string> domains_;
    std::map<std::string, std::uint64_t> last_;
    std::uint64_t total_ = 0;
};


// What identifies the plugin file a domain was loaded from: a reload
// loads a new generation when it changed (replaced by rename, or
// overwritten in place), or when the domain's settings did.
struct PluginFile {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    std::int64_t mtime_ns = 0;
    std::string path, settings_json;
    bool operator==(const PluginFile&) const = default;
};

PluginFile pluginFile(const config::DomainConfig& d) {
    PluginFile f;
    f.path = d.plugin_path;
    f.settings_json = d.settings_json;
    struct stat st{};
    if (::stat(d.plugin_path.c_str(), &st) == 0) {
        f.dev = st.st_dev;
        f.ino = st.st_ino;
        f.size = st.st_size;
        f.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    }
    return f;
}

// The keys a reload cannot apply (the daemon owns these connections and the
// listener), by section name; empty if none differ.
std::vector<std::string> restartOnlyChanges(const config::Config& a, const config::Config& b) {
    std::vector<std::string> out;
    if (a.nats.servers != b.nats.servers || a.nats.stream != b.nats.stream || a.nats.replicas != b.nats.replicas ||
        a.nats.max_msgs != b.nats.max_msgs || a.nats.max_bytes != b.nats.max_bytes)
        out.push_back("[nats]");
    if (a.rabbitmq.enabled != b.rabbitmq.enabled || a.rabbitmq.url != b.rabbitmq.url ||
        a.rabbitmq.confirm_timeout_ms != b.rabbitmq.confirm_timeout_ms)
        out.push_back("[rabbitmq]");
    if (a.admin.listen != b.admin.listen || a.admin.token_file != b.admin.token_file) out.push_back("[admin]");
    return out;
}

// "kanban.high.orders" -> "high"
std::string_view subjectPriority(std::string_view subject) {
    const auto first = subject.find('.');
    const auto second = subject.find('.', first + 1);
    if (first == std::string_view::npos || second == std::string_view::npos) return {};
    return subject.substr(first + 1, second - first - 1);
}

bool isValidUtf8(const std::string& s) {
    try {
        (void)nlohmann::json(s).dump();  // strict: throws on invalid UTF-8
        return true;
    } catch (const nlohmann::json::type_error&) {
        return false;
    }
}


// The running host as the admin API sees it: domains, their workers and
// queue depths, the drain state. Depths are sampled by tick() every
// health interval (metrics, the sample window) and read live by /health.
class Host final : public admin::AdminApi {
public:
    Host(const config::Config& cfg, broker::Failover& brokers, metrics::Metrics& metrics)
        : cfg_(std::make_shared<const config::Config>(cfg)), brokers_(brokers), queue_(*brokers.nats()), rabbit_(brokers.rabbit()), metrics_(metrics), orphans_(cfg) {}

    void addDomain(const config::DomainConfig& d, const plugin::Instance* handler, worker::DomainWorkers* pool,
                   std::string error) {
        DomainEntry e;
        e.pool = pool;
        e.error = std::move(error);
        if (handler != nullptr) {
            e.plugin_name = handler->library().name();
            e.plugin_version = handler->library().version();
        }
        std::lock_guard lock(mu_);
        domains_.emplace(d.name, std::move(e));
    }

    std::shared_ptr<const config::Config> cfg() const {
        std::lock_guard lock(cfg_mu_);
        return cfg_;
    }
    void setConfig(const config::Config& cfg) {
        {
            std::lock_guard lock(cfg_mu_);
            cfg_ = std::make_shared<const config::Config>(cfg);
        }
        orphans_.setDomains(cfg);
    }
    void removeDomain(const std::string& name) {
        std::lock_guard lock(mu_);
        domains_.erase(name);
    }

    void setPlugin(const std::string& domain, const plugin::Instance& handler) {
        std::lock_guard lock(mu_);
        auto it = domains_.find(domain);
        if (it == domains_.end()) return;
        it->second.plugin_name = handler.library().name();
        it->second.plugin_version = handler.library().version();
    }

    // The coordinator, every health interval: depths and the pool sizes
    // they ask for, stalled items, orphans, broker state.
    void tick() {
        // Workers join RabbitMQ (while NATS serves) once it answers: find out here.
        if (rabbit_ != nullptr && !rabbit_->healthy()) (void)rabbit_->probe();
        brokers_.refresh();
        metrics_.setActiveBackend(brokers_.backendName());
        const auto stall = std::chrono::milliseconds(cfg()->coordinator.stall_threshold_ms);
        {
            std::lock_guard lock(mu_);
            for (auto& [name, e] : domains_)
                if (e.pool != nullptr) metrics_.domain(name).stalled->Set(static_cast<double>(e.pool->stalled(stall)));
        }
        const auto stored = storedCounts();  // one request, for the depths and the orphans
        const auto depths = sampleDepths(stored);
        if (queue_.connected()) {
            metrics_.setOrphanedItems(static_cast<double>(orphans_.check(stored)));
            watchDeadLetters();
        }
        syncSchedules();
        std::lock_guard lock(mu_);
        std::uint64_t total = 0;
        const auto window = static_cast<std::size_t>(cfg()->coordinator.depth_window);
        for (auto& [name, e] : domains_) {
            auto it = depths.find(name);
            if (it == depths.end()) continue;
            auto& m = metrics_.domain(name);
            std::uint64_t depth = it->second.rabbitmq;
            if (it->second.nats)
                for (std::size_t p = 0; p < it->second.nats->size(); ++p) {
                    m.queue_depth[p]->Set(static_cast<double>((*it->second.nats)[p]));
                    depth += (*it->second.nats)[p];
                }
            const std::uint64_t nats_depth = depth - it->second.rabbitmq;
            m.queue_depth_rabbitmq->Set(static_cast<double>(it->second.rabbitmq));
            m.dead_letter_depth_rabbitmq->Set(static_cast<double>(it->second.rabbitmq_dead));
            total += depth;
            last_depth_[name] = depth;
            if (!queue_.healthy()) {
                // the oldest item's age needs NATS and the streams (a direct get on a
                // stream that does not exist waits for its timeout); keep the last value
            } else if (it->second.nats && nats_depth == 0) {
                m.oldest_item_age->Set(0);
                e.oldest_age_s = 0;
            } else if (auto oldest = queue_.oldestItemUnixMs(name)) {
                const double age = *oldest ? std::max<double>(0, static_cast<double>(nowUnixMs() - **oldest) / 1000.0) : 0;
                m.oldest_item_age->Set(age);
                e.oldest_age_s = age;
            }
            if (e.pool == nullptr) continue;
            e.depth_window.push_back(depth);
            while (e.depth_window.size() > window) e.depth_window.pop_front();
            double avg = 0;
            for (auto v : e.depth_window) avg += static_cast<double>(v);
            avg /= static_cast<double>(e.depth_window.size());
            const auto target = static_cast<std::size_t>(
                worker::targetWorkers(avg, cfg()->workers.min, cfg()->workers.max));
            if (target != e.pool->target()) {
                spdlog::info("coordinator: domain={} workers {} -> {} (average depth {:.1f} over {} samples)", name,
                             e.pool->target(), target, avg, e.depth_window.size());
                e.pool->setTarget(target);
            }
        }
        depth_samples_.push_back(total);
        while (depth_samples_.size() > window) depth_samples_.pop_front();
    }

    bool draining() const { return draining_.load(); }

    // AdminApi
    bool ready() override { return brokers_.healthy() && !draining_.load(); }
    std::string metrics() override { return metrics_.scrape(); }

    nlohmann::json health() override {
        const bool connected = brokers_.healthy();
        const auto depths = sampleDepths(storedCounts());
        nlohmann::json domains = nlohmann::json::object();
        std::size_t workers = 0, target = 0, failed = 0;
        std::uint64_t busy = 0;  // running domains: waiting + in flight
        std::lock_guard lock(mu_);
        for (const auto& [name, e] : domains_) {
            nlohmann::json d;
            const auto& m = metrics_.domain(name);
            const std::size_t w = e.pool != nullptr ? e.pool->workers() : 0;
            const std::size_t t = e.pool != nullptr ? e.pool->target() : 0;
            d["status"] = e.pool != nullptr ? "running" : "failed";
            if (!e.error.empty()) d["error"] = e.error;
            d["workers"] = w;
            d["target_workers"] = t;
            std::uint64_t depth = 0, depth_rabbitmq = 0;
            nlohmann::json by_priority = nlohmann::json::object();
            if (auto it = depths.find(name); it != depths.end()) {
                if (it->second.nats)
                    for (Priority p : kPriorities) {
                        by_priority[std::string(priorityName(p))] = (*it->second.nats)[static_cast<std::size_t>(p)];
                        depth += (*it->second.nats)[static_cast<std::size_t>(p)];
                    }
                depth_rabbitmq = it->second.rabbitmq;
                depth += depth_rabbitmq;
            }
            d["depth"] = depth;
            d["depth_by_priority"] = by_priority;  // NATS only: RabbitMQ has one queue per domain
            d["depth_rabbitmq"] = depth_rabbitmq;
            d["in_flight"] = static_cast<std::uint64_t>(m.in_flight->Value());
            d["oldest_item_age_seconds"] = e.oldest_age_s;
            d["dead_letters"] = e.dead_letters;
            d["circuit"] = e.pool != nullptr ? std::string(worker::CircuitBreaker::name(e.pool->circuit())) : "closed";
            d["stalled"] = e.pool != nullptr
                               ? e.pool->stalled(std::chrono::milliseconds(cfg()->coordinator.stall_threshold_ms))
                               : 0;
            d["plugin"] = e.pool != nullptr ? nlohmann::json{{"name", e.plugin_name}, {"version", e.plugin_version}}
                                            : nlohmann::json(nullptr);
            d["processed"] = {{"ok", m.processedValue(metrics::Outcome::ok)},
                              {"retry", m.processedValue(metrics::Outcome::retry)},
                              {"fail", m.processedValue(metrics::Outcome::fail)},
                              {"timeout", m.processedValue(metrics::Outcome::timeout)}};
            workers += w;
            target += t;
            if (e.pool == nullptr) ++failed;
            else busy += depth + static_cast<std::uint64_t>(m.in_flight->Value());
            domains[name] = std::move(d);
        }
        const bool draining = draining_.load();
        const bool drained = draining && connected && busy == 0;
        std::string status = "ok";
        if (!connected) status = "unavailable";
        else if (drained) status = "drained";
        else if (draining) status = "draining";
        else if (failed > 0) status = "degraded";
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        return {{"status", status},
                {"backend", connected ? nlohmann::json(brokers_.backendName()) : nlohmann::json(nullptr)},
                {"backends", {{"nats", queue_.connected()}, {"rabbitmq", rabbit_ != nullptr && rabbit_->healthy()}}},
                {"current_workers", workers},
                {"target_workers", target},
                {"queue_depth_samples", depth_samples_},
                {"queue_draining", draining},
                {"drained", drained},
                {"timestamp", std::chrono::duration<double>(now).count()},
                {"version", KANBAN_VERSION},
                {"domains", domains}};
    }

    admin::Reply drain() override {
        if (!draining_.exchange(true))
            spdlog::warn("drain requested: /readyz now answers 503; workers keep processing until the queues are empty");
        return {202, {{"queue_draining", true}}};
    }

    admin::Reply schedules() override {
        nlohmann::json list = nlohmann::json::array();
        if (scheduler_ != nullptr)
            for (const auto& st : scheduler_->list()) list.push_back(statusJson(st));
        return {200, {{"schedules", list}}};
    }

    admin::Reply addSchedule(const nlohmann::json& body) override {
        auto job = scheduler::jobFromJson(body, *cfg());
        if (!job) return admin::errorReply(400, job.message());
        if (isConfigJob(job->name))
            return admin::errorReply(409, "schedule \"" + job->name + "\" is defined in " + cfg()->path + "; change it there");
        if (!queue_.connected())
            return admin::errorReply(503, "runtime schedules are stored in NATS (JetStream KV), which is not reachable now");
        if (Status s = queue_.putSchedule(job->name, scheduler::jobToJson(*job).dump()); !s)
            return admin::errorReply(503, s.message());
        scheduler_->add(*job, "api");
        auto st = scheduler_->find(job->name);
        return {201, st ? statusJson(*st) : scheduler::jobToJson(*job)};
    }

    admin::Reply cancelSchedule(const std::string& name) override {
        if (isConfigJob(name))
            return admin::errorReply(409, "schedule \"" + name + "\" is defined in " + cfg()->path + "; remove it there");
        if (!queue_.connected())
            return admin::errorReply(503, "runtime schedules are stored in NATS (JetStream KV), which is not reachable now");
        auto deleted = queue_.deleteSchedule(name);
        if (!deleted) return admin::errorReply(503, deleted.message());
        const bool local = scheduler_ != nullptr && scheduler_->remove(name);
        if (!*deleted && !local) return admin::errorReply(404, "no schedule named \"" + name + "\"");
        return {200, {{"cancelled", name}}};
    }

    // Scheduler hooks.
    void setScheduler(scheduler::Scheduler* s) { scheduler_ = s; }
    std::optional<std::uint64_t> lastDepth(const std::string& domain) {
        std::lock_guard lock(mu_);
        auto it = last_depth_.find(domain);
        if (it == last_depth_.end()) return std::nullopt;
        return it->second;
    }

    admin::Reply deadLetters(const std::string& domain, std::size_t limit) override {
        if (cfg()->findDomain(domain) == nullptr) return admin::errorReply(404, "unknown domain \"" + domain + "\"");
        // Both dead-letter queues; an unreachable broker is reported, not fatal.
        nlohmann::json items = nlohmann::json::array(), unavailable = nlohmann::json::object();
        auto add = [&](const broker::DeadLetter& dl, const char* backend) {
            nlohmann::json j{{"sequence", dl.sequence},       {"id", dl.id},
                             {"reason", dl.reason},           {"attempts", dl.attempts},
                             {"original_subject", dl.original_subject}, {"dead_lettered_at", dl.dead_lettered_at},
                             {"backend", backend}};
            if (isValidUtf8(dl.payload))
                j["payload"] = dl.payload;
            else
                j["payload_base64"] = base64(dl.payload);
            items.push_back(std::move(j));
        };
        if (queue_.connected()) {
            if (auto list = queue_.deadLetters(domain, limit))
                for (const auto& dl : *list) add(dl, "nats");
            else
                unavailable["nats"] = list.message();
        } else {
            unavailable["nats"] = "not connected";
        }
        if (rabbit_ != nullptr && items.size() < limit) {
            if (auto list = rabbit_->deadLetters(domain, limit - items.size()))
                for (const auto& dl : *list) add(dl, "rabbitmq");
            else
                unavailable["rabbitmq"] = list.message();
        }
        if (items.empty() && unavailable.size() == (rabbit_ != nullptr ? 2u : 1u))
            return admin::errorReply(503, "no broker answered: " + unavailable.dump());
        nlohmann::json reply{{"domain", domain}, {"count", items.size()}, {"items", items}};
        if (!unavailable.empty()) reply["unavailable"] = unavailable;
        return {200, reply};
    }

    admin::Reply replay(const std::string& domain, const std::optional<std::string>& id) override {
        if (cfg()->findDomain(domain) == nullptr) return admin::errorReply(404, "unknown domain \"" + domain + "\"");
        nlohmann::json replayed = nlohmann::json::array(), failed = nlohmann::json::array();
        // Published like any other item: to NATS, or to RabbitMQ when NATS
        // cannot take it; the original id and payload, a fresh deadline.
        auto republish = [&](const broker::PublishRequest& req) -> Status {
            auto ack = brokers_.publish(req);
            if (!ack) return ack.error();
            if (ack->duplicate)
                return Error{"id " + req.id + " was published less than 2 minutes ago, so the work stream drops this copy "
                             "as a duplicate; replay it after the window"};
            return Ok{};
        };
        auto note = [&](const std::string& item_id, const std::string& error) {
            if (error.empty()) {
                replayed.push_back(item_id);
                metrics_.publishedInc(domain);
                spdlog::info("dead letter replayed domain={} id={}", domain, item_id);
            } else {
                failed.push_back({{"id", item_id}, {"error", error}});
                metrics_.publishErrorInc(brokers_.backendName(), "replay");
            }
        };
        bool answered = false;
        std::string why;
        if (queue_.connected()) {
            if (auto list = queue_.deadLetters(domain, 100000)) {
                answered = true;
                for (const auto& dl : *list) {
                    if (id && dl.id != *id) continue;
                    broker::PublishRequest req;
                    req.domain = domain;
                    req.priority = parsePriority(subjectPriority(dl.original_subject)).value_or(Priority::normal);
                    req.payload = dl.payload;
                    req.id = dl.id;
                    Status s = dl.id.empty() ? Status(Error{"dead letter has no original id"}) : republish(req);
                    if (s) s = queue_.removeDeadLetter(dl.sequence);
                    note(dl.id, s ? "" : s.message());
                }
            } else {
                why = list.message();
            }
        }
        if (rabbit_ != nullptr) {
            if (auto results = rabbit_->replayDeadLetters(domain, id, republish)) {
                answered = true;
                for (const auto& [item_id, error] : *results) note(item_id, error);
            } else {
                why += (why.empty() ? "" : "; ") + results.message();
            }
        }
        if (!answered) return admin::errorReply(503, "no broker answered: " + why);
        if (id && replayed.empty() && failed.empty())
            return admin::errorReply(404, "no dead letter with id \"" + *id + "\" in domain \"" + domain + "\"");
        return {failed.empty() ? 200 : 409, {{"replayed", replayed}, {"failed", failed}}};
    }

private:
    bool isConfigJob(const std::string& name) const {
        const auto c = cfg();
        return std::any_of(c->schedules.begin(), c->schedules.end(), [&](const auto& j) { return j.name == name; });
    }

    static nlohmann::json statusJson(const scheduler::JobStatus& st) {
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

    // Runtime jobs as stored in the KV bucket, for every host to run.
    void syncSchedules() {
        if (scheduler_ == nullptr || !queue_.connected()) return;
        auto stored = queue_.storedSchedules();
        if (!stored) {
            spdlog::debug("schedules not read: {}", stored.message());
            return;
        }
        std::map<std::string, config::ScheduleConfig> jobs;
        for (const auto& [name, text] : *stored) {
            auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
            auto job = scheduler::jobFromJson(j, *cfg());
            if (!job) {
                if (bad_schedules_.insert(name + text).second)
                    spdlog::warn("stored schedule {} not run here: {}", name, job.message());
                continue;
            }
            jobs[name] = std::move(*job);
        }
        scheduler_->syncRuntime(jobs);
    }

    struct DomainEntry {
        worker::DomainWorkers* pool = nullptr;  // null: not started (plugin failed)
        std::string plugin_name, plugin_version, error;
        std::deque<std::uint64_t> depth_window;  // the coordinator's samples
        double oldest_age_s = 0;
        std::uint64_t dead_letters = 0;
    };

    // The dead-letter queue per domain: a gauge, and a warning when it grows.
    void watchDeadLetters() {
        auto counts = queue_.subjectCounts(/*dead_letters=*/true);
        if (!counts) return;
        std::map<std::string, std::uint64_t> by_domain;
        for (const auto& [subject, n] : *counts) by_domain[subject.substr(subject.rfind('.') + 1)] = n;
        std::lock_guard lock(mu_);
        for (auto& [name, e] : domains_) {
            const std::uint64_t n = by_domain.count(name) ? by_domain[name] : 0;
            if (n > e.dead_letters)
                spdlog::warn("dead-letter queue of domain={} grew to {} (kanbanctl dlq list {})", name, n, name);
            e.dead_letters = n;
            metrics_.domain(name).dead_letter_depth->Set(static_cast<double>(n));
        }
    }

    struct Depths {
        std::optional<std::array<std::uint64_t, 3>> nats;  // by priority; nullopt when NATS did not answer
        std::uint64_t rabbitmq = 0, rabbitmq_dead = 0;
    };

    // Items stored per work subject, in one request; nullopt when NATS is
    // not connected (a JS API call would block until its timeout) or did not answer.
    std::optional<broker::SubjectCounts> storedCounts() {
        if (!queue_.connected()) return std::nullopt;
        auto counts = queue_.subjectCounts();
        if (!counts) {
            spdlog::debug("stream subject counts unavailable: {}", counts.message());
            return std::nullopt;
        }
        return std::move(*counts);
    }

    // Depth per domain on both brokers (a broker that is down counts as
    // empty). A domain with nothing stored (`stored`, when known) is empty
    // without asking its consumers: an idle domain costs no broker request.
    std::map<std::string, Depths> sampleDepths(const std::optional<broker::SubjectCounts>& stored) {
        std::vector<std::string> names;
        {
            std::lock_guard lock(mu_);
            for (const auto& [name, e] : domains_) names.push_back(name);
        }
        std::map<std::string, Depths> out;
        const bool nats = queue_.connected();
        const bool rabbit = rabbit_ != nullptr && rabbit_->healthy();
        std::set<std::string> nonempty;
        if (stored)
            for (const auto& [subject, n] : *stored)
                if (n > 0) nonempty.insert(subject.substr(subject.rfind('.') + 1));
        for (const auto& name : names) {
            Depths& d = out[name];
            if (nats && stored && nonempty.count(name) == 0)
                d.nats = std::array<std::uint64_t, 3>{};
            else if (nats)
                if (auto n = queue_.queueDepth(name)) d.nats = *n;
            if (rabbit) {
                if (auto n = rabbit_->queueDepth(name)) d.rabbitmq = *n;
                if (auto n = rabbit_->deadLetterDepth(name)) d.rabbitmq_dead = *n;
            }
        }
        return out;
    }

    mutable std::mutex cfg_mu_;
    std::shared_ptr<const config::Config> cfg_;  // cfg_mu_; replaced by a reload
    broker::Failover& brokers_;
    broker::JetStream& queue_;  // NATS-only views: stream inspection, orphans, oldest item
    broker::RabbitMq* rabbit_;  // null when rabbitmq.enabled is false
    metrics::Metrics& metrics_;
    OrphanWatch orphans_;  // used by tick() only
    std::set<std::string> bad_schedules_;  // tick() only: each logged once
    std::mutex mu_;
    std::map<std::string, DomainEntry> domains_;
    std::deque<std::uint64_t> depth_samples_;
    std::map<std::string, std::uint64_t> last_depth_;  // per domain, the coordinator's last sample
    std::atomic<bool> draining_{false};
    scheduler::Scheduler* scheduler_ = nullptr;
};

}  // namespace

void blockSignals() {
    sigset_t set = handledSignals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int checkConfig(const std::string& path) {
    auto cfg = config::loadConfigFile(path);
    if (!cfg) {
        std::cerr << cfg.message() << "\n";
        return 1;
    }
    int problems = 0;
    for (const auto& d : cfg->domains) {
        auto handler = loadHandler(d);
        if (!handler) {
            std::cerr << path << ": domain \"" << d.name << "\": " << handler.message() << "\n";
            ++problems;
        }
    }
    if (problems != 0) return 1;
    std::cout << path << ": OK (" << cfg->domains.size() << " domain" << (cfg->domains.size() == 1 ? "" : "s")
              << ", " << cfg->schedules.size() << " schedule" << (cfg->schedules.size() == 1 ? "" : "s") << ")\n";
    return 0;
}

int run(const std::string& path) {
    auto loaded = config::loadConfigFile(path);
    if (!loaded) {
        std::cerr << loaded.message() << "\n";
        return 1;
    }
    const config::Config cfg = std::move(*loaded);
    setupLogging(cfg.log_level);
    spdlog::info("kanband starting version={} config={} domains={}", KANBAN_VERSION, path, cfg.domains.size());

    std::string token;
    if (!cfg.admin.token_file.empty()) {
        auto t = admin::readTokenFile(cfg.admin.token_file);
        if (!t) {
            spdlog::error("{}", t.message());
            return 1;
        }
        token = std::move(*t);
    }

    metrics::Metrics metrics(KANBAN_VERSION);
    broker::JetStreamOptions jo;
    jo.servers = cfg.nats.servers;
    jo.stream = cfg.nats.stream;
    jo.replicas = static_cast<int>(cfg.nats.replicas);
    jo.max_msgs = cfg.nats.max_msgs;
    jo.max_bytes = cfg.nats.max_bytes;
    auto js = broker::JetStream::connect(jo);
    if (!js) {
        spdlog::error("{}", js.message());
        return 1;
    }
    std::unique_ptr<broker::JetStream> queue = std::move(*js);
    std::unique_ptr<broker::RabbitMq> rabbit;
    if (cfg.rabbitmq.enabled) {
        broker::RabbitMqOptions ro;
        ro.url = cfg.rabbitmq.url;
        ro.confirm_timeout = std::chrono::milliseconds(cfg.rabbitmq.confirm_timeout_ms);
        rabbit = std::make_unique<broker::RabbitMq>(ro);
    }
    broker::Failover brokers(queue.get(), rabbit.get(), [&metrics](std::string_view to) {
        metrics.failoverInc();
        metrics.setActiveBackend(to);
    });
    Host host(cfg, brokers, metrics);

    // The scheduler publishes through the same failover path as everything
    // else; its canaries are judged by the idempotency record (this host's,
    // then the shared bucket) and by this host's workers as they settle them.
    worker::LocalDoneRecord done;
    auto sched_store = brokers.openDoneStore();  // used on the scheduler's thread only
    scheduler::Scheduler::Hooks hooks;
    hooks.publish = [&](const broker::PublishRequest& req) {
        auto ack = brokers.publish(req);
        if (ack && !ack->duplicate) metrics.publishedInc(req.domain);
        if (!ack) metrics.publishErrorInc(brokers.backendName(), "schedule");
        return ack;
    };
    hooks.depth = [&host](const std::string& domain) { return host.lastDepth(domain); };
    hooks.done = [&done, &sched_store](const std::string& id) {
        if (done.contains(id)) return true;
        if (!sched_store) return false;
        auto known = (*sched_store)->lookup({id});
        return known && !known->empty() && known->front();
    };
    hooks.draining = [&host] { return host.draining(); };
    hooks.on_published = [&metrics](const std::string& job) { metrics.scheduledPublishedInc(job); };
    hooks.on_skipped = [&metrics](const std::string& job, const std::string& reason, std::uint64_t n) {
        metrics.scheduledSkippedInc(job, reason, static_cast<double>(n));
    };
    hooks.on_canary = [&metrics](const std::string& job, const std::string& outcome) { metrics.canaryInc(job, outcome); };
    scheduler::Scheduler sched(cfg, std::move(hooks));
    host.setScheduler(&sched);

    admin::AdminServer admin(host, token);
    if (Status s = admin.start(cfg.admin.host, cfg.admin.port); !s) {
        spdlog::error("{}", s.message());
        return 1;
    }

    // Jidoka: a domain whose plugin cannot be loaded or created does not
    // start (its items wait in the queue); the other domains run.
    std::vector<std::unique_ptr<worker::DomainWorkers>> pools;
    std::map<std::string, PluginFile> plugin_files;  // of the running generation, per domain
    auto workerSettings = [&sched](const config::DomainConfig& d, const config::Config& c) {
        return worker::WorkerSettings{.domain = d,
                                      .workers = c.workers,
                                      .retry = c.retry,
                                      .breaker = c.circuit_breaker,
                                      .on_scheduled_settled = [&sched](const std::string& id, bool ok) { sched.settled(id, ok); }};
    };
    auto startDomain = [&](const config::DomainConfig& d, const config::Config& c,
                           std::shared_ptr<const plugin::Instance> handler) {
        const auto& lib = handler->library();
        spdlog::info("plugin loaded domain={} plugin={} version={} path={}", d.name, lib.name(), lib.version(),
                     d.plugin_path);
        metrics.setPluginInfo(d.name, lib.name(), lib.version());
        auto pool = std::make_unique<worker::DomainWorkers>(workerSettings(d, c), handler, brokers, done,
                                                            metrics.domain(d.name));
        pool->start(static_cast<std::size_t>(c.workers.min));
        host.addDomain(d, handler.get(), pool.get(), "");
        plugin_files[d.name] = pluginFile(d);
        pools.push_back(std::move(pool));
    };
    for (const auto& d : cfg.domains) {
        auto handler = loadHandler(d);
        if (!handler) {
            spdlog::error("domain not started domain={}: {}", d.name, handler.message());
            host.addDomain(d, nullptr, nullptr, handler.message());
            continue;
        }
        startDomain(d, cfg, std::move(*handler));
    }
    sd_notify(0, "READY=1\nSTATUS=running");
    spdlog::info("kanband ready admin={}:{} workers_per_domain={}", cfg.admin.host, admin.port(), cfg.workers.min);

    metrics.configLoaded(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
    // Reload (SIGHUP): validate everything first, change nothing on any
    // failure; then swap the plugin generations that changed.
    config::Config current = cfg;
    auto interval = std::chrono::milliseconds(cfg.coordinator.health_interval_ms);
    auto reload = [&] {
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
                   static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                       std::chrono::steady_clock::now().time_since_epoch())
                                                       .count()));
        const auto now_s = [] {
            return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        };
        auto refuse = [&](const std::string& why) {
            spdlog::error("reload refused, the running configuration stays: {}", why);
            metrics.reloaded(false, now_s());
            sd_notify(0, "READY=1\nSTATUS=running (last reload refused)");
        };
        spdlog::info("SIGHUP received: reloading {}", path);
        auto next = config::loadConfigFile(path);
        if (!next) return refuse(next.message());

        // Shadow-build every new or changed domain's generation: all or nothing.
        std::map<std::string, std::shared_ptr<const plugin::Instance>> fresh;
        std::map<std::string, PluginFile> fresh_files;
        std::vector<std::string> not_applied;
        for (const auto& d : next->domains) {
            const PluginFile file = pluginFile(d);
            auto running = plugin_files.find(d.name);
            if (running != plugin_files.end() && running->second == file) continue;
            auto handler = loadHandler(d);
            if (!handler) return refuse("domain \"" + d.name + "\": " + handler.message());
            fresh[d.name] = std::move(*handler);
            fresh_files[d.name] = file;
        }
        for (const auto& section : restartOnlyChanges(current, *next)) not_applied.push_back(section);

        // Apply: new generations and settings, new domains, then removed ones.
        auto poolOf = [&](const std::string& name) {
            auto it = std::find_if(pools.begin(), pools.end(), [&](const auto& p) { return p->name() == name; });
            return it == pools.end() ? nullptr : it->get();
        };
        std::size_t swapped = 0, added = 0, removed = 0;
        for (const auto& d : next->domains) {
            worker::DomainWorkers* pool = poolOf(d.name);
            auto f = fresh.find(d.name);
            if (pool == nullptr) {
                if (f == fresh.end()) continue;  // cannot happen: a domain without a pool has no running generation
                host.removeDomain(d.name);       // it may be listed as failed since start
                startDomain(d, *next, f->second);
                spdlog::info("domain added domain={}", d.name);
                ++added;
                continue;
            }
            const config::DomainConfig* before = current.findDomain(d.name);
            if (before == nullptr || !(*before == d) || !(current.workers == next->workers) ||
                !(current.retry == next->retry) || !(current.circuit_breaker == next->circuit_breaker))
                pool->updateSettings(workerSettings(d, *next));
            if (f == fresh.end()) continue;
            const auto old = pool->handler();
            pool->swapHandler(f->second);
            host.setPlugin(d.name, *f->second);
            metrics.setPluginInfo(d.name, f->second->library().name(), f->second->library().version());
            plugin_files[d.name] = fresh_files[d.name];
            sched.recanary(d.name);
            ++swapped;
            spdlog::info("plugin swapped domain={} plugin={} version {} -> {}; items in a handler finish on the old one",
                         d.name, f->second->library().name(), old->library().version(), f->second->library().version());
        }
        host.setConfig(*next);
        sched.reconfigure(*next);
        for (const auto& d : current.domains) {
            if (next->findDomain(d.name) != nullptr) continue;
            auto it = std::find_if(pools.begin(), pools.end(), [&](const auto& p) { return p->name() == d.name; });
            host.removeDomain(d.name);
            plugin_files.erase(d.name);
            if (it == pools.end()) continue;
            (*it)->requestStop();  // unstarted items go back to the broker; the ones in a handler finish
            (*it)->join();
            pools.erase(it);
            spdlog::info("domain removed domain={}: its workers finished; its queue stays in the broker", d.name);
            ++removed;
        }
        if (next->log_level != current.log_level)
            spdlog::set_level(spdlog::level::from_str(next->log_level == "warning" ? "warn" : next->log_level));
        for (const auto& what : not_applied) spdlog::warn("reload: {} needs a restart to take effect", what);
        current = std::move(*next);
        metrics.reloaded(true, now_s());
        interval = std::chrono::milliseconds(current.coordinator.health_interval_ms);
        spdlog::info("reload done: {} plugin generation(s) swapped, {} domain(s) added, {} removed", swapped, added, removed);
        sd_notify(0, "READY=1\nSTATUS=running");
    };

    sched.start();
    host.tick();
    const sigset_t set = handledSignals();
    // (declared above, before `reload`, which changes it)
    for (;;) {
        timespec timeout{static_cast<time_t>(interval.count() / 1000), static_cast<long>(interval.count() % 1000) * 1'000'000};
        const int sig = sigtimedwait(&set, nullptr, &timeout);
        if (sig < 0) {
            if (errno == EAGAIN) host.tick();
            continue;
        }
        if (sig == SIGHUP) {
            // One reload at a time, on this thread; SIGHUPs that arrive
            // meanwhile stay pending as one, and run one more reload after.
            reload();
            continue;
        }
        spdlog::info("{} received: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }

    // systemd's TimeoutStopSec is a floor: the drain may take the longest
    // handler timeout of the running configuration, plus a margin to hand
    // unstarted items back and close the connections.
    std::int64_t longest_ms = 0;
    for (const auto& d : current.domains) longest_ms = std::max(longest_ms, d.timeout_ms);
    sd_notifyf(0, "STOPPING=1\nSTATUS=draining: handlers finish, unstarted items go back to the broker\nEXTEND_TIMEOUT_USEC=%llu",
               static_cast<unsigned long long>(longest_ms + kStopMarginMs) * 1000ULL);
    sched.stop();  // no new work first
    for (auto& p : pools) p->requestStop();  // all domains stop pulling at once
    for (auto& p : pools) {
        p->join();
        const auto& m = p->metrics();
        double pulled = 0, dead = 0;
        for (auto* c : m.pulled) pulled += c->Value();
        for (auto* c : m.dead_lettered) dead += c->Value();
        spdlog::info("domain stopped domain={} pulled={} ok={} duplicates={} retried={} failed={} timed_out={} "
                     "dead_lettered={} nacked={}",
                     p->name(), pulled, m.processedValue(metrics::Outcome::ok), m.duplicates->Value(),
                     m.processedValue(metrics::Outcome::retry), m.processedValue(metrics::Outcome::fail),
                     m.processedValue(metrics::Outcome::timeout), dead, m.nacked->Value());
    }
    admin.stop();  // before the pools go: /health reads them
    pools.clear();  // the handler instances go with them, after every worker joined
    rabbit.reset();
    queue.reset();
    nats_CloseAndWait(2000);
    spdlog::info("kanband stopped");
    return 0;
}

}  // namespace kanban::host::daemon
