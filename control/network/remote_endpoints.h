// Endpoints of other nodes as the network manager holds them: each once,
// packed (control/model/packed_endpoint.h), and shared with the endpoint
// snapshots, which point at these same records. The cluster's tables
// already hold every record as text; what the manager needs of one is what
// its kernel entries need (address, MAC, the hosting node's VTEP, network)
// and, for listings, the rest of the record. At 100 000 remote endpoints
// (10 000 services x 10 backends) a full `Endpoint` per endpoint in a map
// keyed by its 64-character id cost ~880 bytes each, and the snapshot
// another full copy; here an endpoint is ~400 bytes in all
// (bench_remote_store): the model id packed into 32 bytes, network, node
// and service ids shared between the endpoints that name them, and the
// names, namespace, drain time and aliases in one string.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>

#include "control/model/model.h"
#include "control/model/packed_endpoint.h"
#include "dataplane/address.h"

namespace weft::control::network {

class RemoteEndpoints {
 public:
  // An endpoint id: a model id (64 lowercase hex digits) packed, any other
  // shape kept as it is (a record from a peer may have one).
  struct Key {
    std::array<std::uint8_t, 32> packed{};
    std::string other;
    bool operator==(const Key&) const = default;
  };
  static Key key_of(const std::string& id);
  static std::string id_of(const Key& key);

  struct Entry {
    // The record, shared with the endpoint snapshots that list it; a change
    // replaces it (never null).
    std::shared_ptr<const PackedEndpoint> endpoint;
    // The record's own network name (records of other nodes carry none):
    // what `endpoint` names its network by while the network is unknown here.
    PackedEndpoint::SharedString record_network_name;
    bool reserved_here = false;  // its address was marked used in our allocator
    dataplane::Ipv4 vtep{};      // the underlay address of the node hosting it
  };

  RemoteEndpoints() = default;
  ~RemoteEndpoints() { clear(); }
  RemoteEndpoints(const RemoteEndpoints&) = delete;
  RemoteEndpoints& operator=(const RemoteEndpoints&) = delete;

  std::size_t size() const { return entries_.size(); }
  // Distinct network, node and service ids held (for tests).
  std::size_t interned() const { return interned_.size(); }
  Entry* find(const std::string& id);
  // Records `endpoint` hosted at `vtep`, replacing what was held under its
  // id (reserved_here is kept). True when the id is new. `network_name`:
  // its network's name here, when the network is known (nullptr: the
  // record's own), which the record is held with, so that the endpoint
  // snapshots can share it as it is.
  std::pair<Entry*, bool> put(const Endpoint& endpoint, dataplane::Ipv4 vtep,
                              const std::string* network_name = nullptr);
  // The network `network_id` is now known here by `name` (nullptr: no
  // longer known): its endpoints are held with that name (their records'
  // own when nullptr).
  void name_network(const std::string& network_id, const std::string* name);
  void erase(const std::string& id);
  void clear();

  // The name from an entry's details, without unpacking the rest.
  static std::string name(const Entry& entry) { return std::string(entry.endpoint->name()); }
  // What the load balancer needs of an entry: id, network, address, MAC,
  // node, service and backend state (the drain time while draining).
  static Endpoint backend(const Key& key, const Entry& entry);
  // The whole Endpoint again. `network_name`: the network's, when it is
  // known here (nullptr: the record's own).
  static Endpoint endpoint(const Key& key, const Entry& entry, const std::string* network_name);

  template <class F>
  void for_each(F&& f) {
    for (auto& [key, entry] : entries_) f(key, entry);
  }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [key, entry] : entries_) f(key, entry);
  }

 private:
  struct KeyHash {
    std::size_t operator()(const Key& key) const;
  };
  // Drops an entry's record, and the strings it interned that nothing else holds.
  void release(Entry& entry);

  std::unordered_map<Key, Entry, KeyHash> entries_;
  StringInterner interned_;
};

}  // namespace weft::control::network
