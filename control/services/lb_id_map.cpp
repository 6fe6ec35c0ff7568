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

// A model id (64 lowercase hex characters) packed, or nullopt.
std::optional<std::array<std::uint8_t, 32>> pack(const std::string& id) {
  if (id.size() != 64) return std::nullopt;
  std::array<std::uint8_t, 32> packed{};
  for (std::size_t i = 0; i < 32; ++i) {
    const int high = hex_value(id[2 * i]), low = hex_value(id[2 * i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    packed[i] = static_cast<std::uint8_t>(high << 4 | low);
  }
  return packed;
}

bool plausible_key(const std::string& s) {
  if (s.empty() || s.size() > kMaxKeyLength) return false;
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

}  // namespace

std::string LbIdMap::EndpointRef::str() const {
  if (other) return *other;
  if (!packed) return {};
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string id(64, '0');
  for (std::size_t i = 0; i < 32; ++i) {
    id[2 * i] = kDigits[(*packed)[i] >> 4];
    id[2 * i + 1] = kDigits[(*packed)[i] & 0xf];
  }
  return id;
}

std::size_t LbIdMap::PackedHash::operator()(const std::array<std::uint8_t, 32>& id) const noexcept {
  // Every byte counts: ids made by tools and tests share long prefixes.
  return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(id.data()), id.size()));
}

std::pair<LbIdMap::EndpointRef, bool> LbIdMap::emplace_backend(const std::string& endpoint_id, std::uint32_t id) {
  if (auto packed = pack(endpoint_id)) {
    auto [it, fresh] = packed_backend_ids_.emplace(*packed, id);
    return {EndpointRef{.packed = &it->first, .other = nullptr}, fresh};
  }
  auto [it, fresh] = other_backend_ids_.emplace(endpoint_id, id);
  return {EndpointRef{.packed = nullptr, .other = &it->first}, fresh};
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
      if (map.service_by_id_.contains(id)) throw refuse(fmt::format("service id {} given twice", id));
      const auto [node, fresh] = map.service_ids_.emplace(key, id);
      if (!fresh) throw refuse(fmt::format("service {} on network {} has two ids", key.service_id, key.network_id));
      map.service_by_id_.emplace(id, &node->first);
    }
    for (const auto& entry : doc.at("backends")) {
      const auto id = entry.at("id").get<std::uint32_t>();
      auto endpoint = entry.at("endpoint").get<std::string>();
      if (id == 0 || id >= bounds.max_backends)
        throw refuse(fmt::format("backend id {} outside 1..{} (was --lb-max-backends lowered?)", id,
                                 bounds.max_backends - 1));
      if (!plausible_key(endpoint)) throw refuse(fmt::format("backend id {} has a malformed endpoint id", id));
      if (map.endpoint_ref(id)) throw refuse(fmt::format("backend id {} given twice", id));
      auto [ref, fresh] = map.emplace_backend(endpoint, id);
      if (!fresh) throw refuse(fmt::format("endpoint {} has two backend ids", endpoint));
      map.set_endpoint_ref(id, ref);
    }
  } catch (const json::exception& e) {
    throw refuse(std::string("unexpected content (") + e.what() + ")");
  }
  return map;
}

std::optional<std::uint32_t> LbIdMap::service(const LbServiceKey& key) const {
  auto it = service_ids_.find(key);
  if (it == service_ids_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::uint32_t> LbIdMap::backend(const std::string& endpoint_id) const {
  if (auto packed = pack(endpoint_id)) {
    auto it = packed_backend_ids_.find(*packed);
    if (it == packed_backend_ids_.end()) return std::nullopt;
    return it->second;
  }
  auto it = other_backend_ids_.find(endpoint_id);
  if (it == other_backend_ids_.end()) return std::nullopt;
  return it->second;
}

const LbServiceKey* LbIdMap::service_key(std::uint32_t id) const {
  auto it = service_by_id_.find(id);
  return it == service_by_id_.end() ? nullptr : it->second;
}

std::optional<std::string> LbIdMap::endpoint_of(std::uint32_t backend_id) const {
  const EndpointRef* ref = endpoint_ref(backend_id);
  if (!ref) return std::nullopt;
  return ref->str();
}

void LbIdMap::set_endpoint_ref(std::uint32_t id, EndpointRef ref) {
  if (id >= endpoint_by_id_.size()) endpoint_by_id_.resize(std::size_t{id} + 1);
  const bool was_free = !endpoint_by_id_[id].packed && !endpoint_by_id_[id].other;
  const bool is_free = !ref.packed && !ref.other;
  endpoint_by_id_[id] = ref;
  if (was_free && !is_free) ++backend_count_;
  if (!was_free && is_free) --backend_count_;
}

std::optional<std::uint32_t> LbIdMap::assign_service(const LbServiceKey& key) {
  if (auto id = service(key)) return id;
  auto id = first_free(
      service_by_id_.size(), [this](std::uint32_t n) { return service_by_id_.contains(n); }, bounds_.max_services,
      next_service_);
  if (!id) return std::nullopt;
  const auto node = service_ids_.emplace(key, *id).first;
  service_by_id_.emplace(*id, &node->first);
  next_service_ = *id + 1;
  dirty_ = true;
  return id;
}

std::optional<std::uint32_t> LbIdMap::assign_backend(const std::string& endpoint_id) {
  if (auto id = backend(endpoint_id)) return id;
  auto id = first_free(
      backend_count_, [this](std::uint32_t n) { return endpoint_ref(n) != nullptr; }, bounds_.max_backends,
      next_backend_);
  if (!id) return std::nullopt;
  set_endpoint_ref(*id, emplace_backend(endpoint_id, *id).first);
  next_backend_ = *id + 1;
  dirty_ = true;
  return id;
}

void LbIdMap::release_service(std::uint32_t id) {
  auto it = service_by_id_.find(id);
  if (it == service_by_id_.end()) return;
  const auto node = service_ids_.find(*it->second);
  service_by_id_.erase(it);
  service_ids_.erase(node);
  dirty_ = true;
}

void LbIdMap::release_backend(std::uint32_t id) {
  const EndpointRef* found = endpoint_ref(id);
  if (!found) return;
  const EndpointRef ref = *found;
  set_endpoint_ref(id, EndpointRef{});
  // Copies: the keys erased by are the erased nodes' own.
  if (ref.packed) {
    const auto key = *ref.packed;
    packed_backend_ids_.erase(key);
  } else if (ref.other) {
    const std::string key = *ref.other;
    other_backend_ids_.erase(key);
  }
  dirty_ = true;
}

// Written out directly, in the very text a json document of the same
// content dumps (keys in order, no spaces): a document with 100 000 backends
// would cost ~50 MB of nodes for a 10 MB file.
std::string LbIdMap::serialize() const {
  std::string out;
  out.reserve(128 + 160 * (service_by_id_.size() + backend_count_));
  auto quoted = [&out](const std::string& text) { out += json(text).dump(); };
  out += "{\"backends\":[";
  const char* sep = "";
  for_each_backend([&](std::uint32_t id, const EndpointRef& endpoint) {
    out += sep;
    out += "{\"endpoint\":";
    quoted(endpoint.str());
    out += fmt::format(",\"id\":{}}}", id);
    sep = ",";
  });
  out += fmt::format("],\"format\":\"{}\",\"next_backend\":{},\"next_service\":{},\"services\":[", kFormat,
                     next_backend_, next_service_);
  sep = "";
  for (const auto& [id, key] : service_by_id_) {
    out += sep;
    out += fmt::format("{{\"id\":{},\"network\":", id);
    quoted(key->network_id);
    out += ",\"service\":";
    quoted(key->service_id);
    out += "}";
    sep = ",";
  }
  out += fmt::format("],\"version\":{}}}\n", kVersion);
  return out;
}

void LbIdMap::save() {
  if (!dirty_) return;
  network::replace_file_unsynced(path_, serialize());
  dirty_ = false;
}

}  // namespace weft::control::services
