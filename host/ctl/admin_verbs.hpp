// The kanbanctl verbs that call the daemon's admin API (docs/operating.md
// lists their endpoints). Each returns the process exit code; `json`
// prints the endpoint's JSON answer instead of the table.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "admin_client.hpp"

namespace kanban::ctl {

int health(AdminClient& admin, bool json);
// With `json`: the answer of POST /drain (or /drain/cancel), or with `wait` the last GET /health.
int drain(AdminClient& admin, bool wait, int timeout_s, bool cancel, bool json);
int dlqList(AdminClient& admin, const std::string& domain, bool json, int limit, const std::string& reason);
// dlq replay (replay = true) / dlq purge.
int dlqSettle(AdminClient& admin, bool replay, const std::string& domain, const std::string& id,
              const std::string& id_base64, const std::string& reason, bool json);
int stalled(AdminClient& admin, const std::string& domain, bool json);
int logLevel(AdminClient& admin, const std::string& level, bool json);
int scheduleAdd(AdminClient& admin, const nlohmann::json& job);
int scheduleList(AdminClient& admin, bool json);
int scheduleCancel(AdminClient& admin, const std::string& name);
// status ID: where the item is; exits 1 when it is unknown.
int itemStatus(AdminClient& admin, const std::string& id, const std::string& id_base64, const std::string& domain,
               std::size_t scan, bool json);
// domain pause / domain resume.
int domainPause(AdminClient& admin, const std::string& domain, bool pause, bool json);

}  // namespace kanban::ctl
