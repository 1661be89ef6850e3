// A small OTLP/HTTP receiver for tests: keeps the JSON body of every POST
// to /v1/traces. With `hold`, each request waits until release() (a
// collector that hangs). Header-only; link cpp-httplib.
#pragma once

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kanban::test {

class OtlpReceiver {
public:
    explicit OtlpReceiver(bool hold = false) : hold_(hold) {
        server_.Post("/v1/traces", [this](const httplib::Request& req, httplib::Response& res) {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return !hold_; });
            bodies_.push_back(nlohmann::json::parse(req.body));
            res.set_content("{}", "application/json");
        });
        port_ = server_.bind_to_any_port("127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
    }
    ~OtlpReceiver() {
        release();
        server_.stop();
        thread_.join();
    }
    OtlpReceiver(const OtlpReceiver&) = delete;
    OtlpReceiver& operator=(const OtlpReceiver&) = delete;

    void release() {
        std::lock_guard lock(mu_);
        hold_ = false;
        cv_.notify_all();
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1/traces"; }
    // Every request body, as received.
    std::vector<nlohmann::json> bodies() {
        std::lock_guard lock(mu_);
        return bodies_;
    }
    // Every span of every body.
    std::vector<nlohmann::json> spans() {
        std::vector<nlohmann::json> out;
        for (const auto& body : bodies())
            for (const auto& rs : body.at("resourceSpans"))
                for (const auto& ss : rs.at("scopeSpans"))
                    for (const auto& s : ss.at("spans")) out.push_back(s);
        return out;
    }

private:
    httplib::Server server_;
    int port_ = 0;
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool hold_;
    std::vector<nlohmann::json> bodies_;
};

}  // namespace kanban::test
