#include <gtest/gtest.h>

#include "control/gossip/broadcast_queue.h"
#include "control/gossip/serf_compat.h"
#include "control/gossip/suspicion.h"

namespace gossip = weft::control::gossip;
using gossip::Bytes;
using std::chrono::milliseconds;

TEST(GossipBroadcastQueue, RetransmitLimitIsMultTimesCeilLog10) {
  EXPECT_EQ(gossip::retransmit_limit(4, 0), 0);
  EXPECT_EQ(gossip::retransmit_limit(4, 1), 4);
  EXPECT_EQ(gossip::retransmit_limit(4, 9), 4);
  EXPECT_EQ(gossip::retransmit_limit(4, 10), 8);
  EXPECT_EQ(gossip::retransmit_limit(4, 99), 8);
  EXPECT_EQ(gossip::retransmit_limit(3, 100), 9);
}

TEST(GossipBroadcastQueue, SendsEachMessageUpToTheLimitThenFinishes) {
  gossip::BroadcastQueue q(2, [] { return std::size_t{5}; });  // limit 2 * 1
  int finished = 0;
  q.queue(Bytes{1}, "a", [&] { ++finished; });
  EXPECT_EQ(q.get(2, 100).size(), 1u);
  EXPECT_EQ(finished, 0);
  EXPECT_EQ(q.get(2, 100).size(), 1u);
  EXPECT_EQ(finished, 1);
  EXPECT_EQ(q.size(), 0u);
  EXPECT_TRUE(q.get(2, 100).empty());
}

TEST(GossipBroadcastQueue, NewerMessageWithSameKeyInvalidatesOlder) {
  gossip::BroadcastQueue q(4, [] { return std::size_t{3}; });
  bool old_finished = false;
  q.queue(Bytes{'s', 'u', 's'}, "node-1", [&] { old_finished = true; });
  q.queue(Bytes{'o', 't', 'h'}, "node-2");
  q.queue(Bytes{'a', 'l', 'v'}, "node-1");
  EXPECT_TRUE(old_finished);
  EXPECT_EQ(q.size(), 2u);
  auto msgs = q.get(0, 100);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(std::count(msgs.begin(), msgs.end(), Bytes{'s', 'u', 's'}), 0);
  // Unkeyed messages never invalidate each other.
  q.queue(Bytes{1});
  q.queue(Bytes{1});
  EXPECT_EQ(q.size(), 4u);
}

TEST(GossipBroadcastQueue, PrefersFreshThenLargestThatFits) {
  gossip::BroadcastQueue q(10, [] { return std::size_t{10}; });
  q.queue(Bytes(10, 'a'), "a");
  ASSERT_EQ(q.get(0, 100).size(), 1u);  // 'a' now has 1 transmit
  q.queue(Bytes(5, 'b'), "b");
  q.queue(Bytes(8, 'c'), "c");
  q.queue(Bytes(50, 'd'), "d");
  // Budget 20 with 2 bytes overhead each: fresh 'c'(8) then 'b'(5); 'd' does
  // not fit; 'a' (older) does not fit in what is left.
  auto msgs = q.get(2, 20);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0], Bytes(8, 'c'));
  EXPECT_EQ(msgs[1], Bytes(5, 'b'));
}

TEST(GossipBroadcastQueue, PruneDropsMostTransmitted) {
  gossip::BroadcastQueue q(10, [] { return std::size_t{10}; });
  int finished = 0;
  q.queue(Bytes{1}, "old", [&] { ++finished; });
  q.get(0, 100);
  q.queue(Bytes{2}, "new");
  q.prune(1);
  EXPECT_EQ(finished, 1);
  auto msgs = q.get(0, 100);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0], Bytes{2});
}

TEST(GossipSuspicion, TimeoutShrinksWithConfirmations) {
  const milliseconds min(2000), max(30000);
  EXPECT_EQ(gossip::remaining_suspicion_time(0, 3, milliseconds(0), min, max), max);
  EXPECT_EQ(gossip::remaining_suspicion_time(3, 3, milliseconds(0), min, max), min);
  EXPECT_EQ(gossip::remaining_suspicion_time(3, 3, milliseconds(500), min, max), milliseconds(1500));
  // Values from memberlist's suspicion_test.go table.
  EXPECT_EQ(gossip::remaining_suspicion_time(1, 3, milliseconds(2000), min, max), milliseconds(14000));
  EXPECT_EQ(gossip::remaining_suspicion_time(2, 3, milliseconds(3000), min, max), milliseconds(4810));
  EXPECT_EQ(gossip::remaining_suspicion_time(4, 3, milliseconds(5000), min, max), milliseconds(-3000));
  EXPECT_EQ(gossip::suspicion_timeout(4, 1, milliseconds(1000)), milliseconds(4000));
  EXPECT_EQ(gossip::suspicion_timeout(4, 100, milliseconds(1000)), milliseconds(8000));
}

TEST(GossipSerf, TagsEncodeWithMagicByteAndMsgpackMap) {
  const gossip::Tags tags{{"role", "weft"}};
  const Bytes meta = gossip::encode_serf_tags(tags);
  const Bytes want{0xff, 0x81, 0xa4, 'r', 'o', 'l', 'e', 0xa4, 'w', 'e', 'f', 't'};
  EXPECT_EQ(meta, want);
  EXPECT_EQ(gossip::decode_serf_tags(meta), tags);
  EXPECT_EQ(gossip::decode_serf_tags(Bytes{'w', 'e', 'b'}), (gossip::Tags{{"role", "web"}}));
}

TEST(GossipSerf, LeaveIntentMatchesSerfEncoding) {
  const Bytes enc = gossip::encode_serf_leave({7, "w1", false});
  const Bytes want{0x00, 0x83, 0xa5, 'L', 'T', 'i', 'm', 'e', 0x07, 0xa4, 'N', 'o', 'd', 'e',
                   0xa2, 'w', '1', 0xa5, 'P', 'r', 'u', 'n', 'e', 0xc2};
  EXPECT_EQ(enc, want);
  auto back = gossip::decode_serf_leave(gossip::ByteView(enc).subspan(1));
  EXPECT_EQ(back.ltime, 7u);
  EXPECT_EQ(back.node, "w1");
  auto join = gossip::decode_serf_join(gossip::ByteView(gossip::encode_serf_join({9, "s1"})).subspan(1));
  EXPECT_EQ(join.ltime, 9u);
  EXPECT_EQ(join.node, "s1");
}

TEST(GossipSerf, PushPullCarriesWeftStateInAnExtraKey) {
  gossip::SerfPushPull pp;
  pp.ltime = 12;
  pp.status_ltimes = {{"s1", 3}, {"w1", 4}};
  pp.left_members = {"gone"};
  pp.weft_state = Bytes{1, 2, 3};
  const Bytes enc = gossip::encode_serf_push_pull(pp);
  EXPECT_EQ(enc[0], 2);
  auto back = gossip::decode_serf_push_pull(gossip::ByteView(enc).subspan(1));
  EXPECT_EQ(back.ltime, 12u);
  EXPECT_EQ(back.status_ltimes, pp.status_ltimes);
  EXPECT_EQ(back.left_members, pp.left_members);
  ASSERT_TRUE(back.weft_state.has_value());
  EXPECT_EQ(*back.weft_state, (Bytes{1, 2, 3}));
}

TEST(GossipSerf, LamportClockWitnessesLikeSerf) {
  gossip::LamportClock c;
  EXPECT_EQ(c.time(), 1u);
  c.witness(0);
  EXPECT_EQ(c.time(), 1u);
  c.witness(1);
  EXPECT_EQ(c.time(), 2u);
  c.witness(10);
  EXPECT_EQ(c.time(), 11u);
  EXPECT_EQ(c.increment(), 12u);
}
