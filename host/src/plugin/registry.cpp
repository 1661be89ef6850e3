#include "plugin/registry.hpp"

#include <sys/stat.h>

namespace kanban::host::plugin {

Result<std::shared_ptr<const Instance>> loadHandler(const config::DomainConfig& d) {
    auto lib = Library::load(d.plugin_path);
    if (!lib) return lib.error();
    return Instance::create(std::move(*lib), d.settings_json);
}

PluginFile PluginFile::of(const config::DomainConfig& d) {
    PluginFile f;
    f.path = d.plugin_path;
    f.settings_json = d.settings_json;
    struct stat st {};
    if (::stat(d.plugin_path.c_str(), &st) == 0) {
        f.dev = st.st_dev;
        f.ino = st.st_ino;
        f.size = st.st_size;
        f.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    }
    return f;
}

Result<std::map<std::string, Registry::Generation>> Registry::shadowBuild(const config::Config& next) const {
    std::map<std::string, Generation> fresh;
    for (const auto& d : next.domains) {
        PluginFile file = PluginFile::of(d);
        if (const Generation* running = find(d.name); running != nullptr && running->file == file) continue;
        auto handler = loadHandler(d);
        if (!handler) return Error{"domain \"" + d.name + "\": " + handler.message()};
        fresh[d.name] = Generation{std::move(*handler), std::move(file)};
    }
    return fresh;
}

}  // namespace kanban::host::plugin
