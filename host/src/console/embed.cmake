# Writes the console page into a C++ source file (a raw string literal), so
# that kanband serves it from its own binary: no file to install, no CDN.
#   cmake -DIN=console.html -DOUT=console_page.cpp -P embed.cmake
file(READ "${IN}" page)
string(FIND "${page}" ")KANBAN_PAGE\"" clash)
if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${IN} contains the raw-string delimiter")
endif()
file(WRITE "${OUT}.tmp" "// Generated from console.html by embed.cmake; do not edit.\n#include \"console/console_page.hpp\"\n\nnamespace kanban::host::console {\nconst std::string_view kPage = R\"KANBAN_PAGE(${page})KANBAN_PAGE\";\n}\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
