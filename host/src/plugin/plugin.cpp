#include "plugin/plugin.hpp"

#include "plugin/host_api.hpp"

#include <boost/dll/shared_library.hpp>

#include <elf.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <vector>

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

#if defined(__x86_64__)
constexpr Elf64_Half kHostMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr Elf64_Half kHostMachine = EM_AARCH64;
#endif

// dlopen() trusts the ELF headers: a truncated file (a torn copy, an
// interrupted download) gets its segments mapped past EOF and the process
// dies of SIGBUS on first touch. So check, before dlopen, that this is a
// 64-bit shared object for this machine and that every header and loadable
// segment lies inside the file.
std::string checkElf(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (!in || ec) return "cannot read file";
    Elf64_Ehdr eh{};
    if (!in.read(reinterpret_cast<char*>(&eh), sizeof eh) ||
        std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
        return "not an ELF file";
    if (eh.e_ident[EI_CLASS] != ELFCLASS64) return "not a 64-bit ELF object (wrong ELF class)";
    if (eh.e_type != ET_DYN) return "not a shared object (ELF type " + std::to_string(eh.e_type) + ")";
    if (eh.e_machine != kHostMachine)
        return "built for another architecture (ELF machine " + std::to_string(eh.e_machine) + ")";
    auto within = [size](std::uint64_t off, std::uint64_t len) { return off <= size && len <= size - off; };
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || !within(eh.e_phoff, std::uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr)))
        return "truncated or corrupt ELF file (program headers outside the file)";
    std::vector<Elf64_Phdr> ph(eh.e_phnum);
    in.seekg(static_cast<std::streamoff>(eh.e_phoff));
    if (!in.read(reinterpret_cast<char*>(ph.data()), static_cast<std::streamsize>(ph.size() * sizeof(Elf64_Phdr))))
        return "truncated ELF file";
    for (const auto& p : ph)
        if ((p.p_type == PT_LOAD || p.p_type == PT_DYNAMIC) && !within(p.p_offset, p.p_filesz))
            return "truncated or corrupt ELF file (a segment ends past the end of the file, " + std::to_string(size) +
                   " bytes)";
    if (eh.e_shnum != 0 && !within(eh.e_shoff, std::uint64_t{eh.e_shnum} * eh.e_shentsize))
        return "truncated or corrupt ELF file (section headers outside the file)";
    return {};
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
    // Checked on the private copy, which is what gets loaded: no window for
    // the file to change between check and load.
    if (std::string why = checkElf(*copy); !why.empty()) {
        ::unlink(copy->c_str());
        return Error{path + ": cannot load plugin: " + why};
    }
    lib->lib_ = std::make_unique<boost::dll::shared_library>();
    std::string load_error;
    try {
        // The throwing overload: its message carries dlerror(); the
        // error_code overload reduces it to "Bad file descriptor".
        lib->lib_->load(*copy, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    } catch (const std::exception& e) {
        // "boost::dll::shared_library::load() failed (dlerror system message: <text>): <errno text>"
        load_error = e.what();
        const std::string marker = "dlerror system message: ";
        if (auto b = load_error.find(marker), e2 = load_error.rfind("): "); b != std::string::npos && e2 > b)
            load_error = load_error.substr(b + marker.size(), e2 - b - marker.size());
    }
    // The mapping stays valid after unlink; nothing else may ever open this copy.
    ::unlink(copy->c_str());
    if (!load_error.empty()) {
        // dlerror() names the private copy; users know the configured path.
        return Error{path + ": cannot load plugin: " + replaceAll(load_error, *copy, path)};
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
