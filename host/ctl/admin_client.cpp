#include "admin_client.hpp"

#include <httplib.h>

#include <filesystem>

#include "admin/token.hpp"
#include "ctl_common.hpp"

namespace kanban::ctl {

int AdminClient::setup(const std::string& config_path, const std::string& admin_override) {
    host::config::Config cfg;
    const bool have_config = std::filesystem::exists(config_path);
    if (have_config) {
        if (int rc = loadConfig(config_path, cfg); rc != kExitOk) return rc;
    } else if (admin_override.empty()) {
        return fail(kExitNoInput, config_path + ": config file not found (or pass --admin HOST:PORT)");
    }
    std::string listen = admin_override.empty() ? cfg.admin.listen : admin_override;
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos) return fail(kExitUsage, "admin address \"" + listen + "\" is not HOST:PORT");
    host_ = listen.substr(0, colon);
    if (host_.size() > 2 && host_.front() == '[' && host_.back() == ']') host_ = host_.substr(1, host_.size() - 2);
    try {
        port_ = std::stoi(listen.substr(colon + 1));
    } catch (const std::exception&) {
        port_ = -1;
    }
    if (port_ <= 0 || port_ > 65535)
        return fail(kExitUsage, "admin address \"" + listen + "\" has no usable port (pass --admin HOST:PORT)");
    if (have_config && !cfg.admin.token_file.empty()) {
        auto token = host::admin::readTokenFile(cfg.admin.token_file);
        if (!token) return fail(kExitNoInput, token.message());
        token_ = *token;
    }
    return kExitOk;
}

std::optional<AdminClient::Response> AdminClient::call(const std::string& method, const std::string& path,
                                                  const std::string& body) {
    httplib::Client c(host_, port_);
    c.set_connection_timeout(2);
    c.set_read_timeout(30);
    httplib::Headers headers;
    if (!token_.empty()) headers.emplace("Authorization", "Bearer " + token_);
    httplib::Result r = method == "GET"    ? c.Get(path.c_str(), headers)
                        : method == "POST" ? c.Post(path.c_str(), headers, body, "application/json")
                        : method == "PUT"  ? c.Put(path.c_str(), headers, body, "application/json")
                                           : c.Delete(path.c_str(), headers);
    if (!r) return std::nullopt;
    Response out;
    out.status = r->status;
    out.body = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    return out;
}

int AdminClient::unreachable() const {
    return fail(kExitUnavailable, "kanband is not answering at " + address() + " (is it running? see admin.listen)");
}

int AdminClient::refused(const Response& r) {
    std::string why = r.body.is_object() && r.body.contains("error") ? r.body["error"].get<std::string>()
                                                                      : "HTTP " + std::to_string(r.status);
    return fail(kExitError, why + " (HTTP " + std::to_string(r.status) + ")");
}

}  // namespace kanban::ctl
