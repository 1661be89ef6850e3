// Small helpers shared by the JetStream backend's files (cnats status
// text, headers, numbers), internal to host/src/broker.
#pragma once

#include <nats/nats.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/headers.hpp"
#include "common/result.hpp"

namespace kanban::host::broker::nats {

inline constexpr std::int64_t kNsPerMs = 1'000'000;

// cnats' status text, with the library's last error when it is about this
// status, and the JetStream error code when there is one.
std::string error(natsStatus s, jsErrCode jerr = static_cast<jsErrCode>(0));
// A header's value, or nullptr when absent.
const char* header(natsMsg* m, const char* key);
// Appends the message's own headers (common/headers.hpp: not Nats-*, not
// the host's Kanban-*) to `out`, every value of each.
void userHeaders(natsMsg* m, Headers& out);
// A message's body (empty, never null).
inline std::string_view body(natsMsg* m) {
    const char* data = natsMsg_GetData(m);
    return data != nullptr ? std::string_view(data, static_cast<std::size_t>(natsMsg_GetDataLength(m))) : std::string_view();
}
// A whole decimal number, or nullopt (also for nullptr).
std::optional<std::int64_t> parseInt64(const char* s);
// An optional '-' and one or more decimal digits, nothing else.
bool allDigits(const char* s);
// "2026-11-29T12:07:38.384768356Z" (RFC 3339, UTC, as the server stamps) in epoch ms.
std::optional<std::int64_t> parseTimestampMs(const char* rfc3339);

// Binds the key-value bucket `name`, creating it (file storage, history 1,
// `replicas`) when it does not exist; the caller destroys it.
Result<kvStore*> keyValueBucket(jsCtx* js, const std::string& name, const char* description, int replicas);

// Disconnections so far, of any connection of this process: a quiet
// worker may have missed a publish notice meanwhile.
std::uint64_t disconnects();
// The connection callbacks (log lines; count disconnections).
void onDisconnected(natsConnection* nc, void*);
void onReconnected(natsConnection* nc, void*);
void onConnected(natsConnection* nc, void*);
void onAsyncError(natsConnection*, natsSubscription*, natsStatus err, void*);

}  // namespace kanban::host::broker::nats
