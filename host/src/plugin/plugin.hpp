// Loading handler plugins and creating their instances.
//
// A Library is one loaded generation of a plugin file: loaded with
// RTLD_NOW | RTLD_LOCAL from a private copy (dlopen caches by path and
// inode, and a file overwritten in place must not crash the host), with its
// descriptor validated. An Instance is the handler created from it for one
// domain; it keeps its Library alive, so in-flight items pin the code they
// run (shared_ptr<const Instance>).
#pragma once

#include "common/result.hpp"

#include <kanban/plugin.h>

#include <cstdint>
#include <memory>
#include <string>

namespace boost::dll {
class shared_library;
}

namespace kanban::host::plugin {

class Library {
public:
    ~Library();
    Library(const Library&) = delete;
    Library& operator=(const Library&) = delete;

    const std::string& path() const { return path_; }  // the file as configured
    const kanban_plugin_descriptor& descriptor() const { return *descriptor_; }
    std::string name() const { return descriptor_->name; }
    std::string version() const { return descriptor_->version; }

    // Loads `path` and validates it. Errors name the file and the reason:
    // cannot load (dlerror), no entry symbol, ABI version, malformed descriptor.
    static Result<std::shared_ptr<const Library>> load(const std::string& path);

private:
    Library() = default;
    std::string path_;
    std::unique_ptr<boost::dll::shared_library> lib_;
    const kanban_plugin_descriptor* descriptor_ = nullptr;
};

// Checks a descriptor against this host's ABI; "" when acceptable. Exposed
// for tests.
std::string checkDescriptor(const kanban_plugin_descriptor* d);

class Instance {
public:
    ~Instance();
    Instance(const Instance&) = delete;
    Instance& operator=(const Instance&) = delete;

    // Calls the plugin's create(); its error message is returned verbatim,
    // prefixed with the file.
    static Result<std::shared_ptr<const Instance>> create(std::shared_ptr<const Library> library,
                                                          const std::string& settings_json);

    const Library& library() const { return *library_; }

    // Calls handle(). Thread-safe as far as the plugin's handle() is.
    void handle(const kanban_work_item& item, kanban_context* ctx, kanban_result* result) const;

private:
    Instance() = default;
    std::shared_ptr<const Library> library_;
    void* instance_ = nullptr;
};

}  // namespace kanban::host::plugin
