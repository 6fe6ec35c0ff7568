// Docker's `filters` query parameter: a JSON object of key -> values, in
// either of the forms Docker's clients send ({"name": {"web": true}} or
// {"name": ["web"]}), and the rest of a query string.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace weft::control::api {

// Bounds on what a query may ask: the `filters` JSON, the values per key
// (each at most kMaxQueryValue bytes), and one query parameter's length.
inline constexpr std::size_t kMaxFiltersLength = 4096;
inline constexpr std::size_t kMaxFilterValues = 64;
inline constexpr std::size_t kMaxQueryValue = 256;

using Filters = std::map<std::string, std::set<std::string>>;

// The decoded value of the first `name` in an x-www-form-urlencoded query
// ('+' is a space, %XX a byte), nullopt when it is absent. Throws
// ApiError(BadRequest) for a malformed escape, a NUL byte, or a value longer
// than `max_length`.
std::optional<std::string> query_parameter(std::string_view query, std::string_view name,
                                           std::size_t max_length = kMaxQueryValue);

// Throws ApiError(BadRequest) for malformed JSON, a key not in `keys`
// (dockerd's "invalid filter 'KEY'"), or more than kMaxFilterValues values
// of kMaxQueryValue bytes for a key.
Filters parse_filters(const std::string& json_text, const std::set<std::string>& keys);

// The `filters` parameter of a request target, parsed as parse_filters does;
// empty when absent or empty.
Filters filters_of(std::string_view target, const std::set<std::string>& keys);

// The query part of a request target ("" when it has none).
std::string_view query_of(std::string_view target);

}  // namespace weft::control::api
