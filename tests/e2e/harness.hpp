// What the end-to-end tests share: a config writer, a running kanband, the
// kanbanctl publish helper, the recorder fixture's log, and a direct cnats
// view of the broker (to inject raw messages and read what is stored).
#pragma once

#include "support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

struct __natsConnection;
struct __natsSubscription;
struct __natsMsg;
struct __jsCtx;

namespace kanban::test {

inline const std::string kKanband = KANBAND_PATH;
inline const std::string kKanbanctl = KANBANCTL_PATH;
inline const std::string kPlugins = KANBAN_PLUGIN_DIR;
inline const std::string kFixtures = KANBAN_FIXTURE_DIR;

struct DomainSpec {
    std::string name;
    std::string plugin;    // path
    std::string settings;  // TOML inline table body, e.g. out = "/x"
    std::int64_t timeout_ms = 10000;
    std::string extra = "";  // more lines of the [[domain]] table, e.g. isolation = "process"\n
};

struct HostOptions {
    int workers = 2;
    int max_workers = 20;
    int pull_batch = 10;
    std::int64_t starvation_ms = 30000;
    int hosts = 1;  // workers.hosts
    int max_attempts = 5;
    std::int64_t backoff_initial_ms = 100;
    std::int64_t backoff_max_ms = 30000;
    // Quiet by default: tests about the coordinator or the breaker set these.
    std::int64_t health_interval_ms = 60000;
    std::int64_t failure_threshold = 1000;
    std::int64_t open_ms = 30000;
    int depth_window = 10;
    std::int64_t stall_threshold_ms = 300000;
    std::string token_file;  // admin.token_file (empty: none)
    std::string rabbitmq_url;  // empty: rabbitmq.enabled = false
    std::int64_t rabbitmq_confirm_timeout_ms = 5000;
    std::string nats_url;      // instead of the test's nats-server (e.g. one where nothing listens)
    std::vector<std::string> nats_servers;  // instead of both: a cluster's nodes
    int replicas = 1;                       // nats.replicas
    std::int64_t max_msgs = 0;              // nats.max_msgs (0: the default)
    std::string log_level = "info";
    std::string log_format = "text";
    std::string extra_toml;    // appended as is ([scheduler], [[schedule]] tables)
};

std::string makeConfig(const NatsServer& nats, const std::vector<DomainSpec>& domains, const HostOptions& o = {});
std::string makeConfig(const std::vector<DomainSpec>& domains, const HostOptions& o);  // o.nats_servers or o.nats_url
inline std::string makeConfig(const NatsServer& nats, const std::vector<DomainSpec>& domains, int workers) {
    HostOptions o;
    o.workers = workers;
    return makeConfig(nats, domains, o);
}
// settings for the recorder fixture writing to `out`.
std::string recorderSettings(const std::string& out, int sleep_ms = 0);

// A running kanband; learns its admin port from its log.
class Kanband {
public:
    // Its state directory (STATE_DIRECTORY) is `state`, or <name>.state in
    // `dir`: a host started again under the same name finds its journal.
    Kanband(const TempDir& dir, const std::string& config_path, const std::string& name = "kanband",
            const std::string& state = "");
    int port() const { return port_; }
    int httpStatus(const std::string& path);
    struct Http {
        int status = -1;  // -1: no answer
        std::string body;
    };
    Http http(const std::string& method, const std::string& path, const std::string& body = "",
              const std::string& token = "");
    std::string admin() const { return "127.0.0.1:" + std::to_string(port_); }
    bool waitReady();
    std::string log() const { return readFile(log_); }
    bool logHas(const std::string& text) const { return log().find(text) != std::string::npos; }
    Subprocess& proc() { return proc_; }

private:
    std::string log_;
    Subprocess proc_;
    int port_ = 0;
};

// kanbanctl --config <config> --admin <kd's address> <args...>.
CommandResult kanbanctl(const std::string& config, const Kanband& kd, const std::vector<std::string>& args);

// kanbanctl publish --count N; the printed ids.
std::vector<std::string> publish(const std::string& config, const std::string& domain, const std::string& priority,
                                 int count, const std::string& payload = "{}");

// The value of one sample in a Prometheus text scrape, e.g.
// metric(text, R"(kanban_items_acked_total{domain="a"})"); nullopt if absent.
std::optional<double> metric(const std::string& scrape, const std::string& sample);

// One handle() call as logged by the recorder fixture.
struct Call {
    std::string id, priority;
    int attempt = 0;
    std::string outcome;  // ok, retry, fail
    long tid = 0;
    std::int64_t epoch_us = 0;
    std::string payload_hex;  // "-" when empty
    std::string version;      // of the recorder plugin that ran it
    std::map<std::string, std::string> headers;  // what the handler saw (first value of each)
};
std::vector<Call> readCalls(const std::string& path);
std::vector<Call> callsFor(const std::vector<Call>& calls, const std::string& id);
// How many times each id was handled with outcome ok.
std::map<std::string, int> okCounts(const std::vector<Call>& calls);
std::string toHex(const std::string& bytes);
std::string fromHex(const std::string& hex);  // "" for "-"
// Every id in `ids` was handled with outcome ok (per the recorder's log).
bool allHandled(const std::string& out, const std::vector<std::string>& ids);
std::int64_t epochMs();
std::int64_t epochUs();

// Direct access to the broker, bypassing kanband and kanbanctl.
class NatsProbe {
public:
    explicit NatsProbe(const std::string& url);
    ~NatsProbe();
    NatsProbe(const NatsProbe&) = delete;
    NatsProbe& operator=(const NatsProbe&) = delete;

    struct StoredMsg {
        std::string subject, body;
        std::map<std::string, std::string> headers;
    };
    // JetStream publish with arbitrary headers (no Nats-Msg-Id unless given):
    // nullopt on error, else whether the stream reported a duplicate.
    std::optional<bool> publish(const std::string& subject, const std::string& body, const std::map<std::string, std::string>& headers);
    // Messages stored in `stream`: 0 when there is no such stream, nullopt
    // when the server cannot say.
    std::optional<std::uint64_t> streamMsgs(const std::string& stream);
    bool purge(const std::string& stream);  // removes every message
    struct ConsumerState {
        std::uint64_t ack_pending = 0;  // delivered, not yet acked
        std::int64_t max_ack_pending = 0;
    };
    std::optional<ConsumerState> consumer(const std::string& durable, const std::string& stream = "KANBAN");  // nullopt on error
    // The dead-lettered copies for a domain, oldest first.
    std::vector<StoredMsg> deadLetters(const std::string& domain);
    // The server_name of the work stream's leader, and of its replicas
    // (nullopt when the stream has no leader or cannot be read).
    std::optional<std::string> streamLeader(const std::string& stream = "KANBAN");
    std::vector<std::string> streamReplicas(const std::string& stream = "KANBAN");
    // Shrinks the work stream's duplicate window (to test what happens after it).
    bool setDuplicateWindow(std::int64_t ms);
    // `count` items of `bytes` bytes to `subject` (e.g. kanban.normal.<domain>),
    // published asynchronously (ids <prefix>-<n>); true once all are acknowledged.
    // At `per_second` (0: as fast as it goes); `sent_us` gets each item's
    // send time (epoch µs).
    bool publishBacklog(const std::string& subject, int count, std::size_t bytes, const std::string& prefix,
                        double per_second = 0, std::vector<std::int64_t>* sent_us = nullptr);

private:
    __natsConnection* nc_ = nullptr;
    __jsCtx* js_ = nullptr;
};

// Counts the JetStream API requests anyone sends to the server (a plain
// subscription to $JS.API.>): what the hosts ask of the broker.
class JsApiWatch {
public:
    explicit JsApiWatch(const std::string& url);
    ~JsApiWatch();
    JsApiWatch(const JsApiWatch&) = delete;
    JsApiWatch& operator=(const JsApiWatch&) = delete;
    std::uint64_t count() const { return count_.load(); }
    std::string lastSubject() const;

private:
    static void onMsg(__natsConnection*, __natsSubscription*, __natsMsg* msg, void* self);
    __natsConnection* nc_ = nullptr;
    __natsSubscription* sub_ = nullptr;
    std::atomic<std::uint64_t> count_{0};
    mutable std::mutex mu_;
    std::string last_;
};

// Each test: its own nats-server, temporary directory and kanband.
class DaemonTest : public ::testing::Test {
protected:
    void writeConfig(const std::vector<DomainSpec>& domains, const HostOptions& o = {}) {
        writeFile(cfg, makeConfig(nats, domains, o));
    }
    void writeConfig(const std::vector<DomainSpec>& domains, int workers) {
        HostOptions o;
        o.workers = workers;
        writeConfig(domains, o);
    }
    // Writes the config and starts kanband with it.
    template <typename... Args>
    Kanband& start(const std::vector<DomainSpec>& domains, Args&&... options) {
        writeConfig(domains, std::forward<Args>(options)...);
        return kd_.emplace(dir, cfg);
    }

    NatsServer nats;
    TempDir dir;
    const std::string out = dir.file("calls.txt");  // the recorder's calls
    const std::string cfg = dir.file("kanban.toml");

private:
    std::optional<Kanband> kd_;
};

// A DaemonTest that also has RabbitMQ: a vhost of its own on the broker the
// CTest fixture started for this run.
class RabbitDaemonTest : public DaemonTest {
protected:
    void SetUp() override {
        auto shared = sharedRabbit();
        ASSERT_TRUE(shared) << "run through ctest: the rabbitmq fixture provides the broker";
        rabbit = *shared;
    }

    SharedRabbit rabbit;
};

}  // namespace kanban::test
