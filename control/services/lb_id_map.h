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

#include <compare>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "control/services/packed_id_table.h"

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
  // The key of a service id (built from the packed ids: a copy).
  std::optional<LbServiceKey> service_key(std::uint32_t id) const;
  // The same into `out`, reusing its strings' buffers (a read of every
  // service allocates nothing); false when the id is not given.
  bool service_key_into(std::uint32_t id, LbServiceKey& out) const;
  std::optional<std::string> endpoint_of(std::uint32_t backend_id) const;

  // The key's id, given a free one when it has none; nullopt when every id
  // is taken. A freed id is given again only after all others (a cursor
  // goes round), so a conntrack entry left by a gone backend is unlikely to
  // meet a new one under its old number.
  std::optional<std::uint32_t> assign_service(const LbServiceKey& key);
  std::optional<std::uint32_t> assign_backend(const std::string& endpoint_id);
  void release_service(std::uint32_t id);
  void release_backend(std::uint32_t id);

  // Services and backends with an id; f(id) for each, in id order.
  std::size_t service_count() const { return services_.size(); }
  std::size_t backend_count() const { return backends_.size(); }
  template <class F>
  void for_each_service(F&& f) const {
    services_.for_each(f);
  }
  template <class F>
  void for_each_backend(F&& f) const {
    backends_.for_each(f);
  }

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
  // Model ids (64 lowercase hex characters) packed: a service's key as its
  // service and network ids' 64 bytes, an endpoint id as its 32; keys of
  // another shape as text (packed_id_table.h). At 10 000 services x 10
  // backends: ~4.6 MB, where maps of string keys took ~11 MB.
  PackedIdTable<64> services_;
  PackedIdTable<32> backends_;
  // Records the key's id (false: the key or the id is taken).
  bool emplace_service(const LbServiceKey& key, std::uint32_t id);
  bool emplace_backend(const std::string& endpoint_id, std::uint32_t id);
  std::uint32_t next_service_ = 1;
  std::uint32_t next_backend_ = 1;
  bool dirty_ = false;
};

}  // namespace weft::control::services
