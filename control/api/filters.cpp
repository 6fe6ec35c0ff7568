#include "control/api/filters.h"

#include <nlohmann/json.hpp>

#include "control/model/model.h"

namespace weft::control::api {

using nlohmann::json;

namespace {

[[noreturn]] void bad_request(const std::string& message) { throw ApiError(ApiError::Kind::BadRequest, message); }

constexpr std::size_t kMaxFilterValues = 64;
constexpr std::size_t kMaxFilterText = 256;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded: '+' is a space, %XX a byte.
std::string form_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && hex_digit(text[i + 1]) >= 0 && hex_digit(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

void add_filter_value(Filters& filters, const std::string& key, const json& value) {
  if (!value.is_string()) bad_request("filters: values of " + key + " must be strings");
  auto& values = filters[key];
  if (values.size() >= kMaxFilterValues) bad_request("filters: too many values for " + key);
  const auto text = value.get<std::string>();
  if (text.size() > kMaxFilterText) bad_request("filters: a value of " + key + " is too long");
  values.insert(text);
}

}  // namespace

std::string_view query_of(std::string_view target) {
  const auto question = target.find('?');
  if (question == std::string_view::npos) return {};
  const std::string_view query = target.substr(question + 1);
  return query.substr(0, query.find('#'));
}

std::optional<std::string> query_parameter(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = pair.find('=');
    if (form_decode(pair.substr(0, eq)) != name) continue;
    return eq == std::string_view::npos ? "" : form_decode(pair.substr(eq + 1));
  }
  return std::nullopt;
}

Filters parse_filters(const std::string& text, const std::set<std::string>& keys) {
  Filters result;
  const json filters = json::parse(text, nullptr, false);
  if (filters.is_discarded() || !filters.is_object()) bad_request("filters must be a JSON object");
  for (const auto& [key, values] : filters.items()) {
    if (!keys.count(key)) bad_request("invalid filter '" + key.substr(0, 64) + "'");
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

}  // namespace weft::control::api
