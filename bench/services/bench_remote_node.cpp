// bench_remote_node: a fake weft node for measuring an agent with many
// remote service backends (issue 9: weftd with 10 000 services x 10
// backends). It runs the agent's own cluster layer (control/cluster:
// memberlist, serf compatibility, replicated tables, table gossip) with a
// stand-in for the network manager, joins a real weftd's swarm over the
// underlay, and publishes, as its own table entries:
//
//  - SERVICES vip-mode services on one network (created "on this node", as
//    a service created on another node of a cluster reaches every agent:
//    through the services table), each with one VIP:80/tcp, VIPs counted
//    down from the top of the network's subnet;
//  - BACKENDS endpoints per service, "attached here" (endpoint records with
//    this node as their owner and VTEP, as task endpoints of other nodes
//    reach every agent: through the endpoints table), addresses counted up
//    from the subnet's base + 256.
//
// The network itself is the weftd's (created through its API); this node
// learns it from the tables and only names it by --network-id. Publishing
// is paced (--rate entries a second) so the UDP pushes are not dropped in
// bursts; the table gossip's push/pull repairs whatever is. Runs until
// SIGTERM/SIGINT, then stops without a leave (the agent's entries of this
// node stay until it is declared dead).
//
//   bench_remote_node --node-name N --advertise IP --join IP:PORT --token T
//                     --network-id ID --subnet CIDR --state-dir DIR
//                     [--services 10000] [--backends 10] [--rate 20000]
//                     [--max-stream-size BYTES] [--done-file PATH]
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "bench/services/bench_ids.h"
#include "control/cluster/cluster.h"
#include "control/model/ids.h"

namespace {

using namespace weft;
using namespace weft::control;
namespace fs = std::filesystem;

// The network manager of a node without a kernel behind it: it has no
// networks of its own, remembers nothing of others, and reports the
// endpoints published so far as its local ones (what a real node's manager
// would list), so a rejoin republishes them rather than withdrawing them.
class FakeNodeNetworks final : public cluster::NodeNetworks {
 public:
  void attach_cluster(network::ClusterLink*) override {}
  void detach_cluster() override {}
  bool has_networks() override { return false; }
  std::vector<Network> local_networks() override { return {}; }
  std::vector<Endpoint> local_endpoints() override {
    std::lock_guard lock(mu_);
    return published_;
  }
  void apply_remote_network(const Network&) override {}
  void forget_remote_network(const std::string&) override {}
  void apply_remote_endpoint(const Endpoint&, network::ipam::Ipv4) override {}
  void forget_remote_endpoint(const std::string&) override {}
  void set_owned(const std::string&, const network::ipam::RangeSet&) override {}
  void give_away(const std::string&,
                 const std::function<network::ipam::RangeSet(const network::ipam::RangeSet& free)>& give) override {
    give(network::ipam::RangeSet{});
  }
  network::ipam::Cidr address_pool() override { return *network::ipam::Cidr::parse("10.0.0.0/8"); }

  void add(const Endpoint& e) {
    std::lock_guard lock(mu_);
    published_.push_back(e);
  }

 private:
  std::mutex mu_;
  std::vector<Endpoint> published_;
};

class FakeServices final : public services::ClusterServices {
 public:
  void attach_cluster(services::ServiceClusterLink*) override {}
  void detach_cluster() override {}
  std::vector<Service> local_services() override {
    std::lock_guard lock(mu_);
    return published_;
  }
  void apply_remote_service(const Service&) override {}
  void forget_service(const std::string&) override {}

  void add(const Service& s) {
    std::lock_guard lock(mu_);
    published_.push_back(s);
  }

 private:
  std::mutex mu_;
  std::vector<Service> published_;
};

using weft::bench::bench_id;

std::atomic<bool> stop_requested{false};
void on_signal(int) { stop_requested = true; }

}  // namespace

int main(int argc, char** argv) {
  std::string node_name = "fake-remote", advertise, join, token, network_id, subnet_text, state_dir, done_file;
  std::uint32_t services = 10000, backends = 10, rate = 20000;
  std::size_t max_stream_size = 256u << 20;
  CLI::App app{"bench_remote_node: a fake weft node publishing many services and remote backends"};
  app.add_option("--node-name", node_name)->capture_default_str();
  app.add_option("--advertise", advertise, "underlay IPv4 (gossip bound there, port 7946; the VTEP)")->required();
  app.add_option("--join", join, "IP:PORT of the agent's gossip")->required();
  app.add_option("--token", token, "the swarm's join token (weft swarm join-token)")->required();
  app.add_option("--network-id", network_id, "full id of the network the backends are on")->required();
  app.add_option("--subnet", subnet_text, "that network's subnet (CIDR)")->required();
  app.add_option("--state-dir", state_dir, "the cluster layer's files")->required();
  app.add_option("--services", services)->capture_default_str();
  app.add_option("--backends", backends, "backends per service")->capture_default_str();
  app.add_option("--rate", rate, "table entries published a second")->capture_default_str();
  app.add_option("--max-stream-size", max_stream_size, "largest gossip stream accepted, bytes")->capture_default_str();
  app.add_option("--done-file", done_file, "written once everything is published");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  const auto subnet = dataplane::Cidr::parse(subnet_text);
  if (!subnet) {
    std::fprintf(stderr, "bench_remote_node: bad --subnet %s\n", subnet_text.c_str());
    return 2;
  }
  const std::uint64_t endpoints = std::uint64_t{services} * backends;
  if (256 + endpoints + services + 2 > subnet->size()) {
    std::fprintf(stderr, "bench_remote_node: %s is too small for %u services x %u backends\n",
                 subnet_text.c_str(), services, backends);
    return 2;
  }
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);

  FakeNodeNetworks networks;
  FakeServices fake_services;
  cluster::ClusterConfig config;
  config.node_name = node_name;
  config.advertise_addr = advertise;
  config.bind_addr = advertise;
  config.bind_port = 7946;
  config.state_dir = state_dir;
  config.gossip_timings.max_stream_size = max_stream_size;
  // As run.sh gives the agent: its stalls are not deaths.
  config.gossip_timings.probe_interval = std::chrono::seconds(5);
  config.gossip_timings.probe_timeout = std::chrono::seconds(3);
  config.gossip_timings.suspicion_mult = 60;
  fs::create_directories(state_dir);
  cluster::Cluster node(config, networks);
  node.set_services(&fake_services);
  node.start();
  try {
    node.join(SwarmJoinRequest{.join_token = token, .remote_addrs = {join}});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_remote_node: join %s: %s\n", join.c_str(), e.what());
    return 1;
  }
  std::printf("bench_remote_node: joined through %s as %s; publishing %u services x %u backends\n", join.c_str(),
              node_name.c_str(), services, backends);
  std::fflush(stdout);

  // Paced: one batch every 10 ms.
  const std::uint32_t batch = std::max<std::uint32_t>(1, rate / 100);
  std::uint32_t in_batch = 0;
  auto pace = [&] {
    if (++in_batch < batch) return;
    in_batch = 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  };
  const auto start = std::chrono::steady_clock::now();
  const auto created = now_rfc3339();
  const std::uint32_t top = subnet->last().value - 1;  // below the broadcast address
  const std::uint32_t first_backend = subnet->base.value + 256;
  for (std::uint32_t s = 0; s < services; ++s) {
    if (stop_requested) std::_Exit(1);
    Service service{.id = bench_id(0x5e, s),
                    .name = fmt::format("svc{}", s),
                    .mode = EndpointMode::vip,
                    .ports = {PublishedPort{.port = 80, .protocol = PortProtocol::tcp}},
                    .network_ids = {network_id},
                    .vips = {ServiceVip{.network_id = network_id, .addr = dataplane::Ipv4{top - s},
                                        .prefix_len = subnet->prefix}},
                    .created = created,
                    .node = node_name};
    fake_services.add(service);
    node.publish_service(service);
    pace();
    for (std::uint32_t b = 0; b < backends; ++b) {
      const std::uint64_t n = std::uint64_t{s} * backends + b;
      const dataplane::Ipv4 ip{static_cast<std::uint32_t>(first_backend + n)};
      Endpoint e{.id = bench_id(0xe0, n),
                 .name = fmt::format("svc{}-{}", s, b + 1),
                 .network_id = network_id,
                 .network_name = "",
                 .netns = fmt::format("/run/netns/weft-{}-{}-{}", node_name, service.id.substr(0, 12), b + 1),
                 .ifname = "eth0",
                 .ip = ip,
                 .prefix_len = subnet->prefix,
                 .mac = dataplane::MacAddress::from_ipv4(ip),
                 .node = node_name,
                 .service_id = service.id,
                 .backend_state = BackendState::active,
                 .drain_until = {}};
      networks.add(e);
      node.publish_endpoint(e);
      pace();
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("bench_remote_node: published %u services and %lu endpoints in %.1f s\n", services,
              static_cast<unsigned long>(endpoints), secs);
  std::fflush(stdout);
  if (!done_file.empty()) std::ofstream(done_file) << services << " " << endpoints << "\n";
  while (!stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // Gone as a crashed node goes: no leave, nothing waited for.
  std::fflush(stdout);
  std::_Exit(0);
}
