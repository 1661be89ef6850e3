// The plugin generation each domain runs, and the file it came from.
//
// A reload builds the next generations in the shadow (shadowBuild): every
// domain whose plugin file changed (replaced by rename, or overwritten in
// place) or whose settings changed gets a new Instance, loaded from a
// private copy; if any one fails, nothing is kept and the running
// generations are untouched. Only then are the new generations swapped in
// (set). Used by the daemon's control thread only: not thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "plugin/handler.hpp"
#include "plugin/plugin.hpp"

namespace kanban::host::plugin {

// Loads a domain's plugin file and creates its handler with the domain's settings.
Result<std::shared_ptr<const Instance>> loadHandler(const config::DomainConfig& d);

// What identifies the plugin file a domain was loaded from, and its settings.
struct PluginFile {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    std::int64_t mtime_ns = 0;
    std::string path, settings_json;
    config::Isolation isolation = config::Isolation::thread;
    bool operator==(const PluginFile&) const = default;

    static PluginFile of(const config::DomainConfig& d);  // stat()s the file now
};

class Registry {
public:
    struct Generation {
        std::shared_ptr<const Handler> handler;
        PluginFile file;
    };

    // New generations for the domains of `next` that are new or whose file
    // or settings changed; all or nothing (the error names the domain).
    // (In process isolation, each is checked by a runner that loads it.)
    Result<std::map<std::string, Generation>> shadowBuild(const config::Config& next) const;

    void set(const std::string& domain, Generation g) { running_[domain] = std::move(g); }
    void erase(const std::string& domain) { running_.erase(domain); }
    const Generation* find(const std::string& domain) const {
        auto it = running_.find(domain);
        return it == running_.end() ? nullptr : &it->second;
    }

private:
    std::map<std::string, Generation> running_;
};

}  // namespace kanban::host::plugin
