#include "status/item_status.hpp"

#include <algorithm>

namespace kanban::host::status {

std::string_view stateName(State s) {
    switch (s) {
        case State::waiting: return "waiting";
        case State::in_flight: return "in_flight";
        case State::done: return "done";
        case State::dead_lettered: return "dead_lettered";
        case State::unknown: return "unknown";
    }
    return "unknown";
}

ItemStatus ItemLocator::locate(const std::string& id, const std::vector<std::string>& domains, std::size_t max_scan) {
    ItemStatus out;
    std::unique_ptr<broker::DoneStore> store;
    if (auto opened = open_done_store_()) store = std::move(*opened);
    else out.unavailable["idempotency record"] = opened.message();

    if (inHandlerHere(id, domains, out)) return out;
    // Twice: an item that moved on while it was looked for elsewhere (done
    // or dead-lettered while the queues were read) is found the second time.
    for (int round = 0; round < 2; ++round) {
        if (done(store.get(), id, out) || deadLettered(id, domains, max_scan, out)) return out;
        if (round > 0) break;
        std::map<std::string, std::string> unavailable;
        const broker::WaitingSearch w = brokers_.findWaiting(domains, id, max_scan, unavailable);
        for (auto& [backend, why] : unavailable) out.unavailable["waiting items on " + backend] = why;
        out.waiting_scanned = w.scanned;
        out.waiting_complete = w.complete;
        if (w.found) {
            out.state = w.found->delivered ? State::in_flight : State::waiting;
            out.domain = w.found->domain;
            out.backend = "nats";
            out.priority = w.found->priority;
            out.sequence = w.found->sequence;
            out.published_unix_ms = w.found->published_unix_ms;
            if (store)
                if (auto records = store->attempts({id}); records && !records->empty() && records->front()) {
                    out.attempts = records->front()->calls;
                    out.reason = records->front()->reason;
                }
            return out;
        }
    }
    return out;
}

bool ItemLocator::inHandlerHere(const std::string& id, const std::vector<std::string>& domains, ItemStatus& out) const {
    for (const auto& e : domains_.snapshot()) {
        if (!e.pool || std::find(domains.begin(), domains.end(), e.name) == domains.end()) continue;
        for (const auto& item : e.pool->stalledItems(std::chrono::milliseconds(0))) {
            if (item.id != id) continue;
            out.state = State::in_flight;
            out.domain = e.name;
            out.in_handler_here = true;
            out.in_handler_seconds = item.in_handler_seconds;
            out.attempts = item.attempt;  // this call included
            return true;
        }
    }
    return false;
}

bool ItemLocator::done(broker::DoneStore* store, const std::string& id, ItemStatus& out) const {
    if (store == nullptr) return false;
    auto known = store->lookup({id});
    if (!known) {
        out.unavailable["idempotency record"] = known.message();
        return false;
    }
    if (known->empty() || !known->front()) return false;
    out.state = State::done;
    return true;
}

bool ItemLocator::deadLettered(const std::string& id, const std::vector<std::string>& domains, std::size_t max_scan,
                               ItemStatus& out) {
    for (const auto& domain : domains) {
        broker::DeadLetterQuery q;
        q.limit = 1000;
        q.filter.id = id;
        std::size_t read = 0;
        for (;;) {
            const broker::DeadLetterListing page = brokers_.deadLetters(domain, q);
            for (const auto& [backend, why] : page.unavailable) out.unavailable["dead letters on " + backend] = why;
            if (!page.items.empty()) {
                const broker::DeadLetter& dl = page.items.front();
                out.state = State::dead_lettered;
                out.domain = domain;
                out.backend = dl.backend;
                out.reason = dl.reason;
                out.attempts = dl.attempts;
                out.dead_lettered_at = dl.dead_lettered_at;
                return true;
            }
            read += q.limit;
            if (!page.more || read >= max_scan) break;
            q.after = page.next_after;
        }
    }
    return false;
}

}  // namespace kanban::host::status
