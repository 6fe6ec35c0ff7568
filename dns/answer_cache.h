// A bounded cache of upstream answers keyed by question, honouring the
// answers' TTLs and, for NXDOMAIN/NODATA, the negative TTL from the SOA
// (RFC 2308). Least recently used entries go first when it is full.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace weft::dns {

class AnswerCache {
 public:
  using Clock = std::chrono::steady_clock;

  AnswerCache(std::size_t max_entries, uint32_t max_ttl_seconds)
      : max_entries_(max_entries), max_ttl_(max_ttl_seconds) {}

  // The cache key of a query, or nothing if it is not cacheable.
  static std::optional<std::string> key_of(std::span<const uint8_t> query);

  // A copy of the stored answer with the query's ID and TTLs aged.
  std::optional<std::vector<uint8_t>> get(const std::string& key, uint16_t id, Clock::time_point now);
  void put(const std::string& key, std::span<const uint8_t> response, Clock::time_point now);

  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string key;
    std::vector<uint8_t> wire;
    Clock::time_point stored;
    uint32_t ttl;
  };
  std::size_t max_entries_;
  uint32_t max_ttl_;
  std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> entries_;
};

}  // namespace weft::dns
