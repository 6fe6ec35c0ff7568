#include "control/cluster/table_gossip.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>
#include <random>

#include "control/gossip/serf_compat.h"

namespace weft::control::cluster {
namespace gossip = weft::control::gossip;
using nlohmann::json;
using tables::TableEntry;

namespace {

// A push/pull after the join carries only a digest of the whole copy: one
// type byte, JSON {"node", "digest"}.
constexpr std::uint8_t kStateDigest = 0x79;
// On a mismatch, the side with the smaller name sends its digests per owner
// straight to the peer: one type byte, JSON {"node", "owners": {owner:
// digest}}. (Only on a mismatch: with 100 owners they are ~4 KB, and at
// rest every push/pull would carry them.)
constexpr std::uint8_t kOwnerDigests = 0x7B;
// The answer to a digest mismatch, straight to the peer: one type byte,
// msgpack [sender, all, [owners...], the newest time of the receiver's
// entries the sender withdrew], then encoded entries (kWireMagic...).
constexpr std::uint8_t kSync = 0x7A;
// What encryption, the message type bytes and a label may add to a pushed
// packet, kept out of memberlist's UDP buffer size.
constexpr std::size_t kPushOverhead = 64;

gossip::Bytes to_bytes(const std::string& s) { return gossip::Bytes(s.begin(), s.end()); }

std::string_view as_chars(gossip::ByteView bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

bool is_weft(const gossip::Member& m) {
  try {
    auto tags = gossip::decode_serf_tags(m.meta);
    auto role = tags.find("role");
    return role != tags.end() && role->second == "weft";
  } catch (const std::exception&) {
    return false;
  }
}

std::mt19937& rng() {
  static thread_local std::mt19937 generator{std::random_device{}()};
  return generator;
}

}  // namespace

gossip::Bytes direct_message(gossip::Bytes body) {
  body.insert(body.begin(), gossip::kWeftUserMessageType);
  return body;
}

TableGossip::TableGossip(boost::asio::io_context& io, TableGossipConfig config, tables::ReplicatedTables& tables)
    : io_(io),
      config_(std::move(config)),
      tables_(tables),
      queue_(config_.retransmit_mult, [this] { return ml_ ? ml_->num_alive() : 1; }) {}

void TableGossip::broadcast(const std::vector<TableEntry>& entries) {
  if (entries.empty()) return;
  for (const auto& e : entries) {
    auto msg = to_bytes(tables::encode_entries({e}));
    to_push_.push_back({e, msg.size()});
    queue_.queue(std::move(msg), e.table + "|" + e.key);
  }
  // Deferred so that news arriving in one packet (a compound of several
  // entries) leaves in one push.
  if (!push_scheduled_) {
    push_scheduled_ = true;
    boost::asio::post(io_, [this, alive = std::weak_ptr<void>(alive_)] {
      if (!alive.expired()) push_now();
    });
  }
}

std::vector<std::string> TableGossip::push_targets() {
  std::vector<std::string> peers(weft_peers_.begin(), weft_peers_.end());
  std::shuffle(peers.begin(), peers.end(), rng());
  if (peers.size() > config_.push_fanout) peers.resize(config_.push_fanout);
  return peers;
}

void TableGossip::push_now() {
  push_scheduled_ = false;
  auto entries = std::move(to_push_);
  to_push_.clear();
  if (!ml_ || entries.empty() || weft_peers_.empty()) return;
  const std::size_t limit = ml_->config().udp_buffer_size - kPushOverhead;
  // Entries packed into packets that fit the UDP buffer; one too large for
  // a packet is left to the gossip queue and anti-entropy.
  std::vector<std::vector<TableEntry>> packets(1);
  std::size_t used = 0;
  for (auto& [entry, size] : entries) {
    if (size > limit) continue;
    if (used + size > limit) {
      packets.emplace_back();
      used = 0;
    }
    packets.back().push_back(std::move(entry));
    used += size;
  }
  for (const auto& packet : packets) {
    if (packet.empty()) continue;
    const auto msg = direct_message(to_bytes(tables::encode_entries(packet)));
    for (const auto& peer : push_targets())
      if (ml_->send_best_effort(peer, msg)) ++counters_.pushed_packets;
  }
}

void TableGossip::send_to(const std::string& node, const std::vector<TableEntry>& entries) {
  if (!ml_ || entries.empty() || node == config_.node_name) return;
  ml_->send_reliable(node, direct_message(to_bytes(tables::encode_entries(entries))), [node](const std::string& error) {
    if (!error.empty()) spdlog::debug("tables: sending to {} failed: {}", node, error);
  });
}

bool TableGossip::handle_message(gossip::ByteView msg) {
  if (msg.empty()) return false;
  if (msg[0] == tables::kWireMagic) {
    std::vector<TableEntry> fresh;
    for (const auto& e : tables::decode_entries(as_chars(msg)))
      if (tables_.apply(e)) fresh.push_back(e);
    broadcast(fresh);  // epidemic: pass on what was news here
    return true;
  }
  if (msg[0] == kSync) {
    handle_sync(msg.subspan(1));
    return true;
  }
  if (msg[0] == kOwnerDigests) {
    handle_owner_digests(msg.subspan(1));
    return true;
  }
  return false;
}

gossip::Bytes TableGossip::local_state(bool join) {
  if (join) return to_bytes(tables::encode_entries(tables_.snapshot()));
  json digest = {{"node", config_.node_name}, {"digest", tables_.digest()}};
  gossip::Bytes out{kStateDigest};
  const auto text = digest.dump();
  out.insert(out.end(), text.begin(), text.end());
  return out;
}

void TableGossip::merge_remote_state(gossip::ByteView state, bool) {
  if (state.empty()) return;
  ++counters_.push_pulls;
  if (state[0] != kStateDigest) {
    in_anti_entropy_ = true;
    try {
      tables_.merge(tables::decode_entries(as_chars(state)));
    } catch (...) {
      in_anti_entropy_ = false;
      throw;
    }
    in_anti_entropy_ = false;
    return;
  }
  const auto j = json::parse(state.begin() + 1, state.end());
  const auto peer = j.at("node").get<std::string>();
  if (peer == config_.node_name || j.at("digest").get<std::uint64_t>() == tables_.digest()) return;
  // Both ends of a push/pull see the mismatch; one repair is enough.
  if (config_.node_name > peer) return;
  json owners = json::object();
  for (const auto& [owner, digest] : tables_.owner_digests()) owners[owner] = digest;
  const auto text = json{{"node", config_.node_name}, {"owners", std::move(owners)}}.dump();
  gossip::Bytes msg{kOwnerDigests};
  msg.insert(msg.end(), text.begin(), text.end());
  ml_->send_reliable(peer, direct_message(std::move(msg)), [peer](const std::string& error) {
    if (!error.empty()) spdlog::warn("tables: sending digests to {} failed: {}", peer, error);
  });
}

void TableGossip::handle_owner_digests(gossip::ByteView message) {
  const auto j = json::parse(message.begin(), message.end());
  const auto peer = j.at("node").get<std::string>();
  if (peer == config_.node_name) return;
  // Owners whose entries differ, on either side.
  const auto theirs = j.at("owners").get<std::map<std::string, std::uint64_t>>();
  const auto ours = tables_.owner_digests();
  std::set<std::string> differing;
  for (const auto& [owner, digest] : ours)
    if (auto it = theirs.find(owner); it == theirs.end() || it->second != digest) differing.insert(owner);
  for (const auto& [owner, digest] : theirs)
    if (!ours.count(owner)) differing.insert(owner);
  const auto entries = tables_.snapshot(differing);
  spdlog::debug("tables: differ from {}'s in {} owner(s); sending {} entries", peer, differing.size(), entries.size());

  msgpack::sbuffer header;
  msgpack::pack(header, std::make_tuple(config_.node_name, false,
                                        std::vector<std::string>(differing.begin(), differing.end()),
                                        tables_.withdrawn_mark(peer)));
  gossip::Bytes sync{kSync};
  sync.insert(sync.end(), header.data(), header.data() + header.size());
  const auto body = tables::encode_entries(entries);
  sync.insert(sync.end(), body.begin(), body.end());
  ++counters_.syncs_sent;
  counters_.sync_entries_sent += static_cast<long>(entries.size());
  ml_->send_reliable(peer, direct_message(std::move(sync)), [peer](const std::string& error) {
    if (!error.empty()) spdlog::warn("tables: sync with {} failed: {}", peer, error);
  });
}

void TableGossip::handle_sync(gossip::ByteView body) {
  const auto chars = as_chars(body);
  std::size_t offset = 0;
  std::string peer;
  bool all = false;
  std::vector<std::string> owner_list;
  std::uint64_t withdrawn_mark = 0;  // of this node's entries, at the peer
  try {
    auto handle = msgpack::unpack(chars.data(), chars.size(), offset);
    std::tie(peer, all, owner_list, withdrawn_mark) =
        handle.get().as<std::tuple<std::string, bool, std::vector<std::string>, std::uint64_t>>();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("malformed sync header: ") + e.what());
  }
  const auto theirs = tables::decode_entries(chars.substr(offset));
  const std::set<std::string> owners(owner_list.begin(), owner_list.end());
  const auto* scope = all ? nullptr : &owners;

  std::vector<TableEntry> fresh;
  in_anti_entropy_ = true;
  for (const auto& e : theirs)
    if (tables_.apply(e)) fresh.push_back(e);
  in_anti_entropy_ = false;
  broadcast(fresh);

  auto repair = tables_.newer_than(theirs, scope);
  // The peer thought this node dead and withdrew its entries (a freeze, or
  // a one-sided partition this node never noticed): it refuses their old
  // versions, so they go out again with fresh times. (An entry of ours the
  // peer merely has not heard of yet is above its mark and goes as it is.)
  const bool ours_withdrawn = std::any_of(repair.begin(), repair.end(), [&](const TableEntry& e) {
    return e.owner == config_.node_name && !e.deleted && config_.node_scoped_tables.count(e.table) &&
           e.lamport <= withdrawn_mark;
  });
  if (ours_withdrawn) {
    spdlog::info("tables: {} had withdrawn this node's entries; republishing them", peer);
    broadcast(tables_.republish_own());
    repair = tables_.newer_than(theirs, scope);
  }
  send_to(peer, repair);
  spdlog::debug("tables: synced with {}: {} new here, {} sent back", peer, fresh.size(), repair.size());
}

void TableGossip::member_joined(const gossip::Member& m) {
  if (m.name == config_.node_name) return;
  if (is_weft(m)) weft_peers_.insert(m.name);
  // It may have withdrawn our entries while it thought us dead (a partition
  // looks the same from both sides).
  if (gone_nodes_.erase(m.name)) broadcast(tables_.republish_own());
}

void TableGossip::member_left(const gossip::Member& m) {
  weft_peers_.erase(m.name);
  if (m.name == config_.node_name) return;
  gone_nodes_.insert(m.name);
  tables_.withdraw_node(m.name);
}

void TableGossip::member_updated(const gossip::Member& m) {
  if (m.name == config_.node_name) return;
  if (is_weft(m))
    weft_peers_.insert(m.name);
  else
    weft_peers_.erase(m.name);
}

}  // namespace weft::control::cluster
