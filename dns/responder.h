// Answers one DNS query from a NameView: the names weft owns are answered
// here (never forwarded), everything else is handed back as "forward".
// Pure: no sockets, no clock, so the fuzzer and the tests drive it directly.
// handle() may run on several threads at once (the view is read-only to it).
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "dns/name_view.h"

namespace weft::dns {

enum class Transport { udp, tcp };

struct ResponderConfig {
  uint32_t ttl_seconds = 5;
  // The largest UDP answer we send whatever the client's EDNS0 size says.
  uint16_t max_udp_size = 4096;
  // Answer plain A queries for owned names without ldns (same bytes).
  bool fast_path = true;
};

struct Reply {
  enum class Kind { answer, forward, drop };
  Kind kind = Kind::drop;
  std::vector<uint8_t> wire;     // the answer, for Kind::answer
  std::size_t udp_limit = 512;   // the client's limit, for a forwarded answer too
};

class Responder {
 public:
  Responder(const NameView& view, ResponderConfig config) : view_(view), config_(config) {}

  Reply handle(std::span<const uint8_t> query, Transport transport, std::string_view context) const;
  // The same into a reply the caller reuses (its buffer's capacity stays,
  // so the server's UDP batches allocate nothing per answer).
  void handle(std::span<const uint8_t> query, Transport transport, std::string_view context, Reply& reply) const;

  const ResponderConfig& config() const { return config_; }
  uint64_t fast_answers() const { return fast_answers_.load(std::memory_order_relaxed); }
  uint64_t fast_forwards() const { return fast_forwards_.load(std::memory_order_relaxed); }

 private:
  bool fast_answer(std::span<const uint8_t> query, Transport transport, std::string_view context, Reply& reply) const;

  const NameView& view_;
  ResponderConfig config_;
  // Relaxed atomics: the server's receive threads answer beside its loop.
  mutable std::atomic<uint64_t> fast_answers_{0};
  mutable std::atomic<uint64_t> fast_forwards_{0};
};

}  // namespace weft::dns
