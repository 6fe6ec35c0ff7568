#include "control/services/service_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "control/model/record_json.h"
#include "control/network/state_file.h"

namespace weft::control::services {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::string_view kSuffix = ".json";

[[noreturn]] void throw_errno(const std::string& what, const fs::path& path) {
  throw std::system_error(errno, std::generic_category(), what + " " + path.string());
}

// Service ids are 64 hex characters (control/model/ids.h); a file name is
// made of nothing else.
bool valid_file_id(const std::string& id) {
  return !id.empty() && id.size() <= 64 &&
         std::all_of(id.begin(), id.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Service parse_record(const fs::path& path, const std::string& text) {
  try {
    return service_from_record(json::parse(text));
  } catch (const json::exception& e) {
    throw std::runtime_error("state file " + path.string() + " is corrupt: " + e.what());
  }
}

}  // namespace

ServiceStore::ServiceStore(fs::path state_dir) : state_dir_(std::move(state_dir)) {}

fs::path ServiceStore::path_of(const std::string& service_id) const {
  if (!valid_file_id(service_id)) throw std::invalid_argument("service id \"" + service_id + "\" cannot name a file");
  return dir() / (service_id + std::string(kSuffix));
}

std::map<std::string, Service> ServiceStore::load() {
  std::map<std::string, Service> services;
  for (const auto& name : network::remove_leftover_temp_files(dir()))
    spdlog::info("removed {} (a write a crash cut short)", (dir() / name).string());
  std::error_code ec;
  fs::directory_iterator it(dir(), ec);
  if (ec && ec != std::errc::no_such_file_or_directory) throw std::system_error(ec, "cannot list " + dir().string());
  if (!ec) {
    for (const auto& entry : it) {
      const auto name = entry.path().filename().string();
      if (!name.ends_with(kSuffix) || !entry.is_regular_file(ec)) continue;
      const auto text = network::read_file(entry.path());
      if (!text) continue;  // removed meanwhile: nothing else writes here, so never
      auto s = parse_record(entry.path(), *text);
      if (name != s.id + std::string(kSuffix))
        throw std::runtime_error("state file " + entry.path().string() + " holds service " + s.id);
      services.emplace(s.id, std::move(s));
    }
  }

  // The single file of older agents: its services, each to a file of its
  // own, then the old file goes (after a crash here it is read again, and
  // a service both in it and in its own file keeps its own file's version,
  // which is at least as new).
  const auto legacy = network::read_file(legacy_path());
  if (!legacy) return services;
  std::size_t migrated = 0;
  try {
    const auto state = json::parse(*legacy);
    for (const auto& j : state.at("services")) {
      auto s = service_from_record(j);
      if (services.count(s.id)) continue;
      write(s);
      services.emplace(s.id, std::move(s));
      ++migrated;
    }
  } catch (const json::exception& e) {
    throw std::runtime_error("state file " + legacy_path().string() + " is corrupt: " + e.what());
  }
  if (::unlink(legacy_path().c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove", legacy_path());
  network::sync_directory(state_dir_);
  spdlog::info("migrated {} services from {} to {}/", migrated, legacy_path().string(), dir().string());
  return services;
}

void ServiceStore::write(const Service& service) {
  network::write_file_atomically(path_of(service.id), service_record(service).dump(2) + "\n");
  if (!dir_durable_) {
    // The first write may have made the directory: its name is durable once
    // the state dir is synced.
    network::sync_directory(state_dir_);
    dir_durable_ = true;
  }
}

void ServiceStore::remove(const std::string& service_id) {
  const auto path = path_of(service_id);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return;
    throw_errno("cannot remove", path);
  }
  network::sync_directory(dir());
}

}  // namespace weft::control::services
