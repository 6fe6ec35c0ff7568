// weftd's heap release policy (tools/weftd/heap_release.h): a trim once a
// large change of anon RSS has settled, never while it goes on, at most once
// per interval, backing off when trims give nothing back.
#include <chrono>

#include <gtest/gtest.h>

#include "tools/weftd/heap_release.h"

namespace weft::tools {
namespace {

using namespace std::chrono_literals;
using Clock = HeapReleasePolicy::Clock;
constexpr std::size_t MB = 1u << 20;

HeapReleaseConfig config() {
  return {.check_interval = 5000ms, .min_change = 16 * MB, .settled_change = 2 * MB, .growth_change = 48 * MB,
          .min_interval = 30000ms, .max_interval = 120000ms, .min_gain = 4 * MB};
}

TEST(HeapReleasePolicy, TrimsOnceALargeChangeHasSettledNotWhileItGoesOn) {
  HeapReleasePolicy policy(config());
  auto t = Clock::time_point{} + 1h;
  EXPECT_FALSE(policy.check(10 * MB, t));       // the start
  EXPECT_FALSE(policy.check(40 * MB, t += 5s))  // growing
      << "a change in progress is no time to trim";
  EXPECT_FALSE(policy.check(50 * MB, t += 5s));
  EXPECT_FALSE(policy.check(30 * MB, t += 5s)) << "shrinking is a change too";
  EXPECT_TRUE(policy.check(31 * MB, t += 5s)) << "settled, 21 MB from the start";
}

TEST(HeapReleasePolicy, ALongArrivalIsTrimmedEveryIntervalWhileItGrows) {
  HeapReleasePolicy policy(config());
  auto t = Clock::time_point{} + 1h;
  EXPECT_FALSE(policy.check(10 * MB, t));
  EXPECT_FALSE(policy.check(40 * MB, t += 5s)) << "30 MB grown: below growth_change";
  EXPECT_TRUE(policy.check(70 * MB, t += 5s)) << "60 MB grown, not settled";
  policy.trimmed(70 * MB, 50 * MB, t);
  EXPECT_FALSE(policy.check(100 * MB, t += 5s)) << "50 MB grown again, but 5 s after the trim";
  EXPECT_TRUE(policy.check(130 * MB, t += 25s));
}

TEST(HeapReleasePolicy, SmallChangesNeverTrim) {
  HeapReleasePolicy policy(config());
  auto t = Clock::time_point{} + 1h;
  EXPECT_FALSE(policy.check(10 * MB, t));
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(policy.check(20 * MB, t += 5s)) << "10 MB above the start: below min_change";
}

TEST(HeapReleasePolicy, AtMostOncePerIntervalAndBacksOffWhenNothingComesBack) {
  HeapReleasePolicy policy(config());
  auto t = Clock::time_point{} + 1h;
  policy.check(10 * MB, t);
  policy.check(80 * MB, t += 5s);
  ASSERT_TRUE(policy.check(80 * MB, t += 5s));
  policy.trimmed(80 * MB, 60 * MB, t);  // gave back 20 MB
  EXPECT_EQ(policy.interval(), 30000ms);

  policy.check(90 * MB, t += 5s);
  EXPECT_FALSE(policy.check(90 * MB, t += 5s)) << "settled, but 10 s after the last trim";
  EXPECT_TRUE(policy.check(90 * MB, t += 20s)) << "30 s after it";
  policy.trimmed(90 * MB, 89 * MB, t);  // gave back 1 MB: not worth it
  EXPECT_EQ(policy.interval(), 60000ms);

  policy.check(120 * MB, t += 5s);
  EXPECT_FALSE(policy.check(120 * MB, t += 30s)) << "backed off to 60 s";
  EXPECT_TRUE(policy.check(120 * MB, t += 30s));
  policy.trimmed(120 * MB, 120 * MB, t);
  policy.check(150 * MB, t += 5s);
  policy.trimmed(150 * MB, 150 * MB, t += 200s);
  EXPECT_EQ(policy.interval(), 120000ms) << "at most max_interval";
  policy.trimmed(150 * MB, 100 * MB, t += 200s);
  EXPECT_EQ(policy.interval(), 30000ms) << "a trim that gains resets it";
}

}  // namespace
}  // namespace weft::tools
