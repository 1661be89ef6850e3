// The RabbitMQ broker shared by one test run (a CTest fixture):
//   rabbit_fixture start DIR   starts it in DIR and leaves it running
//   rabbit_fixture stop DIR    stops it and removes DIR
// Tests find it through KANBAN_TEST_RABBITMQ_DIR (support.hpp: sharedRabbit()).
#include "support.hpp"

#include <filesystem>
#include <iostream>

int main(int argc, char** argv) {
    using kanban::test::RabbitServer;
    if (argc != 3) {
        std::cerr << "usage: rabbit_fixture start|stop DIR\n";
        return 64;
    }
    const std::string verb = argv[1], dir = argv[2];
    try {
        if (std::filesystem::exists(dir + "/rabbitmq/env")) RabbitServer::stopDetached(dir);  // left over from an aborted run
        if (verb == "stop") {
            std::filesystem::remove_all(dir);
            return 0;
        }
        std::filesystem::remove_all(dir);
        RabbitServer server(dir, kanban::test::kSharedRabbitVhosts);
        server.detach();
        std::cout << "rabbitmq-server " << server.node() << " on " << server.url() << "\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "rabbit_fixture " << verb << ": " << e.what() << "\n";
        return 1;
    }
}
