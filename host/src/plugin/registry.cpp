#include "plugin/registry.hpp"

#include <sys/stat.h>

namespace kanban::host::plugin {

Result<std::shared_ptr<const Instance>> loadHandler(const config::DomainConfig& d) {
    auto lib = Library::load(d.plugin_path);
    if (!lib) return lib.error();
    return Instance::create(std::move(*lib), d.settings_json);
}

namespace {
// A runner whose plugin does not load and create within this is killed.
constexpr std::chrono::milliseconds kRunnerReadyWithin{10000};
}  // namespace

std::shared_ptr<const Handler> inProcess(std::shared_ptr<const Instance> instance) {
    auto h = std::make_shared<Handler>();
    h->name = instance->library().name();
    h->version = instance->library().version();
    h->instance = std::move(instance);
    return h;
}

Result<std::shared_ptr<const Handler>> loadDomainHandler(const config::DomainConfig& d, const std::string& log_level) {
    if (d.isolation == config::Isolation::thread) {
        auto instance = loadHandler(d);
        if (!instance) return instance.error();
        return inProcess(std::move(*instance));
    }
    runner::RunnerSpec spec{d.name, d.plugin_path, d.settings_json, log_level};
    auto probe = runner::RunnerProcess::spawn(spec, kRunnerReadyWithin);
    if (!probe) {
        const std::string& why = probe.message();
        return Error{why.rfind(d.plugin_path, 0) == 0 ? why : d.plugin_path + ": " + why};
    }
    auto h = std::make_shared<Handler>();
    h->name = (*probe)->pluginName();
    h->version = (*probe)->pluginVersion();
    h->runner = std::move(spec);
    (*probe)->retire(std::chrono::milliseconds(5000));
    return std::shared_ptr<const Handler>(std::move(h));
}

PluginFile PluginFile::of(const config::DomainConfig& d) {
    PluginFile f;
    f.path = d.plugin_path;
    f.settings_json = d.settings_json;
    f.isolation = d.isolation;
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
        auto handler = loadDomainHandler(d, next.log_level);
        if (!handler) return Error{"domain \"" + d.name + "\": " + handler.message()};
        fresh[d.name] = Generation{std::move(*handler), std::move(file)};
    }
    return fresh;
}

}  // namespace kanban::host::plugin
