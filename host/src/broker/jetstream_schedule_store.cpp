#include "broker/jetstream_schedule_store.hpp"

#include <nats/nats.h>

#include "broker/nats_util.hpp"

namespace kanban::host::broker {

Result<kvStore*> JetStreamScheduleStore::bucket() {
    return nats::keyValueBucket(nats_.js(),
                                scheduleBucketName(nats_.streamName()),
                                "TPS Kanban: schedules added at run time",
                                nats_.options().replicas);
}

Status JetStreamScheduleStore::put(const std::string& name, const std::string& json) {
    auto kv = bucket();
    if (!kv) return kv.error();
    std::uint64_t rev = 0;
    natsStatus s = kvStore_Put(&rev, *kv, name.c_str(), json.data(), static_cast<int>(json.size()));
    kvStore_Destroy(*kv);
    if (s != NATS_OK) return Error{"nats: cannot store schedule " + name + ": " + nats::error(s)};
    return Ok{};
}

Result<bool> JetStreamScheduleStore::remove(const std::string& name) {
    auto kv = bucket();
    if (!kv) return kv.error();
    kvEntry* e = nullptr;
    natsStatus s = kvStore_Get(&e, *kv, name.c_str());
    if (s == NATS_NOT_FOUND) {
        kvStore_Destroy(*kv);
        return false;
    }
    kvEntry_Destroy(e);
    if (s == NATS_OK) s = kvStore_Delete(*kv, name.c_str());
    kvStore_Destroy(*kv);
    if (s != NATS_OK) return Error{"nats: cannot delete schedule " + name + ": " + nats::error(s)};
    return true;
}

Result<std::map<std::string, std::string>> JetStreamScheduleStore::all() {
    auto kv = bucket();
    if (!kv) return kv.error();
    std::map<std::string, std::string> out;
    kvKeysList keys{};
    natsStatus s = kvStore_Keys(&keys, *kv, nullptr);
    if (s == NATS_NOT_FOUND) s = NATS_OK;  // an empty bucket
    for (int i = 0; s == NATS_OK && i < keys.Count; ++i) {
        kvEntry* e = nullptr;
        natsStatus g = kvStore_Get(&e, *kv, keys.Keys[i]);
        if (g == NATS_NOT_FOUND) continue;  // deleted meanwhile
        if (g != NATS_OK) {
            s = g;
            break;
        }
        out[keys.Keys[i]] =
            std::string(static_cast<const char*>(kvEntry_Value(e)), static_cast<std::size_t>(kvEntry_ValueLen(e)));
        kvEntry_Destroy(e);
    }
    kvKeysList_Destroy(&keys);
    kvStore_Destroy(*kv);
    if (s != NATS_OK) return Error{"nats: cannot read schedules: " + nats::error(s)};
    return out;
}

}  // namespace kanban::host::broker
