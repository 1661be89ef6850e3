#include "admin/token.hpp"

#include <fstream>
#include <sstream>

namespace kanban::host::admin {

Result<std::string> readTokenFile(const std::string& path) {
    std::ifstream in(path);
    if (!in) return Error{"admin.token_file " + path + ": cannot be read"};
    std::ostringstream s;
    s << in.rdbuf();
    std::string token = s.str();
    const auto first = token.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return Error{"admin.token_file " + path + ": is empty"};
    token = token.substr(first, token.find_last_not_of(" \t\r\n") - first + 1);
    return token;
}

}  // namespace kanban::host::admin
