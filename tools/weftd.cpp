// `weftd`: the weft agent of one node. Reconciles the kernel with its state,
// then serves the local API until SIGINT/SIGTERM. Stopping it leaves the
// networks in place: they must survive agent restarts and upgrades.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <malloc.h>
#include <net/if.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>  // also declares the stderr sinks
#include <spdlog/spdlog.h>

#include "control/network/agent_config.h"
#include "control/api/docker_engine.h"
#include "control/api/event_watcher.h"
#include "control/api/routes.h"
#include "control/api/server.h"
#include "control/cluster/cluster.h"
#include "control/discovery/dns_agent.h"
#include "control/discovery/dns_sync_driver.h"
#include "control/gossip/host_port.h"
#include "control/gossip/profiles.h"
#include "control/network/ipam.h"
#include "control/network/network_manager.h"
#include "control/services/service_dataplane.h"
#include "control/services/service_dataplane_driver.h"
#include "control/services/service_manager.h"
#include "control/tasks/supervisor.h"
#include "dataplane/netlink.h"
#include "dns/forwarder.h"
#include "dns/resolv_conf.h"
#include "observe/cluster_snapshot_source.h"
#include "observe/event_feed.h"
#include "observe/http_server.h"
#include "observe/metrics.h"
#include "observe/metrics_agent.h"
#include "observe/ui_routes.h"

namespace {

using weft::control::network::AgentConfig;
namespace ipam = weft::control::network::ipam;

// A flag the agent cannot run with; reported without a log prefix, exit 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// --- advertise address ------------------------------------------------------

// Addresses a peer node could reach us at: not loopback, link-local or 0/8.
bool is_global(in_addr address) {
  const std::uint32_t host_order = ntohl(address.s_addr);
  const std::uint32_t first_octet = host_order >> 24;
  return first_octet != 0 && first_octet != 127 && (host_order >> 16) != 0xA9FE;
}

// The interface of the IPv4 default route with the lowest metric.
std::optional<std::string> default_route_interface() {
  try {
    return weft::dataplane::NetlinkSocket().default_route_interface();
  } catch (const std::exception&) {
    return std::nullopt;  // then the first interface with an address serves
  }
}

// First global IPv4 address of the default route's interface, else of the
// first non-loopback interface that has one.
std::optional<std::string> detect_advertise_address() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return std::nullopt;
  const std::unique_ptr<ifaddrs, decltype(&::freeifaddrs)> owner(list, &::freeifaddrs);

  auto first_global = [&](auto&& accept_interface) -> std::optional<std::string> {
    for (const ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
      if (entry->ifa_addr == nullptr || entry->ifa_addr->sa_family != AF_INET) continue;
      if (!accept_interface(*entry)) continue;
      const in_addr address = reinterpret_cast<const sockaddr_in*>(entry->ifa_addr)->sin_addr;
      if (!is_global(address)) continue;
      char text[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &address, text, sizeof text);
      return std::string(text);
    }
    return std::nullopt;
  };

  if (const auto interface = default_route_interface()) {
    if (auto address = first_global([&](const ifaddrs& entry) { return entry.ifa_name == *interface; })) {
      return address;
    }
  }
  return first_global([](const ifaddrs& entry) { return (entry.ifa_flags & IFF_LOOPBACK) == 0; });
}

// --- flags ------------------------------------------------------------------

struct Options {
  AgentConfig config;
  std::string log_level = "info";
  std::string bind = "0.0.0.0:7946";  // gossip
  std::vector<std::string> join;
  std::string key_file;
  // Gossip timings: a memberlist profile, then any single setting (ms).
  std::string gossip_profile = "lan";
  std::optional<std::int64_t> probe_interval_ms, probe_timeout_ms, gossip_interval_ms, push_pull_interval_ms;
  std::optional<int> suspicion_mult, retransmit_mult;
  std::optional<std::int64_t> tombstone_lifetime_ms;
  std::optional<std::int64_t> cluster_tombstone_lifetime_ms;
  // What unauthenticated TCP peers may cost (see gossip::Config).
  std::optional<std::uint64_t> max_stream_size;
  std::optional<std::size_t> max_inbound_streams;
  // The node's service load balancer (--lb-*).
  std::string lb_backend = "auto";
  std::uint32_t lb_max_services = 1024, lb_max_backends = 65536, lb_conntrack_entries = 262144;
  std::uint32_t lb_tcp_timeout_s = 21600, lb_udp_timeout_s = 60;
  // The embedded DNS (--dns-*).
  std::uint32_t dns_ttl_s = 5;
  std::vector<std::string> dns_upstreams;  // none: the node's /etc/resolv.conf
  std::int64_t dns_timeout_ms = 2000;
  std::vector<std::string> dns_search;
  // The observability listener (--metrics-addr); empty: off.
  std::string metrics_addr;
};

weft::control::gossip::Config gossip_timings(const Options& options) {
  namespace gossip = weft::control::gossip;
  auto c = gossip::profile_config(options.gossip_profile);
  if (!c)
    throw UsageError("invalid --gossip-profile \"" + options.gossip_profile + "\": expected lan, wan or local");
  using ms = std::chrono::milliseconds;
  if (options.probe_interval_ms) c->probe_interval = ms(*options.probe_interval_ms);
  if (options.probe_timeout_ms) c->probe_timeout = ms(*options.probe_timeout_ms);
  if (options.gossip_interval_ms) c->gossip_interval = ms(*options.gossip_interval_ms);
  if (options.push_pull_interval_ms) c->push_pull_interval = ms(*options.push_pull_interval_ms);
  if (options.suspicion_mult) c->suspicion_mult = *options.suspicion_mult;
  if (options.retransmit_mult) c->retransmit_mult = *options.retransmit_mult;
  if (auto problem = gossip::timing_problem(*c); !problem.empty()) throw UsageError(problem);
  if (options.max_stream_size) {
    // A push/pull of a few nodes must fit; above 2^32 the stream header cannot say it.
    if (*options.max_stream_size < 64 * 1024 || *options.max_stream_size > (std::uint64_t{1} << 32) - 1)
      throw UsageError("invalid --max-stream-size: must be between 64KiB and 4GiB");
    c->max_stream_size = static_cast<std::size_t>(*options.max_stream_size);
  }
  if (options.max_inbound_streams) c->max_inbound_streams = *options.max_inbound_streams;
  return *c;
}

// "ADDR:PORT" with an IPv4 address and a port 1..65535 (0 allowed for --bind).
std::pair<std::string, std::uint16_t> parse_host_port(const std::string& text, const std::string& flag,
                                                     bool allow_zero) {
  const auto fail = [&] { return UsageError("invalid " + flag + " \"" + text + "\": expected IPv4:PORT"); };
  weft::control::gossip::ParsedHostPort parsed;
  try {
    parsed = weft::control::gossip::parse_host_port(text);
  } catch (const weft::control::gossip::InvalidHostPort&) {
    throw fail();
  }
  if (!parsed.ip.is_v4() || !parsed.port || (*parsed.port == 0 && !allow_zero)) throw fail();
  return {parsed.ip.to_string(), *parsed.port};
}

std::string host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

// Fills in the defaults that depend on the host and rejects what the agent
// could not work with, naming the flag.
void complete_and_validate(AgentConfig& config) {
  if (config.node_name.empty()) config.node_name = host_name();
  if (config.node_name.empty()) throw UsageError("cannot determine the host name; pass --node-name");
  // The node name ends up in kernel object names, state and log lines.
  for (char c : config.node_name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      throw UsageError("invalid --node-name \"" + config.node_name +
                       "\": use letters, digits, '-', '_' and '.' only");
    }
  }
  if (config.node_name.size() > 64) throw UsageError("invalid --node-name: longer than 64 characters");

  if (config.advertise_addr.empty()) {
    const auto detected = detect_advertise_address();
    if (!detected) {
      throw UsageError("cannot find an IPv4 address to advertise (no interface has a global one); pass "
                       "--advertise-addr");
    }
    config.advertise_addr = *detected;
  } else if (!ipam::Ipv4::parse(config.advertise_addr)) {
    throw UsageError("invalid --advertise-addr \"" + config.advertise_addr + "\": not an IPv4 address");
  }

  // The server binds "<path>.tmp" first, hence the 4 extra bytes.
  constexpr std::size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1 - 4;
  if (config.api_socket.empty()) throw UsageError("--api-socket must not be empty");
  if (config.api_socket.size() > kMaxSocketPath) {
    throw UsageError("invalid --api-socket \"" + config.api_socket + "\": longer than " +
                     std::to_string(kMaxSocketPath) + " bytes");
  }
  if (config.state_dir.empty()) throw UsageError("--state-dir must not be empty");
  if (config.bpf_pin_dir.empty()) throw UsageError("--bpf-pin-dir must not be empty");

  try {
    ipam::default_subnet_pool(config.default_addr_pool, config.default_addr_pool_mask_length);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

weft::control::services::ServiceDataplaneOptions lb_dataplane_options(const Options& options) {
  weft::control::services::ServiceDataplaneOptions o;
  o.kind = *weft::control::services::parse_lb_kind(options.lb_backend);  // checked by CLI11
  o.pin_dir = options.config.bpf_pin_dir;
  o.state_dir = options.config.state_dir;
  o.limits.max_services = options.lb_max_services;
  // Two frontends per service and network (VIP, every port, tcp and udp).
  o.limits.max_frontends = std::max<std::uint32_t>(4096, 2 * options.lb_max_services);
  o.limits.max_backends = options.lb_max_backends;
  o.limits.conntrack_entries = options.lb_conntrack_entries;
  o.timeouts.tcp_established = std::chrono::seconds(options.lb_tcp_timeout_s);
  o.timeouts.udp = std::chrono::seconds(options.lb_udp_timeout_s);
  return o;
}

weft::control::discovery::DnsAgentConfig dns_agent_config(const Options& options) {
  weft::control::discovery::DnsAgentConfig c;
  c.node_name = options.config.node_name;
  c.state_dir = options.config.state_dir;
  c.ttl_seconds = options.dns_ttl_s;
  if (options.dns_upstreams.size() > 8) throw UsageError("at most 8 --dns-upstream");
  for (const auto& upstream : options.dns_upstreams)
    if (!weft::dns::parse_upstream(upstream))
      throw UsageError("invalid --dns-upstream \"" + upstream + "\": expected IPv4[:PORT]");
  c.upstreams = options.dns_upstreams;
  if (options.dns_timeout_ms < 100 || options.dns_timeout_ms > 30000)
    throw UsageError("invalid --dns-timeout: must be between 100ms and 30s");
  c.timeout = std::chrono::milliseconds(options.dns_timeout_ms);
  c.search_domains = options.dns_search;
  try {
    // What the resolv.conf files could not carry is refused here, at start.
    weft::dns::ResolvConfConfig resolv_conf;
    resolv_conf.search = c.search_domains;
    weft::dns::ResolvConfFiles{resolv_conf};
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("invalid --dns-search: ") + e.what());
  }
  return c;
}

// What the embedded DNS answers from: every service, network and endpoint
// this node knows (local and remote), and this node's endpoints, whose
// namespaces it serves.
weft::control::discovery::DnsInputs dns_inputs(weft::control::network::NetworkManager& networks,
                                               weft::control::services::ServiceManager& services) {
  weft::control::discovery::DnsInputs in;
  // The services alone: the load balancer's view would copy every backend too.
  in.services = services.services();
  in.networks = networks.list_networks();
  in.shared_endpoints = networks.shared_endpoints();
  in.local_endpoints = networks.local_endpoints();
  return in;
}

// --- running ----------------------------------------------------------------

std::string observe_address(const boost::asio::ip::tcp::endpoint& endpoint) {
  const std::string host = endpoint.address().to_string();
  return (endpoint.address().is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(endpoint.port());
}

void set_up_logging(const std::string& node_name, const std::string& level) {
  auto logger = std::make_shared<spdlog::logger>("weftd", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  // Several agents often share one terminal or log in test clusters.
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e [" + node_name + "] %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(std::move(logger));
}

int run(const AgentConfig& config, const weft::control::cluster::ClusterConfig& cluster_config,
        const weft::control::services::ServiceDataplaneOptions& lb_options,
        const weft::control::discovery::DnsAgentConfig& dns_config,
        const std::optional<boost::asio::ip::tcp::endpoint>& metrics_endpoint) {
  spdlog::info("weftd {} starting: advertise address {}, state in {}", weft::control::api::kWeftVersion,
               config.advertise_addr, config.state_dir);

  boost::asio::io_context io;
  // The embedded DNS: declared before the managers, so it outlives the
  // listeners they keep (a drain timer may still tell them of a change while
  // the network manager goes); the driver is stopped explicitly after
  // io.run(), so nothing reads the managers once they start to go.
  std::optional<weft::control::discovery::DnsAgent> dns;
  std::optional<weft::control::discovery::DnsSyncDriver> dns_driver;
  weft::control::network::NetworkManager networks(config);
  // Declared before the service manager, which calls into both, so they
  // outlive it; the driver is stopped explicitly after io.run().
  std::optional<weft::control::services::ServiceDataplane> lb_dataplane;
  std::optional<weft::control::services::ServiceDataplaneDriver> lb_driver;
  weft::control::services::ServiceManager services({.node_name = config.node_name, .state_dir = config.state_dir},
                                                   networks);
  weft::control::cluster::Cluster cluster(cluster_config, networks);
  cluster.set_services(&services);
  // Service tasks (control/tasks): this node's slots, placed from the
  // cluster's Ready nodes; task records ride in the cluster's tasks table.
  weft::control::tasks::Supervisor tasks(
      {.node_name = config.node_name, .state_dir = config.state_dir}, services, networks, [&cluster] {
        std::vector<weft::control::tasks::ReadyNode> ready;
        for (const auto& node : cluster.list_nodes())
          if (node.status == "ready" && node.role == "weft")
            ready.push_back({node.hostname, node.availability, node.membership == "suspect"});
        return ready;
      });
  cluster.set_tasks(&tasks);
  services.set_task_view(&tasks);
  // The Docker routes' state: host facts, the event bus (`GET /events`)
  // and the swarm state for `/_ping`; the watcher publishes the cluster's
  // network and node changes to the bus (started with the cluster, stopped
  // before it).
  weft::control::api::DockerEngineState docker;
  weft::control::api::ClusterEventWatcher event_watcher(docker.events, networks, &cluster,
                                                        std::chrono::milliseconds(500), &docker.swarm_active,
                                                        &services);
  // The live page's picture of the cluster (observe/): served by the local
  // API (`weft top`) and the observability listener (/ui). Its poller starts
  // once the cluster runs and stops before the cluster does.
  weft::observe::AgentStateSource state_source(
      {.node_name = config.node_name, .advertise_addr = config.advertise_addr,
       .version = std::string(weft::control::api::kWeftVersion)},
      networks, &cluster, &services);
  weft::observe::EventFeed state_feed(state_source);
  std::optional<weft::observe::FeedPoller> state_poller;
  weft::control::api::ApiServer server(
      io, config.api_socket,
      weft::control::api::Services{.networks = networks,
                                   .swarm = &cluster,
                                   .services = &services,
                                   .state = &state_feed,
                                   .docker = &docker});
  // The observability listener, before the API claims its socket so that a
  // taken address stops the agent (exit 2) before it changed anything.
  // /metrics reads the modules at scrape time; those not made yet are left
  // out. Declared after everything it reads, so it stops first.
  struct Ready {  // set here as each module starts; read by the listener's thread
    std::atomic<weft::control::cluster::Cluster*> cluster{nullptr};
    std::atomic<weft::control::services::ServiceDataplane*> dataplane{nullptr};
    std::atomic<weft::control::services::ServiceDataplaneDriver*> driver{nullptr};
    std::atomic<weft::control::discovery::DnsAgent*> dns{nullptr};
  } ready;
  std::optional<weft::observe::ObserveServer> observe;
  if (metrics_endpoint) {
    observe.emplace(*metrics_endpoint);
    weft::observe::AgentSources sources{
        .cluster = [&ready] { return ready.cluster.load(); },
        .services = &services,
        .dataplane = [&ready] { return ready.dataplane.load(); },
        .driver = [&ready] { return ready.driver.load(); },
        .dns = [&ready] { return ready.dns.load(); },
    };
    observe->add_route("/metrics", [sources](const weft::observe::HttpGet&) {
      return weft::observe::HttpReply{200, std::string(weft::observe::kMetricsContentType),
                                      weft::observe::render_metrics(weft::observe::gather_metrics(sources))};
    });
    // The live page (/ui) and its feeds, from the state feed declared above.
    weft::observe::add_ui_routes(*observe, state_feed);
    try {
      observe->start();
    } catch (const std::runtime_error& e) {
      throw UsageError(std::string("cannot listen on --metrics-addr ") + e.what());
    }
    spdlog::info("metrics on http://{}/metrics", observe_address(observe->local_endpoint()));
  }
  // Claiming the socket first makes a second agent started by mistake fail
  // here, before its reconcile() removes kernel objects the running agent
  // owns. Nothing is served until io.run(), so clients that connect during
  // reconcile wait in the listen backlog and see the reconciled state.
  server.start();

  // Installed before reconcile() so a stop request during it waits for it to
  // finish instead of killing the agent halfway through changing the kernel.
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
    if (ec) return;
    spdlog::info("{}: shutting down; networks stay in place", ::strsignal(signal_number));
    // First: a scrape waits on the cluster's thread, which stops next.
    if (observe) observe->stop();
    server.stop();
    if (state_poller) state_poller->stop();
    event_watcher.stop();
    cluster.stop();
    io.stop();
  });

  networks.reconcile();
  // After the networks: it releases virtual IPs the network manager still
  // holds for services a crash kept from being recorded.
  services.reconcile();
  // After both: adopts the tasks still running, tears down the others.
  tasks.reconcile();
  // The node's service load balancer: eBPF or nftables, ids and pins from
  // the last run. The service manager drives it through a
  // ServiceDataplaneDriver (control/services/service_dataplane_driver.h).
  lb_dataplane.emplace(weft::control::services::ServiceDataplane::open(lb_options));
  services.set_load_balancer(&*lb_dataplane);
  ready.dataplane = &*lb_dataplane;
  // After reconcile: the cluster publishes what this node really has.
  cluster.start();
  ready.cluster = &cluster;
  // The nftables load balancer SNATs balanced flows to an address of this
  // node in each network, so backends on other nodes answer through it; eBPF
  // needs none (and releases those of an earlier nftables run). After the
  // cluster started (a resumed swarm member allocates only from the ranges
  // it holds) and before the first apply (which would otherwise reopen the
  // tables without it).
  networks.set_node_lb_addresses(lb_dataplane->kind() == "nftables");
  // After the cluster has loaded the tables it saved (remote services and
  // backends): the driver's first apply removes from the maps whatever the
  // view lacks, which would reset those flows.
  lb_driver.emplace(*lb_dataplane, [&services] { return services.lb_view(); });
  ready.driver = &*lb_driver;
  services.on_change([&lb_driver] { lb_driver->changed(); });
  // Also after the cluster start, so the first sync already has the names
  // of other nodes' services and endpoints the cluster saved; then on every
  // change of endpoints (here and elsewhere), networks and services. An
  // attach or detach waits for its sync: once it returns, the namespace is
  // served (or no longer) and its names answer (or are gone) on this node.
  dns.emplace(dns_config);
  ready.dns = &*dns;
  dns_driver.emplace(*dns, [&networks, &services] { return dns_inputs(networks, services); });
  networks.on_endpoints_changed([&dns_driver] { dns_driver->changed(); });
  networks.on_networks_changed([&dns_driver] { dns_driver->changed(); });
  services.on_change([&dns_driver] { dns_driver->changed(); });
  networks.after_local_attach_or_detach([&dns_driver] { dns_driver->sync_now(std::chrono::seconds(2)); });
  tasks.start();
  state_poller.emplace(state_feed, std::chrono::milliseconds(500));

  // Docker events: remote changes are compared at once, a local attach or
  // detach before it returns (so a short-lived endpoint is reported too).
  networks.on_endpoints_changed([&event_watcher] { event_watcher.changed(); });
  networks.on_networks_changed([&event_watcher] { event_watcher.changed(); });
  services.on_change([&event_watcher] { event_watcher.changed(); });
  networks.after_local_attach_or_detach([&event_watcher] {
    try {
      event_watcher.poll_networks();
    } catch (const std::exception& e) {
      spdlog::debug("events: listing failed: {}", e.what());
    }
  });
  event_watcher.start();

  io.run();
  // First: its handlers read the modules that go below.
  if (observe) observe->stop();
  if (state_poller) state_poller->stop();
  event_watcher.stop();
  tasks.stop();  // the tasks themselves keep running
  lb_driver->stop();
  dns_driver->stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  AgentConfig& config = options.config;

  CLI::App app{"weftd: the weft agent of one node", "weftd"};
  app.set_version_flag("--version", "weftd version " + std::string(weft::control::api::kWeftVersion));
  app.add_option("--node-name", config.node_name, "Name of this node (default: the host name)");
  app.add_option("--advertise-addr", config.advertise_addr,
                 "IPv4 address other nodes reach this one at (default: the default route's interface address)");
  app.add_option("--api-socket", config.api_socket, "Unix socket of the local API")->capture_default_str();
  app.add_option("--state-dir", config.state_dir, "Directory of the agent's state")->capture_default_str();
  app.add_option("--bpf-pin-dir", config.bpf_pin_dir, "Where BPF objects are pinned")->capture_default_str();
  app.add_option("--log-level", options.log_level, "Log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--default-addr-pool", config.default_addr_pool, "Pool that network subnets come from")
      ->capture_default_str();
  app.add_option("--default-addr-pool-mask-length", config.default_addr_pool_mask_length,
                 "Prefix length of subnets taken from the pool")
      ->capture_default_str();
  app.add_option("--bind", options.bind, "Gossip listen address, UDP and TCP (ADDR:PORT)")->capture_default_str();
  app.add_option("--join", options.join, "Gossip address of a swarm node to join at start (repeatable)");
  app.add_option("--key-file", options.key_file, "File holding the gossip key (base64); joins or starts a swarm at start");
  // Durations take a unit, as serf's and Docker's flags do: 500ms, 2s, 1m.
  const auto duration = CLI::AsNumberWithUnit(
      std::map<std::string, std::int64_t>{{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}},
      CLI::AsNumberWithUnit::UNIT_REQUIRED, "DURATION");
  app.add_option("--gossip-profile", options.gossip_profile,
                 "memberlist timing profile: lan, wan or local (as serf's -profile)")
      ->capture_default_str();
  app.add_option("--probe-interval", options.probe_interval_ms, "Failure-detection probe interval (e.g. 1s)")
      ->transform(duration);
  app.add_option("--probe-timeout", options.probe_timeout_ms, "Wait for a probe's ack (e.g. 500ms)")->transform(duration);
  app.add_option("--gossip-interval", options.gossip_interval_ms, "Gossip round interval (e.g. 200ms)")
      ->transform(duration);
  app.add_option("--push-pull-interval", options.push_pull_interval_ms,
                 "Anti-entropy full exchange interval (e.g. 30s), scaled up past 32 nodes")
      ->transform(duration);
  app.add_option("--suspicion-mult", options.suspicion_mult, "Suspicion timeout multiplier")->check(CLI::Range(1, 100));
  app.add_option("--retransmit-mult", options.retransmit_mult, "Gossip retransmit multiplier")->check(CLI::Range(1, 100));
  app.add_option("--tombstone-lifetime", options.tombstone_lifetime_ms,
                 "How long a deleted endpoint or task entry is remembered (e.g. 30m)")
      ->transform(duration);
  app.add_option("--cluster-tombstone-lifetime", options.cluster_tombstone_lifetime_ms,
                 "How long a deleted network, service or address range is remembered, so that a node away "
                 "for less than this cannot bring it back (e.g. 168h; default 168h)")
      ->transform(duration);
  app.add_option("--max-stream-size", options.max_stream_size,
                 "Largest gossip TCP message accepted, with a unit (e.g. 16MiB; default 16MiB)")
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--max-inbound-streams", options.max_inbound_streams,
                 "Gossip TCP connections served at once; more are closed at once (default 64)")
      ->check(CLI::Range(1, 4096));
  // The service load balancer. Map sizes must stay the same across restarts
  // while maps are pinned (a different size is refused at start).
  app.add_option("--lb-backend", options.lb_backend,
                 "Service load balancer: ebpf, nftables, or auto (eBPF when its programs load)")
      ->check(CLI::IsMember({"ebpf", "nftables", "auto"}))
      ->capture_default_str();
  app.add_option("--lb-max-services", options.lb_max_services, "Services x networks the load balancer holds")
      ->check(CLI::Range(2, 16384))  // the eBPF Maglev pool takes ~8 KiB each, allocated at start
      ->capture_default_str();
  app.add_option("--lb-max-backends", options.lb_max_backends, "Service backends the load balancer holds")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  app.add_option("--lb-conntrack-entries", options.lb_conntrack_entries,
                 "Size of the eBPF conntrack map (one entry per flow; two to a backend behind several VIPs)")
      ->check(CLI::Range(1024, 1 << 26))
      ->capture_default_str();
  app.add_option("--lb-tcp-timeout", options.lb_tcp_timeout_s, "Idle timeout of established TCP flows, seconds")
      ->check(CLI::Range(1, 30 * 24 * 3600))
      ->capture_default_str();
  app.add_option("--lb-udp-timeout", options.lb_udp_timeout_s, "Idle timeout of UDP flows, seconds")
      ->check(CLI::Range(1, 24 * 3600))
      ->capture_default_str();
  // The embedded DNS at 127.0.0.11 in every attached namespace.
  app.add_option("--dns-ttl", options.dns_ttl_s, "TTL of the names weft answers, seconds")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  app.add_option("--dns-upstream", options.dns_upstreams,
                 "Resolver for other names, IPv4[:PORT] (repeatable; default: the nameservers of /etc/resolv.conf)");
  app.add_option("--dns-timeout", options.dns_timeout_ms,
                 "How long a forwarded query waits for one upstream (e.g. 2s, 500ms; default 2s)")
      ->transform(duration);
  app.add_option("--dns-search", options.dns_search,
                 "Search domain written to the namespaces' resolv.conf (repeatable)");
  app.add_option("--metrics-addr", options.metrics_addr,
                 "Serve Prometheus metrics (/metrics) and the live page (/ui) over HTTP on ADDR:PORT, e.g. 192.0.2.1:9323 (default: off)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::Error& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : 2;
  }
  weft::control::cluster::ClusterConfig cluster_config;
  weft::control::services::ServiceDataplaneOptions lb_options;
  weft::control::discovery::DnsAgentConfig dns_config;
  std::optional<boost::asio::ip::tcp::endpoint> metrics_endpoint;
  try {
    complete_and_validate(config);
    auto [bind_addr, bind_port] = parse_host_port(options.bind, "--bind", true);
    for (const auto& peer : options.join) parse_host_port(peer, "--join", false);
    cluster_config = weft::control::cluster::ClusterConfig{.node_name = config.node_name,
                                                           .advertise_addr = config.advertise_addr,
                                                           .state_dir = config.state_dir,
                                                           .bind_addr = bind_addr,
                                                           .bind_port = bind_port,
                                                           .join = options.join,
                                                           .key_file = options.key_file,
                                                           .gossip_timings = gossip_timings(options)};
    if (options.tombstone_lifetime_ms) {
      if (*options.tombstone_lifetime_ms < 1000) throw UsageError("--tombstone-lifetime must be at least 1s");
      cluster_config.tombstone_lifetime =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::milliseconds(*options.tombstone_lifetime_ms));
    }
    if (options.cluster_tombstone_lifetime_ms) {
      if (*options.cluster_tombstone_lifetime_ms < 1000)
        throw UsageError("--cluster-tombstone-lifetime must be at least 1s");
      cluster_config.cluster_tombstone_lifetime = std::chrono::duration_cast<std::chrono::seconds>(
          std::chrono::milliseconds(*options.cluster_tombstone_lifetime_ms));
    }
    lb_options = lb_dataplane_options(options);
    dns_config = dns_agent_config(options);
    if (!options.metrics_addr.empty()) {
      try {
        metrics_endpoint = weft::observe::parse_listen_address(options.metrics_addr);
      } catch (const weft::observe::ListenAddressError& e) {
        throw UsageError(std::string("--metrics-addr: ") + e.what());
      }
    }
  } catch (const UsageError& e) {
    std::cerr << "weftd: " << e.what() << '\n';
    return 2;
  }

  set_up_logging(config.node_name, options.log_level);
  // Large buffers (gossip streams from peers, push/pull states) come from
  // mmap and go back to the system when freed. Left alone, glibc raises this
  // threshold after the first such free and keeps later ones in its heap.
  ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  // Asio already sends with MSG_NOSIGNAL; this covers any other write to a
  // peer that went away.
  std::signal(SIGPIPE, SIG_IGN);

  try {
    return run(config, cluster_config, lb_options, dns_config, metrics_endpoint);
  } catch (const UsageError& e) {
    std::cerr << "weftd: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
}
