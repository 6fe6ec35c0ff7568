// The load balancer's numeric ids: one u32 per (service, network) and one
// per backend endpoint, as the eBPF maps and the nftables table key them.
// Conntrack entries name backends by these numbers, so a restarted agent
// must map every service and endpoint to the very ids it had: the map is
// written to a small file in the state dir before any kernel map uses a new
// id (write-ahead), and read back on start.
//
// The file describes kernel objects that a reboot wipes too (pinned maps,
// conntrack), so it is replaced atomically but not fsync'ed: it survives a
// killed agent, which is what it is for (see state_file.h).
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace weft::control::services {

struct LbServiceKey {
  std::string service_id;
  std::string network_id;
  auto operator<=>(const LbServiceKey&) const = default;
};

// A file that cannot be the id map (unreadable, not this format, ids out of
// range or given twice). The agent refuses to guess: ids that open
// connections depend on would be wrong.
class LbIdMapError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Not thread-safe: one owner (ServiceDataplane, under its lock).
class LbIdMap {
 public:
  struct Bounds {
    std::uint32_t max_services = 1024;  // service ids 1 .. max_services-1
    std::uint32_t max_backends = 65536; // backend ids 1 .. max_backends-1
  };

  // The map kept in `path`; empty when the file does not exist. Throws
  // LbIdMapError naming the file and what is wrong with it.
  static LbIdMap load(const std::filesystem::path& path, Bounds bounds);

  std::optional<std::uint32_t> service(const LbServiceKey& key) const;
  std::optional<std::uint32_t> backend(const std::string& endpoint_id) const;
  const LbServiceKey* service_key(std::uint32_t id) const;
  std::optional<std::string> endpoint_of(std::uint32_t backend_id) const;

  // The key's id, given a free one when it has none; nullopt when every id
  // is taken. A freed id is given again only after all others (a cursor
  // goes round), so a conntrack entry left by a gone backend is unlikely to
  // meet a new one under its old number.
  std::optional<std::uint32_t> assign_service(const LbServiceKey& key);
  std::optional<std::uint32_t> assign_backend(const std::string& endpoint_id);
  void release_service(std::uint32_t id);
  void release_backend(std::uint32_t id);

  // Service id -> its key (one of service_ids_'s own: held once).
  const std::map<std::uint32_t, const LbServiceKey*>& services() const { return service_by_id_; }
  // An endpoint id as held here: a model id (64 lowercase hex characters)
  // packed into 32 bytes, or, for an id of another shape, the string.
  struct EndpointRef {
    const std::array<std::uint8_t, 32>* packed = nullptr;  // a key of packed_backend_ids_
    const std::string* other = nullptr;                     // a key of other_backend_ids_
    std::string str() const;
  };
  // Backends with an id, and each (id, EndpointRef) in id order.
  std::size_t backend_count() const { return backend_count_; }
  template <class F>
  void for_each_backend(F&& f) const {
    for (std::uint32_t id = 0; id < endpoint_by_id_.size(); ++id)
      if (endpoint_by_id_[id].packed || endpoint_by_id_[id].other) f(id, endpoint_by_id_[id]);
  }

  // Moves keep every map's nodes, and with them the pointers into
  // the backend id maps; a copy would not.
  LbIdMap(LbIdMap&&) noexcept = default;
  LbIdMap& operator=(LbIdMap&&) noexcept = default;
  LbIdMap(const LbIdMap&) = delete;
  LbIdMap& operator=(const LbIdMap&) = delete;

  // True when changed since the last save() (or load()).
  bool dirty() const { return dirty_; }
  // Writes the file when dirty; throws std::system_error naming it.
  void save();

  const std::filesystem::path& path() const { return path_; }
  // The file's text for this content (also what save() writes).
  std::string serialize() const;

 private:
  LbIdMap(std::filesystem::path path, Bounds bounds) : path_(std::move(path)), bounds_(bounds) {}

  std::filesystem::path path_;
  Bounds bounds_;
  std::map<LbServiceKey, std::uint32_t> service_ids_;
  std::map<std::uint32_t, const LbServiceKey*> service_by_id_;  // keys of service_ids_
  // Endpoint ids are held once, model ids packed: a map node with a
  // 64-character string key cost ~160 bytes, a packed one ~72 (100 000
  // backends: ~9 MB less).
  struct PackedHash {
    std::size_t operator()(const std::array<std::uint8_t, 32>& id) const noexcept;
  };
  std::unordered_map<std::array<std::uint8_t, 32>, std::uint32_t, PackedHash> packed_backend_ids_;
  std::map<std::string, std::uint32_t> other_backend_ids_;
  // Indexed by backend id (ids are below max_backends, given from the
  // lowest free one on): 16 bytes a slot, where a map node took 64 (100 000
  // backends: ~1.6 MB instead of ~6.4 MB). A free id's slot is empty.
  std::vector<EndpointRef> endpoint_by_id_;
  std::size_t backend_count_ = 0;
  const EndpointRef* endpoint_ref(std::uint32_t id) const {
    return id < endpoint_by_id_.size() && (endpoint_by_id_[id].packed || endpoint_by_id_[id].other)
               ? &endpoint_by_id_[id]
               : nullptr;
  }
  void set_endpoint_ref(std::uint32_t id, EndpointRef ref);
  // Records the endpoint's id (false: it had one; left as it was).
  std::pair<EndpointRef, bool> emplace_backend(const std::string& endpoint_id, std::uint32_t id);
  std::uint32_t next_service_ = 1;
  std::uint32_t next_backend_ = 1;
  bool dirty_ = false;
};

}  // namespace weft::control::services
