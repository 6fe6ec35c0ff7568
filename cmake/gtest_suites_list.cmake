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
set(content "")
set(count 0)
foreach(line IN LISTS lines)
  if(line MATCHES "^([^ #][^ ]*)\\.( .*)?$")
    set(suite "${CMAKE_MATCH_1}")
    string(APPEND content
      "add_test([==[${suite}]==] \"${TEST_EXECUTABLE}\" [==[--gtest_filter=${suite}.*]==])\n"
      "set_tests_properties([==[${suite}]==] PROPERTIES LABELS ${TEST_LABEL} TIMEOUT 900\n"
      "  SKIP_REGULAR_EXPRESSION [==[: needs root \\(]==])\n")
    math(EXPR count "${count} + 1")
  endif()
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "${TEST_EXECUTABLE} lists no test suite")
endif()
file(WRITE "${SUITES_FILE}" "${content}")
