// The agent's networks and endpoints on this node: validates requests,
// allocates addresses, realises them in the kernel through dataplane/, keeps
// the state file, and reconciles the kernel with it at start.
#pragma once

#include <memory>
#include <mutex>

#include "control/agent_config.h"
#include "control/model.h"

namespace weft::control {

class NetworkManager final : public NetworkService {
 public:
  explicit NetworkManager(AgentConfig config);
  ~NetworkManager() override;
  NetworkManager(const NetworkManager&) = delete;
  NetworkManager& operator=(const NetworkManager&) = delete;

  // Loads the state file and makes the kernel match it: adopts what exists,
  // re-creates what is missing, removes what is stale.
  void reconcile();

  Network create_network(const NetworkSpec& spec) override;
  std::vector<Network> list_networks() override;
  Network get_network(const std::string& name_or_id) override;
  void remove_network(const std::string& name_or_id) override;
  Endpoint connect(const AttachRequest& request) override;
  void disconnect(const DetachRequest& request) override;
  std::vector<Endpoint> list_endpoints() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control
