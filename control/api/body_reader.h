// Reading request bodies of the local API: parsing with a clear message, and
// typed access to one JSON object whose errors name the field's full path
// ("IPAM.Config[0].Subnet"), so a client can tell exactly what to fix. Every
// error is ApiError(BadRequest).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace weft::control::api {

[[noreturn]] void bad_request(const std::string& message);

// An empty (or all-whitespace) body counts as `{}`.
nlohmann::json parse_body(std::string_view body);

// Read-only view of one JSON object of a request body. Null counts as
// absent, as it does for the Go clients the Docker-shaped API is meant to be
// usable from.
class ObjectReader {
 public:
  using json = nlohmann::json;

  // `path` names `value` in messages; empty for the body itself.
  static ObjectReader of(const json& value, std::string path);

  std::optional<std::string> string(const std::string& key) const;
  // Absent or "" both mean "not given": Go clients cannot tell them apart.
  std::optional<std::string> non_empty_string(const std::string& key) const;
  std::string required_string(const std::string& key) const;
  bool boolean(const std::string& key, bool fallback) const;
  // A JSON integer in 0..max (3.0 and "3" are refused: Go encodes integers
  // without a fraction).
  std::optional<std::uint64_t> unsigned_integer(const std::string& key, std::uint64_t max) const;
  std::optional<ObjectReader> object(const std::string& key) const;
  // The array's elements paired with their paths; empty when absent.
  std::vector<std::pair<const json*, std::string>> array(const std::string& key) const;

  // "Name" or "IPAM.Config[0].Subnet": the key's path for a message.
  std::string path_of(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  ObjectReader(const json& value, std::string path) : value_(value), path_(std::move(path)) {}
  const json* find(const std::string& key) const;

  const json& value_;
  std::string path_;
};

}  // namespace weft::control::api
