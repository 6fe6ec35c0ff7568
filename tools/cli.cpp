#include "tools/cli.h"

#include <iostream>

#include "control/model/names.h"

namespace weft::tools {

std::string text_field(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

void print_agent_error(const ApiStatusError& error) {
  // The message may quote names stored before the agent validated them.
  std::cerr << "Error response from agent: " << control::names::printable(error.what()) << '\n';
}

}  // namespace weft::tools
