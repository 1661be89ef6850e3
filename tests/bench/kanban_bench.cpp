// kanban_bench: end-to-end throughput of kanband against the raw cnats
// loops doing the same broker work, in one run on the same nats-server
// (issue 10, items 1 and 2). Not a test: it measures and prints a Markdown
// table; `--smoke` runs a small size and fails only if an item is missing.
//
//   kanban_bench [--items N] [--out FILE] [--smoke]
//
// Every row handles N items of 256 bytes, published beforehand (a backlog)
// or while the consumer runs (concurrently):
//   raw fetch+ack      Fetch(batch) then natsMsg_Ack each (SendAsap on)
//   raw same work      Fetch(batch), look the batch up in a KV bucket
//                      (pipelined direct gets), record each id with
//                      js_PublishAsync and wait for the acks, then ack:
//                      what kanband does per batch, without the host
//   kanband            the real daemon, noop plugin, every guarantee on
//                      (idempotency lookup and record, deadlines), with
//                      pull_batch and workers as given.
#include "harness.hpp"

#include <nats/nats.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace kanban::test;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t kPayload = 256;

struct Row {
    std::string mode;  // backlog or concurrent
    std::string what;
    int batch = 0, workers = 0;
    double rate = 0;  // items/s; 0 when the items did not all arrive
};

double secondsSince(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One cnats connection as kanband makes it (SendAsap: dependencies.md §10).
class RawClient {
public:
    explicit RawClient(const std::string& url) {
        natsOptions* o = nullptr;
        natsOptions_Create(&o);
        natsOptions_SetURL(o, url.c_str());
        natsOptions_SetSendAsap(o, true);
        if (natsConnection_Connect(&nc_, o) != NATS_OK) throw std::runtime_error("raw: cannot connect to " + url);
        natsOptions_Destroy(o);
        if (natsConnection_JetStream(&js_, nc_, nullptr) != NATS_OK) throw std::runtime_error("raw: no JetStream");
    }
    ~RawClient() {
        jsCtx_Destroy(js_);
        natsConnection_Destroy(nc_);
    }
    natsConnection* nc() const { return nc_; }
    jsCtx* js() const { return js_; }

    // A work-queue stream `name` on `name.*`, and a KV-like bucket stream
    // `KV_<name>_DONE` (what the done record is), both emptied.
    void declare(const std::string& name) {
        for (const std::string& stream : {name, "KV_" + name + "_DONE"}) js_DeleteStream(js_, stream.c_str(), nullptr, nullptr);
        const std::string subject = name + ".*";
        const char* subjects[] = {subject.c_str()};
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        sc.Name = name.c_str();
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Retention = js_WorkQueuePolicy;
        sc.Storage = js_FileStorage;
        if (js_AddStream(nullptr, js_, &sc, nullptr, nullptr) != NATS_OK) throw std::runtime_error("raw: stream");
        kvConfig kc;
        kvConfig_Init(&kc);
        const std::string bucket = name + "_DONE";
        kc.Bucket = bucket.c_str();
        kc.History = 1;
        kvStore* kv = nullptr;
        if (js_CreateKeyValue(&kv, js_, &kc) != NATS_OK) throw std::runtime_error("raw: bucket");
        kvStore_Destroy(kv);
        // Direct get, as kanband's bucket has it.
        jsStreamInfo* si = nullptr;
        if (js_GetStreamInfo(&si, js_, ("KV_" + bucket).c_str(), nullptr, nullptr) == NATS_OK) {
            si->Config->AllowDirect = true;
            js_UpdateStream(nullptr, js_, si->Config, nullptr, nullptr);
            jsStreamInfo_Destroy(si);
        }
    }

private:
    natsConnection* nc_ = nullptr;
    jsCtx* js_ = nullptr;
};

// Drains `n` items from stream `name`; with `same_work`, also the lookup and
// the record per batch. Items/s, or 0 if not all arrived.
double rawDrain(const std::string& url, int n, int batch, bool same_work, bool concurrent) {
    RawClient c(url);
    const std::string name = same_work ? "RAWWORK" : "RAWBARE";
    c.declare(name);
    NatsProbe pub(url);
    const auto backlog = [&] {
        if (!pub.publishBacklog(name + ".bench", n, kPayload, "raw"))
            throw std::runtime_error("raw: backlog not acknowledged");
    };
    std::thread publisher;
    if (concurrent)
        publisher = std::thread(backlog);
    else
        backlog();

    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.MaxAckPending = batch * 4;
    natsSubscription* sub = nullptr;
    if (js_PullSubscribe(&sub, c.js(), (name + ".*").c_str(), "bench", nullptr, &so, nullptr) != NATS_OK)
        throw std::runtime_error("raw: pull subscribe");
    natsSubscription* replies = nullptr;
    char inbox[128];
    snprintf(inbox, sizeof inbox, "_INBOX.bench.%s", name.c_str());
    natsConnection_SubscribeSync(&replies, c.nc(), (std::string(inbox) + ".>").c_str());
    const std::string direct = "$JS.API.DIRECT.GET.KV_" + name + "_DONE";
    const std::string key_prefix = "$KV." + name + "_DONE.";

    int got = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (got < n && secondsSince(t0) < 120) {
        natsMsgList list{};
        if (natsSubscription_Fetch(&list, sub, batch, 1000, nullptr) != NATS_OK) continue;
        if (same_work) {
            // The batch's lookups, pipelined: one round trip.
            for (int i = 0; i < list.Count; ++i) {
                const char* mid = nullptr;
                natsMsgHeader_Get(list.Msgs[i], "Nats-Msg-Id", &mid);
                const std::string body = R"({"last_by_subj":")" + key_prefix + (mid ? mid : "none") + R"("})";
                natsConnection_PublishRequest(c.nc(), direct.c_str(), (std::string(inbox) + "." + std::to_string(i)).c_str(),
                                              body.data(), static_cast<int>(body.size()));
            }
            for (int i = 0; i < list.Count; ++i) {
                natsMsg* r = nullptr;
                if (natsSubscription_NextMsg(&r, replies, 2000) == NATS_OK) natsMsg_Destroy(r);
            }
            // The records, pipelined, then the acks.
            for (int i = 0; i < list.Count; ++i) {
                const char* mid = nullptr;
                natsMsgHeader_Get(list.Msgs[i], "Nats-Msg-Id", &mid);
                js_PublishAsync(c.js(), (key_prefix + (mid ? mid : "none")).c_str(), "done", 4, nullptr);
            }
            js_PublishAsyncComplete(c.js(), nullptr);
        }
        for (int i = 0; i < list.Count; ++i) natsMsg_Ack(list.Msgs[i], nullptr);
        got += list.Count;
        natsMsgList_Destroy(&list);
    }
    const double seconds = secondsSince(t0);
    if (publisher.joinable()) publisher.join();
    natsSubscription_Destroy(replies);
    natsSubscription_Destroy(sub);
    return got >= n ? n / seconds : 0;
}

// kanband with the noop plugin handles `n` items: published before it
// starts (a backlog), or while it runs (concurrent).
double kanbandDrain(const NatsServer& nats, const TempDir& dir, int n, int batch, int workers, bool concurrent, int run) {
    const std::string domain = "bench" + std::to_string(run);
    HostOptions o;
    o.workers = workers;
    o.max_workers = workers;
    o.pull_batch = batch;
    const std::string cfg = dir.file("bench-" + std::to_string(run) + ".toml");
    writeFile(cfg, makeConfig(nats, {{domain, kPlugins + "/noop.so", ""}}, o));
    NatsProbe probe(nats.url());
    // The streams exist once a kanbanctl publish declared them.
    if (publish(cfg, domain, "normal", 1).size() != 1) throw std::runtime_error("kanbanctl publish failed");
    const auto backlog = [&] {
        if (!probe.publishBacklog("kanban.normal." + domain, n - 1, kPayload, "b" + std::to_string(run)))
            throw std::runtime_error("backlog not acknowledged");
    };
    if (!concurrent) backlog();
    Kanband kd(dir, cfg, "kanband-" + std::to_string(run));
    if (concurrent && !kd.waitReady()) throw std::runtime_error("kanband not ready: " + kd.log());
    const auto t0 = std::chrono::steady_clock::now();
    if (concurrent) backlog();  // the workers take items while they are published
    const std::string sample = R"(kanban_items_processed_total{domain=")" + domain + R"(",outcome="ok"})";
    // Polled every 25 ms: a scrape costs kanband CPU, and 2 cores are shared
    // with nats-server (25 ms is under 1% of a run of several seconds).
    const bool done = waitFor([&] { return metric(kd.http("GET", "/metrics").body, sample).value_or(0) >= n; }, 120s, 25ms);
    const double seconds = secondsSince(t0);
    kd.proc().signal(SIGTERM);
    kd.proc().wait(20s);
    return done ? n / seconds : 0;
}

std::string table(const std::vector<Row>& rows, double bare100, double same100) {
    std::ostringstream t;
    t << "| loop | batch | workers | items/s | vs raw same work (batch 100) | vs raw fetch+ack (batch 100) |\n"
      << "| --- | ---: | ---: | ---: | ---: | ---: |\n";
    for (const Row& r : rows) {
        char line[256];
        snprintf(line, sizeof line, "| %s | %d | %d | %.0f | %.2f | %.2f |\n", r.what.c_str(), r.batch, r.workers, r.rate,
                 same100 > 0 ? r.rate / same100 : 0, bare100 > 0 ? r.rate / bare100 : 0);
        t << line;
    }
    return t.str();
}

}  // namespace

int main(int argc, char** argv) {
    int items = 100000;
    std::string out;
    bool smoke = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--items" && i + 1 < argc) items = std::stoi(argv[++i]);
        else if (a == "--out" && i + 1 < argc) out = argv[++i];
        else if (a == "--smoke") smoke = true;
        else {
            std::cerr << "usage: kanban_bench [--items N] [--out FILE] [--smoke]\n";
            return 64;
        }
    }
    if (smoke) items = 2000;

    NatsServer nats;
    TempDir dir;
    std::string md;
    std::vector<Row> all;
    int run = 0;
    for (const bool concurrent : {false, true}) {
        const std::string mode = concurrent ? "concurrent" : "backlog";
        std::vector<Row> rows;
        for (int batch : {10, 100}) {
            rows.push_back({mode, "raw fetch+ack", batch, 1, rawDrain(nats.url(), items, batch, false, concurrent)});
            rows.push_back({mode, "raw same work", batch, 1, rawDrain(nats.url(), items, batch, true, concurrent)});
        }
        for (int batch : {10, 100})
            for (int workers : smoke ? std::vector<int>{2} : std::vector<int>{1, 2, 4})
                rows.push_back({mode, "kanband", batch, workers, kanbandDrain(nats, dir, items, batch, workers, concurrent, ++run)});
        double bare100 = 0, same100 = 0;
        for (const Row& r : rows) {
            if (r.what == "raw fetch+ack" && r.batch == 100) bare100 = r.rate;
            if (r.what == "raw same work" && r.batch == 100) same100 = r.rate;
        }
        md += std::string(concurrent ? "### Publisher and workers concurrently" : "### Drain a backlog") + ": " +
              std::to_string(items) + " items of 256 bytes, one nats-server, this machine\n\n" +
              table(rows, bare100, same100) + "\n";
        all.insert(all.end(), rows.begin(), rows.end());
    }
    std::cout << md;
    if (!out.empty()) std::ofstream(out) << md;
    for (const Row& r : all)
        if (r.rate <= 0) {
            std::cerr << "kanban_bench: " << r.mode << " " << r.what << " batch " << r.batch << " workers " << r.workers
                      << " did not finish its items\n";
            return 1;
        }
    return 0;
}
