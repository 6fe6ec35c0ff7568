#include "control/cluster/swarm_file.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "control/cluster/join_token.h"

namespace weft::control::cluster {
using nlohmann::json;

std::string encode_swarm_file(const SavedSwarm& swarm) {
  json j = {{"node_id", swarm.node_id}, {"key", base64_encode(swarm.key)}, {"peers", swarm.peers}};
  return j.dump(2) + "\n";
}

SavedSwarm parse_swarm_file(const std::filesystem::path& path, const std::string& text) {
  auto corrupt = [&](const std::string& what) {
    return std::runtime_error("swarm state file " + path.string() + " is corrupt: " + what);
  };
  SavedSwarm swarm;
  try {
    const auto j = json::parse(text);
    swarm.node_id = j.at("node_id").get<std::string>();
    auto key = base64_decode(j.at("key").get<std::string>());
    if (!key) throw corrupt("the gossip key is not base64");
    // AES-128, -192 or -256, as memberlist's keyring takes.
    if (key->size() != 16 && key->size() != 24 && key->size() != 32)
      throw corrupt("the gossip key has " + std::to_string(key->size()) + " bytes, not 16, 24 or 32");
    swarm.key = std::move(*key);
    swarm.peers = j.value("peers", std::vector<std::string>{});
  } catch (const json::exception& e) {
    throw corrupt(e.what());
  }
  if (swarm.node_id.empty()) throw corrupt("the node ID is empty");
  return swarm;
}

}  // namespace weft::control::cluster
