# Script mode (cmake -P), run after a test binary links; see
# WeftGTestSuites.cmake. Writes SUITES_FILE: one add_test per suite of
# TEST_EXECUTABLE, labelled TEST_LABEL. A suite whose binary says it
# "needs root" (tests/support/privileged_main.cpp) is reported as skipped; a
# suite with a few GTEST_SKIPs passes, with them named in its output.
execute_process(
  COMMAND "${TEST_EXECUTABLE}" --gtest_list_tests
  OUTPUT_VARIABLE listing
  ERROR_VARIABLE errors
  RESULT_VARIABLE rc
  TIMEOUT 120)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "listing the tests of ${TEST_EXECUTABLE} failed (${rc}):\n${errors}")
endif()

# A suite line starts in the first column and ends with "." (typed and
# parameterised suites add "  # TypeParam = ..."); test lines are indented.
string(REPLACE ";" "\\;" listing "${listing}")
string(REPLACE "\n" ";" lines "${listing}")
#
# Each suite's COST: its seconds from SUITE_SECONDS ("Suite=seconds,..."),
# else its number of tests. ctest starts the costliest first when it has no
# timings of its own yet (a clean clone, as in CI), so a long suite
# (LbDataplaneTest: ~50 BPF program loads) does not start last and run
# alone at the end of `ctest -j2`.
string(REPLACE "," ";" suite_seconds "${SUITE_SECONDS}")
set(content "")
set(count 0)
set(suite "")
set(tests 0)
macro(flush_suite)
  if(NOT suite STREQUAL "")
    foreach(pair IN LISTS suite_seconds)
      if(pair MATCHES "^(.+)=([0-9]+)$" AND CMAKE_MATCH_1 STREQUAL suite)
        set(tests "${CMAKE_MATCH_2}")
      endif()
    endforeach()
    string(APPEND content
      "add_test([==[${suite}]==] \"${TEST_EXECUTABLE}\" [==[--gtest_filter=${suite}.*]==])\n"
      "set_tests_properties([==[${suite}]==] PROPERTIES LABELS ${TEST_LABEL} TIMEOUT 900 COST ${tests}\n"
      "  SKIP_REGULAR_EXPRESSION [==[: needs root \\(]==])\n")
    math(EXPR count "${count} + 1")
  endif()
endmacro()
foreach(line IN LISTS lines)
  if(line MATCHES "^([^ #][^ ]*)\\.( .*)?$")
    set(next "${CMAKE_MATCH_1}")  # flush_suite() matches regexes too
    flush_suite()
    set(suite "${next}")
    set(tests 0)
  elseif(line MATCHES "^  [^ ]")
    math(EXPR tests "${tests} + 1")
  endif()
endforeach()
flush_suite()
if(count EQUAL 0)
  message(FATAL_ERROR "${TEST_EXECUTABLE} lists no test suite")
endif()
file(WRITE "${SUITES_FILE}" "${content}")
