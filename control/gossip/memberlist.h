// A memberlist node: SWIM failure detection with Lifeguard, gossip of
// membership changes and user messages, and TCP push/pull anti-entropy,
// speaking hashicorp/memberlist's wire protocol so weft and serf/Consul-style
// agents can share one cluster.
//
// Threading: everything runs on the io_context given to the constructor,
// which must be driven by a single thread (or the caller serialises access).
// Public methods must be called on that thread (use asio::post from
// elsewhere). Delegate callbacks are invoked on it too.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>

#include "control/gossip/keyring.h"
#include "control/gossip/messages.h"
#include "control/gossip/stream.h"
#include "control/gossip/transport.h"

namespace weft::control::gossip {

namespace asio = boost::asio;
using std::chrono::milliseconds;

// Timings default to memberlist's DefaultLANConfig.
struct Config {
  std::string name;                   // unique in the cluster
  std::string bind_addr = "0.0.0.0";  // UDP and TCP listen on the same address and port
  std::uint16_t bind_port = 7946;     // 0 picks a free port (tests)
  std::string advertise_addr;         // defaults to bind_addr; required when binding 0.0.0.0 / ::
  std::uint16_t advertise_port = 0;   // 0: the bound port

  // Also the whole life of an inbound stream: a slow sender cannot hold its slot longer.
  milliseconds tcp_timeout{10'000};
  // What one unauthenticated TCP peer can cost: a message (frame, plaintext
  // and decompressed) of at most max_stream_size bytes, refused from its
  // header when larger; at most max_inbound_streams open at once (more are
  // closed as they arrive); and all inbound buffers together at most
  // max_inbound_buffer bytes (0: twice max_stream_size).
  std::size_t max_stream_size = kDefaultMaxStreamBytes;
  std::size_t max_inbound_streams = 64;
  std::size_t max_inbound_buffer = 0;
  int indirect_checks = 3;
  int retransmit_mult = 4;
  int suspicion_mult = 4;
  int suspicion_max_timeout_mult = 6;
  milliseconds push_pull_interval{30'000};  // scaled up past 32 nodes (pushPullScale)
  milliseconds probe_timeout{500};
  milliseconds probe_interval{1'000};
  bool disable_tcp_pings = false;
  int awareness_max_multiplier = 8;
  int gossip_nodes = 3;
  milliseconds gossip_interval{200};
  milliseconds gossip_to_the_dead_time{30'000};
  milliseconds dead_node_reclaim_time{0};  // 0: a dead node's name can't move to a new address

  // With a keyring everything sent is encrypted and, with verify_incoming,
  // anything that does not decrypt is dropped.
  std::shared_ptr<Keyring> keyring;
  bool gossip_verify_incoming = true;
  bool gossip_verify_outgoing = true;

  // LZW-compress what is sent (packets and streams), as memberlist does by
  // default; compressed input is always accepted. A push/pull of 100
  // members shrinks about fivefold.
  bool enable_compression = true;
  std::size_t udp_buffer_size = 1400;
  VersionVector versions = kDefaultVersions;
};

struct Member {
  std::string name;
  asio::ip::address addr;
  std::uint16_t port = 0;
  NodeStateKind state = NodeStateKind::kAlive;
  std::uint32_t incarnation = 0;
  Bytes meta;
  VersionVector vsn{};  // pmin, pmax, pcur, dmin, dmax, dcur

  std::string address() const;  // "ip:port"
};

// The application side (weft's replicated tables, or SerfCompat in front of them).
class Delegate {
 public:
  virtual ~Delegate() = default;
  // Metadata advertised in our alive messages; at most `limit` bytes.
  virtual Bytes node_meta(std::size_t limit) = 0;
  // A user message received by gossip or stream (without memberlist's type byte).
  virtual void notify_msg(ByteView msg) = 0;
  // Messages to piggyback; each costs `overhead` bytes on top of its size and
  // the total must not exceed `limit`.
  virtual std::vector<Bytes> get_broadcasts(std::size_t overhead, std::size_t limit) = 0;
  // Full state for push/pull; `join` is true when the exchange is a join.
  virtual Bytes local_state(bool join) = 0;
  virtual void merge_remote_state(ByteView state, bool join) = 0;
};

class EventDelegate {
 public:
  virtual ~EventDelegate() = default;
  virtual void notify_join(const Member& m) = 0;
  virtual void notify_leave(const Member& m) = 0;  // dead or left: see m.state
  virtual void notify_update(const Member& m) = 0;
};

namespace detail {
class MemberlistImpl;
}

class Memberlist {
 public:
  // Delegates are borrowed and must outlive the Memberlist (or its shutdown()).
  // Without a transport it uses UDP and TCP (make_net_transport); tests may
  // pass one from an InProcessNetwork.
  Memberlist(asio::io_context& io, Config config, Delegate* delegate = nullptr, EventDelegate* events = nullptr,
             std::unique_ptr<Transport> transport = nullptr);
  ~Memberlist();  // shuts down (without leaving)
  Memberlist(const Memberlist&) = delete;
  Memberlist& operator=(const Memberlist&) = delete;

  // Binds UDP+TCP (listens on the transport), announces ourselves alive and
  // starts the timers. Throws std::runtime_error with the address if binding fails.
  void start();

  // Push/pull join with each "ip:port" (or "name/ip:port"); `done` gets the
  // number of peers that answered and, if none did, the errors.
  using JoinHandler = std::function<void(int contacted, std::string error)>;
  void join(std::vector<std::string> peers, JoinHandler done);

  // Graceful leave: broadcasts a `dead` about ourselves (From == us, so peers
  // record "left") and calls `done(true)` once it was gossiped, or
  // `done(false)` after `timeout`. Keeps answering probes until shutdown().
  void leave(milliseconds timeout, std::function<void(bool)> done);

  // Best-effort user message to one member over UDP (piggybacks broadcasts).
  bool send_best_effort(const std::string& node, ByteView msg);
  // Reliable user message over TCP; `done(error)` with empty error on success.
  void send_reliable(const std::string& node, Bytes msg, std::function<void(std::string)> done);

  void shutdown();

  std::vector<Member> members() const;  // every known node, any state
  std::size_t num_alive() const;        // alive + suspect, including us
  std::uint16_t bound_port() const;
  const Config& config() const;

 private:
  std::shared_ptr<detail::MemberlistImpl> impl_;
};

}  // namespace weft::control::gossip
