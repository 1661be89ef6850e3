// Feeds a DoneIndex from the idempotency bucket's own stream, so that a
// batch's lookup is local: an ordered consumer (cnats: ephemeral, in order,
// no acks, restarted on a gap) reads every record of `KV_<bucket>` from the
// first one on, and sync() makes a lookup exact with one request per batch
// (internal to the broker folder; JetStream owns one per connection).
#pragma once

#include "broker/done_index.hpp"
#include "common/result.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

struct __natsConnection;
struct __jsCtx;
struct __natsSubscription;
struct __natsMsg;

namespace kanban::host::broker {

class DoneMirror {
public:
    DoneMirror(__natsConnection* nc, __jsCtx* js, std::string bucket, std::size_t max_ids, std::int64_t ttl_ms);
    ~DoneMirror();
    DoneMirror(const DoneMirror&) = delete;
    DoneMirror& operator=(const DoneMirror&) = delete;

    // Subscribes (again): the index is rebuilt from the first record, or
    // it reads on after the last record it applied.
    Status start(bool from_scratch);

    const DoneIndex& index() const { return index_; }
    const std::string& bucket() const { return bucket_; }

    // Returns once the index holds every record the bucket held when it was
    // called (one stream-info request), or an error after `wait` (longer the
    // first time: the index is being built).
    Status sync(std::chrono::milliseconds wait) { return sync(wait, /*resume_if_stalled=*/true); }

    // Empty once the index has caught up with the bucket (it is first built
    // from the whole bucket: a host is not ready before), else why not.
    std::string building();

private:
    Status sync(std::chrono::milliseconds wait, bool resume_if_stalled);
    static void onMessage(__natsConnection*, __natsSubscription*, __natsMsg* m, void* closure);
    void apply(__natsMsg* m);
    Status startLocked(bool from_scratch);  // start_mu_ held
    void stop();

    __natsConnection* nc_;
    __jsCtx* js_;
    const std::string bucket_;
    const std::string stream_;   // KV_<bucket>
    const std::string prefix_;   // $KV.<bucket>.
    DoneIndex index_;
    std::mutex start_mu_;  // one start() at a time
    std::mutex apply_mu_;  // held by the subscription's callback
    std::mutex sub_mu_;
    __natsSubscription* sub_ = nullptr;
    std::atomic<std::uint64_t> generation_{0};  // start()s so far
    std::atomic<bool> built_{false};      // caught up once since start()
    std::atomic<bool> ever_built_{false};  // caught up once in this process
    std::atomic<std::uint64_t> warned_forgotten_{0};
};

}  // namespace kanban::host::broker
