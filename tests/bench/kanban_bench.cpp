// kanban_bench: kanband measured against the raw client loops and Celery,
// in one run on brokers it starts itself (issue 10). Not a test: it prints
// Markdown tables and draws a PNG; `--smoke` runs small sizes and fails
// only if an item is missing or a step breaks.
//
//   kanban_bench [--items N] [--out FILE.md] [--plot FILE.png] [--smoke]
//                [--idle-seconds S] [--latency-seconds S] [--celery-tasks N]
//                [--only nats,rabbitmq,latency,idle,growth,isolation,tracing]
//
// Sections (items of 256 bytes; every kanband run uses the noop plugin with
// every guarantee on: idempotency lookup and record, deadlines):
//   1. NATS, drain a backlog / publisher and workers concurrently: kanband
//      with pull_batch 10 and 100 and 1, 2, 4 workers, against the raw
//      cnats loops (raw_loops.hpp): bare Fetch + ack, and the same broker
//      work as kanband (lookup, record, ack) without the host.
//   2. RabbitMQ: kanband consuming from RabbitMQ (NATS down, the fallback
//      path), against a raw rabbitmq-c consume + ack loop (prefetch 100),
//      and Celery 5 (celery_bench.py) on the same broker.
//   3. Latency publish → handler at a fixed 5,000 items/s.
//   4. Memory and idle cost: peak RSS in the backlog runs; CPU of an idle
//      kanband with 100 domains.
//   5. How cost grows: 1, 10 and 100 domains; 1 and 2 hosts.
//   6. Handler isolation: the same backlog drained with isolation =
//      "thread" and "process" (runner processes), and a runner's RSS.
//   7. Tracing: the same backlog with [tracing] off, exporting to a dead
//      endpoint, and to a live OTLP receiver.
// Then the issue's targets with the figures of this run.
#include "harness.hpp"
#include "raw_loops.hpp"

#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace kanban::test;
using namespace kanban::bench;
using namespace std::chrono_literals;

namespace {

const std::string kBenchDir = KANBAN_SOURCE_DIR "/tests/bench";

struct Options {
    int items = 100000;
    int celery_tasks = 20000;
    int idle_seconds = 30;
    double latency_seconds = 10;
    double latency_rate = 5000;
    std::string out, plot;
    bool smoke = false;
    std::string only;  // comma-separated sections; empty: all (and the targets and the plot)
    bool runs(const std::string& section) const {
        return only.empty() || ("," + only + ",").find("," + section + ",") != std::string::npos;
    }
};

std::string fmt(const char* f, double v) {
    char b[64];
    snprintf(b, sizeof b, f, v);
    return b;
}

double secondsSince(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void progress(const std::string& what) { std::cerr << "kanban_bench: " << what << std::endl; }

// A field of /proc/<pid>/status in MiB (VmHWM: peak RSS, VmRSS: now).
double statusMiB(pid_t pid, const std::string& field, const std::string& file = "status") {
    std::istringstream in(readFile("/proc/" + std::to_string(pid) + "/" + file));
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;  // kB
    return -1;
}

struct Row {
    std::string what;
    int batch = 0, workers = 0, domains = 1, hosts = 1;
    double rate = 0;      // items/s; 0 when the items did not all arrive
    double rss_mib = -1;  // kanband's peak RSS (per host), when measured
    double runner_rss_mib = -1;  // isolation = "process": the largest runner's RSS at the end
    double runner_pss_mib = -1;  // and its proportional set size (shared pages divided among their users)
    double spans_exported = 0, spans_dropped = 0;  // [tracing]: kanban_spans_*_total at the end
};

struct Latency {
    std::string what;
    std::vector<double> ms;  // sorted
    double at(double q) const { return ms.empty() ? 0 : ms[std::min(ms.size() - 1, static_cast<std::size_t>(q * ms.size()))]; }
};

class Bench {
public:
    explicit Bench(Options o) : o_(std::move(o)) {}

    int run();

private:
    // kanband draining `n` items spread over `domains`; see Row.
    // `extra`: more lines of each [[domain]] table (isolation).
    // `top_extra`: more top-level TOML ([tracing]).
    Row kanbandNats(const std::string& what, int n, int batch, int workers, int domains, int hosts, bool concurrent,
                    const std::string& extra = "", const std::string& top_extra = "");
    Row kanbandRabbit(int n, int batch, int workers);
    void natsThroughput(bool concurrent);
    void rabbitThroughput();
    void latency();
    void idle();
    void growth();
    void isolation();
    void tracing();
    void targets();
    void plot();
    bool waitDrained(NatsProbe& probe, const bool& published);

    std::string newDomain() { return "bench" + std::to_string(++run_); }
    // Every kanband run starts from an empty idempotency bucket, as the raw
    // loops do (records of earlier runs would make its lookups slower).
    void freshBucket() {
        NatsProbe(nats_.url()).purge("KV_KANBAN_DONE");  // absent before the first run: nothing to do
    }
    std::string config(const std::vector<std::string>& domains, HostOptions o, const std::string& plugin = "",
                       const std::string& settings = "", const std::string& extra = "") {
        std::vector<DomainSpec> specs;
        for (const auto& d : domains)
            specs.push_back({d, plugin.empty() ? kPlugins + "/noop.so" : plugin, settings, 10000, extra});
        const std::string path = dir_.file("bench-" + std::to_string(++run_) + ".toml");
        writeFile(path, o.nats_url.empty() && o.nats_servers.empty() ? makeConfig(nats_, specs, o) : makeConfig(specs, o));
        return path;
    }
    static HostOptions hostOptions(int batch, int workers, int hosts = 1) {
        HostOptions o;
        o.pull_batch = batch;
        o.workers = workers;
        o.max_workers = workers;
        o.hosts = hosts;
        return o;
    }
    void section(const std::string& title, const std::string& text) { md_ += "### " + title + "\n\n" + text + "\n"; }
    const Row* find(const std::vector<Row>& rows, const std::string& what, int batch, int workers = 0) const {
        for (const Row& r : rows)
            if (r.what == what && r.batch == batch && (workers == 0 || r.workers == workers)) return &r;
        return nullptr;
    }

    Options o_;
    NatsServer nats_;
    TempDir dir_;
    std::optional<RabbitServer> rabbit_;
    int run_ = 0;
    std::string md_;
    std::vector<Row> backlog_, concurrent_, rabbit_rows_, growth_rows_, isolation_rows_, tracing_rows_;
    double celery_ = 0;
    std::vector<Latency> latency_;
    double idle_cpu_ = -1, idle_rss_ = -1;
    std::vector<std::string> failures_;
};

std::string throughputTable(const std::vector<Row>& rows, const std::vector<std::pair<std::string, double>>& anchors) {
    std::ostringstream t;
    t << "| loop | batch | workers | items/s |";
    for (const auto& a : anchors) t << " vs " << a.first << " |";
    t << " kanband peak RSS |\n| --- | ---: | ---: | ---: |";
    for (std::size_t i = 0; i < anchors.size(); ++i) t << " ---: |";
    t << " ---: |\n";
    for (const Row& r : rows) {
        t << "| " << r.what << " | " << r.batch << " | " << r.workers << " | " << fmt("%.0f", r.rate) << " |";
        for (const auto& a : anchors) t << " " << (a.second > 0 ? fmt("%.2f", r.rate / a.second) : "-") << " |";
        t << " " << (r.rss_mib >= 0 ? fmt("%.1f MiB", r.rss_mib) : "") << " |\n";
    }
    return t.str();
}

bool Bench::waitDrained(NatsProbe& probe, const bool& published) {
    // The work stream is a work queue: an acked item is deleted, so an
    // empty stream means every item was handled and acked.
    return waitFor([&] { return published && probe.streamMsgs("KANBAN") == std::optional<std::uint64_t>(0); }, 180s, 10ms);
}

Row Bench::kanbandNats(const std::string& what, int n, int batch, int workers, int domains, int hosts, bool concurrent,
                       const std::string& extra, const std::string& top_extra) {
    std::vector<std::string> names;
    for (int i = 0; i < domains; ++i) names.push_back(newDomain());
    HostOptions ho = hostOptions(batch, workers, hosts);
    ho.extra_toml = top_extra;
    const std::string cfg = config(names, ho, "", "", extra);
    freshBucket();
    // The stream exists once a kanbanctl publish declared it (one item).
    if (publish(cfg, names[0], "normal", 1).size() != 1) throw std::runtime_error("kanbanctl publish failed");
    NatsProbe pub(nats_.url()), probe(nats_.url());
    bool published = false;
    const auto backlog = [&] {
        for (int d = 0; d < domains; ++d) {
            const int count = n / domains - (d == 0 ? 1 : 0);
            if (!pub.publishBacklog("kanban.normal." + names[d], count, kPayload, names[d]))
                throw std::runtime_error("backlog not acknowledged");
        }
        published = true;
    };
    if (!concurrent) backlog();
    std::vector<std::unique_ptr<Kanband>> hosts_up;
    for (int h = 0; h < hosts; ++h)
        hosts_up.push_back(std::make_unique<Kanband>(dir_, cfg, "kanband-" + std::to_string(run_) + "-" + std::to_string(h)));
    if (concurrent)
        for (auto& kd : hosts_up)
            if (!kd->waitReady()) throw std::runtime_error("kanband not ready: " + kd->log());
    const auto t0 = std::chrono::steady_clock::now();
    std::thread publisher;
    if (concurrent) publisher = std::thread(backlog);  // the workers take items while they are published
    const bool done = waitDrained(probe, published);
    const double seconds = secondsSince(t0);
    if (publisher.joinable()) publisher.join();
    Row r{what, batch, workers, domains, hosts, done ? (n / domains) * domains / seconds : 0, 0};
    for (auto& kd : hosts_up) {
        r.rss_mib = std::max(r.rss_mib, statusMiB(kd->proc().pid(), "VmHWM"));
        for (pid_t runner : childProcesses(kd->proc().pid())) {
            r.runner_rss_mib = std::max(r.runner_rss_mib, statusMiB(runner, "VmRSS"));
            r.runner_pss_mib = std::max(r.runner_pss_mib, statusMiB(runner, "Pss", "smaps_rollup"));
        }
        if (!top_extra.empty()) {
            const std::string scrape = kd->http("GET", "/metrics").body;
            r.spans_exported += metric(scrape, "kanban_spans_exported_total").value_or(0);
            r.spans_dropped += metric(scrape, "kanban_spans_dropped_total").value_or(0);
        }
        kd->proc().signal(SIGTERM);
        kd->proc().wait(20s);
    }
    progress(what + " batch " + std::to_string(batch) + " workers " + std::to_string(workers) + " domains " +
             std::to_string(domains) + " hosts " + std::to_string(hosts) + ": " + fmt("%.0f items/s", r.rate));
    return r;
}

void Bench::natsThroughput(bool concurrent) {
    const int n = o_.items;
    std::vector<Row> rows;
    for (int batch : {10, 100})
        for (const RawNats::Work work : {RawNats::Work::bare, RawNats::Work::done_log, RawNats::Work::key_per_id}) {
            if (work == RawNats::Work::key_per_id && batch != 100) continue;  // the old design, for comparison
            RawNats c(nats_.url());
            NatsProbe pub(nats_.url());
            const std::string name = work == RawNats::Work::bare ? "RAWBARE" : work == RawNats::Work::done_log ? "RAWWORK" : "RAWKEYS";
            c.declare(name);
            std::thread publisher;
            const auto backlog = [&] {
                if (!pub.publishBacklog(name + ".bench", n, kPayload, "raw")) throw std::runtime_error("raw: backlog not acknowledged");
            };
            if (concurrent)
                publisher = std::thread(backlog);
            else
                backlog();
            const double rate = c.consume(name, n, batch, work);
            if (publisher.joinable()) publisher.join();
            rows.push_back({work == RawNats::Work::bare       ? "raw fetch+ack"
                            : work == RawNats::Work::done_log ? "raw same work"
                                                              : "raw key per id (before issue 21)",
                            batch, 1, 1, 1, rate});
            progress(rows.back().what + " batch " + std::to_string(batch) + ": " + fmt("%.0f items/s", rate));
        }
    for (int batch : {10, 100})
        for (int workers : o_.smoke ? std::vector<int>{2} : std::vector<int>{1, 2, 4})
            rows.push_back(kanbandNats("kanband", n, batch, workers, 1, 1, concurrent));
    const double same = find(rows, "raw same work", 100)->rate, bare = find(rows, "raw fetch+ack", 100)->rate;
    section(std::string(concurrent ? "NATS: publisher and workers concurrently" : "NATS: drain a backlog") + ", " +
                std::to_string(n) + " items",
            throughputTable(rows, {{"raw same work (batch 100)", same}, {"raw fetch+ack (batch 100)", bare}}));
    (concurrent ? concurrent_ : backlog_) = rows;
}

Row Bench::kanbandRabbit(int n, int batch, int workers) {
    const std::string domain = newDomain();
    HostOptions o = hostOptions(batch, workers);
    o.rabbitmq_url = rabbit_->url();
    o.nats_url = "nats://127.0.0.1:" + std::to_string(freePort());  // nothing listens: NATS is down
    const std::string cfg = config({domain}, o);
    // kanbanctl declares the domain's queues with its first publish.
    if (publish(cfg, domain, "normal", 1).size() != 1) throw std::runtime_error("kanbanctl publish (rabbitmq) failed");
    RawAmqp(rabbit_->port()).publish("kanban", "normal." + domain, n - 1, domain, 1);
    Kanband kd(dir_, cfg, "kanband-" + std::to_string(run_));
    const auto t0 = std::chrono::steady_clock::now();
    const std::string sample = R"(kanban_items_processed_total{domain=")" + domain + R"(",outcome="ok"})";
    // Polled every 25 ms: a scrape costs kanband CPU on 2 shared cores.
    const bool done = waitFor([&] { return metric(kd.http("GET", "/metrics").body, sample).value_or(0) >= n; }, 180s, 25ms);
    Row r{"kanband (rabbitmq)", batch, workers, 1, 1, done ? n / secondsSince(t0) : 0, statusMiB(kd.proc().pid(), "VmHWM")};
    kd.proc().signal(SIGTERM);
    kd.proc().wait(20s);
    progress("kanband rabbitmq batch " + std::to_string(batch) + " workers " + std::to_string(workers) + ": " +
             fmt("%.0f items/s", r.rate));
    return r;
}

void Bench::rabbitThroughput() {
    progress("starting rabbitmq-server");
    rabbit_.emplace();
    const int n = o_.items;
    std::vector<Row> rows;
    {
        RawAmqp pub(rabbit_->port()), con(rabbit_->port());
        pub.declareQueue("raw_bench");
        pub.publish("", "raw_bench", n, "raw");
        rows.push_back({"raw rabbitmq-c consume+ack", 100, 1, 1, 1, con.consume("raw_bench", n, 100)});
        progress("raw rabbitmq-c: " + fmt("%.0f items/s", rows.back().rate));
    }
    {
        RawAmqp pub(rabbit_->port()), con(rabbit_->port());
        pub.declareQueue("raw_bench_multi", 2);
        pub.publish("", "raw_bench_multi", n, "raw", 1);
        rows.push_back({"raw rabbitmq-c as kanband acks: priority queue, one multiple ack per 100, prefetch 200", 100, 1,
                        1, 1, con.consume("raw_bench_multi", n, 200, 100)});
        progress("raw rabbitmq-c multiple ack: " + fmt("%.0f items/s", rows.back().rate));
    }
    for (int workers : o_.smoke ? std::vector<int>{2} : std::vector<int>{1, 2, 4}) rows.push_back(kanbandRabbit(n, 100, workers));
    progress("celery");
    auto c = runCommand({"/usr/bin/python3", kBenchDir + "/celery_bench.py", "--broker", rabbit_->url() + "//", "--tasks",
                         std::to_string(o_.celery_tasks), "--dir", dir_.path(), "--concurrency", "2"},
                        600s);
    const auto pos = c.out.find("celery_items_per_second ");
    celery_ = c.exit_code == 0 && pos != std::string::npos ? std::stod(c.out.substr(pos + 24)) : 0;
    if (celery_ <= 0) failures_.push_back("celery: " + c.err);
    rows.push_back({"Celery 5.2, 2 prefork processes, acks_late", 0, 2, 1, 1, celery_});
    progress("celery: " + fmt("%.0f items/s", celery_));
    const double raw = rows.front().rate;
    section("RabbitMQ: drain a backlog, " + std::to_string(n) + " items (Celery: " + std::to_string(o_.celery_tasks) + " tasks)",
            throughputTable(rows, {{"raw rabbitmq-c", raw}, {"Celery", celery_}}) +
                "\nkanband runs with NATS down (the fallback path): idempotency is the host's local record.\n");
    rabbit_rows_ = rows;
}

void Bench::latency() {
    const int n = static_cast<int>(o_.latency_rate * o_.latency_seconds);
    const auto summarize = [](const std::string& what, const std::vector<std::int64_t>& sent,
                              const std::vector<std::int64_t>& handled) {
        Latency l{what, {}};
        for (std::size_t i = 0; i < sent.size(); ++i)
            if (handled[i] > 0) l.ms.push_back((handled[i] - sent[i]) / 1000.0);
        std::sort(l.ms.begin(), l.ms.end());
        return l;
    };
    const auto index = [](std::string_view id) { return std::stoul(std::string(id.substr(id.rfind('-') + 1))); };
    {  // The raw loop doing the same broker work, batch 100; "handled" where the handler would run.
        RawNats c(nats_.url());
        NatsProbe pub(nats_.url());
        c.declare("RAWLAT");
        std::vector<std::int64_t> handled(static_cast<std::size_t>(n), 0), sent;
        bool published = false;
        std::thread publisher([&] { published = pub.publishBacklog("RAWLAT.bench", n, kPayload, "lat", o_.latency_rate, &sent); });
        c.consume("RAWLAT", n, 100, RawNats::Work::done_log, [&](const char* id) { handled.at(index(id)) = epochUs(); });
        publisher.join();
        if (!published) throw std::runtime_error("latency: raw publish failed");
        latency_.push_back(summarize("raw same work, batch 100", sent, handled));
    }
    {  // kanband, batch 100, 2 workers; the recorder fixture notes when it ran each item.
        const std::string domain = newDomain(), out = dir_.file(domain + "-calls.txt");
        const std::string cfg = config({domain}, hostOptions(100, 2), kFixtures + "/recorder.so", recorderSettings(out));
        freshBucket();
        if (publish(cfg, domain, "normal", 1).size() != 1) throw std::runtime_error("kanbanctl publish failed");
        Kanband kd(dir_, cfg, "kanband-" + std::to_string(run_));
        if (!kd.waitReady()) throw std::runtime_error("kanband not ready: " + kd.log());
        std::vector<std::int64_t> sent;
        if (!NatsProbe(nats_.url()).publishBacklog("kanban.normal." + domain, n, kPayload, "lat", o_.latency_rate, &sent))
            throw std::runtime_error("latency: publish to kanband failed");
        waitFor([&] { return static_cast<int>(readLines(out).size()) >= n + 1; }, 60s, 100ms);
        std::vector<std::int64_t> handled(static_cast<std::size_t>(n), 0);
        for (const Call& call : readCalls(out))
            if (call.id.rfind("lat-", 0) == 0) handled.at(index(call.id)) = call.epoch_us;
        kd.proc().signal(SIGTERM);
        kd.proc().wait(20s);
        latency_.push_back(summarize("kanband, batch 100, 2 workers", sent, handled));
    }
    std::ostringstream t;
    t << "| loop | items | p50 ms | p99 ms | p99.9 ms | max ms | p50 vs raw | p99 vs raw |\n"
      << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    const Latency& raw = latency_.front();
    for (const Latency& l : latency_) {
        t << "| " << l.what << " | " << l.ms.size() << " | " << fmt("%.3f", l.at(0.5)) << " | " << fmt("%.3f", l.at(0.99))
          << " | " << fmt("%.3f", l.at(0.999)) << " | " << fmt("%.3f", l.ms.empty() ? 0 : l.ms.back()) << " | "
          << fmt("%.2f", l.at(0.5) / raw.at(0.5)) << " | " << fmt("%.2f", l.at(0.99) / raw.at(0.99)) << " |\n";
        if (static_cast<int>(l.ms.size()) != n) failures_.push_back("latency: " + l.what + " handled " + std::to_string(l.ms.size()));
        progress("latency " + l.what + ": p50 " + fmt("%.3f ms", l.at(0.5)) + " p99 " + fmt("%.3f ms", l.at(0.99)));
    }
    section("Latency publish → handler at " + fmt("%.0f", o_.latency_rate) + " items/s for " +
                fmt("%.0f", o_.latency_seconds) + " s (NATS, SendAsap publisher)",
            t.str());
}

void Bench::idle() {
    std::vector<std::string> names;
    for (int i = 0; i < 100; ++i) names.push_back(newDomain());
    HostOptions o;  // the product's defaults: workers.min 2, pull_batch 10, health every 5 s
    o.pull_batch = 10;
    o.health_interval_ms = 5000;
    const std::string cfg = config(names, o);
    Kanband kd(dir_, cfg, "kanband-idle");
    if (!kd.waitReady()) throw std::runtime_error("kanband (100 domains) not ready: " + kd.log());
    std::this_thread::sleep_for(2s);  // measuring, not synchronising: let start-up settle
    const double cpu0 = cpuSeconds(kd.proc().pid());
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(o_.idle_seconds));
    idle_cpu_ = (cpuSeconds(kd.proc().pid()) - cpu0) / secondsSince(t0) * 100;
    idle_rss_ = statusMiB(kd.proc().pid(), "VmRSS");
    kd.proc().signal(SIGTERM);
    kd.proc().wait(20s);
    progress("idle, 100 domains: " + fmt("%.2f%% of a core", idle_cpu_));
    section("Idle cost: kanband with 100 domains (200 workers waiting), " + std::to_string(o_.idle_seconds) + " s",
            "| CPU (user + system) | RSS |\n| ---: | ---: |\n| " + fmt("%.2f %% of a core", idle_cpu_) + " | " +
                fmt("%.1f MiB", idle_rss_) + " |\n");
}

void Bench::growth() {
    const int n = o_.items;
    std::vector<Row> rows;
    // Hosts ready first, then the items in a burst: what is measured is how
    // fast they work, not how long 100 domains take to start.
    for (int domains : {1, 10, 100}) rows.push_back(kanbandNats("kanband, 1 worker per domain", n, 100, 1, domains, 1, true));
    for (int hosts : {1, 2}) rows.push_back(kanbandNats("kanband, 2 workers per host", n, 100, 2, 1, hosts, true));
    std::ostringstream t;
    t << "| run | domains | hosts | workers in all | items/s | vs the first of its kind | peak RSS per host |\n"
      << "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        const double base = i < 3 ? rows[0].rate : rows[3].rate;
        t << "| " << r.what << " | " << r.domains << " | " << r.hosts << " | " << r.workers * r.domains * r.hosts << " | "
          << fmt("%.0f", r.rate) << " | " << fmt("%.2f", base > 0 ? r.rate / base : 0) << " | " << fmt("%.1f MiB", r.rss_mib)
          << " |\n";
    }
    section("How cost grows: " + std::to_string(n) + " items published in a burst to ready hosts, batch 100", t.str());
    growth_rows_ = rows;
}

void Bench::isolation() {
    const int n = o_.items;
    std::vector<Row> rows;
    for (int workers : o_.smoke ? std::vector<int>{2} : std::vector<int>{1, 2})
        for (const bool process : {false, true})
            rows.push_back(kanbandNats(process ? "kanband, isolation = process" : "kanband, isolation = thread", n, 100,
                                       workers, 1, 1, false, process ? "isolation = \"process\"\n" : ""));
    std::ostringstream t;
    t << "| isolation | batch | workers | items/s | process / thread | kanband peak RSS | a runner's RSS (PSS) |\n"
      << "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        const bool process = i % 2 == 1;
        const double thread = rows[i - (process ? 1 : 0)].rate;
        t << "| " << (process ? "process" : "thread") << " | " << r.batch << " | " << r.workers << " | " << fmt("%.0f", r.rate)
          << " | " << (process ? fmt("%.2f", thread > 0 ? r.rate / thread : 0) : "1") << " | " << fmt("%.1f MiB", r.rss_mib)
          << " | " << (process ? fmt("%.1f MiB", r.runner_rss_mib) + " (" + fmt("%.1f MiB", r.runner_pss_mib) + ")" : "-")
          << " |\n";
    }
    section("Handler isolation: drain a backlog of " + std::to_string(n) + " items, noop plugin", t.str());
    isolation_rows_ = rows;
}

// Tracing on the hot path: the same backlog with [tracing] off, pointed at
// a dead endpoint (connection refused: every batch of spans is dropped),
// and at a live OTLP receiver in this process. Off runs first and last, so
// drift shows; the ratios are to their mean.
void Bench::tracing() {
    const int n = o_.items;
    httplib::Server receiver;
    std::atomic<std::uint64_t> bodies{0};
    receiver.Post("/v1/traces", [&](const httplib::Request&, httplib::Response& res) {
        ++bodies;
        res.set_content("{}", "application/json");
    });
    const int live_port = receiver.bind_to_any_port("127.0.0.1");
    std::thread serving([&] { receiver.listen_after_bind(); });
    const auto traced = [](int port) {
        return "[tracing]\notlp_endpoint = \"http://127.0.0.1:" + std::to_string(port) + "/v1/traces\"\n";
    };
    const int dead_port = freePort();
    std::vector<Row> rows;
    rows.push_back(kanbandNats("tracing off", n, 100, 2, 1, 1, false));
    rows.push_back(kanbandNats("tracing on, dead endpoint", n, 100, 2, 1, 1, false, "", traced(dead_port)));
    rows.push_back(kanbandNats("tracing on, live receiver", n, 100, 2, 1, 1, false, "", traced(live_port)));
    rows.push_back(kanbandNats("tracing off", n, 100, 2, 1, 1, false));
    receiver.stop();
    serving.join();
    const double off = (rows[0].rate + rows[3].rate) / 2;
    std::ostringstream t;
    t << "| run | items/s | / tracing off (mean) | spans exported | spans dropped | kanband peak RSS |\n"
      << "| --- | ---: | ---: | ---: | ---: | ---: |\n";
    for (const Row& r : rows)
        t << "| " << r.what << " | " << fmt("%.0f", r.rate) << " | " << fmt("%.2f", off > 0 ? r.rate / off : 0) << " | "
          << fmt("%.0f", r.spans_exported) << " | " << fmt("%.0f", r.spans_dropped) << " | " << fmt("%.1f MiB", r.rss_mib)
          << " |\n";
    section("Tracing: drain a backlog of " + std::to_string(n) + " items, noop plugin, batch 100, 2 workers, every attempt sampled",
            t.str());
    tracing_rows_ = rows;
}

void Bench::targets() {
    const auto ratio = [](double a, double b) { return b > 0 ? a / b : 0; };
    const double same = find(backlog_, "raw same work", 100)->rate, bare = find(backlog_, "raw fetch+ack", 100)->rate;
    std::string same_cells, bare_cells;
    double best_same = 0, best_bare = 0;
    for (const Row& r : backlog_)
        if (r.what == "kanband" && r.batch == 100) {
            same_cells += fmt("%.2f", ratio(r.rate, same)) + " (" + std::to_string(r.workers) + "w) ";
            bare_cells += fmt("%.2f", ratio(r.rate, bare)) + " (" + std::to_string(r.workers) + "w) ";
            best_same = std::max(best_same, ratio(r.rate, same));
            best_bare = std::max(best_bare, ratio(r.rate, bare));
        }
    double best_rabbit = 0, best_kanband_rabbit = 0;
    for (const Row& r : rabbit_rows_)
        if (r.what == "kanband (rabbitmq)") best_kanband_rabbit = std::max(best_kanband_rabbit, r.rate);
    best_rabbit = ratio(best_kanband_rabbit, rabbit_rows_.front().rate);
    double best_nats = 0;
    for (const Row& r : backlog_)
        if (r.what == "kanband") best_nats = std::max(best_nats, r.rate);
    double max_rss = 0;
    for (const auto* rows : {&backlog_, &concurrent_})
        for (const Row& r : *rows) max_rss = std::max(max_rss, r.rss_mib);
    const Latency &raw = latency_.at(0), &kd = latency_.at(1);
    const double domains100 = ratio(growth_rows_.at(2).rate, growth_rows_.at(0).rate);
    const auto line = [](const std::string& target, const std::string& figure, bool met) {
        return "| " + target + " | " + figure + " | " + (met ? "met" : "**missed**") + " |\n";
    };
    std::string t = "| target | this run | |\n| --- | --- | --- |\n";
    t += line("end-to-end ≥ 0.8× raw same work, batch 100", same_cells, best_same >= 0.8);
    t += line("end-to-end ≥ 0.5× raw fetch+ack, batch 100", bare_cells, best_bare >= 0.5);
    t += line("≥ 15× Celery (NATS)", fmt("%.1f×", ratio(best_nats, celery_)), ratio(best_nats, celery_) >= 15);
    t += line("≥ 10× Celery on the RabbitMQ path", fmt("%.1f×", ratio(best_kanband_rabbit, celery_)),
              ratio(best_kanband_rabbit, celery_) >= 10);
    t += line("RabbitMQ path ≥ 0.7× raw rabbitmq-c", fmt("%.2f", best_rabbit), best_rabbit >= 0.7);
    t += line("p50 ≤ 2× raw", fmt("%.2f", ratio(kd.at(0.5), raw.at(0.5))), ratio(kd.at(0.5), raw.at(0.5)) <= 2);
    t += line("p99 ≤ 2× raw", fmt("%.2f", ratio(kd.at(0.99), raw.at(0.99))), ratio(kd.at(0.99), raw.at(0.99)) <= 2);
    t += line("peak RSS ≤ 64 MiB with a " + std::to_string(o_.items) + "-item backlog", fmt("%.1f MiB", max_rss), max_rss <= 64);
    t += line("idle CPU < 1% of a core, 100 domains", fmt("%.2f %%", idle_cpu_), idle_cpu_ >= 0 && idle_cpu_ < 1);
    t += line("100 domains ≥ 0.7× the throughput of 1", fmt("%.2f", domains100), domains100 >= 0.7);
    double worst_isolation = 1e9;
    std::string isolation_cells;
    for (std::size_t i = 1; i < isolation_rows_.size(); i += 2) {
        const double r = ratio(isolation_rows_[i].rate, isolation_rows_[i - 1].rate);
        worst_isolation = std::min(worst_isolation, r);
        isolation_cells += fmt("%.2f", r) + " (" + std::to_string(isolation_rows_[i].workers) + "w) ";
    }
    t += line("isolation = process ≥ 0.7× thread (noop, batch 100)", isolation_cells, worst_isolation >= 0.7);
    section("Targets (issues 10, 20 and 21)", t);
}

// A PNG (gnuplot): throughput per configuration, raw anchors beside.
void Bench::plot() {
    if (o_.plot.empty()) return;
    const std::string data = dir_.file("plot.dat");
    std::ofstream d(data);
    int block = 0;
    const auto rows = [&](const std::vector<Row>& rs, const std::string& prefix) {
        for (const Row& r : rs) {
            std::string label = r.what.rfind("raw", 0) == 0 ? r.what : prefix;
            if (r.batch > 0) label += " b" + std::to_string(r.batch);
            if (r.what.rfind("kanband", 0) == 0) label += " w" + std::to_string(r.workers);
            if (r.domains > 1 || r.what.find("per domain") != std::string::npos) label = "kanband " + std::to_string(r.domains) + " dom";
            if (r.what.find("per host") != std::string::npos) label = "kanband " + std::to_string(r.hosts) + " host";
            if (r.what.rfind("Celery", 0) == 0) label = "Celery";
            if (r.what.find("isolation = ") != std::string::npos)
                label = r.what.substr(r.what.find("= ") + 2) + " w" + std::to_string(r.workers);
            if (r.what.rfind("raw rabbitmq-c as kanband acks", 0) == 0) label = "raw, multiple ack b100";
            if (r.what.rfind("tracing", 0) == 0) label = r.what.substr(r.what.find(", ") == std::string::npos ? 0 : r.what.find(", ") + 2);
            const int colour = r.what.rfind("kanband", 0) == 0 || r.what.rfind("tracing", 0) == 0 ? 1 : 2;
            d << '"' << label << "\" " << fmt("%.0f", r.rate) << " " << colour << "\n";
        }
        d << "\n\n";
        ++block;
    };
    rows(backlog_, "kanband");
    rows(concurrent_, "kanband");
    rows(rabbit_rows_, "kanband");
    rows(growth_rows_, "kanband");
    rows(isolation_rows_, "kanband");
    rows(tracing_rows_, "kanband");
    d.close();
    const std::string script = dir_.file("plot.gp");
    writeFile(script,
              "set terminal pngcairo size 2400,1000 font 'sans,10'\n"
              "set output '" + o_.plot + "'\n"
              "set multiplot layout 2,3 title 'kanban\\_bench: " + std::to_string(o_.items) +
                  " items of 256 bytes, items/s (blue: kanband, grey: raw client loops and Celery)'\n"
              "set style fill solid 0.8\nset boxwidth 0.7\nset grid ytics\nset yrange [0:*]\nset xtics rotate by -35\n"
              "set linetype 1 lc rgb '#1f77b4'\nset linetype 2 lc rgb '#9a9a9a'\nunset key\n"
              "set title 'NATS: drain a backlog'\n"
              "plot '" + data + "' index 0 using 0:2:3:xtic(1) with boxes lc variable, '' index 0 using 0:2:(sprintf('%.0f',$2)) with labels offset 0,0.7\n"
              "set title 'NATS: publisher and workers concurrently'\n"
              "plot '" + data + "' index 1 using 0:2:3:xtic(1) with boxes lc variable, '' index 1 using 0:2:(sprintf('%.0f',$2)) with labels offset 0,0.7\n"
              "set title 'RabbitMQ: drain a backlog (kanband with NATS down)'\n"
              "plot '" + data + "' index 2 using 0:2:3:xtic(1) with boxes lc variable, '' index 2 using 0:2:(sprintf('%.0f',$2)) with labels offset 0,0.7\n"
              "set title 'How cost grows: domains and hosts (batch 100)'\n"
              "plot '" + data + "' index 3 using 0:2:3:xtic(1) with boxes lc variable, '' index 3 using 0:2:(sprintf('%.0f',$2)) with labels offset 0,0.7\n"
              "set title 'Handler isolation: thread and process (batch 100)'\n"
              "plot '" + data + "' index 4 using 0:2:3:xtic(1) with boxes lc variable, '' index 4 using 0:2:(sprintf('%.0f',$2)) with labels offset 0,0.7\n"
              "set title 'Tracing: off, a dead OTLP endpoint, a live receiver (batch 100, 2 workers)'\n"
              "plot '" + data + "' index 5 using 0:2:3:xtic(1) with boxes lc variable, '' index 5 using 0:2:(sprintf('%.0f',$2)) with labels offset 0,0.7\n"
              "unset multiplot\n");
    auto r = runCommand({"gnuplot", script}, 60s);
    if (r.exit_code != 0) failures_.push_back("gnuplot: " + r.err);
}

int Bench::run() {
    if (o_.runs("nats")) {
        natsThroughput(false);
        natsThroughput(true);
    }
    if (o_.runs("rabbitmq")) rabbitThroughput();
    if (o_.runs("latency")) latency();
    if (o_.runs("idle")) idle();
    if (o_.runs("growth")) growth();
    if (o_.runs("isolation")) isolation();
    if (o_.runs("tracing")) tracing();
    if (o_.only.empty()) {
        targets();
        plot();
    }
    const std::string header = "## kanban_bench results\n\nOne run on brokers the benchmark started (nats-server -js, rabbitmq-server), " +
                               std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) + " cores" +
                               (o_.smoke ? ", smoke sizes (not figures)" : "") + ".\n\n";
    std::cout << header << md_;
    if (!o_.out.empty()) std::ofstream(o_.out) << header << md_;
    for (const auto* rows : {&backlog_, &concurrent_, &rabbit_rows_, &growth_rows_, &isolation_rows_, &tracing_rows_})
        for (const Row& r : *rows)
            if (r.rate <= 0) failures_.push_back(r.what + " batch " + std::to_string(r.batch) + " workers " +
                                                 std::to_string(r.workers) + " did not finish its items");
    for (const auto& f : failures_) std::cerr << "kanban_bench: " << f << "\n";
    return failures_.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool more = i + 1 < argc;
        if (a == "--items" && more) o.items = std::stoi(argv[++i]);
        else if (a == "--celery-tasks" && more) o.celery_tasks = std::stoi(argv[++i]);
        else if (a == "--idle-seconds" && more) o.idle_seconds = std::stoi(argv[++i]);
        else if (a == "--latency-seconds" && more) o.latency_seconds = std::stod(argv[++i]);
        else if (a == "--out" && more) o.out = argv[++i];
        else if (a == "--plot" && more) o.plot = argv[++i];
        else if (a == "--only" && more) o.only = argv[++i];
        else if (a == "--smoke") {
            o.smoke = true;
            o.items = 2000;
            o.celery_tasks = 200;
            o.idle_seconds = 2;
            o.latency_seconds = 1;
        } else {
            std::cerr << "usage: kanban_bench [--items N] [--out FILE.md] [--plot FILE.png] [--smoke] [--idle-seconds S]"
                         " [--latency-seconds S] [--celery-tasks N] [--only nats,rabbitmq,latency,idle,growth,isolation]\n";
            return 64;
        }
    }
    try {
        return Bench(o).run();
    } catch (const std::exception& e) {
        std::cerr << "kanban_bench: " << e.what() << "\n";
        return 1;
    }
}
