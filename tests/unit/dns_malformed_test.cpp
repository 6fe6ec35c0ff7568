// Malformed queries sent as real datagrams: answered FORMERR/NOTIMP or
// dropped, and the server keeps answering afterwards.
#include <gtest/gtest.h>

#include "dns/wire.h"
#include "tests/unit/dns_test_support.h"

namespace weft::dns::testing {
namespace {

constexpr int formerr = 1;
constexpr int notimp = 4;

class DnsMalformedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    view_.set_network("front", {Service{"web", EndpointMode::vip, asio::ip::make_address_v4("10.0.1.2"), {}, {}}}, {});
    view_.set_context("ep", {"front"});
    harness_ = std::make_unique<ServerHarness>(view_, ResponderConfig{}, ForwarderConfig{},
                                               ServerLimits{.max_query_size = 1024});
    port_ = harness_->listen("ep");
    harness_->start();
  }
  void TearDown() override {
    // Still alive and answering.
    auto answer = send_query(port_, make_query("web", 1));
    ASSERT_TRUE(answer) << "server stopped answering";
    EXPECT_EQ(rcode_of(*answer), 0);
  }
  StaticNameView view_;
  std::unique_ptr<ServerHarness> harness_;
  uint16_t port_ = 0;
};

TEST_F(DnsMalformedTest, ValidQueryIsAnswered) {
  auto answer = send_query(port_, make_query("web", 1, 0x4242));
  ASSERT_TRUE(answer);
  EXPECT_EQ((*answer)[0], 0x42);
  EXPECT_EQ((*answer)[7], 1);  // one answer
}

TEST_F(DnsMalformedTest, TruncatedHeaderIsDropped) {
  EXPECT_FALSE(send_query(port_, {0x12, 0x34, 0x01, 0x00, 0x00}, std::chrono::milliseconds(200)));
  EXPECT_FALSE(send_query(port_, {}, std::chrono::milliseconds(200)));
}

TEST_F(DnsMalformedTest, ResponsesAreDropped) {
  auto q = make_query("web", 1);
  q[2] |= 0x80;
  EXPECT_FALSE(send_query(port_, q, std::chrono::milliseconds(200)));
}

TEST_F(DnsMalformedTest, ZeroQuestionsIsFormerr) {
  std::vector<uint8_t> q = {0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
  auto answer = send_query(port_, q);
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), formerr);
  EXPECT_EQ((*answer)[0], 0x12);
  EXPECT_EQ((*answer)[1], 0x34);
}

TEST_F(DnsMalformedTest, BadCountsAreFormerr) {
  for (int field : {5, 7, 9, 11}) {  // qd, an, ns, ar counts beyond what the packet holds
    auto q = make_query("web", 1);
    q[static_cast<std::size_t>(field)] = 3;
    auto answer = send_query(port_, q);
    ASSERT_TRUE(answer) << field;
    EXPECT_EQ(rcode_of(*answer), formerr) << field;
  }
}

// ldns keeps one TSIG record of the additional section and leaked the
// others (found by the fuzz target; under ASan this test fails on the leak
// when parse() lets such a packet through to ldns).
TEST_F(DnsMalformedTest, SeveralTsigRecordsAreFormerrAndLeakNothing) {
  auto q = make_query("other.example", 1);
  const uint8_t tsig[] = {0, 0, 250, 0, 255, 0, 0, 0, 0, 0, 0};  // root owner, TSIG, ANY, TTL 0, no rdata
  for (int i = 0; i < 3; ++i) q.insert(q.end(), std::begin(tsig), std::end(tsig));
  q[11] = 3;  // ARCOUNT
  auto answer = send_query(port_, q);
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), formerr);
  EXPECT_EQ(parse(q), nullptr);
  // One TSIG is a well-formed packet.
  auto one = make_query("other.example", 1);
  one.insert(one.end(), std::begin(tsig), std::end(tsig));
  one[11] = 1;
  EXPECT_NE(parse(one), nullptr);
}

TEST_F(DnsMalformedTest, TruncatedQuestionIsFormerr) {
  auto q = make_query("web", 1);
  q.resize(q.size() - 3);
  auto answer = send_query(port_, q);
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), formerr);
}

TEST_F(DnsMalformedTest, CompressionLoopIsFormerr) {
  // The question's name is a pointer to itself.
  std::vector<uint8_t> q = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1};
  auto answer = send_query(port_, q);
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), formerr);
  // Two pointers at each other.
  std::vector<uint8_t> q2 = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0xc0, 0x0f, 0xc0, 0x0c, 0, 1, 0, 1};
  answer = send_query(port_, q2);
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), formerr);
}

TEST_F(DnsMalformedTest, OversizedNameIsFormerr) {
  std::vector<uint8_t> q = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < 5; ++i) {  // 5 x 64 bytes: over the 255-byte limit
    q.push_back(63);
    q.insert(q.end(), 63, 'a');
  }
  q.insert(q.end(), {0, 0, 1, 0, 1});
  auto answer = send_query(port_, q);
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), formerr);
  // A label longer than 63.
  std::vector<uint8_t> q2 = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 64};
  q2.insert(q2.end(), 64, 'b');
  q2.insert(q2.end(), {0, 0, 1, 0, 1});
  answer = send_query(port_, q2);
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), formerr);
}

TEST_F(DnsMalformedTest, HugeEdnsIsClampedOrFormerr) {
  // OPT with a 65535-byte UDP size: a valid query, answered within our limit.
  auto q = make_query("web", 1);
  q[11] = 1;
  q.insert(q.end(), {0, 0, 41, 0xff, 0xff, 0, 0, 0, 0, 0, 0});
  auto answer = send_query(port_, q);
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), 0);
  EXPECT_LE(answer->size(), 4096u);
  // OPT claiming more option data than the packet holds.
  auto bad = make_query("web", 1);
  bad[11] = 1;
  bad.insert(bad.end(), {0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0xff, 0xff, 0, 1});
  answer = send_query(port_, bad);
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), formerr);
}

TEST_F(DnsMalformedTest, OtherOpcodesAreNotimp) {
  auto q = make_query("web", 1);
  q[2] = static_cast<uint8_t>((q[2] & 0x87) | (2 << 3));  // STATUS
  auto answer = send_query(port_, q);
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), notimp);
  q[2] = static_cast<uint8_t>((q[2] & 0x87) | (5 << 3));  // UPDATE
  answer = send_query(port_, q);
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), notimp);
}

TEST_F(DnsMalformedTest, OversizedDatagramIsDropped) {
  auto q = make_query("web", 1);
  q.resize(2000, 0);  // over max_query_size (1024)
  EXPECT_FALSE(send_query(port_, q, std::chrono::milliseconds(200)));
}

TEST_F(DnsMalformedTest, GarbageNeverCrashes) {
  std::mt19937 random(42);
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> packet(12 + random() % 100);
    for (auto& b : packet) b = static_cast<uint8_t>(random());
    packet[2] &= 0x7f;  // a query, so it is parsed
    send_query(port_, packet, std::chrono::milliseconds(0));
  }
}

}  // namespace
}  // namespace weft::dns::testing
