#include "control/api/filters.h"

#include <nlohmann/json.hpp>

#include "control/model/model.h"

namespace weft::control::api {

using nlohmann::json;

namespace {

[[noreturn]] void bad_request(const std::string& message) { throw ApiError(ApiError::Kind::BadRequest, message); }

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded: '+' is a space, %XX a byte; a bad
// escape or a NUL byte (which no name, id or filter holds) is refused.
std::string form_decode(std::string_view name, std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      const int high = i + 2 < raw.size() ? hex_digit(raw[i + 1]) : -1;
      const int low = i + 2 < raw.size() ? hex_digit(raw[i + 2]) : -1;
      if (high < 0 || low < 0) bad_request("malformed percent-encoding in query parameter \"" + std::string(name) + "\"");
      c = static_cast<char>(high * 16 + low);
      i += 2;
    }
    if (c == '\0') bad_request("query parameter \"" + std::string(name) + "\" holds a NUL byte");
    out += c;
  }
  return out;
}

void add_filter_value(Filters& filters, const std::string& key, const json& value) {
  if (!value.is_string()) bad_request("filters: values of " + key + " must be strings");
  auto& values = filters[key];
  if (values.size() >= kMaxFilterValues) bad_request("filters: too many values for " + key);
  const auto text = value.get<std::string>();
  if (text.size() > kMaxQueryValue) bad_request("filters: a value of " + key + " is too long");
  values.insert(text);
}

}  // namespace

std::string_view query_of(std::string_view target) {
  const auto question = target.find('?');
  if (question == std::string_view::npos) return {};
  const std::string_view query = target.substr(question + 1);
  return query.substr(0, query.find('#'));
}

std::optional<std::string> query_parameter(std::string_view query, std::string_view name, std::size_t max_length) {
  const auto too_long = [&] {
    bad_request("query parameter \"" + std::string(name) + "\" is longer than " + std::to_string(max_length) +
                " characters");
  };
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    if (key != name) continue;  // clients send plain keys
    const std::string_view raw = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (raw.size() > 3 * max_length) too_long();  // bounded before decoding: an escape is 3 characters for 1
    std::string value = form_decode(name, raw);
    if (value.size() > max_length) too_long();
    return value;  // the first, as dockerd reads it
  }
  return std::nullopt;
}

Filters parse_filters(const std::string& text, const std::set<std::string>& keys) {
  Filters result;
  const json filters = json::parse(text, nullptr, false);
  if (filters.is_discarded() || !filters.is_object()) bad_request("filters must be a JSON object");
  for (const auto& [key, values] : filters.items()) {
    if (!keys.count(key)) bad_request("invalid filter '" + key.substr(0, 64) + "'");
    // Counted as given, before duplicates fold: the bound is on the work.
    if ((values.is_object() || values.is_array()) && values.size() > kMaxFilterValues)
      bad_request("filters: too many values for " + key.substr(0, 64));
    // {"type": {"network": true}} (Docker's clients) or {"type": ["network"]}.
    if (values.is_object()) {
      for (const auto& [value, enabled] : values.items())
        if (enabled.is_boolean() && enabled.get<bool>()) add_filter_value(result, key, json(value));
    } else if (values.is_array()) {
      for (const auto& value : values) add_filter_value(result, key, value);
    } else {
      bad_request("filters: " + key + " must be an object or a list");
    }
  }
  return result;
}

Filters filters_of(std::string_view target, const std::set<std::string>& keys) {
  const auto text = query_parameter(query_of(target), "filters", kMaxFiltersLength);
  if (!text || text->empty()) return {};
  return parse_filters(*text, keys);
}

}  // namespace weft::control::api
