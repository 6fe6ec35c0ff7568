// Failure detection and membership: probes, gossip and push/pull rounds,
// and the alive/suspect/dead transitions with refutation; memberlist's
// state.go.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "control/gossip/codec.h"
#include "control/gossip/gossip_counters.h"
#include "control/gossip/memberlist_impl.h"
#include "control/gossip/packet.h"

namespace weft::control::gossip::detail {

void MemberlistImpl::schedule_probe(Clock::duration after) {
  if (shutdown_ || cfg_.probe_interval.count() <= 0) return;
  probe_timer_.expires_after(after);
  probe_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->shutdown_) return;
    self->probe();
  });
}

void MemberlistImpl::reset_nodes() {
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

NodeState* MemberlistImpl::next_probe_target() {
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

void MemberlistImpl::probe() {
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
  round->target = address_of(node->m);
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
    send_msg(round->target, round->ping_msg, node);
  } else {
    // A suspect gets the accusation with the ping so it can refute quickly.
    Suspect s{node->m.incarnation, node->m.name, cfg_.name};
    raw_send_packet(round->target, make_compound({round->ping_msg, encode_message(s)}), node);
  }

  round->timer.expires_after(cfg_.probe_timeout);
  round->timer.async_wait([weak, round](const boost::system::error_code& ec) {
    if (ec || round->done) return;
    if (auto self = weak.lock(); self && !self->shutdown_) self->probe_indirectly(round);
  });
}

void MemberlistImpl::probe_indirectly(const std::shared_ptr<ProbeRound>& round) {
  spdlog::debug("[gossip {}] failed ping: {} (timeout reached)", cfg_.name, round->node);
  auto peers = k_random_nodes(static_cast<std::size_t>(std::max(0, cfg_.indirect_checks)), [&](const NodeState& n) {
    return n.m.name != cfg_.name && n.m.name != round->node && n.m.state == NodeStateKind::kAlive;
  });
  IndirectPingReq ind{round->seq, round->target_addr,         round->target_port, round->node,
                      false,      ip_to_bytes(advertise_ip_), advertise_port_,    cfg_.name};
  for (auto* peer : peers) {
    // Only protocol >= 4 peers send nacks.
    ind.nack = peer->m.vsn[1] >= 4;
    if (ind.nack) ++round->expected_nacks;
    send_msg(address_of(peer->m), encode_message(ind), peer);
  }

  // TCP fallback: catches a node whose UDP is broken but which is alive,
  // so we don't accuse it (and later flap) because of a firewall.
  if (!cfg_.disable_tcp_pings && round->target_pmax >= 3) {
    round->tcp_pending = true;
    std::weak_ptr<MemberlistImpl> weak = weak_from_this();
    tcp_ping(round->target, round->ping, round->deadline, [weak, round](bool ok) {
      round->tcp_pending = false;
      round->tcp_ok = ok;
      if (auto self = weak.lock()) self->conclude_probe(round);
    });
  }
}

void MemberlistImpl::conclude_probe(const std::shared_ptr<ProbeRound>& round) {
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

void MemberlistImpl::finish_probe(const std::shared_ptr<ProbeRound>& round, int awareness_delta) {
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

void MemberlistImpl::schedule_gossip(Clock::duration after) {
  if (shutdown_ || cfg_.gossip_interval.count() <= 0 || cfg_.gossip_nodes <= 0) return;
  gossip_timer_.expires_after(after);
  gossip_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->shutdown_) return;
    self->gossip();
    self->schedule_gossip(self->cfg_.gossip_interval);
  });
}

void MemberlistImpl::gossip() {
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
    send_parts(address_of(node->m), std::move(msgs), node);
  }
}

void MemberlistImpl::schedule_push_pull(Clock::duration after) {
  if (shutdown_) return;
  push_pull_timer_.expires_after(after);
  push_pull_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->shutdown_) return;
    self->push_pull();
    self->schedule_push_pull(push_pull_scale(self->cfg_.push_pull_interval, self->nodes_.size()));
  });
}

void MemberlistImpl::push_pull() {
  auto peers = k_random_nodes(
      1, [&](const NodeState& n) { return n.m.name != cfg_.name && n.m.state == NodeStateKind::kAlive; });
  if (peers.empty()) return;
  const std::string name = peers.front()->m.name;
  push_pull_node(address_of(peers.front()->m), false, [self = shared_from_this(), name](std::string err) {
    if (!err.empty()) spdlog::warn("[gossip {}] push/pull with {} failed: {}", self->cfg_.name, name, err);
  });
}

// Every alive node must speak a protocol version every other alive node
// understands (memberlist's verifyProtocol); otherwise refuse the merge.
std::string MemberlistImpl::verify_protocol(const std::vector<PushNodeState>& remote) const {
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

std::string MemberlistImpl::merge_remote_state(bool join, const std::vector<PushNodeState>& remote,
                                               const Bytes& user_state) {
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

void MemberlistImpl::set_alive() {
  Alive a;
  a.incarnation = next_incarnation();
  a.node = cfg_.name;
  a.addr = ip_to_bytes(advertise_ip_);
  a.port = advertise_port_;
  a.meta = local_meta();
  a.vsn = vsn_bytes(cfg_.versions);
  alive_node(a, true);
}

void MemberlistImpl::refute(NodeState& me, std::uint32_t accused_inc) {
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

void MemberlistImpl::alive_node(const Alive& a, bool bootstrap) {
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
    const bool can_reclaim =
        cfg_.dead_node_reclaim_time.count() > 0 && Clock::now() - state->state_change > cfg_.dead_node_reclaim_time;
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

void MemberlistImpl::suspect_node(const Suspect& s) {
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
  gossip_counters().member_flaps.fetch_add(1, std::memory_order_relaxed);
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
  suspicions_[name] =
      std::make_unique<Suspicion>(io_, s.from, k, min, max, [weak, name, change_time](int confirmations) {
        auto self = weak.lock();
        if (!self || self->shutdown_) return;
        NodeState* st = self->find(name);
        if (st == nullptr || st->m.state != NodeStateKind::kSuspect || st->state_change != change_time) return;
        spdlog::info("[gossip {}] marking {} as failed, suspect timeout reached ({} peer confirmations)",
                     self->cfg_.name, name, confirmations);
        self->dead_node(Dead{st->m.incarnation, name, self->cfg_.name});
      });
}

void MemberlistImpl::dead_node(const Dead& d) {
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

  if (d.node != d.from && state->m.state == NodeStateKind::kAlive)
    gossip_counters().member_flaps.fetch_add(1, std::memory_order_relaxed);
  state->m.incarnation = d.incarnation;
  // A node announcing its own death has left gracefully.
  state->m.state = d.node == d.from ? NodeStateKind::kLeft : NodeStateKind::kDead;
  state->state_change = Clock::now();
  if (events_ && !shutdown_) events_->notify_leave(state->m);
}

}  // namespace weft::control::gossip::detail
