// Sends the queries weft does not own to upstream resolvers: UDP first, TCP
// when the answer comes back truncated, the next upstream on a timeout or a
// failure, SERVFAIL when all fail. The client's ID and EDNS0 options are
// kept (the query goes upstream as the client sent it, with an ID of our
// own). Sockets are opened in the namespace of the thread that forwards.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string_view>
#include <vector>

#include "dns/answer_cache.h"

namespace weft::dns {

struct ForwarderConfig {
  std::vector<boost::asio::ip::udp::endpoint> upstreams;
  std::chrono::milliseconds timeout{2000};  // per upstream and transport
  std::size_t max_in_flight = 1024;
  std::size_t cache_entries = 4096;
  uint32_t max_cache_ttl_seconds = 3600;
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

  std::size_t in_flight() const { return *in_flight_; }
  std::size_t cached() const { return cache_.size(); }

 private:
  struct Job;
  void try_udp(const std::shared_ptr<Job>& job);
  void receive_udp(const std::shared_ptr<Job>& job, unsigned attempt);
  void try_tcp(const std::shared_ptr<Job>& job);
  void next_upstream(const std::shared_ptr<Job>& job);
  void finish(const std::shared_ptr<Job>& job, std::vector<uint8_t> answer);

  boost::asio::io_context& io_;
  ForwarderConfig config_;
  AnswerCache cache_;
  std::mt19937 ids_;
  // Shared with the jobs so a job finishing after the forwarder is gone
  // (its handlers run with operation_aborted) touches nothing freed.
  std::shared_ptr<std::size_t> in_flight_ = std::make_shared<std::size_t>(0);
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace weft::dns
