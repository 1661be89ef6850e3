#include "common/headers.hpp"

namespace kanban::host {

std::string headerProblem(std::string_view name, std::string_view value) {
    if (name.empty()) return "a header needs a name";
    for (unsigned char c : name) {
        // RFC 9110 token characters.
        const bool token = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
        if (!token) return "header name \"" + std::string(name) + "\" has a character other than letters, digits and !#$%&'*+-.^_`|~";
    }
    if (reservedHeader(name))
        return "header \"" + std::string(name) + "\" is reserved (names starting with Nats- or Kanban- are the host's, "
               "Kanban-Parent aside)";
    for (unsigned char c : value)
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return "the value of header \"" + std::string(name) + "\" has a control character (line breaks are not allowed)";
    return "";
}

}  // namespace kanban::host
