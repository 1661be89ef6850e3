// The worker pool against a fake queue (pure logic: no broker): the pool's
// size follows its target even when a worker is on its way out, and a
// shutdown asks the running handler to stop.
#include "worker/domain_workers.hpp"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>

#include "support.hpp"

namespace kanban::host::worker {
namespace {

using namespace std::chrono_literals;

// spdlog's registry is created on first use; kanband creates it before any
// thread starts, and so does this binary (else TSan sees the pool's first
// log line race the test's).
const auto kLogger = spdlog::default_logger();

// What the fake queue's consumers share with the test.
struct QueueState {
    std::mutex mu;
    std::condition_variable cv;
    bool hold_close = false;  // a consumer's destructor waits while set (a slow close)
    int closing = 0;          // destructors waiting now
    int open = 0;             // consumers alive
    void release() {
        {
            std::lock_guard lock(mu);
            hold_close = false;
        }
        cv.notify_all();
    }
    std::vector<std::string> payloads;  // handed out once each, then nothing
};

class FakeDelivery final : public broker::Delivery {
public:
    explicit FakeDelivery(std::string body, std::vector<std::string>& settled)
        : body_(std::move(body)), settled_(settled) {
        payload = body_;
    }
    void ack() override { settled_.push_back("ack"); }
    void retryAfter(std::chrono::milliseconds) override { settled_.push_back("retry"); }
    void release() override { settled_.push_back("release"); }
    void defer(std::chrono::milliseconds) override { settled_.push_back("defer"); }
    void progress() override {}
    void headers(Headers&) const override {}
    std::string header(const char*) const override { return ""; }
    Status postpone(std::int64_t) override {
        settled_.push_back("postpone");
        return Ok{};
    }
    Status deadLetter(std::string_view, std::string_view) override {
        settled_.push_back("dead_letter");
        return Ok{};
    }

private:
    std::string body_;
    std::vector<std::string>& settled_;
};

class FakeConsumer final : public broker::Consumer {
public:
    FakeConsumer(QueueState& s, std::vector<std::string>& settled) : s_(s), settled_(settled) {
        std::lock_guard lock(s_.mu);
        ++s_.open;
    }
    ~FakeConsumer() override {
        std::unique_lock lock(s_.mu);
        ++s_.closing;
        s_.cv.notify_all();
        s_.cv.wait(lock, [&] { return !s_.hold_close; });
        --s_.closing;
        --s_.open;
    }
    Result<broker::DeliveryBatch> fetch(int, std::chrono::milliseconds idle_wait) override {
        std::unique_lock lock(s_.mu);
        broker::DeliveryBatch batch;
        if (!s_.payloads.empty()) {
            auto d = std::make_unique<FakeDelivery>(s_.payloads.back(), settled_);
            d->id = "item-" + std::to_string(s_.payloads.size());
            d->domain = "orders";
            s_.payloads.pop_back();
            batch.push_back(std::move(d));
            return batch;
        }
        s_.cv.wait_for(lock, idle_wait, [&] { return interrupted_; });
        interrupted_ = false;
        return batch;
    }
    void interrupt() override {
        std::lock_guard lock(s_.mu);
        interrupted_ = true;
        s_.cv.notify_all();
    }

private:
    QueueState& s_;
    std::vector<std::string>& settled_;
    bool interrupted_ = false;
};

class FakeStore final : public broker::DoneStore {
public:
    Result<std::vector<bool>> lookup(const std::vector<std::string_view>& ids) override {
        return std::vector<bool>(ids.size(), false);
    }
    void record(std::string_view) override {}
    std::size_t flush() override { return 0; }
    Result<std::vector<std::optional<broker::AttemptRecord>>> attempts(const std::vector<std::string_view>& ids) override {
        return std::vector<std::optional<broker::AttemptRecord>>(ids.size());
    }
    Status recordAttempt(std::string_view, const broker::AttemptRecord&) override { return Ok{}; }
    void forgetAttempts(std::string_view) override {}
};

class FakeQueue final : public broker::WorkQueue {
public:
    explicit FakeQueue(QueueState& s) : s_(s) {}
    std::string_view backendName() const override { return "fake"; }
    bool healthy() const override { return true; }
    Result<broker::PublishAck> publish(const broker::PublishRequest&) override { return broker::PublishAck{}; }
    Result<std::unique_ptr<broker::Consumer>> openConsumer(const broker::ConsumerSpec&) override {
        return std::unique_ptr<broker::Consumer>(std::make_unique<FakeConsumer>(s_, settled));
    }
    Result<std::unique_ptr<broker::DoneStore>> openDoneStore() override {
        return std::unique_ptr<broker::DoneStore>(std::make_unique<FakeStore>());
    }
    std::vector<std::string> settled;  // by the pool's worker threads; read once they joined

private:
    QueueState& s_;
};

std::shared_ptr<const plugin::Instance> load(const std::string& file, const std::string& settings = "{}") {
    auto lib = plugin::Library::load(file);
    EXPECT_TRUE(lib.ok()) << (lib.ok() ? "" : lib.message());
    auto inst = plugin::Instance::create(std::move(*lib), settings);
    EXPECT_TRUE(inst.ok()) << (inst.ok() ? "" : inst.message());
    return std::move(*inst);
}

WorkerSettings settings(std::int64_t max_workers, std::int64_t timeout_ms = 30000) {
    WorkerSettings s;
    s.domain.name = "orders";
    s.domain.timeout_ms = timeout_ms;
    s.workers.min = 1;
    s.workers.max = max_workers;
    s.workers.pull_batch = 1;
    s.idle_wait = 60s;  // only interrupts end an idle wait
    return s;
}

bool eventually(const std::function<bool()>& f) { return kanban::test::waitFor(f, 10s); }

std::shared_ptr<const plugin::Instance> noop() { return load(std::string(KANBAN_PLUGIN_DIR) + "/noop.so"); }

// A domain's pool on the fake queue.
struct Pool {
    Pool(WorkerSettings s, std::shared_ptr<const plugin::Instance> handler)
        : workers(std::move(s), plugin::inProcess(std::move(handler)), queue, done, ledger, metrics.domain("orders")) {}
    QueueState state;
    FakeQueue queue{state};
    LocalDoneRecord done;
    AttemptLedger ledger;
    metrics::Metrics metrics{"test"};
    DomainWorkers workers;
};

// A worker retiring (its consumer's close can take seconds: leaving a
// quiet wait flushes) while the target goes back up: the pool must end up
// at the new target, not one short until the target changes again.
TEST(DomainWorkers, ATargetRaisedWhileAWorkerRetiresIsReached) {
    Pool p(settings(2), noop());
    QueueState& state = p.state;
    DomainWorkers& pool = p.workers;
    pool.setTarget(2);
    ASSERT_TRUE(eventually([&] {
        std::lock_guard lock(state.mu);
        return state.open == 2;  // both workers wait in a fetch
    }));
    {
        std::lock_guard lock(state.mu);
        state.hold_close = true;
    }
    struct Release {
        QueueState& s;
        ~Release() { s.release(); }  // whatever fails below, the pool can stop
    } release{state};
    pool.setTarget(1);  // worker 1 leaves its loop and closes its consumer (held)
    ASSERT_TRUE(eventually([&] {
        std::lock_guard lock(state.mu);
        return state.closing == 1;
    }));
    pool.setTarget(2);  // while it is on its way out
    state.release();
    // The retiring worker either leaves (one consumer left) or stays and
    // opens a new one: two consumers again means two workers pulling.
    EXPECT_TRUE(eventually([&] {
        std::lock_guard lock(state.mu);
        return state.open == 2 && state.closing == 0;
    })) << "the pool stayed one worker short";
    EXPECT_EQ(pool.workers(), 2u);
    EXPECT_EQ(pool.target(), 2u);
    pool.requestStop();
    pool.join();
}

// A stop that comes while a worker is still opening its consumer reaches
// that worker's first wait (60 s here) instead of being missed.
TEST(DomainWorkers, AStopRightAfterTheStartIsNotMissedByAWorkerStillOpening) {
    Pool p(settings(4), noop());
    DomainWorkers& pool = p.workers;
    const auto t0 = std::chrono::steady_clock::now();
    pool.setTarget(4);
    pool.requestStop();
    pool.join();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s) << "a worker waited out its idle wait";
}

TEST(DomainWorkers, TheTargetIsBoundedByWhatThePoolCanRun) {
    Pool p(settings(3), noop());
    DomainWorkers& pool = p.workers;
    EXPECT_EQ(pool.capacity(), 3u);
    pool.setTarget(10);
    EXPECT_EQ(pool.target(), 3u);
    WorkerSettings more = settings(8);  // a reload cannot grow past the slots allocated at start
    pool.updateSettings(more);
    EXPECT_EQ(pool.capacity(), 3u);
    WorkerSettings fewer = settings(2);
    pool.updateSettings(fewer);
    EXPECT_EQ(pool.capacity(), 2u);
    pool.requestStop();
    pool.join();
}

// plugin.h: cancelled() turns true on shutdown. A handler that waits for it
// returns at once, and its item goes back to the broker (released), not
// failed or dead-lettered.
TEST(DomainWorkers, AShutdownCancelsTheRunningHandlerAndHandsItsItemBack) {
    kanban::test::TempDir dir;
    const std::string out = dir.file("calls.txt");
    Pool p(settings(1, /*timeout_ms=*/600000),
           load(std::string(KANBAN_FIXTURE_DIR) + "/recorder.so", R"({"out":")" + out + R"("})"));
    p.state.payloads = {"until-cancelled"};
    DomainWorkers& pool = p.workers;
    pool.setTarget(1);
    ASSERT_TRUE(eventually([&] { return pool.stalled(0ms) == 1; })) << "the handler never started";
    const auto asked = std::chrono::steady_clock::now();
    pool.requestStop(/*cancel_running=*/true);
    pool.join();
    const auto took = std::chrono::steady_clock::now() - asked;
    EXPECT_LT(took, 60s) << "the handler was not cancelled (its timeout is 10 minutes)";
    ASSERT_EQ(p.queue.settled.size(), 1u);
    EXPECT_EQ(p.queue.settled[0], "release");
    EXPECT_EQ(pool.circuit(), CircuitBreaker::State::closed);
}

}  // namespace
}  // namespace kanban::host::worker
