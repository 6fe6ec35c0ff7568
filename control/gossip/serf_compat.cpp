#include "control/gossip/serf_compat.h"

#include <set>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace weft::control::gossip {

Bytes encode_serf_tags(const Tags& tags) {
  Bytes out{kSerfTagMagicByte};
  GoMsgpackWriter w(out);
  w.map_header(tags.size());
  for (const auto& [k, v] : tags) {
    w.raw(k);
    w.raw(v);
  }
  return out;
}

Tags decode_serf_tags(ByteView meta) {
  Tags tags;
  if (meta.empty() || meta[0] != kSerfTagMagicByte) {
    tags["role"] = to_string(meta);
    return tags;
  }
  auto v = MsgpackValue::decode(meta.subspan(1));
  const auto& o = v.get();
  if (o.type != msgpack::type::MAP) throw DecodeError("serf tags are not a map");
  for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
    tags[object_to_string(o.via.map.ptr[i].key, "tag key")] = object_to_string(o.via.map.ptr[i].val, "tag value");
  }
  return tags;
}

Bytes encode_serf_join(const SerfJoinIntent& m) {
  Bytes out{static_cast<std::uint8_t>(SerfMessageType::kJoin)};
  GoMsgpackWriter w(out);
  w.map_header(2);
  w.field("LTime");
  w.uint(m.ltime);
  w.field("Node");
  w.raw(m.node);
  return out;
}

Bytes encode_serf_leave(const SerfLeaveIntent& m) {
  Bytes out{static_cast<std::uint8_t>(SerfMessageType::kLeave)};
  GoMsgpackWriter w(out);
  w.map_header(3);
  w.field("LTime");
  w.uint(m.ltime);
  w.field("Node");
  w.raw(m.node);
  w.field("Prune");
  w.boolean(m.prune);
  return out;
}

SerfJoinIntent decode_serf_join(ByteView body) {
  auto v = MsgpackValue::decode(body);
  StructView s(v.get());
  return {s.uint("LTime"), s.string("Node")};
}

SerfLeaveIntent decode_serf_leave(ByteView body) {
  auto v = MsgpackValue::decode(body);
  StructView s(v.get());
  return {s.uint("LTime"), s.string("Node"), s.boolean("Prune")};
}

Bytes encode_serf_push_pull(const SerfPushPull& pp) {
  Bytes out{static_cast<std::uint8_t>(SerfMessageType::kPushPull)};
  GoMsgpackWriter w(out);
  w.map_header(6 + (pp.weft_state ? 1 : 0));
  w.field("EventLTime");
  w.uint(pp.event_ltime);
  w.field("Events");
  w.nil();
  w.field("LTime");
  w.uint(pp.ltime);
  w.field("LeftMembers");
  w.array_header(pp.left_members.size());
  for (const auto& n : pp.left_members) w.raw(n);
  w.field("QueryLTime");
  w.uint(pp.query_ltime);
  w.field("StatusLTimes");
  w.map_header(pp.status_ltimes.size());
  for (const auto& [name, t] : pp.status_ltimes) {
    w.raw(name);
    w.uint(t);
  }
  if (pp.weft_state) {
    w.field("WeftState");
    w.raw(ByteView(*pp.weft_state));
  }
  return out;
}

SerfPushPull decode_serf_push_pull(ByteView body) {
  auto v = MsgpackValue::decode(body);
  StructView s(v.get());
  SerfPushPull pp;
  pp.ltime = s.uint("LTime");
  pp.event_ltime = s.uint("EventLTime");
  pp.query_ltime = s.uint("QueryLTime");
  if (const auto* st = s.find("StatusLTimes"); st && st->type == msgpack::type::MAP) {
    for (std::uint32_t i = 0; i < st->via.map.size; ++i) {
      pp.status_ltimes[object_to_string(st->via.map.ptr[i].key, "StatusLTimes key")] =
          object_to_uint(st->via.map.ptr[i].val, UINT64_MAX, "StatusLTimes value");
    }
  }
  if (const auto* left = s.find("LeftMembers"); left && left->type == msgpack::type::ARRAY) {
    for (std::uint32_t i = 0; i < left->via.array.size; ++i) {
      pp.left_members.push_back(object_to_string(left->via.array.ptr[i], "LeftMembers"));
    }
  }
  if (const auto* ws = s.find("WeftState")) pp.weft_state = object_to_bytes(*ws, "WeftState");
  return pp;
}

SerfCompat::SerfCompat(asio::io_context& io, std::string node_name, Tags tags, Delegate* app,
                       EventDelegate* app_events, int retransmit_mult)
    : io_(io),
      name_(std::move(node_name)),
      tags_(std::move(tags)),
      app_(app),
      app_events_(app_events),
      intents_(retransmit_mult, [this] { return num_nodes(); }),
      log_limiter_(std::chrono::seconds(10), 16,
                   [name = name_](const std::string& line) { spdlog::warn("[serf-compat {}] {}", name, line); }),
      self_(std::make_shared<SerfCompat*>(this)) {}

SerfCompat::~SerfCompat() {
  self_.reset();
  intents_.reset();
}

std::size_t SerfCompat::num_nodes() const {
  return memberlist_ ? std::max<std::size_t>(1, memberlist_->members().size()) : 1;
}

bool SerfCompat::is_leaving(const std::string& node) const {
  auto it = statuses_.find(node);
  return it != statuses_.end() && it->second.leaving;
}

bool SerfCompat::handle_join_intent(const SerfJoinIntent& j) {
  clock_.witness(j.ltime);
  auto& st = statuses_[j.node];
  if (j.ltime <= st.ltime) return false;
  st.ltime = j.ltime;
  st.leaving = false;  // a newer join supersedes an older leave
  return true;
}

bool SerfCompat::handle_leave_intent(const SerfLeaveIntent& l) {
  clock_.witness(l.ltime);
  auto& st = statuses_[l.node];
  if (l.ltime <= st.ltime) return false;
  if (l.node == name_ && !leaving_) {
    // A stale leave about us (e.g. from before a restart): refute like serf.
    spdlog::debug("[serf-compat {}] refuting an older leave intent", name_);
    asio::post(io_, [weak = std::weak_ptr<SerfCompat*>(self_)] {
      if (auto s = weak.lock()) (*s)->broadcast_join();
    });
    return false;
  }
  st.ltime = l.ltime;
  st.leaving = true;
  return true;
}

void SerfCompat::broadcast_join() {
  SerfJoinIntent j{clock_.time(), name_};
  clock_.witness(j.ltime);
  handle_join_intent(j);
  intents_.queue(encode_serf_join(j));
}

void SerfCompat::leave(milliseconds broadcast_timeout, milliseconds propagate_delay, std::function<void(bool)> done) {
  if (memberlist_ == nullptr) throw std::logic_error("SerfCompat::leave before attach()");
  leaving_ = true;
  SerfLeaveIntent l{clock_.time(), name_, false};
  clock_.increment();
  handle_leave_intent(l);

  struct LeaveState {
    explicit LeaveState(asio::io_context& io) : timer(io) {}
    asio::steady_timer timer;
    bool intent_done = false;
  };
  auto st = std::make_shared<LeaveState>(io_);
  std::weak_ptr<SerfCompat*> weak = self_;

  // Step 2: memberlist leave, then linger so peers can still probe us.
  auto memberlist_leave = [weak, st, broadcast_timeout, propagate_delay, done](bool intent_ok) {
    if (st->intent_done) return;
    st->intent_done = true;
    st->timer.cancel();
    auto self = weak.lock();
    if (!self) {
      done(false);
      return;
    }
    (*self)->memberlist_->leave(broadcast_timeout, [st, propagate_delay, done, intent_ok](bool ok) {
      st->timer.expires_after(propagate_delay);
      st->timer.async_wait([done, ok, intent_ok](const boost::system::error_code&) { done(ok && intent_ok); });
    });
  };

  if (memberlist_->num_alive() <= 1) {
    asio::post(io_, [memberlist_leave] { memberlist_leave(true); });
    return;
  }
  intents_.queue(encode_serf_leave(l), {}, [memberlist_leave] { memberlist_leave(true); });
  st->timer.expires_after(broadcast_timeout);
  st->timer.async_wait([memberlist_leave, weak](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) spdlog::warn("[serf-compat {}] timeout while waiting for graceful leave", (*self)->name_);
    memberlist_leave(false);
  });
}

Bytes SerfCompat::node_meta(std::size_t limit) {
  Bytes meta = encode_serf_tags(tags_);
  if (meta.size() > limit) {
    throw std::length_error(fmt::format("encoded tags are {} bytes, limit is {}", meta.size(), limit));
  }
  return meta;
}

void SerfCompat::notify_msg(ByteView msg) {
  if (msg.empty()) return;
  try {
    switch (msg[0]) {
      case static_cast<std::uint8_t>(SerfMessageType::kLeave): {
        auto l = decode_serf_leave(msg.subspan(1));
        // Serf re-gossips intents that were news to it; so do we, so a mixed
        // cluster spreads them as fast as a pure serf one.
        if (handle_leave_intent(l)) intents_.queue(Bytes(msg.begin(), msg.end()));
        return;
      }
      case static_cast<std::uint8_t>(SerfMessageType::kJoin): {
        auto j = decode_serf_join(msg.subspan(1));
        if (handle_join_intent(j)) intents_.queue(Bytes(msg.begin(), msg.end()));
        return;
      }
      case kWeftUserMessageType:
        if (app_) app_->notify_msg(msg.subspan(1));
        return;
      default:
        // User events, queries, key management: serf features weft does not
        // take part in.
        return;
    }
  } catch (const DecodeError& e) {
    if (log_limiter_.allow("bad serf messages", "peers")) {
      spdlog::warn("[serf-compat {}] bad serf message type {}: {}", name_, msg[0], e.what());
    }
  }
}

std::vector<Bytes> SerfCompat::get_broadcasts(std::size_t overhead, std::size_t limit) {
  auto out = intents_.get(overhead, limit);
  if (app_) {
    std::size_t used = 0;
    for (const auto& m : out) used += m.size() + overhead;
    if (limit > used + overhead + 1) {
      for (auto& m : app_->get_broadcasts(overhead + 1, limit - used)) {
        Bytes buf;
        buf.reserve(m.size() + 1);
        buf.push_back(kWeftUserMessageType);
        buf.insert(buf.end(), m.begin(), m.end());
        out.push_back(std::move(buf));
      }
    }
  }
  return out;
}

Bytes SerfCompat::local_state(bool join) {
  SerfPushPull pp;
  pp.ltime = clock_.time();
  for (const auto& [name, st] : statuses_) {
    // A member leaving and not gone yet (ourselves during our leave, or a
    // peer whose intent came before its memberlist leave) has its leave
    // intent's time. A status time outside LeftMembers reads as a join
    // (serf's push/pull does the same), so a peer that merged it before
    // the intent arrived would drop the intent (same time) and, at the
    // memberlist leave, show the member failed instead of left. Its
    // status goes as an intent, by gossip, not here.
    if (st.leaving && !st.gone) continue;
    pp.status_ltimes[name] = st.ltime;
    if (st.leaving) pp.left_members.push_back(name);
  }
  if (app_) pp.weft_state = app_->local_state(join);
  return encode_serf_push_pull(pp);
}

void SerfCompat::merge_remote_state(ByteView state, bool join) {
  if (state.empty()) return;
  if (state[0] != static_cast<std::uint8_t>(SerfMessageType::kPushPull)) {
    if (log_limiter_.allow("remote states of unknown type", "peers")) {
      spdlog::warn("[serf-compat {}] remote state has unknown type prefix {}", name_, state[0]);
    }
    return;
  }
  SerfPushPull pp;
  try {
    pp = decode_serf_push_pull(state.subspan(1));
  } catch (const DecodeError& e) {
    if (log_limiter_.allow("undecodable remote states", "peers")) {
      spdlog::warn("[serf-compat {}] failed to decode remote state: {}", name_, e.what());
    }
    return;
  }
  // No message with that time was sent yet, hence the -1 (as serf does).
  if (pp.ltime > 0) clock_.witness(pp.ltime - 1);
  std::set<std::string> left(pp.left_members.begin(), pp.left_members.end());
  for (const auto& name : pp.left_members) {
    auto it = pp.status_ltimes.find(name);
    handle_leave_intent({(it == pp.status_ltimes.end() ? 0 : it->second) + 1, name, false});
  }
  for (const auto& [name, t] : pp.status_ltimes) {
    if (!left.contains(name)) handle_join_intent({t, name});
  }
  if (app_ && pp.weft_state && !pp.weft_state->empty()) app_->merge_remote_state(*pp.weft_state, join);
}

void SerfCompat::notify_join(const Member& m) {
  auto& st = statuses_[m.name];
  st.gone = false;
  if (app_events_) app_events_->notify_join(m);
}

void SerfCompat::notify_leave(const Member& m) {
  statuses_[m.name].gone = true;
  if (app_events_) app_events_->notify_leave(m);
}

void SerfCompat::notify_update(const Member& m) {
  if (app_events_) app_events_->notify_update(m);
}

}  // namespace weft::control::gossip
