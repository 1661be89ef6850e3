#include "broker/jetstream_leases.hpp"

#include <nats/nats.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <random>

#include "broker/nats_util.hpp"
#include "common/clock.hpp"

namespace kanban::host::broker {
namespace {

std::int64_t untilOf(kvEntry* e) {
    const auto j = nlohmann::json::parse(std::string(static_cast<const char*>(kvEntry_Value(e)),
                                                     static_cast<std::size_t>(kvEntry_ValueLen(e))),
                                         nullptr, /*allow_exceptions=*/false);
    return j.is_object() ? j.value("until_unix_ms", std::int64_t{0}) : 0;
}

}  // namespace

Result<kvStore*> JetStreamLeases::bucket() {
    if (!nats_.connected()) return Error{"nats: not connected"};
    return nats::keyValueBucket(nats_.js(), nats_.streamName() + "_LEASES", "TPS Kanban: max_in_flight slots",
                                nats_.options().replicas);
}

Result<std::optional<flow::Lease>> JetStreamLeases::acquire(const std::string& domain, std::int64_t slots,
                                                             std::int64_t hold_ms) {
    auto kv = bucket();
    if (!kv) return kv.error();
    const std::int64_t now = nowUnixMs();
    const std::string value = nlohmann::json{{"until_unix_ms", now + hold_ms}}.dump();
    // Start at a random slot: hosts asking at once try different keys first.
    thread_local std::mt19937 rng{std::random_device{}()};
    const std::int64_t first = std::uniform_int_distribution<std::int64_t>(0, slots - 1)(rng);
    std::optional<std::string> failure;
    for (std::int64_t i = 0; i < slots; ++i) {
        const std::string key = domain + "." + std::to_string((first + i) % slots);
        std::uint64_t rev = 0;
        natsStatus s = kvStore_Create(&rev, *kv, key.c_str(), value.data(), static_cast<int>(value.size()));
        if (s == NATS_OK) {
            kvStore_Destroy(*kv);
            return std::optional<flow::Lease>(flow::Lease{key, rev});
        }
        kvEntry* e = nullptr;
        s = kvStore_Get(&e, *kv, key.c_str());
        if (s == NATS_NOT_FOUND) continue;  // released (deleted) meanwhile: the next round takes it
        if (s != NATS_OK) {
            failure = nats::error(s);
            break;
        }
        const std::int64_t until = untilOf(e);
        const std::uint64_t held_rev = kvEntry_Revision(e);
        kvEntry_Destroy(e);
        if (until > now) continue;  // held
        // Free (released, or its holder's time ran out): take it at the revision read.
        if (kvStore_Update(&rev, *kv, key.c_str(), value.data(), static_cast<int>(value.size()), held_rev) == NATS_OK) {
            kvStore_Destroy(*kv);
            return std::optional<flow::Lease>(flow::Lease{key, rev});
        }
    }
    kvStore_Destroy(*kv);
    if (failure) return Error{"nats: max_in_flight slots of " + domain + ": " + *failure};
    return std::optional<flow::Lease>();
}

void JetStreamLeases::release(const flow::Lease& lease) {
    auto kv = bucket();
    if (!kv) return;  // the slot frees itself when its time runs out
    static const std::string kFree = R"({"until_unix_ms":0})";
    std::uint64_t rev = 0;
    if (natsStatus s = kvStore_Update(&rev, *kv, lease.key.c_str(), kFree.data(), static_cast<int>(kFree.size()),
                                      lease.revision);
        s != NATS_OK)
        spdlog::debug("max_in_flight slot {} not released ({}): taken over after its time ran out, or NATS is down",
                      lease.key, nats::error(s));
    kvStore_Destroy(*kv);
}

}  // namespace kanban::host::broker
