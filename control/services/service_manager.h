// The services of the cluster as this node knows them: creates and removes
// the ones made here (their virtual IPs reserved from this node's address
// ranges, write-ahead, and released when they go), keeps those of other
// nodes as the cluster reports them, lists every service with its backends
// (endpoints attached with --service, on any node), answers `lb lookup`
// through the node's load balancer, and builds the LbView that balancer is
// programmed from.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "control/model/service_model.h"
#include "control/network/network_manager.h"
#include "control/network/service_directory.h"
#include "control/services/lb_view.h"
#include "control/services/service_cluster.h"
#include "control/services/service_networks.h"

namespace weft::control::services {

struct ServiceManagerConfig {
  std::string node_name;
  std::filesystem::path state_dir;  // services/<id>.json go here (service_store.h)
};

// The owner recorded with a service's virtual IP reservations.
std::string vip_owner(const std::string& service_id);

// What the task supervisor (control/tasks) shows of the tasks: every task
// record of the cluster, and this node's task logs.
class TaskView {
 public:
  virtual ~TaskView() = default;
  virtual std::vector<TaskRecord> tasks() = 0;
  virtual std::string logs(const std::string& service_id, std::uint64_t max_bytes) = 0;
  // The same per task (slot), for the docker CLI's task-labelled lines.
  virtual std::vector<TaskLog> logs_by_slot(const std::string& service_id, std::uint64_t max_bytes) {
    return {TaskLog{.slot = 0, .text = logs(service_id, max_bytes)}};
  }
};

class ServiceManager final : public ServiceApi, public network::ServiceDirectory, public ClusterServices {
 public:
  // `networks` must outlive this object. Registers itself as the network
  // manager's service directory and listens to its endpoint changes.
  ServiceManager(ServiceManagerConfig config, ServiceNetworks& networks);
  // The agent's: around its NetworkManager.
  ServiceManager(ServiceManagerConfig config, network::NetworkManager& networks);
  ~ServiceManager() override;
  ServiceManager(const ServiceManager&) = delete;
  ServiceManager& operator=(const ServiceManager&) = delete;

  // Loads the services (service_store.h) and releases every virtual IP
  // reserved for a service that is not recorded (a crash between the
  // reservation and the record); then tells the on_change listeners. After
  // the network manager's reconcile, before the API serves.
  void reconcile();

  // The node's load balancer, for counters and lookups (may stay unset).
  void set_load_balancer(LbQuery* lb);
  // The node's tasks (may stay unset: services then show no tasks).
  void set_task_view(TaskView* tasks);
  // Called without locks held whenever a service or a backend (its state)
  // changes, and once after reconcile. Often: the consumer debounces.
  void on_change(std::function<void()> listener);
  LbView lb_view();

  // ServiceApi
  Service create_service(const ServiceSpec& spec) override;
  std::vector<ServiceDetail> list_services() override;
  std::vector<ServiceDetail> list_services_for_page(std::size_t max_with_backends) override;
  ServiceDetail get_service(const std::string& name_or_id) override;
  void remove_service(const std::string& name_or_id) override;
  LbLookupResult lookup(const LbLookupRequest& request) override;
  Service update_service(const std::string& name_or_id, const ServiceUpdate& update) override;
  std::vector<TaskRecord> list_tasks(const std::string& name_or_id) override;
  std::string task_logs(const std::string& name_or_id, std::uint64_t max_bytes) override;
  std::vector<TaskLog> task_logs_by_slot(const std::string& name_or_id, std::uint64_t max_bytes) override;
  // Every service, local and remote (the task supervisor's input).
  std::vector<Service> services();
  // The same, shared and immutable until the next change (no copy).
  std::shared_ptr<const ServiceList::List> shared_services();

  // network::ServiceDirectory
  std::optional<Service> find(const std::string& name_or_id) override;

  // ClusterServices (the cluster's thread)
  void attach_cluster(ServiceClusterLink* link) override;
  void detach_cluster() override;
  std::vector<Service> local_services() override;
  void apply_remote_service(const Service& service) override;
  void forget_service(const std::string& service_id) override;

 private:
  struct Impl;
  void wire();
  std::unique_ptr<ServiceNetworks> adapter_;
  // Shared with the network manager's endpoint listener, which may outlive
  // this object (it has no way to be removed): it holds a weak reference.
  std::shared_ptr<Impl> impl_;
};

}  // namespace weft::control::services
