// One AMQP 0-9-1 connection (rabbitmq-c) with one channel, owned by one
// thread: rabbitmq-c connections are not thread-safe, and confirms or
// deliveries of one use would surface in the other's reads, so consumers
// and publishers each own their own (docs/dependencies.md §2).
//
// Every call is bounded in time: the socket connect and the login by
// `timeout`, RPCs by the library's RPC timeout (which closes the
// connection when it expires), confirms by the caller's wait. Any error
// other than a channel-level refusal leaves the connection `broken()`;
// the owner drops it and opens a new one.
#pragma once

#include "common/result.hpp"

#include <amqp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kanban::host::broker::amqp {

// A header value as the host writes them: strings and integers only.
struct Header {
    std::string key;
    std::string text;                  // used when `number` is empty
    std::optional<std::int64_t> number;
};

struct Message {
    std::string exchange, routing_key;
    std::string_view body;
    std::string message_id;
    std::optional<std::uint8_t> priority;
    std::optional<std::int64_t> timestamp_s;
    std::optional<std::string> expiration_ms;  // per-message TTL
    std::vector<Header> headers;
};

// A delivery copied out of the library's buffers.
struct Envelope {
    std::uint64_t delivery_tag = 0;
    bool redelivered = false;
    std::string routing_key;
    std::string body;
    std::string message_id;
    std::optional<std::uint8_t> priority;
    std::optional<std::int64_t> timestamp_s;
    std::vector<Header> headers;  // string and integer values; others skipped

    const Header* header(std::string_view key) const;
    std::optional<std::int64_t> integer(std::string_view key) const;  // an integer, or a string holding one
};

class Connection {
public:
    // `url` is amqp://user:pass@host:port[/vhost].
    static Result<std::unique_ptr<Connection>> open(const std::string& url, std::chrono::milliseconds timeout,
                                                    const std::string& name);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    bool broken() const { return broken_; }
    Status lost() const;  // the error for calls on a broken connection, with what broke it
    // Publisher confirms on the channel (once; before publishConfirmed).
    Status enableConfirms();
    // Publishes persistently (delivery_mode 2, mandatory) and waits up to
    // `wait` for the broker's confirm. A nack, an unroutable message or no
    // confirm in time is an error; after a timeout the connection is broken
    // (a late confirm could not be matched any more).
    Status publishConfirmed(const Message& m, std::chrono::milliseconds wait);

    // Topology. Declarations are cached per connection: a second call for
    // the same name costs nothing.
    Status declareExchange(const std::string& name, const char* type);
    Status declareQueue(const std::string& name, const std::vector<Header>& arguments);
    Status bind(const std::string& queue, const std::string& exchange, const std::string& key);
    // Ready messages in `queue`; nullopt if it does not exist.
    Result<std::optional<std::uint32_t>> messageCount(const std::string& queue);

    // Consuming.
    Status qos(std::uint16_t prefetch);
    Status consume(const std::string& queue);
    // Waits up to `wait` for a delivery (0: only what has arrived). nullopt
    // when none came in time.
    Result<std::optional<Envelope>> next(std::chrono::milliseconds wait);
    // basic.get without auto-ack (browse / replay); nullopt when empty.
    Result<std::optional<Envelope>> get(const std::string& queue);
    // multiple: every outstanding delivery up to and including `tag`.
    Status ack(std::uint64_t tag, bool multiple = false);
    Status reject(std::uint64_t tag, bool requeue);

private:
    Connection() = default;
    Status rpc(amqp_rpc_reply_t reply, std::string_view what);
    Status socketStatus(int status, std::string_view what);
    Status reopenChannel();

    amqp_connection_state_t conn_ = nullptr;
    std::string where_;  // host:port/vhost, for messages
    Status fail(std::string message);  // marks it broken, remembers why

    bool broken_ = false;
    std::string why_;  // what broke it
    bool confirms_ = false;
    std::uint64_t next_tag_ = 1;  // delivery tag of the next confirmed publish
    std::set<std::string> declared_;
};

}  // namespace kanban::host::broker::amqp
