#include "control/gossip/memberlist.h"

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <unordered_map>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "control/gossip/awareness.h"
#include "control/gossip/broadcast_queue.h"
#include "control/gossip/codec.h"
#include "control/gossip/log_limiter.h"
#include "control/gossip/packet.h"
#include "control/gossip/security.h"
#include "control/gossip/stream.h"
#include "control/gossip/stream_conn.h"
#include "control/gossip/suspicion.h"

namespace weft::control::gossip {

std::string Member::address() const {
  if (addr.is_v6()) return fmt::format("[{}]:{}", addr.to_string(), port);
  return fmt::format("{}:{}", addr.to_string(), port);
}

namespace detail {

using Clock = std::chrono::steady_clock;
using Udp = asio::ip::udp;
using Tcp = asio::ip::tcp;

namespace {

// memberlist refuses more concurrent push/pull requests than this.
constexpr int kMaxPushPullRequests = 128;
constexpr std::size_t kPushPullScaleThreshold = 32;
// After stream buffers that held at least this much are all freed, ask
// glibc to give the memory back (it keeps freed heap in its arenas).
constexpr std::size_t kTrimAfterBytes = 1024 * 1024;

// A place among the inbound streams, given back when its connection is gone.
struct InboundSlot {
  explicit InboundSlot(std::shared_ptr<std::size_t> open) : open_(std::move(open)) { ++*open_; }
  ~InboundSlot() { --*open_; }
  InboundSlot(const InboundSlot&) = delete;
  InboundSlot& operator=(const InboundSlot&) = delete;
  std::shared_ptr<std::size_t> open_;
};

std::optional<asio::ip::address> ip_from_bytes(ByteView b) {
  if (b.size() == 4) {
    asio::ip::address_v4::bytes_type v4;
    std::copy(b.begin(), b.end(), v4.begin());
    return asio::ip::address(asio::ip::address_v4(v4));
  }
  if (b.size() == 16) {
    asio::ip::address_v6::bytes_type v6;
    std::copy(b.begin(), b.end(), v6.begin());
    asio::ip::address_v6 a(v6);
    // Go's net.IP stores IPv4 as v4-in-v6; treat it as the IPv4 address.
    if (a.is_v4_mapped()) return asio::ip::address(asio::ip::make_address_v4(asio::ip::v4_mapped, a));
    return asio::ip::address(a);
  }
  return std::nullopt;
}

Bytes ip_to_bytes(const asio::ip::address& a) {
  if (a.is_v4()) {
    auto b = a.to_v4().to_bytes();
    return {b.begin(), b.end()};
  }
  auto b = a.to_v6().to_bytes();
  return {b.begin(), b.end()};
}

Bytes vsn_bytes(const VersionVector& v) { return {v.begin(), v.end()}; }

VersionVector vsn_from(const Bytes& b) {
  VersionVector v{};
  for (std::size_t i = 0; i < v.size() && i < b.size(); ++i) v[i] = b[i];
  return v;
}

// memberlist's pushPullScale: past 32 nodes, each doubling of the cluster
// adds one more base interval between push/pulls.
milliseconds push_pull_scale(milliseconds interval, std::size_t n) {
  if (n <= kPushPullScaleThreshold) return interval;
  const double multiplier =
      std::ceil(std::log2(static_cast<double>(n)) - std::log2(static_cast<double>(kPushPullScaleThreshold))) + 1.0;
  return interval * static_cast<int>(multiplier);
}

struct PeerAddress {
  std::string name;  // optional "name/" prefix
  asio::ip::address ip;
  std::uint16_t port = 0;
};

// "ip", "ip:port", "[v6]:port", each optionally prefixed by "name/".
PeerAddress parse_peer(std::string s, std::uint16_t default_port) {
  PeerAddress p;
  if (auto slash = s.find('/'); slash != std::string::npos) {
    if (slash == 0) throw std::invalid_argument(fmt::format("peer '{}': empty node name", s));
    p.name = s.substr(0, slash);
    s = s.substr(slash + 1);
  }
  std::string host = s;
  std::string port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string::npos) throw std::invalid_argument(fmt::format("peer '{}': missing ']'", s));
    host = s.substr(1, close - 1);
    if (close + 1 < s.size()) {
      if (s[close + 1] != ':') throw std::invalid_argument(fmt::format("peer '{}': expected ':' after ']'", s));
      port = s.substr(close + 2);
    }
  } else if (std::count(s.begin(), s.end(), ':') == 1) {
    auto colon = s.find(':');
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  boost::system::error_code ec;
  p.ip = asio::ip::make_address(host, ec);
  if (ec) throw std::invalid_argument(fmt::format("peer '{}': '{}' is not an IP address", s, host));
  p.port = default_port;
  if (!port.empty()) {
    int v = 0;
    try {
      v = std::stoi(port);
    } catch (const std::exception&) {
      v = -1;
    }
    if (v <= 0 || v > 65535) throw std::invalid_argument(fmt::format("peer '{}': bad port '{}'", s, port));
    p.port = static_cast<std::uint16_t>(v);
  }
  return p;
}

}  // namespace

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
  Udp::endpoint udp_target;
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
  MemberlistImpl(asio::io_context& io, Config cfg, Delegate* delegate, EventDelegate* events)
      : io_(io),
        cfg_(std::move(cfg)),
        delegate_(delegate),
        events_(events),
        udp_(io),
        acceptor_(io),
        probe_timer_(io),
        gossip_timer_(io),
        push_pull_timer_(io),
        leave_timer_(io),
        log_flush_timer_(io),
        log_limiter_(std::chrono::seconds(10), 256,
                     [name = cfg_.name](const std::string& line) { spdlog::warn("[gossip {}] {}", name, line); }),
        inbound_open_(std::make_shared<std::size_t>(0)),
        inbound_buffers_(std::make_shared<StreamBufferBudget>(
            cfg_.max_inbound_buffer != 0 ? cfg_.max_inbound_buffer : 2 * cfg_.max_stream_size)),
        outgoing_buffers_(std::make_shared<StreamBufferBudget>(std::numeric_limits<std::size_t>::max())),
        awareness_(cfg_.awareness_max_multiplier),
        broadcasts_(cfg_.retransmit_mult, [this] { return nodes_.size(); }),
        rng_(std::random_device{}()) {
    if (cfg_.name.empty()) throw std::invalid_argument("gossip config: node name is required");
    if (cfg_.max_stream_size == 0 || cfg_.max_inbound_streams == 0) {
      throw std::invalid_argument("gossip config: max_stream_size and max_inbound_streams must be positive");
    }
    // Direct, not posted: this may run while a connection is destroyed with
    // the io_context. (weftd also has glibc mmap the large buffers, so those
    // are returned as they are freed.)
    auto trim = [] { ::malloc_trim(0); };
    inbound_buffers_->on_idle(kTrimAfterBytes, trim);
    outgoing_buffers_->on_idle(kTrimAfterBytes, trim);
  }

  // ---- lifecycle -------------------------------------------------------

  void start() {
    boost::system::error_code ec;
    const auto bind_ip = asio::ip::make_address(cfg_.bind_addr, ec);
    if (ec) throw std::runtime_error(fmt::format("gossip: bind address '{}' is not an IP address", cfg_.bind_addr));

    Tcp::endpoint tcp_ep(bind_ip, cfg_.bind_port);
    acceptor_.open(tcp_ep.protocol());
    acceptor_.set_option(Tcp::acceptor::reuse_address(true));
    acceptor_.bind(tcp_ep, ec);
    if (ec) throw std::runtime_error(fmt::format("gossip: cannot bind TCP {}:{}: {}", cfg_.bind_addr, cfg_.bind_port, ec.message()));
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error(fmt::format("gossip: cannot listen on TCP {}:{}: {}", cfg_.bind_addr, cfg_.bind_port, ec.message()));
    port_ = acceptor_.local_endpoint().port();

    Udp::endpoint udp_ep(bind_ip, port_);
    udp_.open(udp_ep.protocol());
    udp_.bind(udp_ep, ec);
    if (ec) throw std::runtime_error(fmt::format("gossip: cannot bind UDP {}:{}: {}", cfg_.bind_addr, port_, ec.message()));
    // Bursts of gossip should not be dropped by a small default socket buffer.
    udp_.set_option(asio::socket_base::receive_buffer_size(2 * 1024 * 1024), ec);

    const std::string adv = cfg_.advertise_addr.empty() ? cfg_.bind_addr : cfg_.advertise_addr;
    advertise_ip_ = asio::ip::make_address(adv, ec);
    if (ec || advertise_ip_.is_unspecified()) {
      throw std::runtime_error(fmt::format(
          "gossip: advertise address '{}' is not usable; set advertise_addr when binding a wildcard address", adv));
    }
    advertise_port_ = cfg_.advertise_port != 0 ? cfg_.advertise_port : port_;
    if (!cfg_.keyring && !advertise_ip_.is_loopback()) {
      spdlog::warn("[gossip {}] binding to {} without encryption", cfg_.name, adv);
    }

    set_alive();
    receive_packet();
    accept_stream();
    schedule_log_flush();
    schedule_probe(random_stagger(cfg_.probe_interval));
    schedule_gossip(random_stagger(cfg_.gossip_interval));
    if (cfg_.push_pull_interval.count() > 0) schedule_push_pull(random_stagger(cfg_.push_pull_interval));
    spdlog::info("[gossip {}] listening on {}:{} (advertise {}:{}, encryption {})", cfg_.name, cfg_.bind_addr, port_,
                 advertise_ip_.to_string(), advertise_port_, cfg_.keyring ? "on" : "off");
  }

  void shutdown() {
    if (shutdown_) return;
    shutdown_ = true;
    boost::system::error_code ignored;
    udp_.close(ignored);
    acceptor_.close(ignored);
    probe_timer_.cancel();
    gossip_timer_.cancel();
    push_pull_timer_.cancel();
    log_flush_timer_.cancel();
    log_limiter_.flush(Clock::now() + log_limiter_.interval());
    for (auto& [seq, h] : ack_handlers_) h->timer.cancel();
    ack_handlers_.clear();
    suspicions_.clear();
    broadcasts_.reset();
    complete_leave(false);
  }

  // Summaries of floods that stopped are written within an interval.
  void schedule_log_flush() {
    if (shutdown_) return;
    log_flush_timer_.expires_after(log_limiter_.interval());
    log_flush_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->shutdown_) return;
      self->log_limiter_.flush();
      self->schedule_log_flush();
    });
  }

  // ---- public API ------------------------------------------------------

  void join(std::vector<std::string> peers, Memberlist::JoinHandler done) {
    struct JoinState {
      std::size_t pending = 0;
      int ok = 0;
      std::vector<std::string> errors;
      Memberlist::JoinHandler done;
    };
    auto st = std::make_shared<JoinState>();
    st->done = std::move(done);
    std::vector<PeerAddress> addrs;
    for (const auto& p : peers) {
      try {
        addrs.push_back(parse_peer(p, cfg_.bind_port));
      } catch (const std::exception& e) {
        st->errors.emplace_back(e.what());
      }
    }
    auto finish_one = [st](std::string err) {
      if (err.empty()) {
        ++st->ok;
      } else {
        st->errors.push_back(std::move(err));
      }
      if (--st->pending == 0) {
        std::string all;
        if (st->ok == 0) {
          for (const auto& e : st->errors) all += (all.empty() ? "" : "; ") + e;
          if (all.empty()) all = "no peers given";
        }
        st->done(st->ok, all);
      }
    };
    st->pending = addrs.size() + 1;  // +1 guards against completing while still launching
    for (const auto& a : addrs) {
      push_pull_node(Tcp::endpoint(a.ip, a.port), true, [finish_one, a](std::string err) {
        finish_one(err.empty() ? err : fmt::format("failed to join {}: {}", a.ip.to_string(), err));
      });
    }
    --st->pending;
    if (st->pending == 0) {
      std::string all;
      for (const auto& e : st->errors) all += (all.empty() ? "" : "; ") + e;
      asio::post(io_, [st, all] { st->done(st->ok, all.empty() ? "no peers given" : all); });
    }
  }

  void leave(milliseconds timeout, std::function<void(bool)> done) {
    if (shutdown_) {
      asio::post(io_, [done] { done(false); });
      return;
    }
    if (left_) {
      asio::post(io_, [done] { done(true); });
      return;
    }
    left_ = true;
    auto it = node_map_.find(cfg_.name);
    if (it == node_map_.end()) {
      asio::post(io_, [done] { done(true); });
      return;
    }
    leave_done_ = std::move(done);
    Dead d{it->second->m.incarnation, cfg_.name, cfg_.name};
    dead_node(d);
    if (!any_alive()) {
      complete_leave(true);
      return;
    }
    leave_timer_.expires_after(timeout);
    leave_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      spdlog::warn("[gossip {}] timeout waiting for leave broadcast", self->cfg_.name);
      self->complete_leave(false);
    });
  }

  void update_node() {
    auto it = node_map_.find(cfg_.name);
    if (it == node_map_.end()) return;
    Alive a;
    a.incarnation = next_incarnation();
    a.node = cfg_.name;
    a.addr = ip_to_bytes(it->second->m.addr);
    a.port = it->second->m.port;
    a.meta = local_meta();
    a.vsn = vsn_bytes(cfg_.versions);
    alive_node(a, true);
  }

  bool send_best_effort(const std::string& node, ByteView msg) {
    auto it = node_map_.find(node);
    if (it == node_map_.end() || shutdown_) return false;
    Bytes buf{static_cast<std::uint8_t>(MessageType::kUser)};
    buf.insert(buf.end(), msg.begin(), msg.end());
    raw_send_packet(udp_endpoint(it->second->m), buf, it->second.get());
    return true;
  }

  void send_reliable(const std::string& node, Bytes msg, std::function<void(std::string)> done) {
    auto it = node_map_.find(node);
    if (it == node_map_.end() || shutdown_) {
      asio::post(io_, [done, node] { done(fmt::format("unknown node '{}'", node)); });
      return;
    }
    Bytes wire = frame_stream(encode_user_stream(msg), outgoing_keyring(), cfg_.enable_compression);
    Tcp::endpoint ep(it->second->m.addr, it->second->m.port);
    StreamConnection::connect(io_, ep, cfg_.tcp_timeout, cfg_.keyring, cfg_.gossip_verify_incoming, outgoing_limits(),
                              [wire = std::move(wire), done](std::shared_ptr<StreamConnection> conn,
                                                             std::string err) mutable {
                                if (!conn) {
                                  done(err);
                                  return;
                                }
                                conn->write(std::move(wire), [conn, done](std::string werr) {
                                  conn->close();
                                  done(werr);
                                });
                              });
  }

  std::vector<Member> members() const {
    std::vector<Member> out;
    out.reserve(nodes_.size());
    for (const auto* n : nodes_) out.push_back(n->m);
    return out;
  }

  std::size_t num_alive() const {
    return static_cast<std::size_t>(
        std::count_if(nodes_.begin(), nodes_.end(), [](const NodeState* n) { return !n->dead_or_left(); }));
  }

  Member local_member() const {
    auto it = node_map_.find(cfg_.name);
    return it == node_map_.end() ? Member{} : it->second->m;
  }

  std::uint16_t bound_port() const { return port_; }
  int health_score() const { return awareness_.score(); }
  const Config& config() const { return cfg_; }

 private:
  // ---- helpers ---------------------------------------------------------

  const Keyring* outgoing_keyring() const {
    return cfg_.keyring && cfg_.gossip_verify_outgoing ? cfg_.keyring.get() : nullptr;
  }

  Clock::duration random_stagger(milliseconds interval) {
    if (interval.count() <= 0) return Clock::duration::zero();
    std::uniform_int_distribution<std::int64_t> dist(0, interval.count() - 1);
    return milliseconds(dist(rng_));
  }

  std::uint32_t next_seq() { return ++seq_no_; }
  std::uint32_t next_incarnation() { return ++incarnation_; }

  Bytes local_meta() {
    if (!delegate_) return {};
    Bytes meta = delegate_->node_meta(kMetaMaxSize);
    if (meta.size() > kMetaMaxSize) {
      throw std::length_error(fmt::format("node meta is {} bytes, memberlist allows {}", meta.size(), kMetaMaxSize));
    }
    return meta;
  }

  static Udp::endpoint udp_endpoint(const Member& m) { return {m.addr, m.port}; }

  NodeState* find(const std::string& name) {
    auto it = node_map_.find(name);
    return it == node_map_.end() ? nullptr : it->second.get();
  }

  bool any_alive() const {
    return std::any_of(nodes_.begin(), nodes_.end(),
                       [&](const NodeState* n) { return !n->dead_or_left() && n->m.name != cfg_.name; });
  }

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

  void complete_leave(bool ok) {
    if (!leave_done_) return;
    auto done = std::move(leave_done_);
    leave_done_ = nullptr;
    leave_timer_.cancel();
    done(ok);
  }

  // ---- sending ---------------------------------------------------------

  void broadcast(const std::string& node, Bytes msg, BroadcastQueue::Finished finished = {}) {
    broadcasts_.queue(std::move(msg), node, std::move(finished));
  }

  std::vector<Bytes> get_broadcasts(std::size_t overhead, std::size_t limit) {
    auto out = broadcasts_.get(overhead, limit);
    if (delegate_) {
      std::size_t used = 0;
      for (const auto& m : out) used += m.size() + overhead;
      const std::size_t avail = limit > used ? limit - used : 0;
      if (avail > overhead + kUserMsgOverhead) {
        for (auto& msg : delegate_->get_broadcasts(overhead + kUserMsgOverhead, avail)) {
          Bytes buf;
          buf.reserve(msg.size() + 1);
          buf.push_back(static_cast<std::uint8_t>(MessageType::kUser));
          buf.insert(buf.end(), msg.begin(), msg.end());
          out.push_back(std::move(buf));
        }
      }
    }
    return out;
  }

  std::size_t packet_budget() const {
    std::size_t budget = cfg_.udp_buffer_size > kCompoundHeaderOverhead ? cfg_.udp_buffer_size - kCompoundHeaderOverhead : 0;
    if (outgoing_keyring()) budget = budget > kEncryptOverhead ? budget - kEncryptOverhead : 0;
    return budget;
  }

  // Sends `msgs` as one message or as compound(s) of at most 255 parts.
  void send_parts(const Udp::endpoint& to, std::vector<Bytes> msgs, const NodeState* node) {
    if (msgs.size() == 1) {
      raw_send_packet(to, msgs.front(), node);
      return;
    }
    for (std::size_t i = 0; i < msgs.size(); i += kMaxCompoundParts) {
      std::vector<Bytes> chunk(msgs.begin() + static_cast<std::ptrdiff_t>(i),
                               msgs.begin() + static_cast<std::ptrdiff_t>(std::min(msgs.size(), i + kMaxCompoundParts)));
      raw_send_packet(to, chunk.size() == 1 ? chunk.front() : make_compound(chunk), node);
    }
  }

  // A message plus whatever gossip fits alongside it.
  void send_msg(const Udp::endpoint& to, Bytes msg, const NodeState* node) {
    const std::size_t budget = packet_budget();
    const std::size_t avail = budget > msg.size() ? budget - msg.size() : 0;
    auto extra = get_broadcasts(kCompoundOverhead, avail);
    if (extra.empty()) {
      raw_send_packet(to, msg, node);
      return;
    }
    std::vector<Bytes> parts;
    parts.reserve(extra.size() + 1);
    parts.push_back(std::move(msg));
    for (auto& e : extra) parts.push_back(std::move(e));
    send_parts(to, std::move(parts), node);
  }

  void raw_send_packet(const Udp::endpoint& to, ByteView msg, const NodeState* node) {
    if (shutdown_) return;
    PacketOptions opts;
    opts.compress = cfg_.enable_compression;
    // Only peers known to understand protocol 5 get a CRC header.
    opts.crc = node != nullptr && node->m.vsn[1] >= 5;
    opts.keyring = outgoing_keyring();
    Bytes wire;
    try {
      wire = encode_packet(msg, opts);
    } catch (const std::exception& e) {
      spdlog::error("[gossip {}] failed to encode packet: {}", cfg_.name, e.what());
      return;
    }
    boost::system::error_code ec;
    udp_.send_to(asio::buffer(wire), to, 0, ec);
    if (ec) spdlog::debug("[gossip {}] send to {} failed: {}", cfg_.name, to.address().to_string(), ec.message());
  }

  // ---- receiving packets -------------------------------------------------

  void receive_packet() {
    udp_.async_receive_from(asio::buffer(recv_buf_), recv_from_,
                            [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                              if (self->shutdown_ || ec == asio::error::operation_aborted) return;
                              if (!ec) self->ingest_packet(ByteView(self->recv_buf_.data(), n), self->recv_from_);
                              self->receive_packet();
                            });
  }

  void ingest_packet(ByteView packet, const Udp::endpoint& from) {
    auto decoded = decode_packet(packet, cfg_.keyring.get(), cfg_.gossip_verify_incoming);
    if (!decoded.errors.empty()) {
      const std::string source = from.address().to_string();
      if (log_limiter_.allow("undecodable packets", source)) {
        spdlog::warn("[gossip {}] dropped packet data from {}: {} (more are summarised every {}s)", cfg_.name, source,
                     decoded.errors.front(), log_limiter_.interval().count() / 1000);
      }
    }
    for (auto& msg : decoded.messages) {
      if (shutdown_) return;
      std::visit([&](auto& m) { handle(m, from); }, msg);
    }
  }

  void handle(const Ping& p, const Udp::endpoint& from) {
    if (!p.node.empty() && p.node != cfg_.name) {
      if (log_limiter_.allow("pings for other nodes", from.address().to_string())) {
        spdlog::warn("[gossip {}] got ping for unexpected node '{}' from {}", cfg_.name, p.node,
                     from.address().to_string());
      }
      return;
    }
    AckResp ack{p.seq_no, {}};
    Udp::endpoint to = from;
    if (!p.source_addr.empty() && p.source_port > 0) {
      if (auto ip = ip_from_bytes(p.source_addr)) to = Udp::endpoint(*ip, p.source_port);
    }
    send_msg(to, encode_message(ack), find(p.source_node));
  }

  void handle(const IndirectPingReq& ind, const Udp::endpoint& from) {
    const std::uint16_t port = ind.port != 0 ? ind.port : cfg_.bind_port;
    auto target_ip = ip_from_bytes(ind.target);
    if (!target_ip) {
      if (log_limiter_.allow("indirect pings with a bad target", from.address().to_string())) {
        spdlog::warn("[gossip {}] indirect ping with bad target address from {}", cfg_.name,
                     from.address().to_string());
      }
      return;
    }
    Udp::endpoint requester = from;
    if (!ind.source_addr.empty() && ind.source_port > 0) {
      if (auto ip = ip_from_bytes(ind.source_addr)) requester = Udp::endpoint(*ip, ind.source_port);
    }
    const std::uint32_t local_seq = next_seq();
    Ping ping{local_seq, ind.node, ip_to_bytes(advertise_ip_), advertise_port_, cfg_.name};

    // Relay the ack; if none comes within probe_timeout and a nack was asked
    // for, tell the requester we tried (Lifeguard: it's not their fault).
    auto acked = std::make_shared<bool>(false);
    const std::uint32_t their_seq = ind.seq_no;
    const std::string source_node = ind.source_node;
    std::weak_ptr<MemberlistImpl> weak = weak_from_this();
    set_ack_handler(
        local_seq,
        [weak, acked, their_seq, requester, source_node](const Bytes&) {
          *acked = true;
          if (auto self = weak.lock()) {
            self->send_msg(requester, encode_message(AckResp{their_seq, {}}), self->find(source_node));
          }
        },
        nullptr,
        [weak, acked, their_seq, requester, source_node, want_nack = ind.nack] {
          if (!want_nack || *acked) return;
          if (auto self = weak.lock()) {
            self->send_msg(requester, encode_message(NackResp{their_seq}), self->find(source_node));
          }
        },
        cfg_.probe_timeout);
    send_msg(Udp::endpoint(*target_ip, port), encode_message(ping), find(ind.node));
  }

  void handle(const AckResp& ack, const Udp::endpoint&) { invoke_ack(ack.seq_no, ack.payload); }

  void handle(const NackResp& nack, const Udp::endpoint&) {
    auto it = ack_handlers_.find(nack.seq_no);
    if (it != ack_handlers_.end() && it->second->on_nack) it->second->on_nack();
  }

  void handle(const Suspect& s, const Udp::endpoint&) { suspect_node(s); }
  void handle(const Dead& d, const Udp::endpoint&) { dead_node(d); }

  void handle(const Alive& a, const Udp::endpoint& from) {
    if (!ip_from_bytes(a.addr)) {
      if (log_limiter_.allow("alive messages with a bad address", from.address().to_string())) {
        spdlog::warn("[gossip {}] alive message for '{}' from {} has a bad address", cfg_.name, a.node,
                     from.address().to_string());
      }
      return;
    }
    if (a.port == 0) {
      Alive fixed = a;
      fixed.port = cfg_.bind_port;  // protocol < 2 peers omit the port
      alive_node(fixed, false);
      return;
    }
    alive_node(a, false);
  }

  void handle(const UserMessage& u, const Udp::endpoint&) {
    if (delegate_ && !u.payload.empty()) delegate_->notify_msg(u.payload);
  }

  // ---- acks --------------------------------------------------------------

  void set_ack_handler(std::uint32_t seq, std::function<void(const Bytes&)> on_ack, std::function<void()> on_nack,
                       std::function<void()> on_timeout, milliseconds timeout) {
    auto h = std::make_shared<AckHandler>(io_);
    h->on_ack = std::move(on_ack);
    h->on_nack = std::move(on_nack);
    h->on_timeout = std::move(on_timeout);
    ack_handlers_[seq] = h;
    h->timer.expires_after(timeout);
    std::weak_ptr<MemberlistImpl> weak = weak_from_this();
    std::weak_ptr<AckHandler> weak_h = h;
    h->timer.async_wait([weak, weak_h, seq](const boost::system::error_code& ec) {
      if (ec) return;
      auto self = weak.lock();
      auto handler = weak_h.lock();
      if (!self || !handler || self->shutdown_) return;
      auto it = self->ack_handlers_.find(seq);
      if (it == self->ack_handlers_.end() || it->second != handler) return;
      self->ack_handlers_.erase(it);
      if (handler->on_timeout) handler->on_timeout();
    });
  }

  void invoke_ack(std::uint32_t seq, const Bytes& payload) {
    auto it = ack_handlers_.find(seq);
    if (it == ack_handlers_.end()) return;
    auto h = it->second;
    ack_handlers_.erase(it);
    h->timer.cancel();
    if (h->on_ack) h->on_ack(payload);
  }

  // ---- probing -----------------------------------------------------------

  void schedule_probe(Clock::duration after) {
    if (shutdown_ || cfg_.probe_interval.count() <= 0) return;
    probe_timer_.expires_after(after);
    probe_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->shutdown_) return;
      self->probe();
    });
  }

  void reset_nodes() {
    // Forget nodes dead for longer than we keep gossiping about them.
    const auto now = Clock::now();
    std::vector<NodeState*> keep;
    for (auto* n : nodes_) {
      if (n->m.state == NodeStateKind::kDead && now - n->state_change > cfg_.gossip_to_the_dead_time) {
        suspicions_.erase(n->m.name);
        node_map_.erase(n->m.name);  // frees n
        continue;
      }
      keep.push_back(n);
    }
    nodes_ = std::move(keep);
    std::shuffle(nodes_.begin(), nodes_.end(), rng_);
  }

  NodeState* next_probe_target() {
    std::size_t checked = 0;
    for (;;) {
      if (checked >= nodes_.size()) return nullptr;
      if (probe_index_ >= nodes_.size()) {
        reset_nodes();
        probe_index_ = 0;
        ++checked;
        continue;
      }
      NodeState* n = nodes_[probe_index_++];
      if (n->m.name == cfg_.name || n->dead_or_left()) {
        ++checked;
        continue;
      }
      return n;
    }
  }

  void probe() {
    const auto tick_start = Clock::now();
    NodeState* node = next_probe_target();
    if (!node) {
      schedule_probe(cfg_.probe_interval);
      return;
    }
    auto round = std::make_shared<ProbeRound>(io_);
    round->node = node->m.name;
    round->seq = next_seq();
    round->incarnation = node->m.incarnation;
    round->udp_target = udp_endpoint(node->m);
    round->target_addr = ip_to_bytes(node->m.addr);
    round->target_port = node->m.port;
    round->target_pmax = node->m.vsn[1];
    round->tick_start = tick_start;
    // Lifeguard: an unhealthy node gives its peers longer to answer.
    const auto probe_interval = awareness_.scale(cfg_.probe_interval);
    round->deadline = tick_start + probe_interval;
    round->ping = Ping{round->seq, node->m.name, ip_to_bytes(advertise_ip_), advertise_port_, cfg_.name};
    round->ping_msg = encode_message(round->ping);

    std::weak_ptr<MemberlistImpl> weak = weak_from_this();
    set_ack_handler(
        round->seq,
        [weak, round](const Bytes&) {
          if (auto self = weak.lock()) self->finish_probe(round, -1);
        },
        [round] { ++round->nacks; },
        [weak, round] {
          round->deadline_reached = true;
          if (auto self = weak.lock()) self->conclude_probe(round);
        },
        probe_interval);

    if (node->m.state == NodeStateKind::kAlive) {
      send_msg(round->udp_target, round->ping_msg, node);
    } else {
      // A suspect gets the accusation with the ping so it can refute quickly.
      Suspect s{node->m.incarnation, node->m.name, cfg_.name};
      raw_send_packet(round->udp_target, make_compound({round->ping_msg, encode_message(s)}), node);
    }

    round->timer.expires_after(cfg_.probe_timeout);
    round->timer.async_wait([weak, round](const boost::system::error_code& ec) {
      if (ec || round->done) return;
      if (auto self = weak.lock(); self && !self->shutdown_) self->probe_indirectly(round);
    });
  }

  void probe_indirectly(const std::shared_ptr<ProbeRound>& round) {
    spdlog::debug("[gossip {}] failed ping: {} (timeout reached)", cfg_.name, round->node);
    auto peers = k_random_nodes(static_cast<std::size_t>(std::max(0, cfg_.indirect_checks)), [&](const NodeState& n) {
      return n.m.name != cfg_.name && n.m.name != round->node && n.m.state == NodeStateKind::kAlive;
    });
    IndirectPingReq ind{round->seq, round->target_addr, round->target_port, round->node, false,
                        ip_to_bytes(advertise_ip_), advertise_port_, cfg_.name};
    for (auto* peer : peers) {
      // Only protocol >= 4 peers send nacks.
      ind.nack = peer->m.vsn[1] >= 4;
      if (ind.nack) ++round->expected_nacks;
      send_msg(udp_endpoint(peer->m), encode_message(ind), peer);
    }

    // TCP fallback: catches a node whose UDP is broken but which is alive,
    // so we don't accuse it (and later flap) because of a firewall.
    if (!cfg_.disable_tcp_pings && round->target_pmax >= 3) {
      round->tcp_pending = true;
      std::weak_ptr<MemberlistImpl> weak = weak_from_this();
      tcp_ping(Tcp::endpoint(round->udp_target.address(), round->udp_target.port()), round->ping, round->deadline,
               [weak, round](bool ok) {
                 round->tcp_pending = false;
                 round->tcp_ok = ok;
                 if (auto self = weak.lock()) self->conclude_probe(round);
               });
    }
  }

  void tcp_ping(const Tcp::endpoint& to, const Ping& ping, Clock::time_point deadline, std::function<void(bool)> done) {
    const auto now = Clock::now();
    const auto timeout = deadline > now ? std::chrono::duration_cast<milliseconds>(deadline - now) : milliseconds(1);
    Bytes wire = frame_stream(encode_message(ping), outgoing_keyring(), cfg_.enable_compression);
    const std::uint32_t seq = ping.seq_no;
    StreamConnection::connect(
        io_, to, timeout, cfg_.keyring, cfg_.gossip_verify_incoming, outgoing_limits(),
        [wire = std::move(wire), seq, done](std::shared_ptr<StreamConnection> conn, std::string) mutable {
          if (!conn) {
            done(false);  // a dead node refusing connections is expected, not an error
            return;
          }
          conn->write(std::move(wire), [conn, seq, done](std::string err) {
            if (!err.empty()) {
              done(false);
              return;
            }
            conn->read_message([conn, seq, done](std::optional<StreamMessage> msg, std::string) {
              conn->close();
              done(msg && msg->type == MessageType::kAck && msg->ack.seq_no == seq);
            });
          });
        });
  }

  void conclude_probe(const std::shared_ptr<ProbeRound>& round) {
    if (round->done || !round->deadline_reached || round->tcp_pending) return;
    if (round->tcp_ok) {
      spdlog::warn("[gossip {}] was able to connect to {} over TCP but UDP probes failed, network may be misconfigured",
                   cfg_.name, round->node);
      finish_probe(round, -1);
      return;
    }
    // With nack-capable peers, missing nacks point at *our* connectivity.
    int delta = 0;
    if (round->expected_nacks > 0) {
      if (round->nacks < round->expected_nacks) delta += round->expected_nacks - round->nacks;
    } else {
      delta += 1;
    }
    spdlog::info("[gossip {}] suspect {} has failed, no acks received", cfg_.name, round->node);
    finish_probe(round, delta);
    suspect_node(Suspect{round->incarnation, round->node, cfg_.name});
  }

  void finish_probe(const std::shared_ptr<ProbeRound>& round, int awareness_delta) {
    if (round->done) return;
    round->done = true;
    round->timer.cancel();
    awareness_.apply_delta(awareness_delta);
    // Ticker semantics: the next probe starts one interval after this one
    // started, or right away if this one overran.
    const auto next = round->tick_start + cfg_.probe_interval;
    const auto now = Clock::now();
    schedule_probe(next > now ? next - now : Clock::duration::zero());
  }

  // ---- gossip ------------------------------------------------------------

  void schedule_gossip(Clock::duration after) {
    if (shutdown_ || cfg_.gossip_interval.count() <= 0 || cfg_.gossip_nodes <= 0) return;
    gossip_timer_.expires_after(after);
    gossip_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->shutdown_) return;
      self->gossip();
      self->schedule_gossip(self->cfg_.gossip_interval);
    });
  }

  void gossip() {
    const auto now = Clock::now();
    auto targets = k_random_nodes(static_cast<std::size_t>(cfg_.gossip_nodes), [&](const NodeState& n) {
      if (n.m.name == cfg_.name) return false;
      switch (n.m.state) {
        case NodeStateKind::kAlive:
        case NodeStateKind::kSuspect:
          return true;
        case NodeStateKind::kDead:
          return now - n.state_change <= cfg_.gossip_to_the_dead_time;
        default:
          return false;
      }
    });
    const std::size_t budget = packet_budget();
    for (auto* node : targets) {
      auto msgs = get_broadcasts(kCompoundOverhead, budget);
      if (msgs.empty()) return;
      send_parts(udp_endpoint(node->m), std::move(msgs), node);
    }
  }

  // ---- push/pull ---------------------------------------------------------

  void schedule_push_pull(Clock::duration after) {
    if (shutdown_) return;
    push_pull_timer_.expires_after(after);
    push_pull_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->shutdown_) return;
      self->push_pull();
      self->schedule_push_pull(push_pull_scale(self->cfg_.push_pull_interval, self->nodes_.size()));
    });
  }

  void push_pull() {
    auto peers = k_random_nodes(1, [&](const NodeState& n) {
      return n.m.name != cfg_.name && n.m.state == NodeStateKind::kAlive;
    });
    if (peers.empty()) return;
    const std::string name = peers.front()->m.name;
    push_pull_node(Tcp::endpoint(peers.front()->m.addr, peers.front()->m.port), false,
                   [self = shared_from_this(), name](std::string err) {
                     if (!err.empty()) spdlog::warn("[gossip {}] push/pull with {} failed: {}", self->cfg_.name, name, err);
                   });
  }

  Bytes local_state_message(bool join) {
    std::vector<PushNodeState> nodes;
    nodes.reserve(nodes_.size());
    for (const auto* n : nodes_) {
      nodes.push_back(PushNodeState{n->m.name, ip_to_bytes(n->m.addr), n->m.port, n->m.meta, n->m.incarnation,
                                    n->m.state, vsn_bytes(n->m.vsn)});
    }
    Bytes user = delegate_ ? delegate_->local_state(join) : Bytes{};
    PushPullHeader h{static_cast<std::int64_t>(nodes.size()), static_cast<std::int64_t>(user.size()), join};
    return frame_stream(encode_push_pull(h, nodes, user), outgoing_keyring(), cfg_.enable_compression);
  }

  void push_pull_node(const Tcp::endpoint& to, bool join, std::function<void(std::string)> done) {
    if (shutdown_) {
      asio::post(io_, [done] { done("shut down"); });
      return;
    }
    Bytes wire = local_state_message(join);
    std::weak_ptr<MemberlistImpl> weak = weak_from_this();
    StreamConnection::connect(
        io_, to, cfg_.tcp_timeout, cfg_.keyring, cfg_.gossip_verify_incoming, outgoing_limits(),
        [weak, join, wire = std::move(wire), done](std::shared_ptr<StreamConnection> conn, std::string err) mutable {
          if (!conn) {
            done(err);
            return;
          }
          conn->write(std::move(wire), [weak, join, conn, done](std::string werr) {
            if (!werr.empty()) {
              conn->close();
              done("write failed: " + werr);
              return;
            }
            conn->read_message([weak, join, conn, done](std::optional<StreamMessage> msg, std::string rerr) {
              conn->close();
              auto self = weak.lock();
              if (!self || self->shutdown_) {
                done("shut down");
                return;
              }
              if (!msg) {
                done("read failed: " + rerr);
                return;
              }
              if (msg->type == MessageType::kErr) {
                done("remote error: " + msg->err.error);
                return;
              }
              if (msg->type != MessageType::kPushPull) {
                done(fmt::format("expected a push/pull reply, got message type {}",
                                 message_type_name(static_cast<std::uint8_t>(msg->type))));
                return;
              }
              done(self->merge_remote_state(join, msg->nodes, msg->user_state));
            });
          });
        });
  }

  // ---- incoming streams --------------------------------------------------

  void accept_stream() {
    acceptor_.async_accept([self = shared_from_this()](const boost::system::error_code& ec, Tcp::socket socket) {
      if (self->shutdown_ || ec == asio::error::operation_aborted) return;
      if (!ec) self->handle_stream(std::move(socket));
      self->accept_stream();
    });
  }

  void send_stream_error(const std::shared_ptr<StreamConnection>& conn, const std::string& err) {
    Bytes wire = frame_stream(encode_message(ErrResp{err}), outgoing_keyring(), false);
    conn->write(std::move(wire), [conn](std::string) { conn->close(); });
  }

  StreamLimits outgoing_limits() const { return StreamLimits{cfg_.max_stream_size, outgoing_buffers_}; }

  void handle_stream(Tcp::socket socket) {
    if (*inbound_open_ >= cfg_.max_inbound_streams) {
      // Refused before anything is read or allocated: closing is all it costs.
      boost::system::error_code ec;
      const auto peer = socket.remote_endpoint(ec);
      const std::string source = ec ? std::string("unknown") : peer.address().to_string();
      socket.close(ec);
      if (log_limiter_.allow("streams over the limit", source)) {
        spdlog::warn("[gossip {}] closed a stream from {}: {} inbound streams are open already", cfg_.name, source,
                     cfg_.max_inbound_streams);
      }
      return;
    }
    auto conn = std::make_shared<StreamConnection>(std::move(socket), cfg_.keyring, cfg_.gossip_verify_incoming,
                                                   StreamLimits{cfg_.max_stream_size, inbound_buffers_});
    conn->hold(std::make_shared<InboundSlot>(inbound_open_));
    conn->set_deadline(Clock::now() + cfg_.tcp_timeout);
    std::weak_ptr<MemberlistImpl> weak = weak_from_this();
    conn->read_message([weak, conn](std::optional<StreamMessage> msg, std::string err) {
      auto self = weak.lock();
      if (!self || self->shutdown_) return;
      if (!msg) {
        if (err != "eof") {
          if (self->log_limiter_.allow("failed streams", conn->remote_address())) {
            spdlog::warn("[gossip {}] failed to receive stream from {}: {} (more are summarised every {}s)",
                         self->cfg_.name, conn->remote(), err, self->log_limiter_.interval().count() / 1000);
          }
          self->send_stream_error(conn, err);
        }
        return;
      }
      self->dispatch_stream(conn, std::move(*msg));
    });
  }

  void dispatch_stream(const std::shared_ptr<StreamConnection>& conn, StreamMessage msg) {
    switch (msg.type) {
      case MessageType::kPushPull: {
        if (push_pull_in_flight_ >= kMaxPushPullRequests) {
          if (log_limiter_.allow("push/pull requests over the limit", conn->remote_address())) {
            spdlog::error("[gossip {}] too many pending push/pull requests", cfg_.name);
          }
          conn->close();
          return;
        }
        ++push_pull_in_flight_;
        const bool join = msg.push_pull.join;
        // Reply with our state as it was before merging theirs, like memberlist.
        Bytes wire = local_state_message(join);
        std::weak_ptr<MemberlistImpl> weak = weak_from_this();
        conn->write(std::move(wire), [weak, conn](std::string err) {
          conn->close();
          if (auto self = weak.lock()) {
            --self->push_pull_in_flight_;
            if (!err.empty()) {
              spdlog::warn("[gossip {}] failed to push local state to {}: {}", self->cfg_.name, conn->remote(), err);
            }
          }
        });
        if (auto err = merge_remote_state(join, msg.nodes, msg.user_state); !err.empty()) {
          spdlog::warn("[gossip {}] push/pull merge with {} failed: {}", cfg_.name, conn->remote(), err);
        }
        return;
      }
      case MessageType::kPing: {
        if (!msg.ping.node.empty() && msg.ping.node != cfg_.name) {
          if (log_limiter_.allow("TCP pings for other nodes", conn->remote_address())) {
            spdlog::warn("[gossip {}] got TCP ping for unexpected node '{}'", cfg_.name, msg.ping.node);
          }
          conn->close();
          return;
        }
        Bytes wire = frame_stream(encode_message(AckResp{msg.ping.seq_no, {}}), outgoing_keyring(),
                                  cfg_.enable_compression);
        conn->write(std::move(wire), [conn](std::string) { conn->close(); });
        return;
      }
      case MessageType::kUser:
        conn->close();
        if (delegate_ && !msg.user_msg.empty()) delegate_->notify_msg(msg.user_msg);
        return;
      default:
        if (log_limiter_.allow("unexpected stream messages", conn->remote_address())) {
          spdlog::warn("[gossip {}] unexpected stream message type {} from {}", cfg_.name,
                       message_type_name(static_cast<std::uint8_t>(msg.type)), conn->remote());
        }
        conn->close();
        return;
    }
  }

  // ---- state merging -----------------------------------------------------

  // Every alive node must speak a protocol version every other alive node
  // understands (memberlist's verifyProtocol); otherwise refuse the merge.
  std::string verify_protocol(const std::vector<PushNodeState>& remote) const {
    std::uint8_t maxpmin = 0, minpmax = 255, maxdmin = 0, mindmax = 255;
    auto widen = [&](const VersionVector& v) {
      maxpmin = std::max(maxpmin, v[0]);
      minpmax = std::min(minpmax, v[1]);
      maxdmin = std::max(maxdmin, v[3]);
      mindmax = std::min(mindmax, v[4]);
    };
    for (const auto& r : remote) {
      if (r.state != NodeStateKind::kAlive || r.vsn.size() < 6) continue;
      widen(vsn_from(r.vsn));
    }
    for (const auto* n : nodes_) {
      if (n->m.state == NodeStateKind::kAlive) widen(n->m.vsn);
    }
    auto check = [&](const std::string& name, std::uint8_t pcur, std::uint8_t dcur) -> std::string {
      if (pcur < maxpmin || pcur > minpmax) {
        return fmt::format("node '{}' protocol version ({}) is incompatible: [{}, {}]", name, pcur, maxpmin, minpmax);
      }
      if (dcur < maxdmin || dcur > mindmax) {
        return fmt::format("node '{}' delegate protocol version ({}) is incompatible: [{}, {}]", name, dcur, maxdmin,
                           mindmax);
      }
      return {};
    };
    for (const auto& r : remote) {
      const auto v = vsn_from(r.vsn);
      if (auto e = check(r.name, v[2], v[5]); !e.empty()) return e;
    }
    for (const auto* n : nodes_) {
      if (auto e = check(n->m.name, n->m.vsn[2], n->m.vsn[5]); !e.empty()) return e;
    }
    return {};
  }

  std::string merge_remote_state(bool join, const std::vector<PushNodeState>& remote, const Bytes& user_state) {
    if (auto err = verify_protocol(remote); !err.empty()) return err;
    for (const auto& r : remote) {
      if (shutdown_) return "shut down";
      switch (r.state) {
        case NodeStateKind::kAlive: {
          if (!ip_from_bytes(r.addr)) continue;
          Alive a{r.incarnation, r.name, r.addr, r.port != 0 ? r.port : cfg_.bind_port, r.meta, r.vsn};
          alive_node(a, false);
          break;
        }
        case NodeStateKind::kLeft:
          dead_node(Dead{r.incarnation, r.name, r.name});
          break;
        case NodeStateKind::kDead:
          // Prefer suspecting over declaring dead on hearsay.
        case NodeStateKind::kSuspect:
          suspect_node(Suspect{r.incarnation, r.name, cfg_.name});
          break;
      }
    }
    if (!user_state.empty() && delegate_ && !shutdown_) delegate_->merge_remote_state(user_state, join);
    return {};
  }

  void set_alive() {
    Alive a;
    a.incarnation = next_incarnation();
    a.node = cfg_.name;
    a.addr = ip_to_bytes(advertise_ip_);
    a.port = advertise_port_;
    a.meta = local_meta();
    a.vsn = vsn_bytes(cfg_.versions);
    alive_node(a, true);
  }

  void refute(NodeState& me, std::uint32_t accused_inc) {
    std::uint32_t inc = next_incarnation();
    if (accused_inc >= inc) {
      incarnation_ = accused_inc + 1;
      inc = incarnation_;
    }
    me.m.incarnation = inc;
    // Being accused is a hint that we are the unhealthy one.
    awareness_.apply_delta(1);
    Alive a{inc, me.m.name, ip_to_bytes(me.m.addr), me.m.port, me.m.meta, vsn_bytes(me.m.vsn)};
    broadcast(me.m.name, encode_message(a));
  }

  void alive_node(const Alive& a, bool bootstrap) {
    const bool is_local = a.node == cfg_.name;
    // A queued alive about us must not undo a leave in progress.
    if (left_ && is_local) return;
    if (a.vsn.size() >= 3) {
      const auto pmin = a.vsn[0], pmax = a.vsn[1];
      if (pmin == 0 || pmax == 0 || pmin > pmax) {
        spdlog::warn("[gossip {}] ignoring alive for '{}': bad protocol versions", cfg_.name, a.node);
        return;
      }
    }
    auto ip = ip_from_bytes(a.addr);
    if (!ip) return;

    NodeState* state = find(a.node);
    bool updates_node = false;
    if (state == nullptr) {
      auto owned = std::make_unique<NodeState>();
      owned->m.name = a.node;
      owned->m.addr = *ip;
      owned->m.port = a.port;
      owned->m.meta = a.meta;
      owned->m.state = NodeStateKind::kDead;  // so the transition below reports a join
      if (a.vsn.size() > 5) owned->m.vsn = vsn_from(a.vsn);
      state = owned.get();
      node_map_[a.node] = std::move(owned);
      // Random position keeps the expected time-to-first-probe low for everyone.
      nodes_.push_back(state);
      std::uniform_int_distribution<std::size_t> dist(0, nodes_.size() - 1);
      std::swap(nodes_[dist(rng_)], nodes_.back());
    } else if (state->m.addr != *ip || state->m.port != a.port) {
      const bool can_reclaim = cfg_.dead_node_reclaim_time.count() > 0 &&
                               Clock::now() - state->state_change > cfg_.dead_node_reclaim_time;
      if (state->m.state == NodeStateKind::kLeft || (state->m.state == NodeStateKind::kDead && can_reclaim)) {
        spdlog::info("[gossip {}] updating address for left or failed node {} to {}:{}", cfg_.name, a.node,
                     ip->to_string(), a.port);
        updates_node = true;
      } else {
        spdlog::error("[gossip {}] conflicting address for {}: mine {} theirs {}:{} (state {})", cfg_.name, a.node,
                      state->m.address(), ip->to_string(), a.port, node_state_name(state->m.state));
        return;
      }
    }

    if (a.incarnation <= state->m.incarnation && !is_local && !updates_node) return;
    if (a.incarnation < state->m.incarnation && is_local) return;

    suspicions_.erase(a.node);
    const auto old_state = state->m.state;
    const Bytes old_meta = state->m.meta;

    if (!bootstrap && is_local) {
      // Same incarnation and same content is just our own news coming back.
      if (a.incarnation == state->m.incarnation && a.meta == state->m.meta && a.vsn == vsn_bytes(state->m.vsn)) return;
      refute(*state, a.incarnation);
      spdlog::warn("[gossip {}] refuting an alive message about us", cfg_.name);
    } else {
      broadcast(a.node, encode_message(a));
      if (a.vsn.size() > 5) state->m.vsn = vsn_from(a.vsn);
      state->m.incarnation = a.incarnation;
      state->m.meta = a.meta;
      state->m.addr = *ip;
      state->m.port = a.port;
      if (state->m.state != NodeStateKind::kAlive) {
        state->m.state = NodeStateKind::kAlive;
        state->state_change = Clock::now();
      }
    }

    if (events_ && !shutdown_) {
      if (old_state == NodeStateKind::kDead || old_state == NodeStateKind::kLeft) {
        events_->notify_join(state->m);
      } else if (old_meta != state->m.meta) {
        events_->notify_update(state->m);
      }
    }
  }

  void suspect_node(const Suspect& s) {
    NodeState* state = find(s.node);
    if (state == nullptr || s.incarnation < state->m.incarnation) return;

    // Already suspected: an accusation from someone new is a confirmation,
    // which shortens the timer and is worth re-gossiping.
    if (auto it = suspicions_.find(s.node); it != suspicions_.end()) {
      if (it->second->confirm(s.from)) broadcast(s.node, encode_message(s));
      return;
    }
    if (state->m.state != NodeStateKind::kAlive) return;

    if (state->m.name == cfg_.name) {
      refute(*state, s.incarnation);
      spdlog::warn("[gossip {}] refuting a suspect message (from: {})", cfg_.name, s.from);
      return;
    }
    broadcast(s.node, encode_message(s));

    state->m.incarnation = s.incarnation;
    state->m.state = NodeStateKind::kSuspect;
    const auto change_time = Clock::now();
    state->state_change = change_time;

    // Expect confirmations from everyone but us and the suspect, up to
    // suspicion_mult - 2, so the nominal timeout lands two probes early.
    const std::size_t n = nodes_.size();
    int k = cfg_.suspicion_mult - 2;
    if (static_cast<int>(n) - 2 < k) k = 0;
    const auto min = suspicion_timeout(cfg_.suspicion_mult, n, cfg_.probe_interval);
    const auto max = min * cfg_.suspicion_max_timeout_mult;
    std::weak_ptr<MemberlistImpl> weak = weak_from_this();
    const std::string name = s.node;
    suspicions_[name] = std::make_unique<Suspicion>(io_, s.from, k, min, max, [weak, name, change_time](int confirmations) {
      auto self = weak.lock();
      if (!self || self->shutdown_) return;
      NodeState* st = self->find(name);
      if (st == nullptr || st->m.state != NodeStateKind::kSuspect || st->state_change != change_time) return;
      spdlog::info("[gossip {}] marking {} as failed, suspect timeout reached ({} peer confirmations)",
                   self->cfg_.name, name, confirmations);
      self->dead_node(Dead{st->m.incarnation, name, self->cfg_.name});
    });
  }

  void dead_node(const Dead& d) {
    NodeState* state = find(d.node);
    if (state == nullptr || d.incarnation < state->m.incarnation) return;
    suspicions_.erase(d.node);
    if (state->dead_or_left()) return;

    if (state->m.name == cfg_.name) {
      if (!left_) {
        refute(*state, d.incarnation);
        spdlog::warn("[gossip {}] refuting a dead message (from: {})", cfg_.name, d.from);
        return;
      }
      std::weak_ptr<MemberlistImpl> weak = weak_from_this();
      broadcast(d.node, encode_message(d), [weak] {
        if (auto self = weak.lock()) self->complete_leave(true);
      });
    } else {
      broadcast(d.node, encode_message(d));
    }

    state->m.incarnation = d.incarnation;
    // A node announcing its own death has left gracefully.
    state->m.state = d.node == d.from ? NodeStateKind::kLeft : NodeStateKind::kDead;
    state->state_change = Clock::now();
    if (events_ && !shutdown_) events_->notify_leave(state->m);
  }

  asio::io_context& io_;
  Config cfg_;
  Delegate* delegate_;
  EventDelegate* events_;

  Udp::socket udp_;
  Tcp::acceptor acceptor_;
  std::array<std::uint8_t, 65536> recv_buf_{};
  Udp::endpoint recv_from_;
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

}  // namespace detail

Memberlist::Memberlist(asio::io_context& io, Config config, Delegate* delegate, EventDelegate* events)
    : impl_(std::make_shared<detail::MemberlistImpl>(io, std::move(config), delegate, events)) {}
Memberlist::~Memberlist() { impl_->shutdown(); }
void Memberlist::start() { impl_->start(); }
void Memberlist::join(std::vector<std::string> peers, JoinHandler done) { impl_->join(std::move(peers), std::move(done)); }
void Memberlist::leave(milliseconds timeout, std::function<void(bool)> done) { impl_->leave(timeout, std::move(done)); }
void Memberlist::update_node() { impl_->update_node(); }
bool Memberlist::send_best_effort(const std::string& node, ByteView msg) { return impl_->send_best_effort(node, msg); }
void Memberlist::send_reliable(const std::string& node, Bytes msg, std::function<void(std::string)> done) {
  impl_->send_reliable(node, std::move(msg), std::move(done));
}
void Memberlist::shutdown() { impl_->shutdown(); }
std::vector<Member> Memberlist::members() const { return impl_->members(); }
std::size_t Memberlist::num_alive() const { return impl_->num_alive(); }
Member Memberlist::local_member() const { return impl_->local_member(); }
std::uint16_t Memberlist::bound_port() const { return impl_->bound_port(); }
int Memberlist::health_score() const { return impl_->health_score(); }
const Config& Memberlist::config() const { return impl_->config(); }

}  // namespace weft::control::gossip
