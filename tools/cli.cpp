#include "tools/cli.h"

#include <iostream>

namespace weft::tools {

std::string text_field(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

std::string short_id(std::string_view id) { return std::string(id.substr(0, 12)); }

void print_agent_error(const ApiStatusError& error) {
  std::cerr << "Error response from agent: " << error.what() << '\n';
}

}  // namespace weft::tools
