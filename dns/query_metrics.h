// What the DNS server counts for weftd's /metrics: queries by transport and
// type, answers by rcode, and the time from a query's arrival to its answer
// (forwarded ones included). Fixed arrays of relaxed atomics: the server's
// thread bumps them, a scrape reads them from another; nothing grows with
// traffic, and a label is one of a fixed set of names.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <string_view>

#include "dns/responder.h"
#include "observe/metrics_histogram.h"

namespace weft::dns {

class QueryMetrics {
 public:
  // Query types with a name of their own; anything else counts as "other".
  static constexpr std::array<std::string_view, 11> kTypeNames{"A",  "NS",  "CNAME", "SOA", "PTR",  "MX",
                                                               "TXT", "AAAA", "SRV",  "ANY", "other"};
  static constexpr std::array<std::uint16_t, 10> kTypeCodes{1, 2, 5, 6, 12, 15, 16, 28, 33, 255};
  static constexpr std::array<std::string_view, 7> kRcodeNames{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                                               "NOTIMP",  "REFUSED", "other"};

  // The query's type index (kTypeNames) from its first question; "other"
  // when it has none or is too short to hold one.
  static std::size_t type_index(std::span<const std::uint8_t> query) {
    std::size_t at = 12;
    if (query.size() < at + 5 || ((query[4] << 8) | query[5]) == 0) return kTypeNames.size() - 1;
    while (at < query.size() && query[at] != 0) {
      if ((query[at] & 0xC0) != 0) return kTypeNames.size() - 1;  // no compression in a question
      at += query[at] + 1u;
    }
    if (at + 2 >= query.size()) return kTypeNames.size() - 1;
    const std::uint16_t type = static_cast<std::uint16_t>(query[at + 1] << 8 | query[at + 2]);
    for (std::size_t i = 0; i < kTypeCodes.size(); ++i)
      if (kTypeCodes[i] == type) return i;
    return kTypeNames.size() - 1;
  }

  void query(Transport transport, std::span<const std::uint8_t> query) {
    requests_[transport == Transport::udp ? 0 : 1][type_index(query)].fetch_add(1, std::memory_order_relaxed);
  }
  // An answer sent (or handed to the socket) `elapsed` after its query came.
  void answered(std::span<const std::uint8_t> answer, std::chrono::nanoseconds elapsed) {
    std::size_t rcode = kRcodeNames.size() - 1;
    if (answer.size() >= 4 && (answer[3] & 0x0F) < kRcodeNames.size() - 1) rcode = answer[3] & 0x0F;
    responses_[rcode].fetch_add(1, std::memory_order_relaxed);
    duration_.observe(elapsed);
  }

  std::uint64_t requests(std::size_t proto, std::size_t type) const {
    return requests_[proto][type].load(std::memory_order_relaxed);
  }
  std::uint64_t responses(std::size_t rcode) const { return responses_[rcode].load(std::memory_order_relaxed); }
  const observe::AtomicHistogram& duration() const { return duration_; }

 private:
  std::array<std::array<std::atomic<std::uint64_t>, kTypeNames.size()>, 2> requests_{};  // [udp, tcp]
  std::array<std::atomic<std::uint64_t>, kRcodeNames.size()> responses_{};
  observe::AtomicHistogram duration_{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05,   0.1,     0.25,   0.5,   1,      2.5,   5};
};

}  // namespace weft::dns
