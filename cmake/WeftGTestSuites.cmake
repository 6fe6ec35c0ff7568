# weft_add_gtest_suites(TARGET LABEL): registers one ctest test per
# googletest suite of TARGET, labelled LABEL. The suites are listed from the
# binary after each link (as gtest_discover_tests lists single tests).
#
# Why suites and not single tests: each ctest test is a process, and a
# sanitized test binary takes ~0.5 s to start. With one process per test that
# start was most of the unit tests' run time; a suite is the unit a developer
# runs anyway (`--gtest_filter=Suite.*`), and its tests share no process with
# another suite's.
#
# WEFT_GTEST_SUITE_SECONDS ("Suite=seconds,...", set before the call): what
# the longest suites take, given to ctest as their COST.
set(WEFT_GTEST_SUITES_LIST_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/gtest_suites_list.cmake)

function(weft_add_gtest_suites target label)
  set(suites_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_suites.cmake")
  set(include_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_include.cmake")
  add_custom_command(TARGET ${target} POST_BUILD
    COMMAND ${CMAKE_COMMAND}
      -D "TEST_EXECUTABLE=$<TARGET_FILE:${target}>"
      -D "TEST_LABEL=${label}"
      -D "SUITES_FILE=${suites_file}"
      -D "SUITE_SECONDS=${WEFT_GTEST_SUITE_SECONDS}"
      -P "${WEFT_GTEST_SUITES_LIST_SCRIPT}"
    BYPRODUCTS "${suites_file}"
    VERBATIM)
  # ctest reads this at every run: the suites once the binary is built, a
  # failing placeholder before.
  file(WRITE "${include_file}"
    "if(EXISTS \"${suites_file}\")\n"
    "  include(\"${suites_file}\")\n"
    "else()\n"
    "  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\n"
    "  set_tests_properties(${target}_NOT_BUILT PROPERTIES LABELS ${label})\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${include_file}")
endfunction()
