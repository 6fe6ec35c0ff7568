// Where this node's services are recorded: one file a service,
// <state-dir>/services/<id>.json, written alone (temp file, fsync, rename,
// directory fsync) and removed alone (unlink, directory fsync), so a create
// costs the same with 10 services as with 10 000 (the single services.json
// it replaces was rewritten and fsynced whole per change: 10 000 creates
// took 22 minutes).
//
// An older agent's <state-dir>/services.json is read and migrated at load:
// each of its services is written to its own file, and only then is the old
// file removed; a crash in between migrates again at the next start.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "control/model/service_model.h"

namespace weft::control::services {

class ServiceStore {
 public:
  explicit ServiceStore(std::filesystem::path state_dir);

  // Every recorded service, by id; migrates services.json (see above) and
  // removes temp files a crash left. Call before any write (the agent's
  // start). Throws std::runtime_error naming the file when one is corrupt,
  // std::system_error when the disk fails.
  std::map<std::string, Service> load();

  // Durable when it returns; throws std::system_error (e.g. ENOSPC) and
  // leaves the old record (or none) in place.
  void write(const Service& service);
  // Durable when it returns; a missing record is not an error.
  void remove(const std::string& service_id);

  std::filesystem::path dir() const { return state_dir_ / "services"; }
  std::filesystem::path legacy_path() const { return state_dir_ / "services.json"; }
  std::filesystem::path path_of(const std::string& service_id) const;

 private:
  std::filesystem::path state_dir_;
  bool dir_durable_ = false;  // the services dir's own entry synced in the state dir
};

}  // namespace weft::control::services
