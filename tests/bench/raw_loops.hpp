// The raw client loops kanban_bench measures kanband against: what an
// engineer would write with cnats or rabbitmq-c directly, with the options
// that matter on this machine (docs/dependencies.md §10), and nothing of the
// host (no plugin, no metrics, no worker pool).
#pragma once

#include <cstddef>
#include <cstdint>
#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

struct __natsConnection;
struct __jsCtx;
struct amqp_connection_state_t_;

namespace kanban::bench {

inline constexpr std::size_t kPayload = 256;

// One cnats connection as kanband makes it (SendAsap on). The bench
// publishes and inspects the streams with NatsProbe (tests/e2e/harness.hpp).
class RawNats {
public:
    explicit RawNats(const std::string& url);
    ~RawNats();
    RawNats(const RawNats&) = delete;
    RawNats& operator=(const RawNats&) = delete;

    // A work-queue stream `name` on `name.*` and a KV bucket `<name>_DONE`
    // with direct get (what kanband's done record is), both emptied.
    void declare(const std::string& name);

    // What a loop does per batch besides fetch and ack.
    enum class Work {
        bare,
        // kanband's broker work since issue 21: read the bucket's stream
        // into a local set (an ordered consumer), ask the bucket's last
        // sequence and wait for the set to get there, look the ids up
        // locally, publish one record listing the batch's ids, wait for it.
        done_log,
        // kanband's broker work before issue 21: look every id up in the
        // bucket (pipelined direct gets), record each (js_PublishAsync,
        // waiting for the acks).
        key_per_id,
    };
    // Consumes `n` items of stream `name` through a pull consumer, `batch`
    // per Fetch, doing `work` per batch, then acking each item. `handle`
    // (optional) runs per item where the handler would, with the item's
    // Nats-Msg-Id. Items/s; 0 if not all arrived within 120 s.
    double consume(const std::string& name, int n, int batch, Work work,
                   const std::function<void(const char* id)>& handle = {});

private:
    __natsConnection* nc_ = nullptr;
    __jsCtx* js_ = nullptr;
};

// One rabbitmq-c connection with one channel, vhost "/", guest.
class RawAmqp {
public:
    explicit RawAmqp(int port);
    ~RawAmqp();
    RawAmqp(const RawAmqp&) = delete;
    RawAmqp& operator=(const RawAmqp&) = delete;

    // A durable classic queue, emptied; with x-max-priority when
    // `max_priority` > 0 (kanband's domain queues use 2).
    void declareQueue(const std::string& queue, int max_priority = 0);
    // `n` persistent messages of kPayload bytes, message_id <prefix>-<i>,
    // with publisher confirms (at most 4,096 outstanding); throws unless
    // every one is confirmed.
    void publish(const std::string& exchange, const std::string& routing_key, int n, const std::string& prefix,
                 std::optional<std::uint8_t> priority = std::nullopt);
    // basic.consume with prefetch `prefetch` until `n` arrived, acking each
    // message (ack_every 1) or every `ack_every` messages with one multiple
    // basic.ack. Items/s; 0 if not all arrived within 120 s.
    double consume(const std::string& queue, int n, int prefetch, int ack_every = 1);

private:
    void check(const char* what);
    amqp_connection_state_t_* c_ = nullptr;
    bool confirming_ = false;
};

}  // namespace kanban::bench
