#include "broker/amqp_ack_window.hpp"

#include <algorithm>

namespace kanban::host::broker::amqp {

void AckWindow::delivered(std::uint64_t tag) {
    window_.push_back({tag, State::open});
    ++open_;
}

AckWindow::Entry* AckWindow::find(std::uint64_t tag) {
    const auto it = std::lower_bound(window_.begin(), window_.end(), tag,
                                     [](const Entry& e, std::uint64_t t) { return e.tag < t; });
    return it != window_.end() && it->tag == tag ? &*it : nullptr;
}

void AckWindow::ack(std::uint64_t tag) {
    if (Entry* e = find(tag); e && e->state == State::open) {
        e->state = State::ack;
        --open_;
    }
}

void AckWindow::settled(std::uint64_t tag) {
    if (Entry* e = find(tag); e && e->state == State::open) {
        e->state = State::settled;
        --open_;
    }
}

AckWindow::Acks AckWindow::take() {
    Acks out;
    // The unbroken run from the oldest: one multiple ack up to its last
    // ack (a rejected delivery is no longer outstanding, so it is skipped
    // by the broker, but its tag is not named: the broker would refuse it).
    while (!window_.empty() && window_.front().state != State::open) {
        if (window_.front().state == State::ack) out.multiple_upto = window_.front().tag;
        window_.pop_front();
    }
    // Behind a delivery still open: one by one.
    std::erase_if(window_, [&](const Entry& e) {
        if (e.state == State::open) return false;
        if (e.state == State::ack) out.single.push_back(e.tag);
        return true;
    });
    return out;
}

}  // namespace kanban::host::broker::amqp
