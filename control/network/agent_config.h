// Settings of one weftd instance; every name it makes outside its node's
// namespace is scoped by state_dir, bpf_pin_dir or node_name.
#pragma once

#include <string>

namespace weft::control::network {

struct AgentConfig {
  std::string node_name;
  std::string advertise_addr;            // underlay IPv4 of this node
  std::string api_socket = "/run/weft/weftd.sock";
  std::string state_dir = "/var/lib/weft";
  std::string bpf_pin_dir = "/sys/fs/bpf/weft";
  std::string default_addr_pool = "10.0.0.0/8";
  int default_addr_pool_mask_length = 24;
};

}  // namespace weft::control::network
