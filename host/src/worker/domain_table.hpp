// The configured domains of the running host: each one's worker pool (or
// why it did not start) and the plugin generation it runs. Written by the
// daemon's control thread (start, reload, stop); read by the coordinator
// and the admin API from theirs. Readers get copies: a pool stays alive
// while a reader holds it, even if a reload removed its domain meanwhile.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "worker/domain_workers.hpp"

namespace kanban::host::worker {

struct DomainEntry {
    std::string name;
    std::shared_ptr<DomainWorkers> pool;  // null: not started (error says why)
    std::string plugin_name, plugin_version, error;
};

class DomainTable {
public:
    void put(DomainEntry e) {
        std::lock_guard lock(mu_);
        entries_[e.name] = std::move(e);
    }
    void erase(const std::string& name) {
        std::lock_guard lock(mu_);
        entries_.erase(name);
    }
    void setPlugin(const std::string& name, std::string plugin, std::string version) {
        std::lock_guard lock(mu_);
        if (auto it = entries_.find(name); it != entries_.end()) {
            it->second.plugin_name = std::move(plugin);
            it->second.plugin_version = std::move(version);
        }
    }
    std::shared_ptr<DomainWorkers> pool(const std::string& name) const {
        std::lock_guard lock(mu_);
        auto it = entries_.find(name);
        return it == entries_.end() ? nullptr : it->second.pool;
    }
    // Sorted by name.
    std::vector<DomainEntry> snapshot() const {
        std::lock_guard lock(mu_);
        std::vector<DomainEntry> out;
        out.reserve(entries_.size());
        for (const auto& [name, e] : entries_) out.push_back(e);
        return out;
    }

private:
    mutable std::mutex mu_;
    std::map<std::string, DomainEntry> entries_;
};

}  // namespace kanban::host::worker
