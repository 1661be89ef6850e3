#pragma once
// The deliveries one AMQP channel has handed out and not yet settled, in
// delivery-tag order, so that a batch's acks go out as one multiple
// basic.ack instead of one frame per item (docs/performance.md).
//
// A multiple ack for tag T settles every outstanding delivery up to T, so
// it may only cover an unbroken run of settled deliveries from the oldest;
// acks behind a delivery still in a handler are sent one by one, so a
// stuck item never holds the others' acks (or the prefetch window) back.

#include <cstdint>
#include <deque>
#include <vector>

namespace kanban::host::broker::amqp {

class AckWindow {
public:
    // What to send: one basic.ack with multiple=true for `multiple_upto`
    // (0: none), then one plain basic.ack per tag in `single`.
    struct Acks {
        std::uint64_t multiple_upto = 0;
        std::vector<std::uint64_t> single;
        bool empty() const { return multiple_upto == 0 && single.empty(); }
    };

    // A delivery arrived; tags grow on a channel.
    void delivered(std::uint64_t tag);
    // Its handler finished: ack it with the next take().
    void ack(std::uint64_t tag);
    // Settled with the broker already (rejected): nothing to send, but it
    // no longer breaks a run of acks.
    void settled(std::uint64_t tag);
    // The acks to send now; they are forgotten here.
    Acks take();
    // A new channel: its tags start again at 1.
    void clear() {
        window_.clear();
        open_ = 0;
    }
    // Deliveries still in a handler (neither acked nor settled).
    std::size_t open() const { return open_; }

private:
    enum class State : std::uint8_t { open, ack, settled };
    struct Entry {
        std::uint64_t tag;
        State state;
    };
    Entry* find(std::uint64_t tag);

    std::deque<Entry> window_;
    std::size_t open_ = 0;
};

}  // namespace kanban::host::broker::amqp
