// One endpoint, packed and immutable, shared by whoever holds it: the
// network manager keeps other nodes' endpoints this way, and the shared
// endpoint snapshot (EndpointSnapshot) is a list of pointers to these same
// objects, so 100 000 remote endpoints are held once, not once packed and
// again as a full `Endpoint` (eight strings, 64-hex ids on the heap: ~580
// bytes each) in every snapshot. A change replaces the object; holders of
// the old one keep it unchanged.
//
// Packed: a model id (64 lowercase hex digits) in 32 bytes; network, node
// and network names in an EndpointOrigin and the service id as a string,
// both shared with every other endpoint naming the same (interned by the
// holder, see StringInterner; 8 bytes a reference); the endpoint's name,
// namespace, interface, drain time and aliases as length-prefixed fields
// in one block of bytes. A standalone object owns that block; the network
// manager's objects live in PackedEndpointChunks, 64 to a chunk with their
// blocks in one arena, so that a record costs its 64 bytes and its
// fields' bytes, no allocation of its own (a snapshot points into the
// chunk, which it keeps alive). The MAC is not held when it is Docker's
// (02:42 and the address), nor the prefix length in 4 bytes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "control/model/model.h"
#include "dataplane/address.h"

namespace weft::control {

// An immutable value shared by reference count (intrusive: 8 bytes a
// reference, against a shared_ptr's 16). Counted atomically: the last
// holder may be a reader's thread.
template <class T>
class Shared {
 public:
  Shared() = default;
  template <class... Args>
  static Shared make(Args&&... args) {
    Shared s;
    s.node_ = new Node(std::forward<Args>(args)...);
    return s;
  }
  Shared(const Shared& other) noexcept : node_(other.node_) { hold(); }
  Shared(Shared&& other) noexcept : node_(other.node_) { other.node_ = nullptr; }
  Shared& operator=(Shared other) noexcept {
    std::swap(node_, other.node_);
    return *this;
  }
  ~Shared() { drop(); }

  const T& operator*() const { return node_->value; }
  const T* operator->() const { return &node_->value; }
  const T* get() const { return node_ ? &node_->value : nullptr; }
  explicit operator bool() const { return node_ != nullptr; }
  long use_count() const { return node_ ? node_->refs.load(std::memory_order_acquire) : 0; }
  void reset() {
    drop();
    node_ = nullptr;
  }

 private:
  struct Node {
    template <class... Args>
    explicit Node(Args&&... args) : value(std::forward<Args>(args)...) {}
    std::atomic<std::uint32_t> refs{1};
    T value;
  };
  void hold() const {
    if (node_) node_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  void drop() const {
    if (node_ && node_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete node_;
  }
  Node* node_ = nullptr;
};

using SharedText = Shared<std::string>;

// Where an endpoint is: its network and node, and its network's name as
// listed and as its record came (another node's record carries none; the
// network's name here stands in). One for all the endpoints of a network
// on a node (RemoteEndpoints interns them).
struct EndpointOrigin {
  SharedText network_id;
  SharedText node;
  std::string network_name;         // as listed
  std::string record_network_name;  // as the record came
};
using SharedOrigin = Shared<EndpointOrigin>;

class PackedEndpointChunk;

class PackedEndpoint {
 public:
  using SharedString = SharedText;

  // `network_id`, `node`, `service_id`: e's, shared (never null).
  PackedEndpoint(const Endpoint& e, SharedString network_id, SharedString node, SharedString service_id);
  // With strings of its own.
  static std::shared_ptr<const PackedEndpoint> make(const Endpoint& e);
  // An empty place in a chunk.
  PackedEndpoint() = default;
  PackedEndpoint(const PackedEndpoint&) = delete;
  PackedEndpoint& operator=(const PackedEndpoint&) = delete;
  ~PackedEndpoint();

  // An id to look a record up by: packed when it is a model id.
  struct IdKey {
    std::array<std::uint8_t, 32> packed{};
    std::string_view other;  // any other shape (views the id given)
    bool is_packed = false;
    static IdKey of(std::string_view id);
    std::size_t hash() const;
  };
  bool has_id(const IdKey& key) const;

  std::string id() const;
  // As id() compares with other.id(), without making the strings.
  int compare_id(const PackedEndpoint& other) const;
  // A hash of the id (equal ids, equal hashes).
  std::size_t id_hash() const;
  std::string_view name() const { return field(kName); }
  const std::string& network_id() const { return *origin_->network_id; }
  std::string_view network_name() const { return origin_->network_name; }
  // A string, not a view: "/run/netns/", where every named namespace is,
  // is a flag in the record, not bytes.
  std::string netns() const;
  std::string_view ifname() const { return field(kIfname); }
  dataplane::Ipv4 ip() const { return ip_; }
  int prefix_len() const;
  dataplane::MacAddress mac() const;
  const std::string& node() const { return *origin_->node; }
  const std::string& service_id() const { return *service_id_; }  // "" for none
  BackendState backend_state() const { return backend_state_; }
  std::string_view drain_until() const { return field(kDrainUntil); }
  std::vector<std::string> aliases() const;
  // The network's name in the record as it came (network_name() may be the
  // network's name here instead; see RemoteEndpoints).
  std::string_view record_network_name() const { return origin_->record_network_name; }
  const SharedOrigin& origin() const { return origin_; }
  const SharedText& shared_service_id() const { return service_id_; }

  // The whole Endpoint again.
  Endpoint unpack() const;
  // A copy that names its network `network_name` (the same shared ids).
  std::shared_ptr<const PackedEndpoint> with_network_name(std::string_view network_name) const;

  // Heap bytes of this object's own (not shared) parts, for benchmarks.
  std::size_t own_bytes() const;

 private:
  friend class PackedEndpointChunk;
  // Fields of the details block, in order; aliases follow.
  // kPrefixLen, kMac: empty when in the record (a prefix length of 0-255;
  // the MAC Docker's from the address), else their bytes.
  enum Field { kOtherId, kName, kNetns, kIfname, kDrainUntil, kPrefixLen, kMac, kFields };
  std::string_view details() const;
  // The details block's bytes, its length included.
  std::size_t block_bytes() const;
  std::string_view field(Field f) const;
  // Everything but the details block.
  void assign(const Endpoint& e, SharedOrigin origin, SharedString service_id);

  std::array<std::uint8_t, 32> id_{};  // a model id, packed
  SharedOrigin origin_;
  SharedString service_id_;
  // The fields, after their total length (LEB128); null: an empty place.
  const char* details_ = nullptr;
  dataplane::Ipv4 ip_{};
  std::uint8_t prefix_len_ = 0;  // unless prefix_in_details_ (a peer's record is not checked)
  BackendState backend_state_ = BackendState::active;
  bool id_packed_ : 1 = false;
  bool owns_details_ : 1 = false;       // standalone (else in its chunk's arena)
  bool netns_in_run_ : 1 = false;       // kNetns is a path under /run/netns/, without that
  bool prefix_in_details_ : 1 = false;  // kPrefixLen holds it
  bool mac_in_details_ : 1 = false;     // kMac holds it (else MacAddress::from_ipv4(ip_))
};

// kSize places for endpoints, copied when shared and changed (copy-on-write
// is their holder's, RemoteEndpoints'): a snapshot holds the chunk and
// points at its records. The details blocks are in one arena; a record
// replaced or cleared leaves its block as garbage until the arena is
// compacted (when it must grow, or in a copy). Not
// thread-safe: a chunk is changed only by its only holder.
class PackedEndpointChunk {
 public:
  static constexpr std::size_t kSize = 64;
  PackedEndpointChunk() = default;
  PackedEndpointChunk(const PackedEndpointChunk& other);
  PackedEndpointChunk& operator=(const PackedEndpointChunk&) = delete;

  const PackedEndpoint& at(std::size_t i) const { return records_[i]; }
  bool used(std::size_t i) const { return records_[i].details_ != nullptr; }
  // Puts `e` at place i, its network, node and network names from
  // `origin` (e's fields of those are not read), its service id
  // `service_id`. `shared`: readers hold the chunk too, so only an empty
  // place may be written, and only if the arena has room (nothing they read
  // moves); false when it was not (nothing changed: copy the chunk first).
  bool set(std::size_t i, const Endpoint& e, const SharedOrigin& origin, const PackedEndpoint::SharedString& service_id,
           bool shared = false);
  void clear(std::size_t i);

  // Heap bytes of the arena, for benchmarks.
  std::size_t arena_bytes() const { return arena_.capacity(); }

 private:
  // Appends a details block to the arena (moving it when it must grow).
  const char* append(std::string_view block);
  void compact(std::size_t extra);

  std::array<PackedEndpoint, kSize> records_;
  std::vector<char> arena_;
};

// Strings shared between the objects that name them (network, node and
// service ids of 100 000 endpoints are a few thousand strings). A string
// stays while anyone holds it: a snapshot may outlive the store's entry.
// Not thread-safe: its owner's lock guards it.
class StringInterner {
 public:
  PackedEndpoint::SharedString get(std::string_view s);
  // Forgets `s` when nothing but the interner holds it any more.
  void release(std::string_view s);
  // The same for a string its caller held (`held`, dropped here).
  void release(PackedEndpoint::SharedString held);
  // Forgets every string only the interner holds.
  void sweep();
  void clear() { strings_.clear(); }
  std::size_t size() const { return strings_.size(); }

 private:
  std::unordered_map<std::string_view, PackedEndpoint::SharedString> strings_;  // keys view the values
  std::size_t sweep_at_ = 64;  // bounded: strings of released snapshots go at the next sweep
};

}  // namespace weft::control
