#include "broker/nats_util.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <string_view>

namespace kanban::host::broker::nats {
namespace {

std::atomic<std::uint64_t> g_disconnects{0};

}  // namespace

std::string error(natsStatus s, jsErrCode jerr) {
    std::string text = natsStatus_GetText(s);
    natsStatus last = NATS_OK;
    const char* detail = nats_GetLastError(&last);
    // nats_GetLastError can be stale: use it only when it is about this status.
    if (detail != nullptr && *detail != '\0' && last == s) text += std::string(" (") + detail + ")";
    if (jerr != 0) text += " [jetstream error " + std::to_string(static_cast<int>(jerr)) + "]";
    return text;
}

const char* header(natsMsg* m, const char* key) {
    const char* v = nullptr;
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK) return nullptr;
    return v;
}

void userHeaders(natsMsg* m, Headers& out) {
    const char** keys = nullptr;
    int count = 0;
    if (natsMsgHeader_Keys(m, &keys, &count) != NATS_OK) return;
    // cnats keeps headers in a hash map: names in a stable order (values of
    // one name keep theirs).
    std::sort(keys, keys + count, [](const char* a, const char* b) { return std::strcmp(a, b) < 0; });
    for (int i = 0; i < count; ++i) {
        if (reservedHeader(keys[i])) continue;
        const char** values = nullptr;
        int n = 0;
        if (natsMsgHeader_Values(m, keys[i], &values, &n) != NATS_OK) continue;
        for (int j = 0; j < n; ++j) out.emplace_back(keys[i], values[j]);
        std::free(static_cast<void*>(values));
    }
    std::free(static_cast<void*>(keys));
}

bool allDigits(const char* s) {
    if (s == nullptr) return false;
    if (*s == '-') ++s;
    if (*s == '\0') return false;
    for (; *s != '\0'; ++s)
        if (*s < '0' || *s > '9') return false;
    return true;
}

std::optional<std::int64_t> parseInt64(const char* s) {
    if (s == nullptr) return std::nullopt;
    std::int64_t v = 0;
    const char* end = s + std::char_traits<char>::length(s);
    auto [p, ec] = std::from_chars(s, end, v);
    if (ec != std::errc() || p != end) return std::nullopt;
    return v;
}

std::optional<std::int64_t> parseTimestampMs(const char* ts) {
    if (ts == nullptr) return std::nullopt;
    std::tm tm{};
    double seconds = 0;
    if (std::sscanf(ts, "%d-%d-%dT%d:%d:%lf", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                    &seconds) != 6)
        return std::nullopt;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_sec = 0;
    return static_cast<std::int64_t>(timegm(&tm)) * 1000 + static_cast<std::int64_t>(seconds * 1000.0);
}

std::uint64_t disconnects() { return g_disconnects.load(); }

void onDisconnected(natsConnection* nc, void*) {
    ++g_disconnects;
    // Also fired by our own natsConnection_Close(): only a live connection is news.
    if (!natsConnection_IsClosed(nc)) spdlog::warn("nats: disconnected; reconnecting");
}
void onReconnected(natsConnection* nc, void*) {
    char url[256] = {};
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    spdlog::info("nats: reconnected to {}", url);
}
void onConnected(natsConnection* nc, void*) {
    char url[256] = {};
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    spdlog::info("nats: connected to {}", url);
}
void onAsyncError(natsConnection*, natsSubscription*, natsStatus err, void*) {
    spdlog::warn("nats: asynchronous error: {}", natsStatus_GetText(err));
}

Result<kvStore*> keyValueBucket(jsCtx* js, const std::string& name, const char* description, int replicas) {
    kvStore* kv = nullptr;
    if (js_KeyValue(&kv, js, name.c_str()) == NATS_OK) return kv;
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = name.c_str();
    kc.Description = description;
    kc.History = 1;
    kc.StorageType = js_FileStorage;
    kc.Replicas = replicas;
    if (natsStatus s = js_CreateKeyValue(&kv, js, &kc); s != NATS_OK)
        return Error{"nats: cannot open key-value bucket " + name + ": " + error(s)};
    return kv;
}

}  // namespace kanban::host::broker::nats
