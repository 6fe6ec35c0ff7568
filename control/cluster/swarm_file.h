// <state-dir>/cluster/swarm.json: this node's swarm identity (node ID, gossip
// key) and the peers to find the cluster again after a restart.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace weft::control::cluster {

struct SavedSwarm {
  std::string node_id;
  std::vector<unsigned char> key;
  std::vector<std::string> peers;
};

std::string encode_swarm_file(const SavedSwarm& swarm);
// Throws std::runtime_error naming `path` and what is wrong with `text`.
SavedSwarm parse_swarm_file(const std::filesystem::path& path, const std::string& text);

}  // namespace weft::control::cluster
