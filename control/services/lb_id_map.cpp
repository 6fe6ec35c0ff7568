#include "control/services/lb_id_map.h"

#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "control/network/state_file.h"

namespace weft::control::services {
namespace {

using nlohmann::json;

constexpr const char* kFormat = "weft-lb-ids";
constexpr int kVersion = 1;
// Ids in the model are 64 hex characters; anything far longer is not ours.
constexpr std::size_t kMaxKeyLength = 128;

// The first id for which `taken` is false from `cursor` on, going round
// 1..limit-1; `taken_count` of them are taken.
template <class Taken>
std::optional<std::uint32_t> first_free(std::size_t taken_count, const Taken& taken, std::uint32_t limit,
                                        std::uint32_t cursor) {
  if (limit <= 1 || taken_count >= limit - 1) return std::nullopt;
  if (cursor == 0 || cursor >= limit) cursor = 1;
  for (std::uint32_t n = 0; n < limit - 1; ++n) {
    const std::uint32_t id = 1 + (cursor - 1 + n) % (limit - 1);
    if (!taken(id)) return id;
  }
  return std::nullopt;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Model ids (64 lowercase hex characters) packed into `out`; false for any
// other text.
bool pack_into(const std::string& id, std::uint8_t* out) {
  if (id.size() != 64) return false;
  for (std::size_t i = 0; i < 32; ++i) {
    const int high = hex_value(id[2 * i]), low = hex_value(id[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    out[i] = static_cast<std::uint8_t>(high << 4 | low);
  }
  return true;
}

std::optional<std::array<std::uint8_t, 32>> pack(const std::string& id) {
  std::array<std::uint8_t, 32> packed{};
  if (!pack_into(id, packed.data())) return std::nullopt;
  return packed;
}

std::optional<std::array<std::uint8_t, 64>> pack(const LbServiceKey& key) {
  std::array<std::uint8_t, 64> packed{};
  if (!pack_into(key.service_id, packed.data()) || !pack_into(key.network_id, packed.data() + 32)) return std::nullopt;
  return packed;
}

void unpack_into(const std::uint8_t* packed, std::size_t size, std::string& out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  out.resize(2 * size);
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[packed[i] >> 4];
    out[2 * i + 1] = kDigits[packed[i] & 0xf];
  }
}

std::string unpack(const std::uint8_t* packed, std::size_t size) {
  std::string id;
  unpack_into(packed, size, id);
  return id;
}

// A service key of another shape as one string: the service id's length,
// ':', then both ids.
std::string other_service_key(const LbServiceKey& key) {
  return std::to_string(key.service_id.size()) + ':' + key.service_id + key.network_id;
}

LbServiceKey split_other_service_key(const std::string& text) {
  const auto colon = text.find(':');
  const std::size_t length = std::stoul(text.substr(0, colon));
  return {text.substr(colon + 1, length), text.substr(colon + 1 + length)};
}

bool plausible_key(const std::string& s) {
  if (s.empty() || s.size() > kMaxKeyLength) return false;
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

}  // namespace

bool LbIdMap::emplace_service(const LbServiceKey& key, std::uint32_t id) {
  if (auto packed = pack(key)) return services_.insert(id, *packed);
  return services_.insert_other(id, other_service_key(key));
}

bool LbIdMap::emplace_backend(const std::string& endpoint_id, std::uint32_t id) {
  if (auto packed = pack(endpoint_id)) return backends_.insert(id, *packed);
  return backends_.insert_other(id, endpoint_id);
}

LbIdMap LbIdMap::load(const std::filesystem::path& path, Bounds bounds) {
  LbIdMap map(path, bounds);
  auto refuse = [&](const std::string& what) {
    return LbIdMapError(fmt::format(
        "{}: not a usable load-balancer id map: {}. weftd will not guess the ids that open connections "
        "through service VIPs depend on; move the file away to start with new ids (such connections are "
        "then reset)",
        path.string(), what));
  };

  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec == std::errc::no_such_file_or_directory) return map;
  if (ec) throw refuse("cannot stat it: " + ec.message());
  // Every entry takes well under 512 bytes; a larger file is not one we wrote
  // with these limits, and reading it whole would cost what it likes.
  const std::uint64_t max_size =
      (std::uint64_t{bounds.max_services} + bounds.max_backends) * 512 + 4096;
  if (size > max_size) throw refuse(fmt::format("{} bytes, more than {} for these limits", size, max_size));

  std::string text;
  try {
    auto content = network::read_file(path);
    if (!content) return map;  // removed meanwhile
    text = std::move(*content);
  } catch (const std::exception& e) {
    throw refuse(e.what());
  }

  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    throw refuse(std::string("malformed JSON (") + e.what() + ")");
  }
  try {
    if (!doc.is_object() || doc.value("format", "") != kFormat) throw refuse("no \"format\": \"weft-lb-ids\"");
    if (doc.at("version") != kVersion) throw refuse(fmt::format("version {} (this weftd reads {})", doc.at("version").dump(), kVersion));
    map.next_service_ = doc.at("next_service").get<std::uint32_t>();
    map.next_backend_ = doc.at("next_backend").get<std::uint32_t>();
    for (const auto& entry : doc.at("services")) {
      const auto id = entry.at("id").get<std::uint32_t>();
      LbServiceKey key{entry.at("service").get<std::string>(), entry.at("network").get<std::string>()};
      if (id == 0 || id >= bounds.max_services)
        throw refuse(fmt::format("service id {} outside 1..{} (was --lb-max-services lowered?)", id,
                                 bounds.max_services - 1));
      if (!plausible_key(key.service_id) || !plausible_key(key.network_id))
        throw refuse(fmt::format("service id {} has a malformed service or network id", id));
      if (map.services_.contains(id)) throw refuse(fmt::format("service id {} given twice", id));
      if (!map.emplace_service(key, id))
        throw refuse(fmt::format("service {} on network {} has two ids", key.service_id, key.network_id));
    }
    for (const auto& entry : doc.at("backends")) {
      const auto id = entry.at("id").get<std::uint32_t>();
      auto endpoint = entry.at("endpoint").get<std::string>();
      if (id == 0 || id >= bounds.max_backends)
        throw refuse(fmt::format("backend id {} outside 1..{} (was --lb-max-backends lowered?)", id,
                                 bounds.max_backends - 1));
      if (!plausible_key(endpoint)) throw refuse(fmt::format("backend id {} has a malformed endpoint id", id));
      if (map.backends_.contains(id)) throw refuse(fmt::format("backend id {} given twice", id));
      if (!map.emplace_backend(endpoint, id)) throw refuse(fmt::format("endpoint {} has two backend ids", endpoint));
    }
  } catch (const json::exception& e) {
    throw refuse(std::string("unexpected content (") + e.what() + ")");
  }
  return map;
}

std::optional<std::uint32_t> LbIdMap::service(const LbServiceKey& key) const {
  if (auto packed = pack(key)) return services_.find(*packed);
  return services_.find_other(other_service_key(key));
}

std::optional<std::uint32_t> LbIdMap::backend(const std::string& endpoint_id) const {
  if (auto packed = pack(endpoint_id)) return backends_.find(*packed);
  return backends_.find_other(endpoint_id);
}

std::optional<LbServiceKey> LbIdMap::service_key(std::uint32_t id) const {
  LbServiceKey key;
  if (!service_key_into(id, key)) return std::nullopt;
  return key;
}

bool LbIdMap::service_key_into(std::uint32_t id, LbServiceKey& out) const {
  if (const auto* packed = services_.packed_at(id)) {
    unpack_into(packed->data(), 32, out.service_id);
    unpack_into(packed->data() + 32, 32, out.network_id);
    return true;
  }
  if (const auto* other = services_.other_at(id)) {
    out = split_other_service_key(*other);
    return true;
  }
  return false;
}

std::optional<std::string> LbIdMap::endpoint_of(std::uint32_t backend_id) const {
  if (const auto* packed = backends_.packed_at(backend_id)) return unpack(packed->data(), packed->size());
  if (const auto* other = backends_.other_at(backend_id)) return *other;
  return std::nullopt;
}

std::optional<std::uint32_t> LbIdMap::assign_service(const LbServiceKey& key) {
  if (auto id = service(key)) return id;
  auto id = first_free(
      services_.size(), [this](std::uint32_t n) { return services_.contains(n); }, bounds_.max_services,
      next_service_);
  if (!id) return std::nullopt;
  emplace_service(key, *id);
  next_service_ = *id + 1;
  dirty_ = true;
  return id;
}

std::optional<std::uint32_t> LbIdMap::assign_backend(const std::string& endpoint_id) {
  if (auto id = backend(endpoint_id)) return id;
  auto id = first_free(
      backends_.size(), [this](std::uint32_t n) { return backends_.contains(n); }, bounds_.max_backends,
      next_backend_);
  if (!id) return std::nullopt;
  emplace_backend(endpoint_id, *id);
  next_backend_ = *id + 1;
  dirty_ = true;
  return id;
}

void LbIdMap::release_service(std::uint32_t id) {
  if (!services_.contains(id)) return;
  services_.erase(id);
  dirty_ = true;
}

void LbIdMap::release_backend(std::uint32_t id) {
  if (!backends_.contains(id)) return;
  backends_.erase(id);
  dirty_ = true;
}

// Written out directly, in the very text a json document of the same
// content dumps (keys in order, no spaces): a document with 100 000 backends
// would cost ~50 MB of nodes for a 10 MB file.
std::string LbIdMap::serialize() const {
  std::string out;
  out.reserve(128 + 160 * (service_count() + backend_count()));
  auto quoted = [&out](const std::string& text) { out += json(text).dump(); };
  out += "{\"backends\":[";
  const char* sep = "";
  for_each_backend([&](std::uint32_t id) {
    out += sep;
    out += "{\"endpoint\":";
    quoted(*endpoint_of(id));
    out += fmt::format(",\"id\":{}}}", id);
    sep = ",";
  });
  out += fmt::format("],\"format\":\"{}\",\"next_backend\":{},\"next_service\":{},\"services\":[", kFormat,
                     next_backend_, next_service_);
  sep = "";
  for_each_service([&](std::uint32_t id) {
    const LbServiceKey key = *service_key(id);
    out += sep;
    out += fmt::format("{{\"id\":{},\"network\":", id);
    quoted(key.network_id);
    out += ",\"service\":";
    quoted(key.service_id);
    out += "}";
    sep = ",";
  });
  out += fmt::format("],\"version\":{}}}\n", kVersion);
  return out;
}

void LbIdMap::save() {
  if (!dirty_) return;
  network::replace_file_unsynced(path_, serialize());
  dirty_ = false;
}

}  // namespace weft::control::services
