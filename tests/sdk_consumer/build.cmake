# ctest fixture: install the SDK (the `dev` component only, as the
# tps-kanban-dev package does) to a temporary prefix, then configure and
# build this out-of-tree project against it with find_package(KanbanSDK).
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "${var} is required")
    endif()
endforeach()
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "failed (${rc}): ${ARGN}")
    endif()
endfunction()
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix --component dev)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix
    -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
if(NOT EXISTS ${WORK_DIR}/build/echo.so)
    message(FATAL_ERROR "echo.so was not built")
endif()
# The plugin's own test (kanban/testing.hpp from the installed package).
if(NOT EXISTS ${WORK_DIR}/build/echo_test)
    message(FATAL_ERROR "echo_test was not built (GoogleTest not found?)")
endif()
run(${CMAKE_CTEST_COMMAND} --test-dir ${WORK_DIR}/build --output-on-failure)
