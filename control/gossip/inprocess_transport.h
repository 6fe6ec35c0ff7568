// Memberlist instances of one process talking without sockets, as
// memberlist's MockNetwork: packets and streams are handed over through the
// io_context, in order and without loss unless a test cuts a node off.
// Tests run clusters this way faster and with the same outcome every time.
#pragma once

#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <set>

#include "control/gossip/transport.h"

namespace weft::control::gossip {

class InProcessTransport;

class InProcessNetwork : public std::enable_shared_from_this<InProcessNetwork> {
 public:
  static std::shared_ptr<InProcessNetwork> create(boost::asio::io_context& io);

  // A transport on this network; the network must outlive what it sends.
  std::unique_ptr<Transport> transport();

  // Packets to and from `at`, and streams dialled to it, are lost while
  // cut off: a node whose network failed (it keeps running).
  void cut_off(const HostPort& at, bool cut = true);
  // Only packets to and from `at` are lost: its UDP is firewalled, its
  // streams (TCP) still work.
  void drop_packets(const HostPort& at, bool drop = true);

  // Counters, for tests that assert what went over the network.
  std::size_t packets_delivered() const { return packets_delivered_; }
  std::size_t streams_opened() const { return streams_opened_; }

 private:
  friend class InProcessTransport;
  explicit InProcessNetwork(boost::asio::io_context& io) : io_(io) {}
  bool reachable(const HostPort& from, const HostPort& to) const {
    return !cut_off_.contains(from) && !cut_off_.contains(to);
  }
  bool packets_pass(const HostPort& from, const HostPort& to) const {
    return reachable(from, to) && !packets_dropped_.contains(from) && !packets_dropped_.contains(to);
  }

  boost::asio::io_context& io_;
  std::map<HostPort, InProcessTransport*> listeners_;
  std::set<HostPort> cut_off_;
  std::set<HostPort> packets_dropped_;
  std::uint16_t next_port_ = 30000;
  std::size_t packets_delivered_ = 0;
  std::size_t streams_opened_ = 0;
};

}  // namespace weft::control::gossip
