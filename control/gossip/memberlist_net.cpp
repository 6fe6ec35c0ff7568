// Sending and receiving: packets with piggybacked gossip, acks, and the
// stream exchanges (push/pull, TCP ping, user messages); memberlist's net.go.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "control/gossip/codec.h"
#include "control/gossip/gossip_counters.h"
#include "control/gossip/memberlist_impl.h"
#include "control/gossip/packet.h"
#include "control/gossip/security.h"

namespace weft::control::gossip::detail {

bool MemberlistImpl::send_best_effort(const std::string& node, ByteView msg) {
  auto it = node_map_.find(node);
  if (it == node_map_.end() || shutdown_) return false;
  Bytes buf{static_cast<std::uint8_t>(MessageType::kUser)};
  buf.insert(buf.end(), msg.begin(), msg.end());
  raw_send_packet(address_of(it->second->m), buf, it->second.get());
  return true;
}

void MemberlistImpl::send_reliable(const std::string& node, Bytes msg, std::function<void(std::string)> done) {
  auto it = node_map_.find(node);
  if (it == node_map_.end() || shutdown_) {
    asio::post(io_, [done, node] { done(fmt::format("unknown node '{}'", node)); });
    return;
  }
  Bytes wire = frame_stream(encode_user_stream(msg), outgoing_keyring(), cfg_.enable_compression);
  const HostPort to = address_of(it->second->m);
  StreamConnection::connect(io_, *transport_, to, cfg_.tcp_timeout, cfg_.keyring, cfg_.gossip_verify_incoming,
                            outgoing_limits(),
                            [wire = std::move(wire), to, done](std::shared_ptr<StreamConnection> conn,
                                                               const boost::system::error_code& ec) mutable {
                              if (!conn) {
                                done(connect_error(to, ec));
                                return;
                              }
                              conn->write(std::move(wire), [conn, done](const boost::system::error_code& werr) {
                                conn->close();
                                done(werr ? werr.message() : std::string{});
                              });
                            });
}

void MemberlistImpl::broadcast(const std::string& node, Bytes msg, BroadcastQueue::Finished finished) {
  broadcasts_.queue(std::move(msg), node, std::move(finished));
}

std::vector<Bytes> MemberlistImpl::get_broadcasts(std::size_t overhead, std::size_t limit) {
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

std::size_t MemberlistImpl::packet_budget() const {
  std::size_t budget =
      cfg_.udp_buffer_size > kCompoundHeaderOverhead ? cfg_.udp_buffer_size - kCompoundHeaderOverhead : 0;
  if (outgoing_keyring()) budget = budget > kEncryptOverhead ? budget - kEncryptOverhead : 0;
  return budget;
}

// Sends `msgs` as one message or as compound(s) of at most 255 parts.
void MemberlistImpl::send_parts(const HostPort& to, std::vector<Bytes> msgs, const NodeState* node) {
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
void MemberlistImpl::send_msg(const HostPort& to, Bytes msg, const NodeState* node) {
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

void MemberlistImpl::raw_send_packet(const HostPort& to, ByteView msg, const NodeState* node) {
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
  transport_->send_packet(to, wire);
}

void MemberlistImpl::ingest_packet(ByteView packet, const HostPort& from) {
  auto decoded = decode_packet(packet, cfg_.keyring.get(), cfg_.gossip_verify_incoming);
  if (!decoded.errors.empty()) {
    const std::string source = from.ip.to_string();
    if (log_limiter_.allow("undecodable packets", source)) {
      spdlog::warn("[gossip {}] dropped packet data from {}: {} (more are summarised every {}s)", cfg_.name, source,
                   decoded.errors.front(), log_limiter_.interval().count() / 1000);
    }
  }
  for (auto& msg : decoded.messages) {
    if (shutdown_) return;
    std::visit(
        [&](auto& m) {
          using Message = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<Message, UserMessage>) {
            gossip_counters().count(MessageType::kUser);
          } else {
            gossip_counters().count(Message::kType);
          }
          handle(m, from);
        },
        msg);
  }
}

void MemberlistImpl::handle(const Ping& p, const HostPort& from) {
  if (!p.node.empty() && p.node != cfg_.name) {
    if (log_limiter_.allow("pings for other nodes", from.ip.to_string())) {
      spdlog::warn("[gossip {}] got ping for unexpected node '{}' from {}", cfg_.name, p.node, from.ip.to_string());
    }
    return;
  }
  AckResp ack{p.seq_no, {}};
  HostPort to = from;
  if (!p.source_addr.empty() && p.source_port > 0) {
    if (auto ip = ip_from_bytes(p.source_addr)) to = HostPort{*ip, p.source_port};
  }
  send_msg(to, encode_message(ack), find(p.source_node));
}

void MemberlistImpl::handle(const IndirectPingReq& ind, const HostPort& from) {
  const std::uint16_t port = ind.port != 0 ? ind.port : cfg_.bind_port;
  auto target_ip = ip_from_bytes(ind.target);
  if (!target_ip) {
    if (log_limiter_.allow("indirect pings with a bad target", from.ip.to_string())) {
      spdlog::warn("[gossip {}] indirect ping with bad target address from {}", cfg_.name, from.ip.to_string());
    }
    return;
  }
  HostPort requester = from;
  if (!ind.source_addr.empty() && ind.source_port > 0) {
    if (auto ip = ip_from_bytes(ind.source_addr)) requester = HostPort{*ip, ind.source_port};
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
  send_msg(HostPort{*target_ip, port}, encode_message(ping), find(ind.node));
}

void MemberlistImpl::handle(const NackResp& nack, const HostPort&) {
  auto it = ack_handlers_.find(nack.seq_no);
  if (it != ack_handlers_.end() && it->second->on_nack) it->second->on_nack();
}

void MemberlistImpl::handle(const Alive& a, const HostPort& from) {
  if (!ip_from_bytes(a.addr)) {
    if (log_limiter_.allow("alive messages with a bad address", from.ip.to_string())) {
      spdlog::warn("[gossip {}] alive message for '{}' from {} has a bad address", cfg_.name, a.node,
                   from.ip.to_string());
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

void MemberlistImpl::handle(const UserMessage& u, const HostPort&) {
  if (delegate_ && !u.payload.empty()) delegate_->notify_msg(u.payload);
}

void MemberlistImpl::set_ack_handler(std::uint32_t seq, std::function<void(const Bytes&)> on_ack,
                                     std::function<void()> on_nack, std::function<void()> on_timeout,
                                     milliseconds timeout) {
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

void MemberlistImpl::invoke_ack(std::uint32_t seq, const Bytes& payload) {
  auto it = ack_handlers_.find(seq);
  if (it == ack_handlers_.end()) return;
  auto h = it->second;
  ack_handlers_.erase(it);
  h->timer.cancel();
  if (h->on_ack) h->on_ack(payload);
}

void MemberlistImpl::tcp_ping(const HostPort& to, const Ping& ping, Clock::time_point deadline,
                              std::function<void(bool)> done) {
  const auto now = Clock::now();
  const auto timeout = deadline > now ? std::chrono::duration_cast<milliseconds>(deadline - now) : milliseconds(1);
  Bytes wire = frame_stream(encode_message(ping), outgoing_keyring(), cfg_.enable_compression);
  const std::uint32_t seq = ping.seq_no;
  StreamConnection::connect(
      io_, *transport_, to, timeout, cfg_.keyring, cfg_.gossip_verify_incoming, outgoing_limits(),
      [wire = std::move(wire), seq, done](std::shared_ptr<StreamConnection> conn,
                                          const boost::system::error_code&) mutable {
        if (!conn) {
          done(false);  // a dead node refusing connections is expected, not an error
          return;
        }
        conn->write(std::move(wire), [conn, seq, done](const boost::system::error_code& err) {
          if (err) {
            done(false);
            return;
          }
          conn->read_message([conn, seq, done](std::optional<StreamMessage> msg, const StreamError&) {
            conn->close();
            done(msg && msg->type == MessageType::kAck && msg->ack.seq_no == seq);
          });
        });
      });
}

Bytes MemberlistImpl::local_state_message(bool join) {
  std::vector<PushNodeState> nodes;
  nodes.reserve(nodes_.size());
  for (const auto* n : nodes_) {
    nodes.push_back(PushNodeState{n->m.name, ip_to_bytes(n->m.addr), n->m.port, n->m.meta, n->m.incarnation, n->m.state,
                                  vsn_bytes(n->m.vsn)});
  }
  Bytes user = delegate_ ? delegate_->local_state(join) : Bytes{};
  PushPullHeader h{static_cast<std::int64_t>(nodes.size()), static_cast<std::int64_t>(user.size()), join};
  return frame_stream(encode_push_pull(h, nodes, user), outgoing_keyring(), cfg_.enable_compression);
}

void MemberlistImpl::push_pull_node(const HostPort& to, bool join, std::function<void(std::string)> done) {
  if (shutdown_) {
    asio::post(io_, [done] { done("shut down"); });
    return;
  }
  Bytes wire = local_state_message(join);
  std::weak_ptr<MemberlistImpl> weak = weak_from_this();
  StreamConnection::connect(
      io_, *transport_, to, cfg_.tcp_timeout, cfg_.keyring, cfg_.gossip_verify_incoming, outgoing_limits(),
      [weak, join, to, wire = std::move(wire), done](std::shared_ptr<StreamConnection> conn,
                                                     const boost::system::error_code& ec) mutable {
        if (!conn) {
          done(connect_error(to, ec));
          return;
        }
        conn->write(std::move(wire), [weak, join, conn, done](const boost::system::error_code& werr) {
          if (werr) {
            conn->close();
            done("write failed: " + werr.message());
            return;
          }
          conn->read_message([weak, join, conn, done](std::optional<StreamMessage> msg, const StreamError& rerr) {
            conn->close();
            auto self = weak.lock();
            if (!self || self->shutdown_) {
              done("shut down");
              return;
            }
            if (!msg) {
              done("read failed: " + rerr.message());
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

void MemberlistImpl::send_stream_error(const std::shared_ptr<StreamConnection>& conn, const std::string& err) {
  Bytes wire = frame_stream(encode_message(ErrResp{err}), outgoing_keyring(), false);
  conn->write(std::move(wire), [conn](const boost::system::error_code&) { conn->close(); });
}

void MemberlistImpl::handle_stream(std::unique_ptr<ByteStream> stream) {
  if (*inbound_open_ >= cfg_.max_inbound_streams) {
    // Refused before anything is read or allocated: closing is all it costs.
    const std::string source = stream->remote().ip.to_string();
    stream->close();
    if (log_limiter_.allow("streams over the limit", source)) {
      spdlog::warn("[gossip {}] closed a stream from {}: {} inbound streams are open already", cfg_.name, source,
                   cfg_.max_inbound_streams);
    }
    return;
  }
  auto conn = std::make_shared<StreamConnection>(io_.get_executor(), std::move(stream), cfg_.keyring,
                                                 cfg_.gossip_verify_incoming,
                                                 StreamLimits{cfg_.max_stream_size, inbound_buffers_});
  conn->hold(std::make_shared<InboundSlot>(inbound_open_));
  conn->set_deadline(Clock::now() + cfg_.tcp_timeout);
  std::weak_ptr<MemberlistImpl> weak = weak_from_this();
  conn->read_message([weak, conn](std::optional<StreamMessage> msg, const StreamError& err) {
    auto self = weak.lock();
    if (!self || self->shutdown_) return;
    if (!msg) {
      if (err.code != StreamErrc::closed_before_message) {
        if (self->log_limiter_.allow("failed streams", conn->remote_address())) {
          spdlog::warn("[gossip {}] failed to receive stream from {}: {} (more are summarised every {}s)",
                       self->cfg_.name, conn->remote(), err.message(), self->log_limiter_.interval().count() / 1000);
        }
        self->send_stream_error(conn, err.message());
      }
      return;
    }
    self->dispatch_stream(conn, std::move(*msg));
  });
}

void MemberlistImpl::dispatch_stream(const std::shared_ptr<StreamConnection>& conn, StreamMessage msg) {
  gossip_counters().count(msg.type);
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
      conn->write(std::move(wire), [weak, conn](const boost::system::error_code& err) {
        conn->close();
        if (auto self = weak.lock()) {
          --self->push_pull_in_flight_;
          if (err) {
            spdlog::warn("[gossip {}] failed to push local state to {}: {}", self->cfg_.name, conn->remote(),
                         err.message());
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
      Bytes wire =
          frame_stream(encode_message(AckResp{msg.ping.seq_no, {}}), outgoing_keyring(), cfg_.enable_compression);
      conn->write(std::move(wire), [conn](const boost::system::error_code&) { conn->close(); });
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

}  // namespace weft::control::gossip::detail
