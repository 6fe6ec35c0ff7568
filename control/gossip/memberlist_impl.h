// The inside of a Memberlist, split as hashicorp/memberlist splits it:
//   memberlist.cpp        lifecycle, join/leave, the public calls
//   memberlist_net.cpp    sending and receiving packets and streams (net.go)
//   memberlist_state.cpp  probing, gossip, push/pull, and the alive/suspect/
//                         dead state machine (state.go)
// Not part of the library's interface: include memberlist.h.
#pragma once

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "control/gossip/awareness.h"
#include "control/gossip/broadcast_queue.h"
#include "control/gossip/host_port.h"
#include "control/gossip/log_limiter.h"
#include "control/gossip/memberlist.h"
#include "control/gossip/packet.h"
#include "control/gossip/stream_conn.h"
#include "control/gossip/suspicion.h"
#include "control/gossip/transport.h"

namespace weft::control::gossip::detail {

using Clock = std::chrono::steady_clock;

// memberlist refuses more concurrent push/pull requests than this.
inline constexpr int kMaxPushPullRequests = 128;
inline constexpr std::size_t kPushPullScaleThreshold = 32;
// After stream buffers that held at least this much are all freed, ask
// glibc to give the memory back (it keeps freed heap in its arenas).
inline constexpr std::size_t kTrimAfterBytes = 1024 * 1024;

// Addresses as memberlist puts them on the wire (Go's net.IP: 4 or 16 bytes).
std::optional<asio::ip::address> ip_from_bytes(ByteView b);
Bytes ip_to_bytes(const asio::ip::address& a);
inline Bytes vsn_bytes(const VersionVector& v) { return {v.begin(), v.end()}; }
VersionVector vsn_from(const Bytes& b);

// memberlist's pushPullScale: past 32 nodes, each doubling of the cluster
// adds one more base interval between push/pulls.
milliseconds push_pull_scale(milliseconds interval, std::size_t n);

// "connect to ADDR failed: WHY", as join and send errors report it.
std::string connect_error(const HostPort& to, const boost::system::error_code& ec);

// A place among the inbound streams, given back when its connection is gone.
struct InboundSlot {
  explicit InboundSlot(std::shared_ptr<std::size_t> open) : open_(std::move(open)) { ++*open_; }
  ~InboundSlot() { --*open_; }
  InboundSlot(const InboundSlot&) = delete;
  InboundSlot& operator=(const InboundSlot&) = delete;
  std::shared_ptr<std::size_t> open_;
};

struct NodeState {
  Member m;
  Clock::time_point state_change{};
  bool dead_or_left() const { return m.state == NodeStateKind::kDead || m.state == NodeStateKind::kLeft; }
};

struct AckHandler {
  explicit AckHandler(asio::io_context& io) : timer(io) {}
  std::function<void(const Bytes&)> on_ack;
  std::function<void()> on_nack;
  std::function<void()> on_timeout;
  asio::steady_timer timer;
};

// One SWIM probe of one node: direct ping, then indirect pings plus a TCP
// ping after probe_timeout, verdict at the (awareness-scaled) probe interval.
struct ProbeRound {
  explicit ProbeRound(asio::io_context& io) : timer(io) {}
  std::string node;
  std::uint32_t seq = 0;
  std::uint32_t incarnation = 0;
  HostPort target;
  Bytes target_addr;
  std::uint16_t target_port = 0;
  std::uint8_t target_pmax = 0;
  Bytes ping_msg;
  Ping ping;
  Clock::time_point tick_start, deadline;
  bool done = false, deadline_reached = false, tcp_pending = false, tcp_ok = false;
  int nacks = 0, expected_nacks = 0;
  asio::steady_timer timer;
};

class MemberlistImpl : public std::enable_shared_from_this<MemberlistImpl> {
 public:
  MemberlistImpl(asio::io_context& io, Config cfg, Delegate* delegate, EventDelegate* events,
                 std::unique_ptr<Transport> transport);

  // ---- memberlist.cpp ------------------------------------------------------
  void start();
  void shutdown();
  void join(std::vector<std::string> peers, Memberlist::JoinHandler done);
  void leave(milliseconds timeout, std::function<void(bool)> done);
  std::vector<Member> members() const;
  std::size_t num_alive() const;
  std::uint16_t bound_port() const { return port_; }
  const Config& config() const { return cfg_; }

  // ---- memberlist_net.cpp --------------------------------------------------
  bool send_best_effort(const std::string& node, ByteView msg);
  void send_reliable(const std::string& node, Bytes msg, std::function<void(std::string)> done);

 private:
  // ---- memberlist.cpp: helpers ---------------------------------------------
  // Summaries of floods that stopped are written within an interval.
  void schedule_log_flush();
  const Keyring* outgoing_keyring() const;
  Clock::duration random_stagger(milliseconds interval);
  std::uint32_t next_seq() { return ++seq_no_; }
  std::uint32_t next_incarnation() { return ++incarnation_; }
  Bytes local_meta();
  static HostPort address_of(const Member& m) { return {m.addr, m.port}; }
  NodeState* find(const std::string& name) {
    auto it = node_map_.find(name);
    return it == node_map_.end() ? nullptr : it->second.get();
  }
  bool any_alive() const;
  // Up to k random nodes the filter accepts, like memberlist's kRandomNodes.
  template <class Filter>
  std::vector<NodeState*> k_random_nodes(std::size_t k, Filter accept) {
    std::vector<NodeState*> candidates;
    for (auto* n : nodes_) {
      if (accept(*n)) candidates.push_back(n);
    }
    std::shuffle(candidates.begin(), candidates.end(), rng_);
    if (candidates.size() > k) candidates.resize(k);
    return candidates;
  }
  void complete_leave(bool ok);

  // ---- memberlist_net.cpp: packets -----------------------------------------
  void broadcast(const std::string& node, Bytes msg, BroadcastQueue::Finished finished = {});
  std::vector<Bytes> get_broadcasts(std::size_t overhead, std::size_t limit);
  std::size_t packet_budget() const;
  // Sends `msgs` as one message or as compound(s) of at most 255 parts.
  void send_parts(const HostPort& to, std::vector<Bytes> msgs, const NodeState* node);
  // A message plus whatever gossip fits alongside it.
  void send_msg(const HostPort& to, Bytes msg, const NodeState* node);
  void raw_send_packet(const HostPort& to, ByteView msg, const NodeState* node);
  void ingest_packet(ByteView packet, const HostPort& from);
  void handle(const Ping& p, const HostPort& from);
  void handle(const IndirectPingReq& ind, const HostPort& from);
  void handle(const AckResp& ack, const HostPort&) { invoke_ack(ack.seq_no, ack.payload); }
  void handle(const NackResp& nack, const HostPort&);
  void handle(const Suspect& s, const HostPort&) { suspect_node(s); }
  void handle(const Dead& d, const HostPort&) { dead_node(d); }
  void handle(const Alive& a, const HostPort& from);
  void handle(const UserMessage& u, const HostPort&);
  void set_ack_handler(std::uint32_t seq, std::function<void(const Bytes&)> on_ack, std::function<void()> on_nack,
                       std::function<void()> on_timeout, milliseconds timeout);
  void invoke_ack(std::uint32_t seq, const Bytes& payload);

  // ---- memberlist_net.cpp: streams -----------------------------------------
  void tcp_ping(const HostPort& to, const Ping& ping, Clock::time_point deadline, std::function<void(bool)> done);
  Bytes local_state_message(bool join);
  void push_pull_node(const HostPort& to, bool join, std::function<void(std::string)> done);
  void send_stream_error(const std::shared_ptr<StreamConnection>& conn, const std::string& err);
  StreamLimits outgoing_limits() const { return StreamLimits{cfg_.max_stream_size, outgoing_buffers_}; }
  void handle_stream(std::unique_ptr<ByteStream> stream);
  void dispatch_stream(const std::shared_ptr<StreamConnection>& conn, StreamMessage msg);

  // ---- memberlist_state.cpp: probing, gossip, push/pull --------------------
  void schedule_probe(Clock::duration after);
  void reset_nodes();
  NodeState* next_probe_target();
  void probe();
  void probe_indirectly(const std::shared_ptr<ProbeRound>& round);
  void conclude_probe(const std::shared_ptr<ProbeRound>& round);
  void finish_probe(const std::shared_ptr<ProbeRound>& round, int awareness_delta);
  void schedule_gossip(Clock::duration after);
  void gossip();
  void schedule_push_pull(Clock::duration after);
  void push_pull();

  // ---- memberlist_state.cpp: node states -----------------------------------
  // Every alive node must speak a protocol version every other alive node
  // understands (memberlist's verifyProtocol); otherwise refuse the merge.
  std::string verify_protocol(const std::vector<PushNodeState>& remote) const;
  std::string merge_remote_state(bool join, const std::vector<PushNodeState>& remote, const Bytes& user_state);
  void set_alive();
  void refute(NodeState& me, std::uint32_t accused_inc);
  void alive_node(const Alive& a, bool bootstrap);
  void suspect_node(const Suspect& s);
  void dead_node(const Dead& d);

  asio::io_context& io_;
  Config cfg_;
  Delegate* delegate_;
  EventDelegate* events_;

  std::unique_ptr<Transport> transport_;
  asio::steady_timer probe_timer_, gossip_timer_, push_pull_timer_, leave_timer_, log_flush_timer_;
  LogLimiter log_limiter_;

  std::shared_ptr<std::size_t> inbound_open_;  // streams holding an InboundSlot
  std::shared_ptr<StreamBufferBudget> inbound_buffers_;
  std::shared_ptr<StreamBufferBudget> outgoing_buffers_;  // not limited; there to trim after big replies

  std::uint16_t port_ = 0;
  asio::ip::address advertise_ip_;
  std::uint16_t advertise_port_ = 0;

  std::unordered_map<std::string, std::unique_ptr<NodeState>> node_map_;
  std::vector<NodeState*> nodes_;  // probe order
  std::size_t probe_index_ = 0;
  std::unordered_map<std::string, std::unique_ptr<Suspicion>> suspicions_;
  std::unordered_map<std::uint32_t, std::shared_ptr<AckHandler>> ack_handlers_;

  std::uint32_t seq_no_ = 0;
  std::uint32_t incarnation_ = 0;
  Awareness awareness_;
  BroadcastQueue broadcasts_;
  int push_pull_in_flight_ = 0;
  bool left_ = false;
  bool shutdown_ = false;
  std::function<void(bool)> leave_done_;
  std::mt19937_64 rng_;
};

}  // namespace weft::control::gossip::detail
