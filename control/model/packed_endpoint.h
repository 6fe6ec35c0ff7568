// One endpoint, packed and immutable, shared by whoever holds it: the
// network manager keeps other nodes' endpoints this way, and the shared
// endpoint snapshot (EndpointSnapshot) is a list of pointers to these same
// objects, so 100 000 remote endpoints are held once, not once packed and
// again as a full `Endpoint` (eight strings, 64-hex ids on the heap: ~580
// bytes each) in every snapshot. A change replaces the object; holders of
// the old one keep it unchanged.
//
// Packed: a model id (64 lowercase hex digits) in 32 bytes; network, node
// and service ids as strings shared with every other endpoint naming the
// same one (interned by the holder, see StringInterner); the names,
// namespace, drain time and aliases in one string of length-prefixed fields.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "control/model/model.h"
#include "dataplane/address.h"

namespace weft::control {

class PackedEndpoint {
 public:
  using SharedString = std::shared_ptr<const std::string>;

  // `network_id`, `node`, `service_id`: e's, shared (never null).
  PackedEndpoint(const Endpoint& e, SharedString network_id, SharedString node, SharedString service_id);
  // With strings of its own.
  static std::shared_ptr<const PackedEndpoint> make(const Endpoint& e);

  std::string id() const;
  // As id() compares with other.id(), without making the strings.
  int compare_id(const PackedEndpoint& other) const;
  // A hash of the id (equal ids, equal hashes).
  std::size_t id_hash() const;
  std::string_view name() const { return field(kName); }
  const std::string& network_id() const { return *network_id_; }
  std::string_view network_name() const { return field(kNetworkName); }
  std::string_view netns() const { return field(kNetns); }
  std::string_view ifname() const { return field(kIfname); }
  dataplane::Ipv4 ip() const { return ip_; }
  int prefix_len() const { return prefix_len_; }
  dataplane::MacAddress mac() const { return mac_; }
  const std::string& node() const { return *node_; }
  const std::string& service_id() const { return *service_id_; }  // "" for none
  BackendState backend_state() const { return backend_state_; }
  std::string_view drain_until() const { return field(kDrainUntil); }
  std::vector<std::string> aliases() const;

  // The whole Endpoint again.
  Endpoint unpack() const;
  // A copy that names its network `network_name` (the same shared ids).
  std::shared_ptr<const PackedEndpoint> with_network_name(std::string_view network_name) const;

  // Heap bytes of this object's own (not shared) parts, for benchmarks.
  std::size_t own_bytes() const { return sizeof(*this) + details_.capacity(); }

 private:
  // Fields of details_, in order; aliases follow.
  enum Field { kOtherId, kName, kNetworkName, kNetns, kIfname, kDrainUntil, kFields };
  std::string_view field(Field f) const;

  std::array<std::uint8_t, 32> id_{};  // a model id, packed
  SharedString network_id_;
  SharedString node_;
  SharedString service_id_;
  std::string details_;  // an id of any other shape (else empty), name, network name, netns, ifname, drain time, aliases
  dataplane::Ipv4 ip_{};
  int prefix_len_ = 0;
  dataplane::MacAddress mac_{};
  BackendState backend_state_ = BackendState::active;
  bool id_packed_ = false;
};

// Strings shared between the objects that name them (network, node and
// service ids of 100 000 endpoints are a few thousand strings). A string
// stays while anyone holds it: a snapshot may outlive the store's entry.
// Not thread-safe: its owner's lock guards it.
class StringInterner {
 public:
  PackedEndpoint::SharedString get(const std::string& s);
  // Forgets `s` when nothing but the interner holds it any more.
  void release(const std::string& s);
  // Forgets every string only the interner holds.
  void sweep();
  void clear() { strings_.clear(); }
  std::size_t size() const { return strings_.size(); }

 private:
  std::unordered_map<std::string_view, PackedEndpoint::SharedString> strings_;  // keys view the values
  std::size_t sweep_at_ = 64;  // bounded: strings of released snapshots go at the next sweep
};

}  // namespace weft::control
