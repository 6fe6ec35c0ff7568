#include "tools/cli.h"

#include <iostream>

#include "control/api/json.h"
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

int inspect_each(Cli& cli, const std::vector<std::string>& names,
                 const std::function<std::string(const std::string&)>& path_of) {
  ApiClient client = cli.client();
  nlohmann::json found = nlohmann::json::array();
  int status = 0;
  for (const std::string& name : names) {
    try {
      found.push_back(client.call(http::verb::get, path_of(name)));
    } catch (const ApiStatusError& error) {
      print_agent_error(error);
      status = 1;
    }
  }
  std::cout << control::api::dump(found, 4) << '\n';
  return status;
}

int remove_each(Cli& cli, const std::vector<std::string>& names,
                const std::function<std::string(const std::string&)>& path_of) {
  ApiClient client = cli.client();
  int status = 0;
  for (const std::string& name : names) {
    try {
      client.call(http::verb::delete_, path_of(name));
      std::cout << control::names::printable(name) << '\n';
    } catch (const ApiStatusError& error) {
      print_agent_error(error);
      status = 1;
    }
  }
  return status;
}

}  // namespace weft::tools
