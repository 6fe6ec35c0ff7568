#include "control/api/body_reader.h"

#include "control/model/model.h"

namespace weft::control::api {

using nlohmann::json;

void bad_request(const std::string& message) { throw ApiError(ApiError::Kind::BadRequest, message); }

json parse_body(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return json::object();
  try {
    return json::parse(body);
  } catch (const json::parse_error& e) {
    // Drop nlohmann's "[json.exception.parse_error.101] " tag: noise to a user.
    std::string detail = e.what();
    if (auto end = detail.find("] "); detail.starts_with("[json.exception.") && end != std::string::npos) {
      detail.erase(0, end + 2);
    }
    bad_request("invalid JSON in request body: " + detail);
  }
}

ObjectReader ObjectReader::of(const json& value, std::string path) {
  if (!value.is_object()) {
    bad_request(path.empty() ? "request body must be a JSON object, got " + std::string(value.type_name())
                             : "\"" + path + "\" must be an object, got " + value.type_name());
  }
  return ObjectReader(value, std::move(path));
}

std::optional<std::string> ObjectReader::string(const std::string& key) const {
  const json* value = find(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) bad_request("\"" + path_of(key) + "\" must be a string, got " + value->type_name());
  return value->get<std::string>();
}

std::optional<std::string> ObjectReader::non_empty_string(const std::string& key) const {
  auto value = string(key);
  if (value && value->empty()) return std::nullopt;
  return value;
}

std::string ObjectReader::required_string(const std::string& key) const {
  auto value = non_empty_string(key);
  if (!value) bad_request("missing required field \"" + path_of(key) + "\"");
  return *value;
}

bool ObjectReader::boolean(const std::string& key, bool fallback) const {
  const json* value = find(key);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) bad_request("\"" + path_of(key) + "\" must be a boolean, got " + value->type_name());
  return value->get<bool>();
}

std::optional<std::uint64_t> ObjectReader::unsigned_integer(const std::string& key, std::uint64_t max) const {
  const json* value = find(key);
  if (value == nullptr) return std::nullopt;
  // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on
  // "literal" + std::string temporaries here.
  const auto refuse = [&](const std::string& got) {
    std::string message = "\"";
    message.append(path_of(key)).append("\" must be an integer from 0 to ").append(std::to_string(max));
    message.append(", got ").append(got);
    bad_request(message);
  };
  if (!value->is_number_integer()) refuse(value->is_number() ? "a fractional number" : value->type_name());
  if (!value->is_number_unsigned() && value->get<std::int64_t>() < 0) refuse(value->dump());
  const auto number = value->get<std::uint64_t>();
  if (number > max) refuse(std::to_string(number));
  return number;
}

std::optional<ObjectReader> ObjectReader::object(const std::string& key) const {
  const json* value = find(key);
  if (value == nullptr) return std::nullopt;
  return of(*value, path_of(key));
}

std::vector<std::pair<const json*, std::string>> ObjectReader::array(const std::string& key) const {
  std::vector<std::pair<const json*, std::string>> elements;
  const json* value = find(key);
  if (value == nullptr) return elements;
  if (!value->is_array()) bad_request("\"" + path_of(key) + "\" must be an array, got " + value->type_name());
  for (std::size_t i = 0; i < value->size(); ++i) {
    elements.emplace_back(&(*value)[i], path_of(key) + "[" + std::to_string(i) + "]");
  }
  return elements;
}

const json* ObjectReader::find(const std::string& key) const {
  auto it = value_.find(key);
  if (it == value_.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace weft::control::api
