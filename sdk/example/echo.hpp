// echo: appends each work id to the file named by settings {"out": "..."},
// with its X-Tenant header when the item has one, and hands the item on to
// the domain its X-Forward-To header names (a follow-up, published only
// once this call returned ok).
// The handler class, in a header of its own so that echo_test.cpp can test
// it with kanban/testing.hpp; echo.cpp makes it a plugin.
#pragma once

#include <kanban/handler.hpp>

#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>

namespace echo {

// Extracts "out" from a flat JSON object such as {"out":"/tmp/x"} (keeps this
// example free of dependencies).
inline std::string outPath(std::string_view json) {
    const auto key = json.find("\"out\"");
    const auto open = key == std::string_view::npos ? key : json.find('"', json.find(':', key) + 1);
    const auto close = open == std::string_view::npos ? open : json.find('"', open + 1);
    if (close == std::string_view::npos) throw std::invalid_argument("settings.out is required");
    return std::string(json.substr(open + 1, close - open - 1));
}

class Echo final : public kanban::Handler {
public:
    Echo(std::string_view settings, const kanban::Host& host) : out_(outPath(settings), std::ios::app) {
        if (!out_) throw std::runtime_error("cannot open the output file");
        host.log(kanban::LogLevel::info, "echo plugin ready");
    }
    kanban::Result handle(const kanban::WorkItem& item, kanban::Context& ctx) override {
        if (const auto to = item.header("X-Forward-To")) {
            kanban::PublishOptions forward;
            if (const auto tenant = item.header("X-Tenant")) forward.headers = {{"X-Tenant", std::string(*tenant)}};
            ctx.publish(*to, item.payload, forward);  // throws (a retry) if the host refuses
        }
        std::lock_guard lock(mu_);
        out_ << item.id;
        if (const auto tenant = item.header("X-Tenant")) out_ << ' ' << *tenant;
        out_ << std::endl;
        return kanban::Result::ok();
    }

private:
    std::mutex mu_;
    std::ofstream out_;
};

}  // namespace echo
