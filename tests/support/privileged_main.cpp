// main() of weft_privileged_tests: tests that create network namespaces,
// devices and mounts, which only root may. Run by anyone else, they are
// skipped with a message (ctest reports them as skipped), so that a
// non-root `ctest` stays meaningful; `ctest -L unit` leaves them out anyway.
#include <unistd.h>

#include <cstdio>
#include <string>

#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (::geteuid() != 0 && !GTEST_FLAG_GET(list_tests)) {
    // gtest's marker, and "needs root (", which ctest reads as "skipped"
    // (cmake/gtest_suites_list.cmake).
    std::printf("[  SKIPPED ] %s: needs root (creates network namespaces, devices and mounts)\n",
                GTEST_FLAG_GET(filter).c_str());
    return 0;
  }
  return RUN_ALL_TESTS();
}
