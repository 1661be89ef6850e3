# kanban_add_plugin(<name> <source>...)
#
# Builds a TPS Kanban handler plugin `<name>.so` (no "lib" prefix) from the
# given sources, exactly as kanband expects it:
#   - hidden visibility; a version script exports only `kanban_plugin_v1`;
#   - -fno-gnu-unique (GCC) so that unloading an old generation really unmaps it;
#   - --no-undefined so a missing symbol fails at link time, and -z now/relro.
# Used by the in-tree plugins and by out-of-tree projects alike
# (find_package(KanbanSDK) makes it available).
include_guard(GLOBAL)

function(kanban_add_plugin name)
    if(NOT ARGN)
        message(FATAL_ERROR "kanban_add_plugin(${name}): no source files given")
    endif()
    # The map sits next to this file, in the source tree or the installed package.
    set(_KANBAN_PLUGIN_MAP "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/kanban_plugin.map")
    add_library(${name} MODULE ${ARGN})
    target_link_libraries(${name} PRIVATE KanbanSDK::sdk)
    set_target_properties(${name} PROPERTIES
        PREFIX ""
        C_VISIBILITY_PRESET hidden
        CXX_VISIBILITY_PRESET hidden
        VISIBILITY_INLINES_HIDDEN ON
        LINK_DEPENDS "${_KANBAN_PLUGIN_MAP}")
    target_compile_features(${name} PRIVATE cxx_std_20)
    target_compile_options(${name} PRIVATE $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-fno-gnu-unique>)
    target_link_options(${name} PRIVATE
        "LINKER:--version-script=${_KANBAN_PLUGIN_MAP}"
        "LINKER:--no-undefined"
        "LINKER:-z,relro,-z,now")
endfunction()
