// Docker's `filters` query parameter: a JSON object of key -> values, in
// either of the forms Docker's clients send ({"name": {"web": true}} or
// {"name": ["web"]}), and the rest of a query string.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace weft::control::api {

using Filters = std::map<std::string, std::set<std::string>>;

// The decoded value of `name` in an x-www-form-urlencoded query, nullopt
// when it is absent.
std::optional<std::string> query_parameter(std::string_view query, std::string_view name);

// Throws ApiError(BadRequest) for malformed JSON, a key not in `keys`
// (dockerd's "invalid filter 'KEY'"), or more than 64 values of 256 bytes
// for a key.
Filters parse_filters(const std::string& json_text, const std::set<std::string>& keys);

// The query part of a request target ("" when it has none).
std::string_view query_of(std::string_view target);

}  // namespace weft::control::api
