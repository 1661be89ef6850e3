#include "admin_verbs.hpp"

#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "ctl_common.hpp"

namespace kanban::ctl {

int health(AdminClient& admin, bool json) {
    auto r = admin.call("GET", "/health");
    if (!r) return admin.unreachable();
    if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
    const auto& h = r->body;
    if (json) {
        std::cout << dump(h) << "\n";
        return kExitOk;
    }
    std::printf("status: %s   backend: %s   workers: %zu/%zu   draining: %s\n", h.value("status", "?").c_str(),
                h["backend"].is_string() ? h["backend"].get<std::string>().c_str() : "none",
                h.value("current_workers", std::size_t{0}), h.value("target_workers", std::size_t{0}),
                h.value("queue_draining", false) ? (h.value("drained", false) ? "drained" : "yes") : "no");
    std::printf("%-20s %-8s %-8s %8s %8s %-9s %-9s %s\n", "domain", "status", "workers", "depth", "inflight", "circuit",
                "isolation", "plugin");
    for (const auto& [name, d] : h["domains"].items()) {
        const std::string plugin = d["plugin"].is_object()
                                       ? d["plugin"].value("name", "?") + " " + d["plugin"].value("version", "?")
                                       : "-";
        const std::string workers = std::to_string(d.value("workers", 0)) + "/" + std::to_string(d.value("target_workers", 0));
        std::printf("%-20s %-8s %-8s %8llu %8llu %-9s %-9s %s\n", name.c_str(), d.value("status", "?").c_str(),
                    workers.c_str(), static_cast<unsigned long long>(d.value("depth", 0ULL)),
                    static_cast<unsigned long long>(d.value("in_flight", 0ULL)), d.value("circuit", "?").c_str(),
                    d.value("isolation", "thread").c_str(), plugin.c_str());
        if (d.contains("error")) std::printf("    error: %s\n", d["error"].get<std::string>().c_str());
        if (d.contains("held")) std::printf("    held: %s\n", d["held"].get<std::string>().c_str());
        if (const auto crash = d.find("last_crash"); crash != d.end() && crash->is_object())
            std::printf("    last runner crash: %s, id %s\n", crash->value("what", "?").c_str(), crash->value("id", "?").c_str());
    }
    return kExitOk;
}

int drain(AdminClient& admin, bool wait, int timeout_s, bool cancel, bool json) {
    if (cancel) {
        auto r = admin.call("POST", "/drain/cancel");
        if (!r) return admin.unreachable();
        if (r->status != 200) return AdminClient::refused(*r);
        std::cout << (json ? dump(r->body) : "drain cancelled") << "\n";
        return kExitOk;
    }
    auto r = admin.call("POST", "/drain");
    if (!r) return admin.unreachable();
    if (r->status != 202 && r->status != 200) return AdminClient::refused(*r);
    if (!wait) {
        std::cout << (json ? dump(r->body) : "draining") << "\n";
        return kExitOk;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    for (;;) {
        auto h = admin.call("GET", "/health");
        if (!h) return admin.unreachable();
        if (h->status == 200 && h->body.is_object() && h->body.value("drained", false)) {
            std::cout << (json ? dump(h->body) : "drained") << "\n";
            return kExitOk;
        }
        if (timeout_s > 0 && std::chrono::steady_clock::now() >= deadline)
            return fail(kExitError, "not drained after " + std::to_string(timeout_s) + " s");
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
}

// Pages through GET /dlq/<domain> (bounded by bytes as well as by count)
// until `limit` items, waiting when the host says it is busy (429).
int dlqList(AdminClient& admin, const std::string& domain, bool json, int limit, const std::string& reason) {
    nlohmann::json all{{"domain", domain}, {"items", nlohmann::json::array()}, {"more", false}};
    std::uint64_t after = 0;
    for (int busy = 0;;) {
        const std::size_t left = static_cast<std::size_t>(limit) - all["items"].size();
        auto r = admin.call("GET", "/dlq/" + domain + "?limit=" + std::to_string(left) + "&after=" + std::to_string(after) +
                                       (reason.empty() ? "" : "&reason=" + httplib::detail::encode_query_param(reason)));
        if (!r) return admin.unreachable();
        if (r->status == 429 && ++busy < 60) {
            std::this_thread::sleep_for(std::chrono::seconds(1));
            continue;
        }
        if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
        for (auto& item : r->body["items"]) all["items"].push_back(std::move(item));
        if (r->body.contains("unavailable")) all["unavailable"] = r->body["unavailable"];
        all["more"] = r->body.value("more", false);
        if (!all["more"].get<bool>() || all["items"].size() >= static_cast<std::size_t>(limit)) break;
        after = r->body.value("next_after", std::uint64_t{0});
    }
    all["count"] = all["items"].size();
    if (json) {
        std::cout << dump(all) << "\n";
        return kExitOk;
    }
    for (const auto& item : all["items"])
        std::printf("%llu\t%s\tattempts=%u\t%s\treason=%s\n", item.value("sequence", 0ULL), item.value("id", "").c_str(),
                    item.value("attempts", 0U), item.value("dead_lettered_at", "").c_str(), item.value("reason", "").c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "%zu dead-lettered item(s) in %s%s\n", all["items"].size(), domain.c_str(),
                 all["more"].get<bool>() ? " (more: raise --limit)" : "");
    return kExitOk;
}

// The items in handlers longer than stall_threshold_ms on this host.
int stalled(AdminClient& admin, const std::string& domain, bool json) {
    auto r = admin.call("GET", "/stalled" + (domain.empty() ? "" : "?domain=" + httplib::detail::encode_query_param(domain)));
    if (!r) return admin.unreachable();
    if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
    if (json) {
        std::cout << r->body.dump(2) << "\n";
        return kExitOk;
    }
    for (const auto& item : r->body["items"])
        std::printf("%s\t%s\tattempt=%u\tin_handler=%.1fs\n", item.value("domain", "").c_str(), item.value("id", "").c_str(),
                    item.value("attempt", 0U), item.value("in_handler_seconds", 0.0));
    std::fflush(stdout);
    std::fprintf(stderr, "%zu item(s) in a handler longer than %lld ms\n", r->body["items"].size(),
                 static_cast<long long>(r->body.value("stall_threshold_ms", 0LL)));
    return kExitOk;
}

// Without a level: prints the current one; with one: sets it at once.
int logLevel(AdminClient& admin, const std::string& level, bool json) {
    auto r = level.empty() ? admin.call("GET", "/log-level")
                           : admin.call("PUT", "/log-level", nlohmann::json{{"level", level}}.dump());
    if (!r) return admin.unreachable();
    if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
    if (json)
        std::cout << r->body.dump(2) << "\n";
    else if (level.empty())
        std::cout << r->body.value("level", "") << "\n";
    else
        std::cout << "log level " << r->body.value("previous", "") << " -> " << r->body.value("level", "") << "\n";
    return kExitOk;
}

int scheduleAdd(AdminClient& admin, const nlohmann::json& job) {
    auto r = admin.call("POST", "/schedules", job.dump());
    if (!r) return admin.unreachable();
    if (r->status != 201 || !r->body.is_object()) return AdminClient::refused(*r);
    std::cout << r->body.value("name", "") << " added (" << r->body.value("state", "") << ")\n";
    return kExitOk;
}

int scheduleList(AdminClient& admin, bool json) {
    auto r = admin.call("GET", "/schedules");
    if (!r) return admin.unreachable();
    if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
    if (json) {
        std::cout << r->body.dump(2) << "\n";
        return kExitOk;
    }
    std::printf("%-20s %-14s %-22s %-8s %-9s %10s  %s\n", "NAME", "DOMAIN", "WHEN", "SOURCE", "STATE", "PUBLISHED", "NOTE");
    for (const auto& j : r->body["schedules"]) {
        const std::string when = j.contains("every_ms") ? "every " + std::to_string(j["every_ms"].get<std::int64_t>()) + " ms"
                                                        : "cron " + j.value("cron", "");
        std::string note = j.value("reason", "");
        if (note.empty() && j.value("throttled", false)) note = "throttled (backpressure)";
        std::printf("%-20s %-14s %-22s %-8s %-9s %10llu  %s\n", j.value("name", "").c_str(), j.value("domain", "").c_str(),
                    when.c_str(), j.value("source", "").c_str(), j.value("state", "").c_str(),
                    static_cast<unsigned long long>(j.value("published", 0ULL)), note.c_str());
    }
    return kExitOk;
}

int scheduleCancel(AdminClient& admin, const std::string& name) {
    auto r = admin.call("DELETE", "/schedules/" + name);
    if (!r) return admin.unreachable();
    if (r->status != 200) return AdminClient::refused(*r);
    std::cout << name << " cancelled\n";
    return kExitOk;
}

// dlq replay / dlq purge: prints each id replayed or purged.
int dlqSettle(AdminClient& admin, bool replay, const std::string& domain, const std::string& id,
              const std::string& id_base64, const std::string& reason, bool json) {
    nlohmann::json body = nlohmann::json::object();
    if (!id_base64.empty()) body["id_base64"] = id_base64;
    if (!id.empty()) body["id"] = id;
    if (!reason.empty()) body["reason"] = reason;
    auto r = admin.call("POST", "/dlq/" + domain + (replay ? "/replay" : "/purge"), body.dump());
    if (!r) return admin.unreachable();
    if ((r->status != 200 && r->status != 409) || !r->body.is_object()) return AdminClient::refused(*r);
    if (json)
        std::cout << r->body.dump(2) << "\n";
    else
        for (const auto& done : r->body[replay ? "replayed" : "purged"]) std::cout << done.get<std::string>() << "\n";
    const auto& failed = r->body["failed"];
    if (failed.empty()) return kExitOk;
    return fail(kExitError, std::to_string(failed.size()) + (replay ? " not replayed" : " not purged") + "; first: " +
                                failed[0].value("id", "") + ": " + failed[0].value("error", ""));
}

int itemStatus(AdminClient& admin, const std::string& id, const std::string& id_base64, const std::string& domain,
               std::size_t scan, bool json) {
    std::string path = "/items/status?" + (id_base64.empty() ? "id=" + httplib::detail::encode_query_param(id)
                                                              : "id_base64=" + httplib::detail::encode_query_param(id_base64));
    if (!domain.empty()) path += "&domain=" + httplib::detail::encode_query_param(domain);
    if (scan > 0) path += "&scan=" + std::to_string(scan);
    auto r = admin.call("GET", path);
    if (!r) return admin.unreachable();
    if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
    const auto& b = r->body;
    const std::string state = b.value("state", "unknown");
    if (json) {
        std::cout << dump(b) << "\n";
    } else {
        std::string line = b.value("id", "") + ": ";
        const std::string where = b.value("domain", "");
        const auto attempts = b.value("attempts", 0U);
        if (state == "done") {
            line += "done";
        } else if (state == "dead_lettered") {
            line += "dead-lettered in " + where + " (" + b.value("backend", "") + ") after " + std::to_string(attempts) +
                    " attempt(s), at " + b.value("dead_lettered_at", "?") + ": " + b.value("reason", "");
        } else if (state == "waiting" || state == "in_flight") {
            line += (state == "waiting" ? "waiting in " : "in flight in ") + where;
            if (b.contains("priority")) line += " (" + b.value("priority", "") + ", sequence " + std::to_string(b.value("sequence", 0ULL)) + ")";
            if (b.contains("where")) line += ": " + b.value("where", "");
            if (b.contains("in_handler_seconds")) {
                char buf[64];
                std::snprintf(buf, sizeof buf, " (attempt %u, %.1f s so far)", attempts, b.value("in_handler_seconds", 0.0));
                line += buf;
            } else if (attempts > 0) {
                line += "; " + std::to_string(attempts) + " earlier attempt(s), last: " + b.value("last_reason", "");
            }
        } else {
            line += "unknown (" + b.value("note", "") + ")";
        }
        std::cout << line << "\n";
    }
    return state == "unknown" ? kExitError : kExitOk;
}

// Pausing is stored for every host; the others follow within one
// coordinator interval.
int domainPause(AdminClient& admin, const std::string& domain, bool pause, bool json) {
    auto r = admin.call("POST", "/domains/" + domain + (pause ? "/pause" : "/resume"));
    if (!r) return admin.unreachable();
    if (r->status != 200 || !r->body.is_object()) return AdminClient::refused(*r);
    if (json) {
        std::cout << dump(r->body) << "\n";
        return kExitOk;
    }
    std::cout << domain << (pause ? " paused" : " resumed")
              << (r->body.value("changed", true) ? " on every host" : " (it already was)") << "\n";
    return kExitOk;
}

}  // namespace kanban::ctl
