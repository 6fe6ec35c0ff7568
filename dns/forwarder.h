// Sends the queries weft does not own to upstream resolvers: UDP first, TCP
// when the answer comes back truncated, the next upstream on a timeout or a
// failure, SERVFAIL when all fail. The client's ID and EDNS0 options are
// kept (the query goes upstream as the client sent it, with an ID of our
// own). Sockets are opened in the namespace of the thread that forwards.
//
// The UDP path costs no socket and no timer per query: each upstream has a
// small pool of connected sockets (each on its own kernel-chosen random
// port, replaced after a number of queries so the ports keep moving), the
// queries in flight sit in a bounded table keyed by a random upstream ID,
// and one timer follows the earliest deadline. An answer is taken only from
// the socket its query went out on, with its ID and its question.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dns/answer_cache.h"

namespace weft::dns {

struct ForwarderConfig {
  std::vector<boost::asio::ip::udp::endpoint> upstreams;
  std::chrono::milliseconds timeout{2000};  // per upstream and transport
  std::size_t max_in_flight = 1024;         // at most 32768 (upstream IDs are unique among them)
  std::size_t cache_entries = 4096;
  uint32_t max_cache_ttl_seconds = 3600;
  std::size_t sockets_per_upstream = 4;
  // A socket that has carried this many queries is closed once its last
  // answer is in, and a new one (a new random port) takes its place.
  std::size_t queries_per_socket = 4096;
};

// "IP" or "IP:PORT" (port 53 by default); nothing when malformed.
std::optional<boost::asio::ip::udp::endpoint> parse_upstream(std::string_view text);

class Forwarder {
 public:
  // Called once per forward, with the answer for the client (its ID).
  using Done = std::function<void(std::vector<uint8_t>)>;

  Forwarder(boost::asio::io_context& io, ForwarderConfig config);
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // `query` must hold at least a header. Over the in-flight bound the answer
  // is SERVFAIL at once.
  void forward(std::span<const uint8_t> query, Done done);
  // Answers every query in flight with SERVFAIL and closes the upstream
  // sockets: nothing of the forwarder keeps the io_context busy afterwards.
  void stop();

  std::size_t in_flight() const { return in_flight_; }
  std::size_t cached() const { return cache_.size(); }
  // UDP sockets open towards the upstreams (pooled and retiring ones).
  std::size_t upstream_sockets() const;

 private:
  struct UpstreamSocket;
  struct TcpAttempt;
  struct Slot;
  using SlotIndex = uint32_t;
  static constexpr SlotIndex none = UINT32_MAX;

  std::shared_ptr<UpstreamSocket> socket_for(std::size_t upstream);
  void wait_answers(const std::shared_ptr<UpstreamSocket>& socket);
  void read_answers(const std::shared_ptr<UpstreamSocket>& socket);
  void on_udp_answer(UpstreamSocket& socket, std::span<const uint8_t> answer);
  void fail_waiting(const std::shared_ptr<UpstreamSocket>& socket);
  void release_socket(Slot& slot);

  void try_udp(SlotIndex index);
  void try_tcp(SlotIndex index);
  void next_upstream(SlotIndex index);
  void finish(SlotIndex index, std::vector<uint8_t> answer);

  // The deadline list: slots waiting on an attempt, earliest first (every
  // attempt has the same timeout, so a new one goes last).
  void arm(SlotIndex index);
  void disarm(SlotIndex index);
  void schedule_timer();
  void on_timer();

  boost::asio::io_context& io_;
  ForwarderConfig config_;
  AnswerCache cache_;
  std::vector<std::unique_ptr<Slot>> slots_;  // grows to max_in_flight, then reused
  std::vector<SlotIndex> free_slots_;
  std::unordered_map<uint16_t, SlotIndex> by_id_;
  std::size_t in_flight_ = 0;
  std::vector<std::vector<std::shared_ptr<UpstreamSocket>>> pools_;  // per upstream
  std::vector<std::size_t> next_in_pool_;
  std::vector<std::shared_ptr<UpstreamSocket>> retiring_;
  static constexpr std::size_t answer_batch = 8;
  static constexpr std::size_t max_udp_answer = 65535;
  std::unique_ptr<uint8_t[]> answer_buffers_;  // answer_batch slots, made on the first answer
  // Query IDs: kernel randomness fetched a page at a time. (glibc 2.36's
  // arc4random is one getrandom call each: a system call per forwarded
  // query, ~1.3% of the forwarding server's time in `perf`.)
  uint16_t random_id();
  std::array<uint8_t, 4096> random_bytes_{};
  std::size_t random_used_ = random_bytes_.size();
  SlotIndex first_deadline_ = none, last_deadline_ = none;
  boost::asio::steady_timer timer_;
  bool timer_armed_ = false;
  // Handlers that run after the forwarder is gone (with operation_aborted)
  // see this false and touch nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace weft::dns
