#include "broker/rabbitmq.hpp"

#include "broker/amqp_ack_window.hpp"
#include "broker/subjects.hpp"
#include "common/clock.hpp"
#include "common/time_text.hpp"

#include <spdlog/spdlog.h>

#include <ctime>

namespace kanban::host::broker {
namespace {

constexpr const char* kExchange = kAmqpExchange;
constexpr const char* kDeadLetterExchange = kAmqpDeadLetterExchange;

// The metadata of a work item, carried from one copy to the next.
// Not the item's own: the host's, and what RabbitMQ adds when the retry
// queues dead-letter a copy back (x-death, x-first-death-*, x-last-death-*).
bool bookkeeping(std::string_view key) {
    return reservedHeader(key) || sameHeaderName(key, "x-death") || hasHeaderPrefix(key, "x-first-death-") ||
           hasHeaderPrefix(key, "x-last-death-");
}

// The item's own headers (common/headers.hpp), every value as text.
void userHeaders(const amqp::Envelope& e, Headers& out) {
    for (const auto& h : e.headers)
        if (!bookkeeping(h.key)) out.emplace_back(h.key, h.number ? std::to_string(*h.number) : h.text);
}

// What a copy of the item (a retry, a dead letter) keeps of the original.
std::vector<amqp::Header> carriedHeaders(const amqp::Envelope& e) {
    std::vector<amqp::Header> out;
    for (const char* key : {"kanban-deadline", "kanban-created", "kanban-not-before"})
        if (auto v = e.integer(key)) out.push_back({key, {}, *v});
    for (const auto& h : e.headers)
        if (!bookkeeping(h.key)) out.push_back(h);
    return out;
}

class RabbitConsumer;

class RabbitDelivery final : public Delivery {
public:
    RabbitDelivery(RabbitConsumer& owner, amqp::Envelope envelope);
    void ack() override;
    void retryAfter(std::chrono::milliseconds delay) override;
    void retryAfterChosen(std::chrono::milliseconds delay) override {
        republishAfter(delay, attempt + 1, amqpChosenDelayQueue(domain, delay));
    }
    void release() override;
    void defer(std::chrono::milliseconds delay) override { republishAfter(delay, attempt); }
    Status postpone(std::int64_t not_before_unix_ms) override {
        // Through a delay queue, with the same attempt count: not an attempt.
        const std::chrono::milliseconds delay(std::max<std::int64_t>(1, not_before_unix_ms - nowUnixMs()));
        republishAfter(delay, attempt, amqpChosenDelayQueue(domain, delay));
        return Ok{};
    }
    void headers(Headers& out) const override { userHeaders(env_, out); }
    std::string header(const char* name) const override {
        const amqp::Header* h = env_.header(name);
        return h == nullptr ? "" : h->number ? std::to_string(*h->number) : h->text;
    }
    void progress() override {}  // classic queues have no ack wait (only the broker's 30-minute consumer_timeout)
    Status deadLetter(std::string_view reason, std::string_view code) override;

private:
    // A copy through the retry queue, back after `delay` with `next_attempt`;
    // the original is acked once the copy is confirmed.
    // `queue`: the retry queue (default: the one of this attempt).
    void republishAfter(std::chrono::milliseconds delay, std::uint32_t next_attempt, std::string queue = "");

    RabbitConsumer& owner_;
    amqp::Envelope env_;
    std::uint64_t generation_;  // of the owner's connection that delivered it
};

// One worker's consumer: its own connection (consume), and a second one,
// opened on first need, for the copies it publishes (retries, dead letters).
//
// Acks go out together: when the last delivery handed out is settled (the
// batch is done), or 10 ms after the last acks went out, one multiple
// basic.ack covers every item settled so far. A per-item ack is a frame and
// a write(2) each, and the broker's work per ack is what bounds a consumer
// (docs/performance.md). An ack that waits is safe for the same reason a
// lost ack is: this host finds the redelivered item in its idempotency
// record. The 10 ms bound is for another host, which with NATS down has only
// its own record: it gets at most ~10 ms of a killed worker's handled items,
// as on NATS, where the done log is written as often.
//
// The prefetch is two batches, so the broker sends the next batch while
// this one is handled instead of after its acks arrive.
class RabbitConsumer final : public Consumer {
public:
    RabbitConsumer(RabbitMq& mq, ConsumerSpec spec) : mq_(mq), spec_(std::move(spec)) {}
    ~RabbitConsumer() override { sendAcks(); }

    Status open() {
        auto c = mq_.connect("consumer " + spec_.domain);
        if (!c) return c.error();
        if (Status s = RabbitMq::declareDomain(**c, spec_.domain); !s) return s;
        if (Status s = (*c)->qos(static_cast<std::uint16_t>(std::clamp<std::int64_t>(2 * spec_.pull_batch, 1, 65535))); !s)
            return s;
        if (Status s = (*c)->consume(amqpQueue(spec_.domain)); !s) return s;
        conn_ = std::move(*c);
        acks_.clear();
        ++generation_;
        return Ok{};
    }

    Result<DeliveryBatch> fetch(int max, std::chrono::milliseconds idle_wait) override {
        if (!conn_ || conn_->broken()) {
            mq_.noteReachable(false);
            return conn_ ? conn_->lost().error() : Error{"rabbitmq: consumer dropped after a failed retry publish"};
        }
        sendAcks();  // those behind an item that was still in a handler
        DeliveryBatch batch;
        auto first = conn_->next(idle_wait);
        if (!first) {
            mq_.noteReachable(false);
            return first.error();
        }
        mq_.noteReachable(true);
        if (!*first) return batch;
        add(batch, std::move(**first));
        while (static_cast<int>(batch.size()) < max) {
            auto more = conn_->next(std::chrono::milliseconds(0));
            if (!more || !*more) break;  // an error shows on the next fetch; these acks then fail harmlessly
            add(batch, std::move(**more));
        }
        return batch;
    }

    const std::string& domain() const { return spec_.domain; }
    std::uint64_t generation() const { return generation_; }
    amqp::Connection* connection() { return conn_.get(); }
    // Marks the consumer unusable: the worker drops it, the broker requeues
    // everything it held.
    void fail() {
        conn_.reset();
        acks_.clear();
    }
    // A delivery's handler is done; its ack leaves with its batch's.
    void ack(std::uint64_t tag) {
        acks_.ack(tag);
        if (acks_.open() == 0 || std::chrono::steady_clock::now() - acks_sent_ >= kAckEvery) sendAcks();
    }
    // A delivery settled with the broker directly (rejected).
    void settled(std::uint64_t tag) {
        acks_.settled(tag);
        if (acks_.open() == 0) sendAcks();
    }

    // Publishes a copy and waits for the confirm, on the second connection.
    // `retry`: into the retry queue named by its routing key (declared here).
    Status publishCopy(const amqp::Message& m, bool retry = false) {
        if (!pub_ || pub_->broken()) {
            auto c = mq_.connect("publisher " + spec_.domain);
            if (!c) return c.error();
            pub_ = std::move(*c);
        }
        if (retry) {
            Status s = pub_->declareQueue(m.routing_key, {{"x-dead-letter-exchange", kExchange, std::nullopt},
                                              {"x-dead-letter-routing-key", "retry." + spec_.domain, std::nullopt}});
            if (!s) return s;
        } else if (Status s = RabbitMq::declareDomain(*pub_, spec_.domain); !s) {
            return s;
        }
        return pub_->publishConfirmed(m, mq_.options().confirm_timeout);
    }

private:
    void add(DeliveryBatch& batch, amqp::Envelope envelope) {
        acks_.delivered(envelope.delivery_tag);
        batch.push_back(std::make_unique<RabbitDelivery>(*this, std::move(envelope)));
    }
    // A failed ack shows as a broken connection on the next fetch; the
    // broker then requeues the items and the idempotency record absorbs them.
    void sendAcks() {
        acks_sent_ = std::chrono::steady_clock::now();
        const amqp::AckWindow::Acks a = acks_.take();
        if (!conn_ || a.empty()) return;
        if (a.multiple_upto != 0)
            if (Status s = conn_->ack(a.multiple_upto, /*multiple=*/true); !s) spdlog::debug("{}", s.message());
        for (std::uint64_t tag : a.single)
            if (Status s = conn_->ack(tag); !s) spdlog::debug("{}", s.message());
    }

    RabbitMq& mq_;
    ConsumerSpec spec_;
    std::unique_ptr<amqp::Connection> conn_;
    static constexpr std::chrono::milliseconds kAckEvery{10};
    amqp::AckWindow acks_;
    std::chrono::steady_clock::time_point acks_sent_;
    std::unique_ptr<amqp::Connection> pub_;
    std::uint64_t generation_ = 0;
};

RabbitDelivery::RabbitDelivery(RabbitConsumer& owner, amqp::Envelope envelope)
    : owner_(owner), env_(std::move(envelope)), generation_(owner.generation()) {
    domain = owner.domain();
    id = env_.message_id.empty() ? "amqp-" + generateWorkId() : env_.message_id;
    payload = env_.body;
    priority = priorityFromAmqp(env_.routing_key, env_.priority);
    attempt = static_cast<std::uint32_t>(std::clamp<std::int64_t>(env_.integer("kanban-attempts").value_or(1), 1, 1 << 30));
    deliveries = attempt;  // RabbitMQ has no delivery count; the safety net is JetStream's
    maybe_tried = env_.redelivered || attempt > 1;
    if (const amqp::Header* h = env_.header("kanban-deadline")) {
        if (auto v = env_.integer("kanban-deadline"))
            deadline_unix_ms = *v;
        else
            spdlog::warn("ignoring non-numeric kanban-deadline \"{}\" domain={} id={}", h->text, domain, id);
    }
    if (auto nb = env_.integer("kanban-not-before")) not_before_unix_ms = *nb;
    if (auto created = env_.integer("kanban-created"))
        published_unix_ns = *created * 1'000'000;
    else if (env_.timestamp_s)
        published_unix_ns = *env_.timestamp_s * 1'000'000'000;
}

void RabbitDelivery::ack() {
    // After a reconnect the tag means nothing: the broker requeued the item.
    if (owner_.generation() != generation_ || owner_.connection() == nullptr) return;
    owner_.ack(env_.delivery_tag);
}

void RabbitDelivery::release() {
    if (owner_.generation() != generation_ || owner_.connection() == nullptr) return;
    if (Status s = owner_.connection()->reject(env_.delivery_tag, /*requeue=*/true); !s) spdlog::debug("{}", s.message());
    owner_.settled(env_.delivery_tag);
}

void RabbitDelivery::retryAfter(std::chrono::milliseconds delay) { republishAfter(delay, attempt + 1); }

void RabbitDelivery::republishAfter(std::chrono::milliseconds delay, std::uint32_t next_attempt, std::string queue) {
    // Never nack-with-requeue: that puts the item back at the head of the
    // queue at once, a hot loop. A copy waits out the delay in a retry queue.
    amqp::Message m;
    m.exchange = "";  // the default exchange: routing key = queue name
    m.routing_key = queue.empty() ? amqpRetryQueue(domain, attempt) : std::move(queue);
    m.body = env_.body;
    m.message_id = id;
    m.priority = amqpPriority(priority);
    m.timestamp_s = env_.timestamp_s;
    m.expiration_ms = std::to_string(std::max<std::int64_t>(0, delay.count()));
    m.headers = carriedHeaders(env_);
    m.headers.push_back({"kanban-attempts", {}, static_cast<std::int64_t>(next_attempt)});
    if (Status s = owner_.publishCopy(m, /*retry=*/true); !s) {
        // The original stays unacknowledged; dropping the connection makes
        // the broker requeue it (a prompt retry instead of a delayed one).
        spdlog::warn("retry of domain={} id={} not stored ({}); the item goes back to the queue", domain, id, s.message());
        owner_.fail();
        return;
    }
    ack();
}

Status RabbitDelivery::deadLetter(std::string_view reason, std::string_view code) {
    amqp::Message m;
    m.exchange = kDeadLetterExchange;
    m.routing_key = amqpRoutingKey(domain, priority);
    m.body = env_.body;
    m.message_id = id;
    m.priority = amqpPriority(priority);
    m.timestamp_s = nowUnixMs() / 1000;
    m.headers = carriedHeaders(env_);
    m.headers.push_back({"kanban-reason", std::string(reason), std::nullopt});
    m.headers.push_back({"kanban-reason-code", std::string(code), std::nullopt});
    m.headers.push_back({"kanban-attempts", {}, static_cast<std::int64_t>(attempt)});
    m.headers.push_back({"kanban-original-subject", amqpRoutingKey(domain, priority), std::nullopt});
    m.headers.push_back({"kanban-original-id", id, std::nullopt});
    m.headers.push_back({"kanban-dead-lettered-at", {}, nowUnixMs()});
    if (Status s = owner_.publishCopy(m); !s) return Error{"dead-letter " + s.message()};
    ack();
    return Ok{};
}

}  // namespace

Result<std::unique_ptr<amqp::Connection>> RabbitMq::connect(const std::string& role) {
    auto c = amqp::Connection::open(options_.url, options_.connect_timeout, options_.connection_name + " " + role);
    noteReachable(static_cast<bool>(c));
    return c;
}

Status RabbitMq::declareDomain(amqp::Connection& c, std::string_view domain) {
    const std::string d(domain);
    if (Status s = c.declareExchange(kExchange, "topic"); !s) return s;
    if (Status s = c.declareExchange(kDeadLetterExchange, "topic"); !s) return s;
    if (Status s = c.declareQueue(amqpQueue(d), {{"x-max-priority", {}, 2}, {"x-dead-letter-exchange", kDeadLetterExchange, std::nullopt}});
        !s)
        return s;
    if (Status s = c.bind(amqpQueue(d), kExchange, amqpDomainBinding(d)); !s) return s;
    if (Status s = c.declareQueue(amqpDeadLetterQueue(d), {}); !s) return s;
    return c.bind(amqpDeadLetterQueue(d), kDeadLetterExchange, amqpDomainBinding(d));
}

Status RabbitMq::probe() {
    std::lock_guard lock(mu_);
    if (publisher_ && !publisher_->broken()) return Ok{};
    auto c = connect("publisher");
    if (!c) return c.error();
    publisher_ = std::move(*c);
    return Ok{};
}

Result<PublishAck> RabbitMq::publish(const PublishRequest& request) {
    if (request.id.empty()) return Error{"publish: empty work id", /*refused=*/true};
    std::lock_guard lock(mu_);
    if (!publisher_ || publisher_->broken()) {
        auto c = connect("publisher");
        if (!c) return c.error();
        publisher_ = std::move(*c);
    }
    if (Status s = declareDomain(*publisher_, request.domain); !s) {
        noteReachable(!publisher_->broken());
        return s.error();
    }
    amqp::Message m;
    m.exchange = kExchange;
    m.routing_key = amqpRoutingKey(request.domain, request.priority);
    m.body = request.payload;
    m.message_id = request.id;
    m.priority = amqpPriority(request.priority);
    const std::int64_t now_ms = nowUnixMs();
    m.timestamp_s = now_ms / 1000;
    m.headers.push_back({"kanban-created", {}, now_ms});
    for (const auto& [key, value] : request.headers)
        if (!reservedHeader(key)) m.headers.push_back({key, value, std::nullopt});
    if (request.deadline_unix_ms) m.headers.push_back({"kanban-deadline", {}, *request.deadline_unix_ms});
    // A delayed item: the first worker to fetch it sends it through a delay queue.
    if (request.not_before_unix_ms) m.headers.push_back({"kanban-not-before", {}, *request.not_before_unix_ms});
    Status s = publisher_->publishConfirmed(m, options_.confirm_timeout);
    noteReachable(!publisher_->broken());
    if (!s) return s.error();
    return PublishAck{0, false};  // no broker-side dedup: idempotency absorbs copies
}

Result<std::unique_ptr<Consumer>> RabbitMq::openConsumer(const ConsumerSpec& spec) {
    auto c = std::make_unique<RabbitConsumer>(*this, spec);
    if (Status s = c->open(); !s) return s.error();
    return std::unique_ptr<Consumer>(std::move(c));
}

Result<std::unique_ptr<DoneStore>> RabbitMq::openDoneStore() {
    return Error{"rabbitmq has no idempotency store of its own"};
}

Result<std::uint64_t> RabbitMq::readyMessages(const std::string& queue) {
    if (Status s = probe(); !s) return s.error();
    std::lock_guard lock(mu_);
    auto n = publisher_->messageCount(queue);
    noteReachable(!publisher_->broken());
    if (!n) return n.error();
    return static_cast<std::uint64_t>(n->value_or(0));  // not declared yet: empty
}

Result<std::uint64_t> RabbitMq::queueDepth(std::string_view domain) { return readyMessages(amqpQueue(domain)); }
Result<std::uint64_t> RabbitMq::deadLetterDepth(std::string_view domain) { return readyMessages(amqpDeadLetterQueue(domain)); }

Result<BackendReport> RabbitMq::inspect(const std::vector<std::string>& domains, const InspectOptions& options) {
    if (!healthy()) return Error{"rabbitmq: not reachable"};
    BackendReport report;
    for (const auto& name : domains) {
        auto depth = queueDepth(name);
        if (!depth) continue;  // unknown for this domain
        DomainCounts c;
        c.by_priority = false;
        c.depth[static_cast<std::size_t>(Priority::normal)] = *depth;
        if (options.dead_letters)
            if (auto dead = deadLetterDepth(name)) c.dead_letters = *dead;
        report.domains.emplace(name, c);
    }
    return report;
}

namespace {
DeadLetter toDeadLetter(const amqp::Envelope& e) {
    DeadLetter dl;
    const amqp::Header* h = e.header("kanban-original-id");
    dl.id = h != nullptr ? h->text : e.message_id;
    if (const amqp::Header* r = e.header("kanban-reason")) dl.reason = r->text;
    if (const amqp::Header* r = e.header("kanban-reason-code")) dl.reason_code = r->text;
    if (const amqp::Header* s = e.header("kanban-original-subject")) dl.original_subject = s->text;
    dl.attempts = static_cast<std::uint32_t>(e.integer("kanban-attempts").value_or(0));
    if (auto at = e.integer("kanban-dead-lettered-at")) dl.dead_lettered_at = formatRfc3339Ms(*at);
    dl.payload = e.body;
    dl.backend = "rabbitmq";
    userHeaders(e, dl.headers);
    return dl;
}
}  // namespace

Result<DeadLetterPage> RabbitMq::deadLetters(std::string_view domain, const DeadLetterQuery& query) {
    DeadLetterPage page;
    if (query.after != 0) return page;  // a queue has no positions to resume from: first page only
    // A connection of its own: closing it hands every message it took back.
    auto c = connect("dead-letter reader");
    if (!c) return c.error();
    if (Status s = declareDomain(**c, domain); !s) return s.error();
    std::size_t bytes = 0;
    for (;;) {
        if (!page.items.empty() && (page.items.size() >= query.limit || bytes >= query.max_bytes)) {
            page.more = true;
            break;
        }
        auto e = (*c)->get(amqpDeadLetterQueue(domain));
        if (!e) return e.error();
        if (!*e) break;
        bytes += (*e)->body.size();
        page.items.push_back(toDeadLetter(**e));
    }
    return page;
}

Result<ReplayResults> RabbitMq::settleDeadLetters(std::string_view domain, const DeadLetterFilter& filter,
                                                  const Republish& publish) {
    auto c = connect("dead-letter replay");
    if (!c) return c.error();
    if (Status s = declareDomain(**c, domain); !s) return s.error();
    // Only what is there now: a replayed item that fails again comes back
    // to this queue and must not be replayed in a loop.
    auto present = (*c)->messageCount(amqpDeadLetterQueue(domain));
    if (!present) return present.error();
    ReplayResults out;
    for (std::uint32_t taken = 0; taken < present->value_or(0); ++taken) {
        auto e = (*c)->get(amqpDeadLetterQueue(domain));
        if (!e) return e.error();
        if (!*e) break;
        DeadLetter dl = toDeadLetter(**e);
        if (!filter.matches(dl)) continue;  // not taken: handed back when the connection closes
        if (publish) {
            PublishRequest req;
            req.domain = std::string(domain);
            req.priority = priorityFromAmqp(dl.original_subject, (*e)->priority);
            req.payload = std::move(dl.payload);
            req.id = dl.id;
            req.headers = std::move(dl.headers);
            if (Status s = publish(req); !s) {
                out.emplace_back(dl.id, s.message());
                continue;
            }
        }
        if (Status s = (*c)->ack((*e)->delivery_tag); !s) {
            out.emplace_back(dl.id, publish ? "replayed, but removing the dead letter failed (it may be replayed twice): " + s.message()
                                            : "removing the dead letter failed: " + s.message());
            continue;
        }
        out.emplace_back(dl.id, "");
    }
    return out;
}

}  // namespace kanban::host::broker
