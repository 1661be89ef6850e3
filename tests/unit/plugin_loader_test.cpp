#include "plugin/host_api.hpp"
#include "plugin/plugin.hpp"

#include "support.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace kanban::host::plugin {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

const std::string kFixtures = KANBAN_FIXTURE_DIR;
const std::string kPlugins = KANBAN_PLUGIN_DIR;

std::string loadError(const std::string& path) {
    auto r = Library::load(path);
    EXPECT_FALSE(r.ok()) << path << " loaded but should not have";
    return r.ok() ? std::string() : r.message();
}

// Runs one item through an instance; returns status and reason.
std::pair<kanban_status, std::string> handleOne(const Instance& inst, std::string_view payload) {
    kanban_context ctx;
    ctx.domain = "d";
    ctx.id = "id-1";
    ctx.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    kanban_work_item item{};
    item.struct_size = sizeof item;
    item.id = "id-1";
    item.id_len = 4;
    item.domain = "d";
    item.domain_len = 1;
    item.priority = KANBAN_PRIORITY_NORMAL;
    item.payload = payload.data();
    item.payload_len = payload.size();
    item.attempt = 1;
    char reason[256] = {};
    kanban_result result{sizeof result, KANBAN_STATUS_FAIL, reason, sizeof reason, -1};
    inst.handle(item, &ctx, &result);
    return {result.status, reason};
}

std::shared_ptr<const Instance> create(const std::string& path, const std::string& settings = "{}") {
    auto lib = Library::load(path);
    EXPECT_TRUE(lib.ok()) << (lib.ok() ? "" : lib.message());
    if (!lib) return nullptr;
    auto inst = Instance::create(*lib, settings);
    EXPECT_TRUE(inst.ok()) << (inst.ok() ? "" : inst.message());
    return inst.ok() ? *inst : nullptr;
}

TEST(PluginLoader, LoadsAShippedPluginAndReadsItsDescriptor) {
    auto lib = Library::load(kPlugins + "/noop.so");
    ASSERT_TRUE(lib.ok()) << lib.message();
    EXPECT_EQ((*lib)->name(), "noop");
    EXPECT_EQ((*lib)->version(), "1.0.0");
    EXPECT_EQ((*lib)->descriptor().abi_major, static_cast<uint32_t>(KANBAN_ABI_MAJOR));
    EXPECT_EQ((*lib)->path(), kPlugins + "/noop.so");
}

TEST(PluginLoader, PaymentValidatesItsPayload) {
    auto inst = create(kPlugins + "/payment.so", R"({"currency":"USD"})");
    ASSERT_TRUE(inst);
    EXPECT_EQ(handleOne(*inst, R"({"amount": 12.5, "account": "acct-1"})").first, KANBAN_STATUS_OK);
    auto [s1, r1] = handleOne(*inst, R"({"amount": 0, "account": "acct-1"})");
    EXPECT_EQ(s1, KANBAN_STATUS_FAIL);
    EXPECT_EQ(r1, "payload.amount must be positive");
    auto [s2, r2] = handleOne(*inst, R"({"amount": 3})");
    EXPECT_EQ(s2, KANBAN_STATUS_FAIL);
    EXPECT_EQ(r2, "payload.account must be a non-empty string");
    EXPECT_EQ(handleOne(*inst, R"({"amount": 3, "account": ""})").first, KANBAN_STATUS_FAIL);
    auto [s3, r3] = handleOne(*inst, "not json {");
    EXPECT_EQ(s3, KANBAN_STATUS_FAIL);
    EXPECT_EQ(r3, "payload is not a JSON object");
    EXPECT_EQ(handleOne(*inst, R"({"amount": "12", "account": "a"})").first, KANBAN_STATUS_FAIL);
}

TEST(PluginLoader, HealthCheckAndNoopSucceed) {
    for (const char* name : {"health_check", "noop"}) {
        auto inst = create(kPlugins + "/" + name + ".so");
        ASSERT_TRUE(inst) << name;
        EXPECT_EQ(handleOne(*inst, "").first, KANBAN_STATUS_OK) << name;
    }
}

TEST(PluginLoader, RefusesAnotherAbiMajorNamingFileAndBothVersions) {
    const std::string path = kFixtures + "/abi_major_mismatch.so";
    const std::string err = loadError(path);
    EXPECT_THAT(err, HasSubstr(path));
    EXPECT_THAT(err, HasSubstr("plugin ABI 2.0 is not supported by this host (ABI 1.1)"));
}

// ABI 1.1 is additive: a plugin built against 1.0 (a shorter kanban_result)
// loads and behaves as before.
TEST(PluginLoader, APluginBuiltAgainstAbi10LoadsAndBehavesAsBefore) {
    auto lib = Library::load(kFixtures + "/abi_1_0.so");
    ASSERT_TRUE(lib.ok()) << lib.message();
    EXPECT_EQ((*lib)->name(), "abi_1_0");
    auto inst = Instance::create(*lib, "{}");
    ASSERT_TRUE(inst.ok()) << inst.message();
    const auto [ok_status, ok_reason] = handleOne(**inst, "x");
    EXPECT_EQ(ok_status, KANBAN_STATUS_OK);
    const auto [status, reason] = handleOne(**inst, "retry");
    EXPECT_EQ(status, KANBAN_STATUS_RETRY);
    EXPECT_EQ(reason, "v1");
}

TEST(PluginLoader, RefusesANewerAbiMinor) {
    const std::string err = loadError(kFixtures + "/newer_minor.so");
    EXPECT_THAT(err, HasSubstr(kFixtures + "/newer_minor.so"));
    EXPECT_THAT(err, HasSubstr("plugin ABI 1.2 is newer than this host's ABI 1.1"));
}

TEST(PluginLoader, RefusesAFileWithoutTheEntrySymbol) {
    const std::string err = loadError(kFixtures + "/missing_entry.so");
    EXPECT_THAT(err, HasSubstr(kFixtures + "/missing_entry.so: not a TPS Kanban plugin: symbol 'kanban_plugin_v1' not found"));
}

TEST(PluginLoader, RefusesFilesThatAreNotLoadableObjects) {
    EXPECT_EQ(loadError(kFixtures + "/not_elf.so"), kFixtures + "/not_elf.so: cannot load plugin: not an ELF file");
    // A truncated object would crash the host with SIGBUS inside dlopen().
    EXPECT_THAT(loadError(kFixtures + "/truncated.so"),
                HasSubstr(kFixtures + "/truncated.so: cannot load plugin: truncated or corrupt ELF file"));
    EXPECT_THAT(loadError(kFixtures + "/wrong_class.so"), HasSubstr("not a 64-bit ELF object (wrong ELF class)"));
    EXPECT_THAT(loadError(kFixtures + "/does_not_exist.so"), HasSubstr("does_not_exist.so: plugin file not found"));
}

TEST(PluginLoader, UnresolvedSymbolFailsAtLoadNotAtFirstCall) {
    const std::string err = loadError(kFixtures + "/unresolved_symbol.so");
    EXPECT_THAT(err, HasSubstr("undefined symbol: kanban_test_missing_symbol"));
    // The dlerror text names the configured file, not the private copy.
    EXPECT_THAT(err, HasSubstr(kFixtures + "/unresolved_symbol.so: cannot load plugin: " + kFixtures + "/unresolved_symbol.so"));
    EXPECT_THAT(err, Not(HasSubstr("kanband-")));
}

TEST(PluginLoader, CreateFailureCarriesThePluginsMessage) {
    auto lib = Library::load(kFixtures + "/create_fails.so");
    ASSERT_TRUE(lib.ok()) << lib.message();
    auto inst = Instance::create(*lib, R"({"a":1})");
    ASSERT_FALSE(inst.ok());
    EXPECT_THAT(inst.message(), HasSubstr(kFixtures + "/create_fails.so: create() failed: bad settings {\"a\":1}: need 'endpoint'"));
}

TEST(PluginLoader, PaymentRejectsBadSettingsAtCreate) {
    auto lib = Library::load(kPlugins + "/payment.so");
    ASSERT_TRUE(lib.ok());
    auto inst = Instance::create(*lib, R"({"currency":""})");
    ASSERT_FALSE(inst.ok());
    EXPECT_THAT(inst.message(), HasSubstr("settings.currency must not be empty"));
}

TEST(PluginLoader, ThrowingHandlerIsContainedAsRetry) {
    auto inst = create(kFixtures + "/throws.so");
    ASSERT_TRUE(inst);
    auto [s1, r1] = handleOne(*inst, "std");
    EXPECT_EQ(s1, KANBAN_STATUS_RETRY);
    EXPECT_EQ(r1, "exception: boom");
    auto [s2, r2] = handleOne(*inst, "int");
    EXPECT_EQ(s2, KANBAN_STATUS_RETRY);
    EXPECT_EQ(r2, "exception: unknown");
    EXPECT_EQ(handleOne(*inst, "fine").first, KANBAN_STATUS_OK);
}

TEST(PluginLoader, PrivateCopyProtectsAgainstInPlaceOverwrite) {
    kanban::test::TempDir dir;
    const std::string path = dir.file("payment.so");
    fs::copy_file(kPlugins + "/payment.so", path);
    auto inst = create(path);
    ASSERT_TRUE(inst);
    // `cp` over a loaded file keeps the inode and rewrites it in place: a
    // host that mapped the file itself would crash on the next call.
    kanban::test::writeFile(path, kanban::test::readFile(kPlugins + "/noop.so"));
    EXPECT_EQ(handleOne(*inst, R"({"amount": 1, "account": "a"})").first, KANBAN_STATUS_OK);
    EXPECT_EQ(handleOne(*inst, R"({"amount": -1, "account": "a"})").first, KANBAN_STATUS_FAIL);
    // Loading the path again yields the new file, side by side with the old one.
    auto reloaded = Library::load(path);
    ASSERT_TRUE(reloaded.ok());
    EXPECT_EQ((*reloaded)->name(), "noop");
    EXPECT_EQ(inst->library().name(), "payment");
}

TEST(PluginLoader, DescriptorChecks) {
    EXPECT_THAT(checkDescriptor(nullptr), HasSubstr("returned NULL"));
    kanban_plugin_descriptor d{};
    d.struct_size = 4;
    EXPECT_THAT(checkDescriptor(&d), HasSubstr("too small"));
    d.struct_size = sizeof d;
    d.abi_major = KANBAN_ABI_MAJOR;
    d.abi_minor = KANBAN_ABI_MINOR;
    EXPECT_THAT(checkDescriptor(&d), HasSubstr("no name"));
    d.name = "x";
    d.version = "1";
    EXPECT_THAT(checkDescriptor(&d), HasSubstr("lacks create, handle or destroy"));
    d.struct_size = offsetof(kanban_plugin_descriptor, destroy);
    EXPECT_THAT(checkDescriptor(&d), HasSubstr("smaller than ABI 1.1 requires"));
}

TEST(HostApi, ContextReportsDeadlineAndCancellation) {
    const kanban_host_api* api = hostApi();
    EXPECT_EQ(api->struct_size, sizeof(kanban_host_api));
    kanban_context ctx;
    ctx.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    EXPECT_GT(api->remaining_ms(&ctx), 9000);
    EXPECT_EQ(api->cancelled(&ctx), 0);
    ctx.cancelled = true;
    EXPECT_NE(api->cancelled(&ctx), 0);
    ctx.cancelled = false;
    ctx.deadline = std::chrono::steady_clock::now() - std::chrono::milliseconds(1);
    EXPECT_NE(api->cancelled(&ctx), 0);  // past the deadline counts as cancelled
    EXPECT_LT(api->remaining_ms(&ctx), 0);
    int calls = 0;
    ctx.on_progress = [](void* arg) { ++*static_cast<int*>(arg); };
    ctx.progress_arg = &calls;
    api->progress(&ctx);
    EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace kanban::host::plugin
