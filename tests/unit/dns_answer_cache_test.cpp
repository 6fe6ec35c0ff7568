// AnswerCache: TTLs age, negative answers live for the SOA's negative TTL,
// the size is bounded.
#include <gtest/gtest.h>

#include "dns/answer_cache.h"
#include "dns/wire.h"

namespace weft::dns {
namespace {

using namespace std::chrono_literals;

ldns_rr* rr(const char* text) {
  ldns_rr* out = nullptr;
  EXPECT_EQ(ldns_rr_new_frm_str(&out, text, 0, nullptr, nullptr), LDNS_STATUS_OK) << text;
  return out;
}

std::vector<uint8_t> packet(const char* question, uint8_t rcode, std::vector<const char*> answers,
                            std::vector<const char*> authority, bool response) {
  PktPtr pkt(ldns_pkt_new());
  ldns_pkt_set_id(pkt.get(), 7);
  ldns_pkt_set_qr(pkt.get(), response);
  ldns_pkt_set_rcode(pkt.get(), rcode);
  ldns_rr* q = nullptr;
  EXPECT_EQ(ldns_rr_new_question_frm_str(&q, question, nullptr, nullptr), LDNS_STATUS_OK);
  ldns_pkt_push_rr(pkt.get(), LDNS_SECTION_QUESTION, q);
  for (auto* a : answers) ldns_pkt_push_rr(pkt.get(), LDNS_SECTION_ANSWER, rr(a));
  for (auto* a : authority) ldns_pkt_push_rr(pkt.get(), LDNS_SECTION_AUTHORITY, rr(a));
  return encode(pkt.get());
}

uint32_t first_answer_ttl(const std::vector<uint8_t>& wire) {
  PktPtr pkt = parse(wire);
  return ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(pkt.get()), 0));
}

TEST(DnsAnswerCache, AgesTtlsPatchesIdAndExpires) {
  AnswerCache cache(16, 3600);
  auto query = packet("host.example. IN A", 0, {}, {}, false);
  auto key = AnswerCache::key_of(query);
  ASSERT_TRUE(key);
  const auto t0 = AnswerCache::Clock::now();
  cache.put(*key, packet("host.example. IN A", 0, {"host.example. 60 IN A 192.0.2.1"}, {}, true), t0);
  auto hit = cache.get(*key, 0xabcd, t0 + 10s);
  ASSERT_TRUE(hit);
  EXPECT_EQ(wire_id(*hit), 0xabcd);
  EXPECT_EQ(first_answer_ttl(*hit), 50u);
  EXPECT_FALSE(cache.get(*key, 1, t0 + 60s));
  EXPECT_EQ(cache.size(), 0u);
}

TEST(DnsAnswerCache, NegativeAnswersLiveForTheSoaNegativeTtl) {
  AnswerCache cache(16, 3600);
  auto key = *AnswerCache::key_of(packet("gone.example. IN A", 0, {}, {}, false));
  const auto t0 = AnswerCache::Clock::now();
  cache.put(key, packet("gone.example. IN A", LDNS_RCODE_NXDOMAIN, {}, {"example. 300 IN SOA ns. host. 1 2 3 4 30"}, true),
            t0);
  auto hit = cache.get(key, 1, t0 + 29s);
  ASSERT_TRUE(hit);
  EXPECT_EQ(wire_rcode(*hit), LDNS_RCODE_NXDOMAIN);
  EXPECT_FALSE(cache.get(key, 1, t0 + 30s));
  // Without an SOA there is no negative TTL: not cached.
  cache.put(key, packet("gone.example. IN A", LDNS_RCODE_NXDOMAIN, {}, {}, true), t0);
  EXPECT_FALSE(cache.get(key, 1, t0));
  // Failures are never cached.
  cache.put(key, packet("gone.example. IN A", LDNS_RCODE_SERVFAIL, {}, {"example. 300 IN SOA ns. host. 1 2 3 4 30"}, true), t0);
  EXPECT_FALSE(cache.get(key, 1, t0));
}

TEST(DnsAnswerCache, BoundedLeastRecentlyUsedFirst) {
  AnswerCache cache(2, 3600);
  const auto t0 = AnswerCache::Clock::now();
  auto put = [&](const char* name) {
    std::string q = std::string(name) + " IN A";
    std::string a = std::string(name) + " 60 IN A 192.0.2.1";
    auto key = *AnswerCache::key_of(packet(q.c_str(), 0, {}, {}, false));
    cache.put(key, packet(q.c_str(), 0, {a.c_str()}, {}, true), t0);
    return key;
  };
  auto a = put("a.example.");
  auto b = put("b.example.");
  EXPECT_TRUE(cache.get(a, 1, t0));  // a is now the most recent
  auto c = put("c.example.");
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_TRUE(cache.get(a, 1, t0));
  EXPECT_FALSE(cache.get(b, 1, t0));
  EXPECT_TRUE(cache.get(c, 1, t0));
}

TEST(DnsAnswerCache, TtlIsCappedAndKeysIgnoreCase) {
  AnswerCache cache(16, 10);
  const auto t0 = AnswerCache::Clock::now();
  auto key = *AnswerCache::key_of(packet("Host.Example. IN A", 0, {}, {}, false));
  EXPECT_EQ(key, *AnswerCache::key_of(packet("host.example. IN A", 0, {}, {}, false)));
  cache.put(key, packet("host.example. IN A", 0, {"host.example. 86400 IN A 192.0.2.1"}, {}, true), t0);
  EXPECT_TRUE(cache.get(key, 1, t0 + 9s));
  EXPECT_FALSE(cache.get(key, 1, t0 + 10s));
}

}  // namespace
}  // namespace weft::dns
