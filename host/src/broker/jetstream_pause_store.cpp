#include "broker/jetstream_pause_store.hpp"

#include <nats/nats.h>
#include <nlohmann/json.hpp>

#include "broker/nats_util.hpp"
#include "broker/subjects.hpp"

namespace kanban::host::broker {
namespace {

constexpr const char* kKey = "paused";
constexpr int kCasAttempts = 8;

// The stored object, or an error for a value that is not one (written by
// something else: refused rather than overwritten).
Result<nlohmann::json> parse(kvEntry* e) {
    if (e == nullptr) return nlohmann::json::object();
    auto j = nlohmann::json::parse(std::string(static_cast<const char*>(kvEntry_Value(e)),
                                               static_cast<std::size_t>(kvEntry_ValueLen(e))),
                                   nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return Error{"nats: the paused-domains key holds something else than a JSON object"};
    return j;
}

}  // namespace

Result<kvStore*> JetStreamPauseStore::bucket() {
    return nats::keyValueBucket(nats_.js(),
                                controlBucketName(nats_.streamName()),
                                "TPS Kanban: paused domains",
                                nats_.options().replicas);
}

Result<pause::Paused> JetStreamPauseStore::paused() {
    // Reading never creates the bucket: no bucket, nothing paused. (Every
    // host reads at start; creating a replicated stream from several hosts
    // at once can take the JetStream API's whole timeout.)
    kvStore* bound = nullptr;
    const std::string name = controlBucketName(nats_.streamName());
    if (natsStatus s = js_KeyValue(&bound, nats_.js(), name.c_str()); s == NATS_NOT_FOUND)
        return pause::Paused{};
    else if (s != NATS_OK)
        return Error{"nats: cannot open key-value bucket " + name + ": " + nats::error(s)};
    Result<kvStore*> kv = bound;
    kvEntry* e = nullptr;
    natsStatus s = kvStore_Get(&e, *kv, kKey);
    kvStore_Destroy(*kv);
    if (s == NATS_NOT_FOUND) return pause::Paused{};
    if (s != NATS_OK) return Error{"nats: cannot read the paused domains: " + nats::error(s)};
    auto j = parse(e);
    kvEntry_Destroy(e);
    if (!j) return j.error();
    pause::Paused out;
    for (const auto& [domain, v] : j->items())
        out[domain] = v.is_object() ? v.value("since_unix_ms", std::int64_t{0}) : 0;
    return out;
}

Result<bool> JetStreamPauseStore::set(const std::string& domain, bool paused, std::int64_t now_unix_ms) {
    auto kv = bucket();
    if (!kv) return kv.error();
    std::string why;
    for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
        kvEntry* e = nullptr;
        natsStatus s = kvStore_Get(&e, *kv, kKey);
        if (s != NATS_OK && s != NATS_NOT_FOUND) {
            why = nats::error(s);
            break;
        }
        const std::uint64_t revision = e != nullptr ? kvEntry_Revision(e) : 0;
        auto j = parse(e);
        kvEntry_Destroy(e);
        if (!j) {
            kvStore_Destroy(*kv);
            return j.error();
        }
        if (j->contains(domain) == paused) {
            kvStore_Destroy(*kv);
            return false;  // already so
        }
        if (paused)
            (*j)[domain] = {{"since_unix_ms", now_unix_ms}};
        else
            j->erase(domain);
        const std::string text = j->dump();
        std::uint64_t rev = 0;
        // Create when absent, else update at the revision read: a write by
        // another host in between makes this fail, and it is read again.
        s = revision == 0 ? kvStore_Create(&rev, *kv, kKey, text.data(), static_cast<int>(text.size()))
                          : kvStore_Update(&rev, *kv, kKey, text.data(), static_cast<int>(text.size()), revision);
        if (s == NATS_OK) {
            kvStore_Destroy(*kv);
            return true;
        }
        why = nats::error(s);
        if (s != NATS_ERR) break;  // NATS_ERR: "wrong last sequence", a concurrent write
    }
    kvStore_Destroy(*kv);
    return Error{"nats: cannot store the paused domains: " + why};
}

}  // namespace kanban::host::broker
