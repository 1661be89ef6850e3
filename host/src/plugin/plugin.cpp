#include "plugin/plugin.hpp"

#include "plugin/host_api.hpp"

#include <boost/dll/shared_library.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace kanban::host::plugin {
namespace {

namespace fs = std::filesystem;

// The size of a 1.0 descriptor: anything smaller lacks required fields.
constexpr std::size_t kMinDescriptorSize = offsetof(kanban_plugin_descriptor, destroy) + sizeof(void (*)(void*));

std::string replaceAll(std::string text, const std::string& from, const std::string& to) {
    if (from.empty()) return text;
    for (std::size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size())
        text.replace(pos, from.size(), to);
    return text;
}

// Directory for private copies: systemd's StateDirectory when run as a
// service (a /run or /tmp mounted noexec would make dlopen fail), else TMPDIR.
fs::path cacheDir() {
    if (const char* s = std::getenv("STATE_DIRECTORY"); s != nullptr && *s != '\0') {
        std::string first(s);
        first = first.substr(0, first.find(':'));
        return fs::path(first) / "plugin-cache";
    }
    if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0') return t;
    return "/tmp";
}

// Copies `src` to a new unique private path; returns it (or an error).
Result<std::string> privateCopy(const std::string& src) {
    std::error_code ec;
    const fs::path dir = cacheDir();
    fs::create_directories(dir, ec);
    std::string tmpl = (dir / ("kanband-" + fs::path(src).stem().string() + "-XXXXXX.so")).string();
    const int fd = ::mkstemps(tmpl.data(), 3);
    if (fd < 0) return Error{src + ": cannot create a private copy in " + dir.string() + ": " + std::strerror(errno)};
    ::close(fd);
    fs::copy_file(src, tmpl, fs::copy_options::overwrite_existing, ec);
    if (ec) {
        ::unlink(tmpl.c_str());
        return Error{src + ": cannot copy plugin file: " + ec.message()};
    }
    return tmpl;
}

}  // namespace

std::string checkDescriptor(const kanban_plugin_descriptor* d) {
    if (d == nullptr) return std::string(KANBAN_PLUGIN_ENTRY_NAME) + "() returned NULL";
    if (d->struct_size < offsetof(kanban_plugin_descriptor, name))
        return "descriptor struct_size " + std::to_string(d->struct_size) + " is too small to be a plugin descriptor";
    const std::string host_abi = std::to_string(KANBAN_ABI_MAJOR) + "." + std::to_string(KANBAN_ABI_MINOR);
    const std::string plugin_abi = std::to_string(d->abi_major) + "." + std::to_string(d->abi_minor);
    if (d->abi_major != KANBAN_ABI_MAJOR)
        return "plugin ABI " + plugin_abi + " is not supported by this host (ABI " + host_abi +
               "): rebuild the plugin against the host's SDK";
    if (d->abi_minor > KANBAN_ABI_MINOR)
        return "plugin ABI " + plugin_abi + " is newer than this host's ABI " + host_abi + ": upgrade kanband";
    if (d->struct_size < kMinDescriptorSize)
        return "descriptor struct_size " + std::to_string(d->struct_size) + " is smaller than ABI " + plugin_abi +
               " requires (" + std::to_string(kMinDescriptorSize) + ")";
    if (d->name == nullptr || *d->name == '\0') return "descriptor has no name";
    if (d->version == nullptr || *d->version == '\0') return "descriptor has no version";
    if (d->create == nullptr || d->handle == nullptr || d->destroy == nullptr)
        return "descriptor lacks create, handle or destroy";
    return {};
}

Library::~Library() = default;

Result<std::shared_ptr<const Library>> Library::load(const std::string& path) {
    std::error_code fec;
    if (!fs::is_regular_file(path, fec)) return Error{path + ": plugin file not found (or not a regular file)"};

    auto copy = privateCopy(path);
    if (!copy) return copy.error();

    std::shared_ptr<Library> lib(new Library());
    lib->path_ = path;
    lib->lib_ = std::make_unique<boost::dll::shared_library>();
    boost::dll::fs::error_code ec;
    lib->lib_->load(*copy, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    // The mapping stays valid after unlink; nothing else may ever open this copy.
    ::unlink(copy->c_str());
    if (ec) {
        // dlerror() names the private copy; users know the configured path.
        return Error{path + ": cannot load plugin: " + replaceAll(ec.message(), *copy, path)};
    }
    if (!lib->lib_->has(KANBAN_PLUGIN_ENTRY_NAME))
        return Error{path + ": not a TPS Kanban plugin: symbol '" KANBAN_PLUGIN_ENTRY_NAME "' not found"};

    auto& entry = lib->lib_->get<const kanban_plugin_descriptor*()>(KANBAN_PLUGIN_ENTRY_NAME);
    lib->descriptor_ = entry();
    if (std::string why = checkDescriptor(lib->descriptor_); !why.empty()) return Error{path + ": " + why};
    return std::shared_ptr<const Library>(std::move(lib));
}

Instance::~Instance() {
    if (instance_ != nullptr) library_->descriptor().destroy(instance_);
}

Result<std::shared_ptr<const Instance>> Instance::create(std::shared_ptr<const Library> library,
                                                         const std::string& settings_json) {
    char error[1024] = {};
    void* created = library->descriptor().create(settings_json.c_str(), hostApi(), error, sizeof error);
    if (created == nullptr) {
        error[sizeof error - 1] = '\0';
        return Error{library->path() + ": create() failed: " + (error[0] != '\0' ? error : "no reason given")};
    }
    std::shared_ptr<Instance> inst(new Instance());
    inst->library_ = std::move(library);
    inst->instance_ = created;
    return std::shared_ptr<const Instance>(std::move(inst));
}

void Instance::handle(const kanban_work_item& item, kanban_context* ctx, kanban_result* result) const {
    library_->descriptor().handle(instance_, &item, ctx, result);
}

}  // namespace kanban::host::plugin
