// kanband: argv → daemon. No logic here.
#include "daemon/daemon.hpp"
#include "plugin/check_config.hpp"
#include "runner/channel.hpp"
#include "runner/runner_main.hpp"
#include "version.hpp"

#include <CLI/CLI.hpp>

#include <iostream>

int main(int argc, char** argv) {
    // A runner process (isolation = "process"), started by kanband itself.
    if (argc == 2 && argv[1] == kanban::host::runner::kRunnerFlag) return kanban::host::runner::runnerMain();
    kanban::host::daemon::blockSignals();

    CLI::App app{"kanband: TPS Kanban work-queue host"};
    std::string config_path = "/etc/tps-kanban/kanban.toml";
    std::string check_path;
    app.add_option("--config", config_path, "configuration file")->capture_default_str();
    app.add_option("--check-config", check_path, "validate this configuration file (and its plugins), then exit");
    app.set_version_flag("--version", std::string("kanband ") + KANBAN_VERSION);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);
        std::cerr << "kanband: " << e.what() << "\n";
        return 64;
    }
    if (!check_path.empty()) return kanban::host::plugin::checkConfig(check_path);
    return kanban::host::daemon::run(config_path);
}
