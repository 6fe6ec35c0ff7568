// The agent side of the embedded DNS: one io_context thread serving the
// responder (dns::Server) on a UDP and a TCP socket at 127.0.0.11:53 inside
// every namespace with an endpoint, answering from a ClusterNameView, and
// for named namespaces /etc/netns/NAME/resolv.conf pointing at it.
// Every method is safe from any thread, logs its errors and never throws
// past its signature (the constructor refuses a bad configuration).
//
// Bounded: at most `max_namespaces` (default 1024) namespaces, each costing
// two descriptors (plus TCP connections, 128 at most in all).
//
// The sockets hold a reference to their namespace: a namespace stays alive
// (with its eth0) until remove_namespace(), so detach must call it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "control/discovery/cluster_name_view.h"
#include "dns/netns_listener.h"
#include "dns/resolv_conf.h"
#include "dns/server.h"

namespace weft::control::discovery {

struct DnsAgentConfig {
  std::string node_name;  // in the resolv.conf marker
  std::string state_dir;  // in the resolv.conf marker
  uint32_t ttl_seconds = 5;
  // "IP[:PORT]" (weftd --dns-upstream); empty: the nameservers of
  // `host_resolv_conf` read at start, without 127.0.0.0/8 ones (they would be
  // this node's own stub resolver, unreachable from the agent's namespace or
  // looping back to us).
  std::vector<std::string> upstreams;
  std::filesystem::path host_resolv_conf = "/etc/resolv.conf";
  std::chrono::milliseconds timeout{2000};  // per upstream
  std::vector<std::string> search_domains;  // resolv.conf `search`
  std::filesystem::path resolv_root = "/etc/netns";
  std::size_t max_namespaces = 1024;
  dns::ListenAddress listen;  // 127.0.0.11:53
};

// The nameservers of a resolv.conf usable as upstreams (IPv4, not
// 127.0.0.0/8), at most 8; the skipped ones are appended to `skipped`.
std::vector<boost::asio::ip::udp::endpoint> upstreams_from_resolv_conf(const std::filesystem::path& path,
                                                                      std::vector<std::string>* skipped = nullptr);

// Everything the names and the served namespaces follow from: the
// replicated tables' current contents and this node's endpoints.
struct DnsInputs {
  std::vector<Service> services;
  std::vector<Endpoint> endpoints;        // all, local and remote
  // When set, all endpoints are these instead (the network manager's shared
  // snapshot: no copy of every endpoint per sync).
  std::shared_ptr<const EndpointSnapshot> shared_endpoints;
  std::vector<Network> networks;
  std::vector<Endpoint> local_endpoints;  // this node's: one context per namespace
};

class DnsAgent {
 public:
  // Throws std::invalid_argument for a malformed upstream or search domain.
  explicit DnsAgent(DnsAgentConfig config);
  // Stops serving. resolv.conf files stay: the namespaces keep pointing at
  // 127.0.0.11 and a restarted agent serves them again.
  ~DnsAgent();
  DnsAgent(const DnsAgent&) = delete;
  DnsAgent& operator=(const DnsAgent&) = delete;

  // Serves `context` (see namespace_context) in the namespace at
  // `netns_path`; when `netns_ref` names a namespace under /run/netns (a
  // bare name, or /run/netns/NAME) also writes /etc/netns/NAME/resolv.conf. Idempotent: the same context and
  // path again is a no-op; another path replaces the old sockets. False
  // when the sockets could not be opened (logged); a resolv.conf that could
  // not be written is logged only (the sockets serve anyway).
  bool add_namespace(const std::string& context, const std::string& netns_ref,
                     const std::filesystem::path& netns_path);
  // Closes the context's sockets (and TCP connections) and removes its
  // resolv.conf if it is ours. Unknown contexts are ignored.
  void remove_namespace(const std::string& context);
  // Stops serving every namespace whose path is gone or names another
  // namespace now (deleted without a detach: `ip netns del`, a container
  // that exited). Our sockets would otherwise keep it alive, with its eth0.
  // sync() calls it; the wiring may also call it on a timer. Returns the
  // contexts dropped.
  std::vector<std::string> prune();
  // Swaps in the names to answer from; returns when queries see them.
  void publish(const Snapshot& snapshot);

  // The one call for the wiring, after any change to services, endpoints
  // or networks (and once at start, after the network manager reconciled):
  // publishes the names, then serves each namespace of `local_endpoints`
  // not yet served (context namespace_context(netns), the endpoint's netns
  // as reference) and stops serving those without endpoints left. A
  // namespace whose sockets could not be opened is not retried (nor logged
  // again) until it has left the inputs once. Calls are serialised; `read`
  // runs under that lock, so the last call publishes the latest state even
  // when changes race. Do not call it while holding a lock `read` takes.
  void sync(const std::function<DnsInputs()>& read);
  void sync(const DnsInputs& inputs);

  std::size_t namespaces() const;
  bool serves(const std::string& context) const;
  std::vector<boost::asio::ip::udp::endpoint> upstreams() const { return upstreams_; }
  dns::ServerStats stats();
  // The server's query counters; readable from any thread while this agent lives.
  const dns::QueryMetrics* query_metrics() const { return server_ ? &server_->metrics() : nullptr; }
  const ClusterNameView& view() const { return view_; }

 private:
  struct Attached {
    std::string netns_ref;
    std::filesystem::path netns_path;
    std::string netns_name;    // under /run/netns, if it is a named one
    dev_t device = 0;          // the namespace the sockets live in
    ino_t inode = 0;
    bool resolv_conf = false;  // we wrote /etc/netns/<netns_name>/resolv.conf
  };
  void remove_locked(const std::string& context, const Attached& attached);
  // Removes this agent's resolv.conf files of named namespaces not in
  // `keep`: left by a kill (a stop keeps them on purpose) for a namespace
  // that went meanwhile, or whose endpoint the start's reconcile removed.
  // Files of others (no marker of this agent) stay. At the first sync.
  void sweep_resolv_confs(const std::set<std::string>& keep);
  // Runs `work` on the io thread and waits for it (5 s at most).
  bool on_io(std::function<void()> work);

  DnsAgentConfig config_;
  std::vector<boost::asio::ip::udp::endpoint> upstreams_;
  dns::ResolvConfFiles resolv_conf_;
  ClusterNameView view_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::unique_ptr<dns::Server> server_;
  std::thread thread_;

  mutable std::mutex mutex_;
  std::map<std::string, Attached> attached_;
  std::mutex sync_mutex_;  // taken before mutex_, never after
  std::set<std::string> failed_;  // contexts sync() could not serve: not retried while they stay
  bool swept_ = false;            // sweep_resolv_confs() ran (first sync)
};

}  // namespace weft::control::discovery
