#include "control/gossip/memberlist.h"

#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <cmath>
#include <limits>

#include "control/gossip/memberlist_impl.h"

namespace weft::control::gossip {

std::string Member::address() const { return HostPort{addr, port}.to_string(); }

namespace detail {

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

std::string connect_error(const HostPort& to, const boost::system::error_code& ec) {
  return fmt::format("connect to {} failed: {}", to.to_string(), describe(ec));
}

namespace {

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
  try {
    const auto parsed = parse_host_port(s);
    if (parsed.port == 0) throw InvalidHostPort("bad port '0'");
    p.ip = parsed.ip;
    p.port = parsed.port.value_or(default_port);
  } catch (const InvalidHostPort& e) {
    throw std::invalid_argument(fmt::format("peer '{}': {}", s, e.what()));
  }
  return p;
}

}  // namespace

MemberlistImpl::MemberlistImpl(asio::io_context& io, Config cfg, Delegate* delegate, EventDelegate* events,
                               std::unique_ptr<Transport> transport)
    : io_(io),
      cfg_(std::move(cfg)),
      delegate_(delegate),
      events_(events),
      transport_(transport ? std::move(transport) : make_net_transport(io, cfg_.name)),
      probe_timer_(io),
      gossip_timer_(io),
      push_pull_timer_(io),
      leave_timer_(io),
      log_flush_timer_(io),
      log_limiter_(std::chrono::seconds(10), 256,
                   [name = cfg_.name](const std::string& line) { spdlog::warn("[gossip {}] {}", name, line); }),
      inbound_open_(std::make_shared<std::size_t>(0)),
      inbound_buffers_(std::make_shared<StreamBufferBudget>(cfg_.max_inbound_buffer != 0 ? cfg_.max_inbound_buffer
                                                                                         : 2 * cfg_.max_stream_size)),
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

void MemberlistImpl::start() {
  boost::system::error_code ec;
  const auto bind_ip = asio::ip::make_address(cfg_.bind_addr, ec);
  if (ec) throw std::runtime_error(fmt::format("gossip: bind address '{}' is not an IP address", cfg_.bind_addr));

  std::weak_ptr<MemberlistImpl> weak = weak_from_this();
  port_ = transport_->listen(
      HostPort{bind_ip, cfg_.bind_port},
      [weak](ByteView packet, const HostPort& from) {
        if (auto self = weak.lock(); self && !self->shutdown_) self->ingest_packet(packet, from);
      },
      [weak](std::unique_ptr<ByteStream> stream) {
        if (auto self = weak.lock(); self && !self->shutdown_) self->handle_stream(std::move(stream));
      });

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
  schedule_log_flush();
  schedule_probe(random_stagger(cfg_.probe_interval));
  schedule_gossip(random_stagger(cfg_.gossip_interval));
  if (cfg_.push_pull_interval.count() > 0) schedule_push_pull(random_stagger(cfg_.push_pull_interval));
  spdlog::info("[gossip {}] listening on {}:{} (advertise {}:{}, encryption {})", cfg_.name, cfg_.bind_addr, port_,
               advertise_ip_.to_string(), advertise_port_, cfg_.keyring ? "on" : "off");
}

void MemberlistImpl::shutdown() {
  if (shutdown_) return;
  shutdown_ = true;
  transport_->shutdown();
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
void MemberlistImpl::schedule_log_flush() {
  if (shutdown_) return;
  log_flush_timer_.expires_after(log_limiter_.interval());
  log_flush_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->shutdown_) return;
    self->log_limiter_.flush();
    self->schedule_log_flush();
  });
}

void MemberlistImpl::join(std::vector<std::string> peers, Memberlist::JoinHandler done) {
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
    push_pull_node(HostPort{a.ip, a.port}, true, [finish_one, a](std::string err) {
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

void MemberlistImpl::leave(milliseconds timeout, std::function<void(bool)> done) {
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

std::vector<Member> MemberlistImpl::members() const {
  std::vector<Member> out;
  out.reserve(nodes_.size());
  for (const auto* n : nodes_) out.push_back(n->m);
  return out;
}

std::size_t MemberlistImpl::num_alive() const {
  return static_cast<std::size_t>(
      std::count_if(nodes_.begin(), nodes_.end(), [](const NodeState* n) { return !n->dead_or_left(); }));
}

const Keyring* MemberlistImpl::outgoing_keyring() const {
  return cfg_.keyring && cfg_.gossip_verify_outgoing ? cfg_.keyring.get() : nullptr;
}

Clock::duration MemberlistImpl::random_stagger(milliseconds interval) {
  if (interval.count() <= 0) return Clock::duration::zero();
  std::uniform_int_distribution<std::int64_t> dist(0, interval.count() - 1);
  return milliseconds(dist(rng_));
}

Bytes MemberlistImpl::local_meta() {
  if (!delegate_) return {};
  Bytes meta = delegate_->node_meta(kMetaMaxSize);
  if (meta.size() > kMetaMaxSize) {
    throw std::length_error(fmt::format("node meta is {} bytes, memberlist allows {}", meta.size(), kMetaMaxSize));
  }
  return meta;
}

bool MemberlistImpl::any_alive() const {
  return std::any_of(nodes_.begin(), nodes_.end(),
                     [&](const NodeState* n) { return !n->dead_or_left() && n->m.name != cfg_.name; });
}

void MemberlistImpl::complete_leave(bool ok) {
  if (!leave_done_) return;
  auto done = std::move(leave_done_);
  leave_done_ = nullptr;
  leave_timer_.cancel();
  done(ok);
}

}  // namespace detail

Memberlist::Memberlist(asio::io_context& io, Config config, Delegate* delegate, EventDelegate* events,
                       std::unique_ptr<Transport> transport)
    : impl_(std::make_shared<detail::MemberlistImpl>(io, std::move(config), delegate, events, std::move(transport))) {}
Memberlist::~Memberlist() { impl_->shutdown(); }
void Memberlist::start() { impl_->start(); }
void Memberlist::join(std::vector<std::string> peers, JoinHandler done) {
  impl_->join(std::move(peers), std::move(done));
}
void Memberlist::leave(milliseconds timeout, std::function<void(bool)> done) { impl_->leave(timeout, std::move(done)); }
bool Memberlist::send_best_effort(const std::string& node, ByteView msg) { return impl_->send_best_effort(node, msg); }
void Memberlist::send_reliable(const std::string& node, Bytes msg, std::function<void(std::string)> done) {
  impl_->send_reliable(node, std::move(msg), std::move(done));
}
void Memberlist::shutdown() { impl_->shutdown(); }
std::vector<Member> Memberlist::members() const { return impl_->members(); }
std::size_t Memberlist::num_alive() const { return impl_->num_alive(); }
std::uint16_t Memberlist::bound_port() const { return impl_->bound_port(); }
const Config& Memberlist::config() const { return impl_->config(); }

}  // namespace weft::control::gossip
