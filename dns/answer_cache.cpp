#include "dns/answer_cache.h"

#include <algorithm>

#include "dns/wire.h"

namespace weft::dns {
namespace {

std::optional<uint32_t> cache_ttl(const ldns_pkt* pkt) {
  if (ldns_pkt_tc(pkt)) return std::nullopt;
  const auto rcode = ldns_pkt_get_rcode(pkt);
  const ldns_rr_list* answer = ldns_pkt_answer(pkt);
  if (rcode == LDNS_RCODE_NOERROR && ldns_rr_list_rr_count(answer) > 0) {
    uint32_t ttl = UINT32_MAX;
    for (size_t i = 0; i < ldns_rr_list_rr_count(answer); ++i)
      ttl = std::min(ttl, ldns_rr_ttl(ldns_rr_list_rr(answer, i)));
    return ttl;
  }
  if (rcode != LDNS_RCODE_NOERROR && rcode != LDNS_RCODE_NXDOMAIN) return std::nullopt;
  const ldns_rr_list* authority = ldns_pkt_authority(pkt);
  for (size_t i = 0; i < ldns_rr_list_rr_count(authority); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(authority, i);
    if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA || ldns_rr_rd_count(rr) < 7) continue;
    return std::min(ldns_rr_ttl(rr), ldns_rdf2native_int32(ldns_rr_rdf(rr, 6)));
  }
  return std::nullopt;  // a negative answer without SOA is not cached
}

}  // namespace

std::optional<std::string> AnswerCache::key_of(std::span<const uint8_t> query) {
  PktPtr pkt = parse(query);
  if (!pkt || ldns_rr_list_rr_count(ldns_pkt_question(pkt.get())) != 1) return std::nullopt;
  const ldns_rr* q = ldns_rr_list_rr(ldns_pkt_question(pkt.get()), 0);
  return owner_name(q) + '/' + std::to_string(ldns_rr_get_type(q)) + '/' + std::to_string(ldns_rr_get_class(q)) +
         (ldns_pkt_edns_do(pkt.get()) ? "/do" : "") + (ldns_pkt_cd(pkt.get()) ? "/cd" : "");
}

std::optional<std::vector<uint8_t>> AnswerCache::get(const std::string& key, uint16_t id, Clock::time_point now) {
  auto found = entries_.find(key);
  if (found == entries_.end()) return std::nullopt;
  auto entry = found->second;
  const auto age = std::chrono::duration_cast<std::chrono::seconds>(now - entry->stored).count();
  if (age >= entry->ttl) {
    lru_.erase(entry);
    entries_.erase(found);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, entry);
  PktPtr pkt = parse(entry->wire);
  if (!pkt) return std::nullopt;
  for (auto* list : {ldns_pkt_answer(pkt.get()), ldns_pkt_authority(pkt.get()), ldns_pkt_additional(pkt.get())}) {
    for (size_t i = 0; i < ldns_rr_list_rr_count(list); ++i) {
      ldns_rr* rr = ldns_rr_list_rr(list, i);
      const auto ttl = ldns_rr_ttl(rr);
      ldns_rr_set_ttl(rr, ttl > age ? static_cast<uint32_t>(ttl - age) : 0);
    }
  }
  ldns_pkt_set_id(pkt.get(), id);
  auto wire = encode(pkt.get());
  if (wire.empty()) return std::nullopt;
  return wire;
}

void AnswerCache::put(const std::string& key, std::span<const uint8_t> response, Clock::time_point now) {
  if (max_entries_ == 0) return;
  PktPtr pkt = parse(response);
  if (!pkt) return;
  auto ttl = cache_ttl(pkt.get());
  if (!ttl || *ttl == 0) return;
  if (auto old = entries_.find(key); old != entries_.end()) {
    lru_.erase(old->second);
    entries_.erase(old);
  }
  while (entries_.size() >= max_entries_) {
    entries_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{key, std::vector<uint8_t>(response.begin(), response.end()), now, std::min(*ttl, max_ttl_)});
  entries_.emplace(key, lru_.begin());
}

}  // namespace weft::dns
