#include "broker/amqp.hpp"

#include <amqp_tcp_socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>

namespace kanban::host::broker::amqp {
namespace {

constexpr amqp_channel_t kChannel = 1;
// RPCs (declare, qos, get, close) are small; under load a broker answers
// well within this. The library closes the connection when it expires.
constexpr std::chrono::milliseconds kRpcTimeout{10000};

timeval toTimeval(std::chrono::milliseconds ms) {
    ms = std::max(ms, std::chrono::milliseconds(0));
    return timeval{static_cast<time_t>(ms.count() / 1000), static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

amqp_bytes_t bytes(std::string_view s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }
std::string str(amqp_bytes_t b) { return b.len == 0 ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len); }

// The table entries point into `headers`, which must outlive the table.
std::vector<amqp_table_entry_t> entries(const std::vector<Header>& headers) {
    std::vector<amqp_table_entry_t> out(headers.size());
    for (std::size_t i = 0; i < headers.size(); ++i) {
        out[i].key = bytes(headers[i].key);
        if (headers[i].number) {
            out[i].value.kind = AMQP_FIELD_KIND_I64;
            out[i].value.value.i64 = *headers[i].number;
        } else {
            out[i].value.kind = AMQP_FIELD_KIND_UTF8;
            out[i].value.value.bytes = bytes(headers[i].text);
        }
    }
    return out;
}

std::optional<std::int64_t> fieldNumber(const amqp_field_value_t& v) {
    switch (v.kind) {
        case AMQP_FIELD_KIND_I8: return v.value.i8;
        case AMQP_FIELD_KIND_U8: return v.value.u8;
        case AMQP_FIELD_KIND_I16: return v.value.i16;
        case AMQP_FIELD_KIND_U16: return v.value.u16;
        case AMQP_FIELD_KIND_I32: return v.value.i32;
        case AMQP_FIELD_KIND_U32: return v.value.u32;
        case AMQP_FIELD_KIND_I64: return v.value.i64;
        case AMQP_FIELD_KIND_U64: return static_cast<std::int64_t>(v.value.u64);
        case AMQP_FIELD_KIND_TIMESTAMP: return static_cast<std::int64_t>(v.value.u64);
        default: return std::nullopt;
    }
}

Envelope copyOut(std::uint64_t tag, bool redelivered, amqp_bytes_t routing_key, const amqp_message_t& m) {
    Envelope e;
    e.delivery_tag = tag;
    e.redelivered = redelivered;
    e.routing_key = str(routing_key);
    e.body = str(m.body);
    const amqp_basic_properties_t& p = m.properties;
    if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) e.message_id = str(p.message_id);
    if (p._flags & AMQP_BASIC_PRIORITY_FLAG) e.priority = p.priority;
    if (p._flags & AMQP_BASIC_TIMESTAMP_FLAG) e.timestamp_s = static_cast<std::int64_t>(p.timestamp);
    if (p._flags & AMQP_BASIC_HEADERS_FLAG)
        for (int i = 0; i < p.headers.num_entries; ++i) {
            const amqp_table_entry_t& en = p.headers.entries[i];
            Header h{str(en.key), {}, std::nullopt};
            if (en.value.kind == AMQP_FIELD_KIND_UTF8 || en.value.kind == AMQP_FIELD_KIND_BYTES)
                h.text = str(en.value.value.bytes);
            else if (auto n = fieldNumber(en.value))
                h.number = n;
            else
                continue;  // tables and arrays (x-death): not the host's business
            e.headers.push_back(std::move(h));
        }
    return e;
}

std::string closeReason(const amqp_frame_t& f) {
    if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* c = static_cast<const amqp_channel_close_t*>(f.payload.method.decoded);
        return std::to_string(c->reply_code) + " " + str(c->reply_text);
    }
    const auto* c = static_cast<const amqp_connection_close_t*>(f.payload.method.decoded);
    return std::to_string(c->reply_code) + " " + str(c->reply_text);
}

// Detects a dead peer even while the owning thread is busy in a handler
// (AMQP heartbeats are only serviced inside library calls, so they are off).
void keepAlive(int fd) {
    int on = 1, idle = 10, interval = 5, count = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

}  // namespace

const Header* Envelope::header(std::string_view key) const {
    for (const auto& h : headers)
        if (h.key == key) return &h;
    return nullptr;
}

std::optional<std::int64_t> Envelope::integer(std::string_view key) const {
    const Header* h = header(key);
    if (h == nullptr) return std::nullopt;
    if (h->number) return h->number;
    std::int64_t v = 0;
    const char* end = h->text.data() + h->text.size();
    auto [p, ec] = std::from_chars(h->text.data(), end, v);
    if (ec != std::errc() || p != end) return std::nullopt;
    return v;
}

Result<std::unique_ptr<Connection>> Connection::open(const std::string& url, std::chrono::milliseconds timeout,
                                                     const std::string& name) {
    std::vector<char> buf(url.begin(), url.end());
    buf.push_back('\0');
    amqp_connection_info ci;
    amqp_default_connection_info(&ci);
    if (amqp_parse_url(buf.data(), &ci) != AMQP_STATUS_OK)
        return Error{"rabbitmq: cannot parse the url (expected amqp://user:password@host:port/vhost)"};
    std::unique_ptr<Connection> self(new Connection());
    self->where_ = std::string(ci.host) + ":" + std::to_string(ci.port) + "/" + ci.vhost;
    self->conn_ = amqp_new_connection();
    amqp_socket_t* sock = amqp_tcp_socket_new(self->conn_);
    if (sock == nullptr) return Error{"rabbitmq: cannot create a socket"};
    timeval tv = toTimeval(timeout);
    if (int st = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv); st != AMQP_STATUS_OK)
        return Error{"rabbitmq: cannot connect to " + self->where_ + ": " + amqp_error_string2(st)};
    keepAlive(amqp_get_sockfd(self->conn_));
    amqp_set_handshake_timeout(self->conn_, &tv);
    timeval rpc = toTimeval(kRpcTimeout);
    amqp_set_rpc_timeout(self->conn_, &rpc);

    amqp_table_entry_t props[1];
    props[0].key = amqp_cstring_bytes("connection_name");
    props[0].value.kind = AMQP_FIELD_KIND_UTF8;
    props[0].value.value.bytes = bytes(name);
    amqp_table_t client_properties{1, props};
    amqp_rpc_reply_t r = amqp_login_with_properties(self->conn_, ci.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, /*heartbeat*/ 0,
                                                    &client_properties, AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
    if (Status s = self->rpc(r, "login"); !s) return s.error();
    amqp_channel_open(self->conn_, kChannel);
    if (Status s = self->rpc(amqp_get_rpc_reply(self->conn_), "channel open"); !s) return s.error();
    return self;
}

Connection::~Connection() {
    if (conn_ == nullptr) return;
    if (!broken_) amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);  // bounded by the RPC timeout
    amqp_destroy_connection(conn_);
}

Status Connection::fail(std::string message) {
    if (!broken_) why_ = message;
    broken_ = true;
    return Error{std::move(message)};
}

Status Connection::lost() const {
    return Error{"rabbitmq " + where_ + ": connection lost" + (why_.empty() ? "" : " (" + why_ + ")")};
}

Status Connection::socketStatus(int status, std::string_view what) {
    if (status == AMQP_STATUS_OK) return Ok{};
    return fail("rabbitmq " + where_ + ": " + std::string(what) + ": " + amqp_error_string2(status));
}

Status Connection::rpc(amqp_rpc_reply_t reply, std::string_view what) {
    const std::string prefix = "rabbitmq " + where_ + ": " + std::string(what) + ": ";
    switch (reply.reply_type) {
        case AMQP_RESPONSE_NORMAL: return Ok{};
        case AMQP_RESPONSE_NONE: return fail(prefix + "no reply");
        case AMQP_RESPONSE_LIBRARY_EXCEPTION: return fail(prefix + amqp_error_string2(reply.library_error));
        case AMQP_RESPONSE_SERVER_EXCEPTION: break;
    }
    amqp_frame_t f{};
    f.payload.method = reply.reply;
    const std::string reason = closeReason(f);
    if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        // A refusal (404, 406, 403) closes only the channel: acknowledge and
        // open it again, or the next RPC on it would block (docs/dependencies.md §2).
        amqp_channel_close_ok_t ok{};
        amqp_send_method(conn_, kChannel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        if (Status s = reopenChannel(); !s) return Error{prefix + reason + "; " + s.message()};
        return Error{prefix + reason};
    }
    amqp_connection_close_ok_t ok{};
    amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    return fail(prefix + "connection closed by the broker: " + reason);
}

Status Connection::reopenChannel() {
    confirms_ = false;
    next_tag_ = 1;
    amqp_channel_open(conn_, kChannel);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) return fail("rabbitmq " + where_ + ": cannot reopen the channel");
    return Ok{};
}

Status Connection::enableConfirms() {
    if (confirms_) return Ok{};
    amqp_confirm_select(conn_, kChannel);
    if (Status s = rpc(amqp_get_rpc_reply(conn_), "confirm.select"); !s) return s;
    confirms_ = true;
    next_tag_ = 1;
    return Ok{};
}

Status Connection::publishConfirmed(const Message& m, std::chrono::milliseconds wait) {
    if (broken_) return lost();
    if (Status s = enableConfirms(); !s) return s;

    amqp_basic_properties_t p{};
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    p.content_type = amqp_cstring_bytes("application/octet-stream");
    if (!m.message_id.empty()) {
        p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        p.message_id = bytes(m.message_id);
    }
    if (m.priority) {
        p._flags |= AMQP_BASIC_PRIORITY_FLAG;
        p.priority = *m.priority;
    }
    if (m.timestamp_s) {
        p._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        p.timestamp = static_cast<std::uint64_t>(*m.timestamp_s);
    }
    if (m.expiration_ms) {
        p._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        p.expiration = bytes(*m.expiration_ms);
    }
    auto table = entries(m.headers);
    if (!table.empty()) {
        p._flags |= AMQP_BASIC_HEADERS_FLAG;
        p.headers = amqp_table_t{static_cast<int>(table.size()), table.data()};
    }
    const int st = amqp_basic_publish(conn_, kChannel, bytes(m.exchange), bytes(m.routing_key), /*mandatory*/ 1,
                                      /*immediate*/ 0, &p, bytes(m.body));
    if (Status s = socketStatus(st, "publish"); !s) return s;
    const std::uint64_t tag = next_tag_++;

    // Wait for this publish's confirm. A return (unroutable) comes first.
    const auto deadline = std::chrono::steady_clock::now() + wait;
    std::string returned;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return fail("rabbitmq " + where_ + ": no publisher confirm within " + std::to_string(wait.count()) +
                        " ms (a blocked broker: memory or disk alarm?)");
        amqp_maybe_release_buffers(conn_);
        amqp_frame_t f;
        timeval tv = toTimeval(left);
        const int r = amqp_simple_wait_frame_noblock(conn_, &f, &tv);
        if (r == AMQP_STATUS_TIMEOUT) continue;
        if (Status s = socketStatus(r, "waiting for the confirm"); !s) return s;
        if (f.frame_type != AMQP_FRAME_METHOD) continue;
        switch (f.payload.method.id) {
            case AMQP_BASIC_ACK_METHOD: {
                const auto* a = static_cast<const amqp_basic_ack_t*>(f.payload.method.decoded);
                if (a->delivery_tag < tag && !(a->multiple && a->delivery_tag >= tag)) continue;
                if (!returned.empty())
                    return Error{"rabbitmq " + where_ + ": " + m.exchange + " routed " + m.routing_key +
                                 " to no queue (" + returned + ")"};
                return Ok{};
            }
            case AMQP_BASIC_NACK_METHOD: {
                const auto* n = static_cast<const amqp_basic_nack_t*>(f.payload.method.decoded);
                if (n->delivery_tag < tag && !(n->multiple && n->delivery_tag >= tag)) continue;
                return Error{"rabbitmq " + where_ + ": the broker refused the message (nack: queue full or internal error)"};
            }
            case AMQP_BASIC_RETURN_METHOD: {
                const auto* rt = static_cast<const amqp_basic_return_t*>(f.payload.method.decoded);
                returned = std::to_string(rt->reply_code) + " " + str(rt->reply_text);
                amqp_message_t msg;
                amqp_rpc_reply_t rr = amqp_read_message(conn_, f.channel, &msg, 0);
                if (rr.reply_type != AMQP_RESPONSE_NORMAL) return rpc(rr, "reading a returned message");
                amqp_destroy_message(&msg);
                continue;
            }
            case AMQP_CHANNEL_CLOSE_METHOD: {
                const std::string why = closeReason(f);
                amqp_channel_close_ok_t ok{};
                amqp_send_method(conn_, kChannel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
                (void)reopenChannel();
                return Error{"rabbitmq " + where_ + ": publish refused: " + why};
            }
            case AMQP_CONNECTION_CLOSE_METHOD: {
                const std::string why = closeReason(f);
                amqp_connection_close_ok_t ok{};
                amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
                return fail("rabbitmq " + where_ + ": connection closed by the broker: " + why);
            }
            default: continue;  // connection.blocked and the like: the deadline bounds the wait
        }
    }
}

Status Connection::declareExchange(const std::string& name, const char* type) {
    if (declared_.count("x:" + name) != 0) return Ok{};
    amqp_exchange_declare(conn_, kChannel, bytes(name), amqp_cstring_bytes(type), /*passive*/ 0, /*durable*/ 1,
                          /*auto_delete*/ 0, /*internal*/ 0, amqp_empty_table);
    if (Status s = rpc(amqp_get_rpc_reply(conn_), "declare exchange " + name); !s) return s;
    declared_.insert("x:" + name);
    return Ok{};
}

Status Connection::declareQueue(const std::string& name, const std::vector<Header>& arguments) {
    if (declared_.count("q:" + name) != 0) return Ok{};
    auto table = entries(arguments);
    amqp_queue_declare(conn_, kChannel, bytes(name), /*passive*/ 0, /*durable*/ 1, /*exclusive*/ 0, /*auto_delete*/ 0,
                       amqp_table_t{static_cast<int>(table.size()), table.data()});
    if (Status s = rpc(amqp_get_rpc_reply(conn_), "declare queue " + name); !s) return s;
    declared_.insert("q:" + name);
    return Ok{};
}

Status Connection::bind(const std::string& queue, const std::string& exchange, const std::string& key) {
    const std::string id = "b:" + queue + "\n" + exchange + "\n" + key;
    if (declared_.count(id) != 0) return Ok{};
    amqp_queue_bind(conn_, kChannel, bytes(queue), bytes(exchange), bytes(key), amqp_empty_table);
    if (Status s = rpc(amqp_get_rpc_reply(conn_), "bind " + queue + " to " + exchange); !s) return s;
    declared_.insert(id);
    return Ok{};
}

Result<std::optional<std::uint32_t>> Connection::messageCount(const std::string& queue) {
    if (broken_) return lost().error();
    amqp_queue_declare_ok_t* ok = amqp_queue_declare(conn_, kChannel, bytes(queue), /*passive*/ 1, 0, 0, 0, amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
        static_cast<const amqp_channel_close_t*>(r.reply.decoded)->reply_code == AMQP_NOT_FOUND) {
        (void)rpc(r, "");  // close-ok and a new channel
        if (broken_) return lost().error();
        return std::optional<std::uint32_t>{};
    }
    if (Status s = rpc(r, "queue " + queue); !s) return s.error();
    return std::optional<std::uint32_t>{ok->message_count};
}

Status Connection::qos(std::uint16_t prefetch) {
    amqp_basic_qos(conn_, kChannel, 0, prefetch, 0);
    return rpc(amqp_get_rpc_reply(conn_), "basic.qos");
}

Status Connection::consume(const std::string& queue) {
    amqp_basic_consume(conn_, kChannel, bytes(queue), amqp_empty_bytes, /*no_local*/ 0, /*no_ack*/ 0, /*exclusive*/ 0,
                       amqp_empty_table);
    if (Status s = rpc(amqp_get_rpc_reply(conn_), "consume " + queue); !s)
        return fail(s.message());  // a consumer's channel is not worth saving
    return Ok{};
}

Result<std::optional<Envelope>> Connection::next(std::chrono::milliseconds wait) {
    if (broken_) return lost().error();
    amqp_maybe_release_buffers(conn_);
    amqp_envelope_t env;
    timeval tv = toTimeval(wait);
    amqp_rpc_reply_t r = amqp_consume_message(conn_, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        Envelope e = copyOut(env.delivery_tag, env.redelivered != 0, env.routing_key, env.message);
        amqp_destroy_envelope(&env);
        return std::optional<Envelope>(std::move(e));
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
        return std::optional<Envelope>{};
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // Something other than a delivery: the broker closing the channel or
        // the connection (close_all_connections, a deleted queue), a cancel.
        amqp_frame_t f;
        timeval zero{0, 0};
        const int st = amqp_simple_wait_frame_noblock(conn_, &f, &zero);
        if (st == AMQP_STATUS_OK && f.frame_type == AMQP_FRAME_METHOD &&
            (f.payload.method.id == AMQP_CONNECTION_BLOCKED_METHOD ||
             f.payload.method.id == AMQP_CONNECTION_UNBLOCKED_METHOD))
            return std::optional<Envelope>{};  // an alarm: publishers wait, consumers go on
        if (st == AMQP_STATUS_OK && f.frame_type == AMQP_FRAME_METHOD) {
            if (f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD || f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD)
                return fail("rabbitmq " + where_ + ": closed by the broker: " + closeReason(f)).error();
            if (f.payload.method.id == AMQP_BASIC_CANCEL_METHOD)
                return fail("rabbitmq " + where_ + ": the broker cancelled the consumer (queue deleted?)").error();
        }
        return fail("rabbitmq " + where_ + ": unexpected frame while consuming").error();
    }
    return fail("rabbitmq " + where_ + ": consume: " +
                (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION ? amqp_error_string2(r.library_error) : "broker error"))
        .error();
}

Result<std::optional<Envelope>> Connection::get(const std::string& queue) {
    if (broken_) return lost().error();
    amqp_maybe_release_buffers(conn_);
    amqp_rpc_reply_t r = amqp_basic_get(conn_, kChannel, bytes(queue), /*no_ack*/ 0);
    if (Status s = rpc(r, "get from " + queue); !s) return s.error();
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) return std::optional<Envelope>{};
    const auto* ok = static_cast<const amqp_basic_get_ok_t*>(r.reply.decoded);
    const std::uint64_t tag = ok->delivery_tag;
    const bool redelivered = ok->redelivered != 0;
    const std::string routing_key = str(ok->routing_key);
    amqp_message_t msg;
    amqp_rpc_reply_t rr = amqp_read_message(conn_, kChannel, &msg, 0);
    if (Status s = rpc(rr, "read message from " + queue); !s) return s.error();
    Envelope e = copyOut(tag, redelivered, bytes(routing_key), msg);
    amqp_destroy_message(&msg);
    return std::optional<Envelope>(std::move(e));
}

Status Connection::ack(std::uint64_t tag, bool multiple) {
    if (broken_) return lost();
    return socketStatus(amqp_basic_ack(conn_, kChannel, tag, multiple ? 1 : 0), "ack");
}

Status Connection::reject(std::uint64_t tag, bool requeue) {
    if (broken_) return lost();
    return socketStatus(amqp_basic_reject(conn_, kChannel, tag, requeue ? 1 : 0), "reject");
}

}  // namespace kanban::host::broker::amqp
