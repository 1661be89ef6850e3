#include "harness.hpp"

#include <httplib.h>
#include <nats/nats.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <regex>
#include <sstream>
#include <thread>

namespace kanban::test {

std::string makeConfig(const NatsServer& nats, const std::vector<DomainSpec>& domains, const HostOptions& o) {
    if (!o.nats_url.empty() || !o.nats_servers.empty()) return makeConfig(domains, o);
    HostOptions with = o;
    with.nats_url = nats.url();
    return makeConfig(domains, with);
}

std::string makeConfig(const std::vector<DomainSpec>& domains, const HostOptions& o) {
    std::string servers;
    for (const auto& u : o.nats_servers.empty() ? std::vector<std::string>{o.nats_url} : o.nats_servers)
        servers += (servers.empty() ? "\"" : ", \"") + u + "\"";
    std::string t = "[nats]\nservers = [" + servers + "]\nreplicas = " + std::to_string(o.replicas) + "\n" +
                    (o.max_msgs > 0 ? "max_msgs = " + std::to_string(o.max_msgs) + "\n" : std::string()) +
                    (o.rabbitmq_url.empty() ? "[rabbitmq]\nenabled = false\n"
                                            : "[rabbitmq]\nenabled = true\nurl = \"" + o.rabbitmq_url +
                                                  "\"\nconfirm_timeout_ms = " +
                                                  std::to_string(o.rabbitmq_confirm_timeout_ms) + "\n") +
                    "[admin]\nlisten = \"127.0.0.1:0\"\n" +
                    (o.token_file.empty() ? std::string() : "token_file = \"" + o.token_file + "\"\n") +
                    "[plugins]\ndir = \"" + kPlugins + "\"\n"
                    "[log]\nlevel = \"" + o.log_level + "\"\nformat = \"" + o.log_format + "\"\n"
                    "[workers]\npull_batch = " + std::to_string(o.pull_batch) +
                    "\nmin = " + std::to_string(o.workers) + "\nmax = " + std::to_string(o.max_workers) +
                    "\nstarvation_ms = " + std::to_string(o.starvation_ms) + "\nhosts = " + std::to_string(o.hosts) + "\n"
                    "[retry]\nmax_attempts = " + std::to_string(o.max_attempts) +
                    "\nbackoff_initial_ms = " + std::to_string(o.backoff_initial_ms) +
                    "\nbackoff_max_ms = " + std::to_string(o.backoff_max_ms) + "\n"
                    "[coordinator]\nhealth_interval_ms = " + std::to_string(o.health_interval_ms) +
                    "\ndepth_window = " + std::to_string(o.depth_window) +
                    "\nstall_threshold_ms = " + std::to_string(o.stall_threshold_ms) + "\n"
                    "[circuit_breaker]\nfailure_threshold = " + std::to_string(o.failure_threshold) +
                    "\nopen_ms = " + std::to_string(o.open_ms) + "\n";
    for (const auto& d : domains) {
        t += "[[domain]]\nname = \"" + d.name + "\"\nplugin = \"" + d.plugin + "\"\ntimeout_ms = " +
             std::to_string(d.timeout_ms) + "\n";
        if (!d.settings.empty()) t += "settings = { " + d.settings + " }\n";
        t += d.extra;
    }
    return t + o.extra_toml;
}

std::string recorderSettings(const std::string& out, int sleep_ms) {
    return "out = \"" + out + "\", sleep_ms = " + std::to_string(sleep_ms);
}

Kanband::Kanband(const TempDir& dir, const std::string& config_path, const std::string& name, const std::string& state)
    : log_(dir.file(name + ".log")),
      proc_({"/usr/bin/env", "STATE_DIRECTORY=" + (state.empty() ? dir.file(name + ".state") : state), kKanband,
             "--config", config_path},
            dir.file(name + ".out"), log_) {
    const std::regex re("admin: listening on 127\\.0\\.0\\.1:([0-9]+)");
    waitFor(
        [&] {
            std::smatch m;
            const std::string log = readFile(log_);
            if (std::regex_search(log, m, re)) port_ = std::stoi(m[1]);
            return port_ != 0 || !proc_.running();
        },
        10s);
}

int Kanband::httpStatus(const std::string& path) { return http("GET", path).status; }

Kanband::Http Kanband::http(const std::string& method, const std::string& path, const std::string& body,
                            const std::string& token) {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(2);
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    httplib::Result r = method == "GET"    ? c.Get(path.c_str(), headers)
                        : method == "POST" ? c.Post(path.c_str(), headers, body, "application/json")
                        : method == "PUT"  ? c.Put(path.c_str(), headers, body, "application/json")
                                           : c.Delete(path.c_str(), headers);
    if (!r) return {};
    return {r->status, r->body};
}

std::optional<double> metric(const std::string& scrape, const std::string& sample) {
    std::istringstream in(scrape);
    for (std::string line; std::getline(in, line);)
        if (line.size() > sample.size() && line.compare(0, sample.size(), sample) == 0 && line[sample.size()] == ' ')
            return std::stod(line.substr(sample.size() + 1));
    return std::nullopt;
}

bool Kanband::waitReady() {
    return port_ != 0 && waitFor([&] { return httpStatus("/readyz") == 200; }, 15s);
}

std::vector<std::string> publish(const std::string& config, const std::string& domain, const std::string& priority,
                                 int count, const std::string& payload) {
    auto r = runCommand({kKanbanctl, "--config", config, "publish", "--domain", domain, "--priority", priority,
                         "--payload", payload, "--count", std::to_string(count)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> ids;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) ids.push_back(line);
    return ids;
}

bool allHandled(const std::string& out, const std::vector<std::string>& ids) {
    const auto n = okCounts(readCalls(out));
    return std::all_of(ids.begin(), ids.end(), [&](const std::string& id) { return n.count(id) != 0; });
}

std::int64_t epochUs() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::int64_t epochMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::vector<Call> readCalls(const std::string& path) {
    std::vector<Call> calls;
    for (const auto& line : readLines(path)) {
        std::istringstream f(line);
        Call c;
        std::string headers_hex;
        f >> c.id >> c.priority >> c.attempt >> c.outcome >> c.tid >> c.epoch_us >> c.payload_hex >> c.version >> headers_hex;
        std::istringstream hs(fromHex(headers_hex));
        for (std::string h; std::getline(hs, h);)
            if (auto eq = h.find('='); eq != std::string::npos) c.headers.emplace(h.substr(0, eq), h.substr(eq + 1));
        calls.push_back(c);
    }
    return calls;
}

std::vector<Call> callsFor(const std::vector<Call>& calls, const std::string& id) {
    std::vector<Call> out;
    for (const auto& c : calls)
        if (c.id == id) out.push_back(c);
    return out;
}

std::map<std::string, int> okCounts(const std::vector<Call>& calls) {
    std::map<std::string, int> n;
    for (const auto& c : calls)
        if (c.outcome == "ok") ++n[c.id];
    return n;
}

std::string fromHex(const std::string& hex) {
    if (hex == "-" || hex.size() % 2 != 0) return "";
    std::string out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    return out;
}

std::string toHex(const std::string& bytes) {
    if (bytes.empty()) return "-";
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += kDigits[c >> 4];
        out += kDigits[c & 0xf];
    }
    return out;
}

NatsProbe::NatsProbe(const std::string& url) {
    natsOptions* o = nullptr;
    natsOptions_Create(&o);
    std::vector<std::string> urls;  // one URL or a comma-separated list
    for (std::size_t from = 0, comma = 0; from <= url.size(); from = comma + 1) {
        comma = std::min(url.find(',', from), url.size());
        urls.push_back(url.substr(from, comma - from));
    }
    std::vector<const char*> servers;
    for (const auto& u : urls) servers.push_back(u.c_str());
    natsOptions_SetServers(o, servers.data(), static_cast<int>(servers.size()));
    natsOptions_SetSendAsap(o, true);    // else every write waits up to 1 ms (docs/dependencies.md §10)
    const natsStatus s = natsConnection_Connect(&nc_, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) throw std::runtime_error("probe: cannot connect to " + url);
    if (natsConnection_JetStream(&js_, nc_, nullptr) != NATS_OK) throw std::runtime_error("probe: no JetStream context");
}

NatsProbe::~NatsProbe() {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
}

std::optional<bool> NatsProbe::publish(const std::string& subject, const std::string& body,
                                       const std::map<std::string, std::string>& headers) {
    natsMsg* m = nullptr;
    if (natsMsg_Create(&m, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size())) != NATS_OK)
        return std::nullopt;
    for (const auto& [k, v] : headers) natsMsgHeader_Set(m, k.c_str(), v.c_str());
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s = js_PublishMsg(&pa, js_, m, nullptr, &jerr);
    natsMsg_Destroy(m);
    if (s != NATS_OK) return std::nullopt;
    const bool duplicate = pa->Duplicate;
    jsPubAck_Destroy(pa);
    return duplicate;
}

std::optional<std::uint64_t> NatsProbe::streamMsgs(const std::string& stream) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &jerr) != NATS_OK)
        return jerr == JSStreamNotFoundErr ? std::optional<std::uint64_t>(0) : std::nullopt;  // none: it stores nothing
    const std::uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

bool NatsProbe::purge(const std::string& stream) { return js_PurgeStream(js_, stream.c_str(), nullptr, nullptr) == NATS_OK; }

bool NatsProbe::publishBacklog(const std::string& subject, int count, std::size_t bytes, const std::string& prefix,
                               double per_second, std::vector<std::int64_t>* sent_us) {
    const std::string body(bytes, 'x');
    if (sent_us != nullptr) sent_us->assign(static_cast<std::size_t>(count), 0);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < count; ++i) {
        if (per_second > 0)
            std::this_thread::sleep_until(t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                   std::chrono::duration<double>(i / per_second)));
        natsMsg* m = nullptr;
        if (natsMsg_Create(&m, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size())) != NATS_OK) return false;
        natsMsgHeader_Set(m, "Nats-Msg-Id", (prefix + "-" + std::to_string(i)).c_str());
        if (sent_us != nullptr) (*sent_us)[static_cast<std::size_t>(i)] = epochUs();
        if (js_PublishMsgAsync(js_, &m, nullptr) != NATS_OK) {
            natsMsg_Destroy(m);
            return false;
        }
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    return js_PublishAsyncComplete(js_, &po) == NATS_OK;
}

JsApiWatch::JsApiWatch(const std::string& url) {
    if (natsConnection_ConnectTo(&nc_, url.c_str()) != NATS_OK) throw std::runtime_error("watch: cannot connect to " + url);
    if (natsConnection_Subscribe(&sub_, nc_, "$JS.API.>", &JsApiWatch::onMsg, this) != NATS_OK ||
        natsConnection_Flush(nc_) != NATS_OK)
        throw std::runtime_error("watch: cannot subscribe to $JS.API.>");
}

JsApiWatch::~JsApiWatch() {
    // Closing the connection first stops deliveries before the subscription goes.
    natsConnection_Close(nc_);
    natsSubscription_Destroy(sub_);
    natsConnection_Destroy(nc_);
}

void JsApiWatch::onMsg(natsConnection*, natsSubscription*, natsMsg* msg, void* self) {
    auto* w = static_cast<JsApiWatch*>(self);
    {
        std::lock_guard lock(w->mu_);
        w->last_ = natsMsg_GetSubject(msg);
    }
    ++w->count_;
    natsMsg_Destroy(msg);
}

std::string JsApiWatch::lastSubject() const {
    std::lock_guard lock(mu_);
    return last_;
}

std::optional<std::string> NatsProbe::streamLeader(const std::string& stream) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &jerr) != NATS_OK) return std::nullopt;
    std::optional<std::string> leader;
    if (si->Cluster != nullptr && si->Cluster->Leader != nullptr && *si->Cluster->Leader != '\0')
        leader = si->Cluster->Leader;
    jsStreamInfo_Destroy(si);
    return leader;
}

std::vector<std::string> NatsProbe::streamReplicas(const std::string& stream) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    std::vector<std::string> out;
    if (js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &jerr) != NATS_OK) return out;
    if (si->Cluster != nullptr)
        for (int i = 0; i < si->Cluster->ReplicasLen; ++i) out.emplace_back(si->Cluster->Replicas[i]->Name);
    jsStreamInfo_Destroy(si);
    return out;
}

std::optional<NatsProbe::ConsumerState> NatsProbe::consumer(const std::string& durable, const std::string& stream) {
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_GetConsumerInfo(&ci, js_, stream.c_str(), durable.c_str(), nullptr, &jerr) != NATS_OK) return std::nullopt;
    ConsumerState st{static_cast<std::uint64_t>(ci->NumAckPending), ci->Config->MaxAckPending};
    jsConsumerInfo_Destroy(ci);
    return st;
}

std::vector<NatsProbe::StoredMsg> NatsProbe::deadLetters(const std::string& domain) {
    std::vector<StoredMsg> out;
    const std::string subject = "kanban.dlq." + domain;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_GetStreamInfo(&si, js_, "KANBAN_DLQ", nullptr, &jerr) != NATS_OK) return out;
    const std::uint64_t first = si->State.FirstSeq, last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    for (std::uint64_t seq = first; seq != 0 && seq <= last; ++seq) {
        natsMsg* m = nullptr;
        if (js_GetMsg(&m, js_, "KANBAN_DLQ", seq, nullptr, &jerr) != NATS_OK) continue;
        if (subject == natsMsg_GetSubject(m)) {
            StoredMsg sm{natsMsg_GetSubject(m), std::string(natsMsg_GetData(m), natsMsg_GetDataLength(m)), {}};
            const char** keys = nullptr;
            int n = 0;
            if (natsMsgHeader_Keys(m, &keys, &n) == NATS_OK) {
                for (int i = 0; i < n; ++i) {
                    const char* v = nullptr;
                    if (natsMsgHeader_Get(m, keys[i], &v) == NATS_OK) sm.headers[keys[i]] = v;
                }
                free(keys);
            }
            out.push_back(std::move(sm));
        }
        natsMsg_Destroy(m);
    }
    return out;
}

bool NatsProbe::setDuplicateWindow(std::int64_t ms) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_GetStreamInfo(&si, js_, "KANBAN", nullptr, &jerr) != NATS_OK) return false;
    si->Config->Duplicates = ms * 1'000'000;
    const bool ok = js_UpdateStream(nullptr, js_, si->Config, nullptr, &jerr) == NATS_OK;
    jsStreamInfo_Destroy(si);
    return ok;
}

CommandResult kanbanctl(const std::string& config, const Kanband& kd, const std::vector<std::string>& args) {
    std::vector<std::string> argv{kKanbanctl, "--config", config, "--admin", kd.admin()};
    argv.insert(argv.end(), args.begin(), args.end());
    return runCommand(argv);
}

}  // namespace kanban::test
