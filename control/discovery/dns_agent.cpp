#include "control/discovery/dns_agent.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <fstream>
#include <future>
#include <sstream>
#include <stdexcept>

#include "dns/forwarder.h"

namespace weft::control::discovery {

namespace asio = boost::asio;
using asio::ip::udp;

namespace {

constexpr std::size_t max_upstreams = 8;
constexpr std::chrono::seconds io_wait{5};

dns::ResolvConfConfig resolv_conf_config(const DnsAgentConfig& c) {
  dns::ResolvConfConfig r;
  r.root = c.resolv_root;
  r.node_name = c.node_name;
  r.state_dir = c.state_dir;
  r.nameserver = c.listen.address.to_string();
  r.search = c.search_domains;
  return r;
}

bool loopback(const udp::endpoint& e) { return (e.address().to_v4().to_uint() >> 24) == 127; }

std::vector<udp::endpoint> configured_upstreams(const DnsAgentConfig& c) {
  std::vector<udp::endpoint> out;
  if (c.upstreams.size() > max_upstreams)
    throw std::invalid_argument("at most " + std::to_string(max_upstreams) + " DNS upstreams");
  for (const auto& text : c.upstreams) {
    auto e = dns::parse_upstream(text);
    if (!e) throw std::invalid_argument("DNS upstream \"" + text + "\" is not IPv4[:PORT]");
    out.push_back(*e);
  }
  if (!out.empty()) return out;
  std::vector<std::string> skipped;
  out = upstreams_from_resolv_conf(c.host_resolv_conf, &skipped);
  for (const auto& s : skipped)
    spdlog::info("dns: nameserver {} of {} is not used as an upstream (loopback or not IPv4)", s,
                 c.host_resolv_conf.string());
  if (out.empty())
    spdlog::warn("dns: no upstream resolver (none usable in {}): names weft does not own get SERVFAIL",
                 c.host_resolv_conf.string());
  return out;
}

// The name under /run/netns a reference means (`ip netns` names), if any.
std::optional<std::string> named_namespace(const std::string& netns_ref) {
  constexpr std::string_view run_netns = "/run/netns/";
  std::string_view name = netns_ref;
  if (name.starts_with(run_netns)) name.remove_prefix(run_netns.size());
  if (name.empty() || name.find('/') != std::string_view::npos) return std::nullopt;
  return std::string(name);
}

}  // namespace

std::vector<udp::endpoint> upstreams_from_resolv_conf(const std::filesystem::path& path,
                                                      std::vector<std::string>* skipped) {
  std::vector<udp::endpoint> out;
  std::ifstream in(path);
  std::string line;
  // A resolv.conf is a few lines; a giant one is not read past 1000 lines.
  for (int n = 0; n < 1000 && std::getline(in, line); ++n) {
    std::istringstream words(line);
    std::string keyword, address;
    if (!(words >> keyword >> address) || keyword != "nameserver") continue;
    // No port in resolv.conf: "IP" only, so an IPv6 address is not read as IP:PORT.
    auto e = address.find(':') == std::string::npos ? dns::parse_upstream(address) : std::nullopt;
    if (!e || loopback(*e) || out.size() >= max_upstreams) {
      if (skipped) skipped->push_back(address);
      continue;
    }
    out.push_back(*e);
  }
  return out;
}

DnsAgent::DnsAgent(DnsAgentConfig config)
    : config_(std::move(config)),
      upstreams_(configured_upstreams(config_)),
      resolv_conf_(resolv_conf_config(config_)),
      work_(asio::make_work_guard(io_)) {
  dns::ResponderConfig responder;
  responder.ttl_seconds = config_.ttl_seconds;
  dns::ForwarderConfig forwarder;
  forwarder.upstreams = upstreams_;
  forwarder.timeout = config_.timeout;
  server_ = std::make_unique<dns::Server>(io_, view_, responder, std::move(forwarder));
  // The thread stays in the agent's namespace: forwarded queries leave from there.
  thread_ = std::thread([this] {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("dns: {} (the responder goes on)", e.what());
      }
    }
  });
}

DnsAgent::~DnsAgent() {
  asio::post(io_, [this] { server_->stop(); });
  work_.reset();
  io_.stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

bool DnsAgent::add_namespace(const std::string& context, const std::string& netns_ref,
                             const std::filesystem::path& netns_path) {
  std::lock_guard lock(mutex_);
  if (auto it = attached_.find(context); it != attached_.end()) {
    if (it->second.netns_path == netns_path && it->second.netns_ref == netns_ref) return true;
    remove_locked(context, it->second);
    attached_.erase(it);
  }
  if (attached_.size() >= config_.max_namespaces) {
    spdlog::warn("dns: not serving {}: already {} namespaces (the limit)", context, config_.max_namespaces);
    return false;
  }
  std::optional<dns::DnsSockets> sockets;
  try {
    sockets.emplace(dns::open_dns_sockets(io_, netns_path, config_.listen));
  } catch (const std::exception& e) {
    spdlog::warn("dns: not serving {}: {}", context, e.what());
    return false;
  }
  Attached attached{netns_ref, netns_path, {}, sockets->netns_device, sockets->netns_inode, false};
  // The server is the io thread's; the sockets go to it in order with any
  // earlier removal of the same context.
  asio::post(io_, [this, context, s = std::make_shared<dns::DnsSockets>(std::move(*sockets))]() mutable {
    server_->add_udp(std::move(s->udp), context);
    server_->add_tcp(std::move(s->tcp), context);
  });
  if (const auto name = named_namespace(netns_ref)) {
    attached.netns_name = *name;
    dns::ResolvConfFiles::Result result{dns::ResolvConfFiles::Outcome::failed, {}};
    try {
      result = resolv_conf_.write(*name);
    } catch (const std::exception& e) {
      result.error = e.what();
    }
    switch (result.outcome) {
      case dns::ResolvConfFiles::Outcome::written:
        attached.resolv_conf = true;
        break;
      case dns::ResolvConfFiles::Outcome::foreign:
        spdlog::info("dns: {}", result.error);
        break;
      case dns::ResolvConfFiles::Outcome::bad_name:
      case dns::ResolvConfFiles::Outcome::failed:
        spdlog::warn("dns: no resolv.conf for namespace {}: {}", *name, result.error);
        break;
    }
  }
  attached_.emplace(context, std::move(attached));
  spdlog::debug("dns: serving {} at {}:{}", context, config_.listen.address.to_string(), config_.listen.port);
  return true;
}

void DnsAgent::remove_namespace(const std::string& context) {
  std::lock_guard lock(mutex_);
  auto it = attached_.find(context);
  if (it == attached_.end()) return;
  remove_locked(context, it->second);
  attached_.erase(it);
}

void DnsAgent::remove_locked(const std::string& context, const Attached& attached) {
  // Waited for: the sockets hold the namespace, and a re-attach to the
  // same namespace must find 127.0.0.11:53 free again.
  on_io([this, context] { server_->remove_context(context); });
  if (attached.resolv_conf) {
    auto removal = resolv_conf_.remove(attached.netns_name);
    if (!removal.error.empty()) spdlog::warn("dns: {}", removal.error);
  }
  spdlog::debug("dns: no longer serving {}", context);
}

void DnsAgent::publish(const Snapshot& snapshot) {
  try {
    view_.publish(snapshot);
  } catch (const std::exception& e) {
    spdlog::error("dns: names not updated: {}", e.what());
  }
}

void DnsAgent::sync(const DnsInputs& inputs) {
  sync([&inputs]() -> DnsInputs { return inputs; });
}

void DnsAgent::sync(const std::function<DnsInputs()>& read) {
  std::lock_guard sync_lock(sync_mutex_);
  std::map<std::string, std::vector<Endpoint>> wanted;
  try {
    const DnsInputs inputs = read();
    wanted = group_by_namespace(inputs.local_endpoints);
    view_.publish(inputs.shared_endpoints
                      ? build_snapshot(inputs.services, inputs.shared_endpoints, inputs.networks, wanted)
                      : build_snapshot(inputs.services, inputs.endpoints, inputs.networks, wanted));
  } catch (const std::exception& e) {
    spdlog::error("dns: names not updated: {}", e.what());
    return;
  }
  if (!swept_) {
    swept_ = true;
    std::set<std::string> keep;
    for (const auto& [context, endpoints] : wanted)
      for (const auto& e : endpoints)
        if (const auto name = named_namespace(e.netns)) keep.insert(*name);
    sweep_resolv_confs(keep);
  }
  std::vector<std::string> gone;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [context, attached] : attached_)
      if (!wanted.contains(context)) gone.push_back(context);
  }
  for (const auto& context : gone) remove_namespace(context);
  prune();
  std::erase_if(failed_, [&](const std::string& context) { return !wanted.contains(context); });
  for (const auto& [context, endpoints] : wanted) {
    if (serves(context) || failed_.contains(context)) continue;
    // A bare name, when any endpoint used one, gets the namespace its resolv.conf.
    std::string ref = endpoints.front().netns;
    for (const auto& e : endpoints)
      if (named_namespace(e.netns)) ref = e.netns;
    if (!add_namespace(context, ref, context)) failed_.insert(context);
  }
}

void DnsAgent::sweep_resolv_confs(const std::set<std::string>& keep) {
  // Bounded: /etc/netns of a busy host holds a few thousand entries at most.
  constexpr std::size_t max_entries = 65536;
  std::error_code ec;
  std::vector<std::string> names;
  for (auto it = std::filesystem::directory_iterator(config_.resolv_root, ec);
       !ec && it != std::filesystem::directory_iterator() && names.size() < max_entries; it.increment(ec))
    names.push_back(it->path().filename().string());
  std::size_t removed = 0;
  for (const auto& name : names) {
    if (keep.contains(name) || !dns::ResolvConfFiles::valid_name(name)) continue;
    const auto removal = resolv_conf_.remove(name);  // only a file with our marker
    if (removal.removed) ++removed;
    if (!removal.error.empty()) spdlog::debug("dns: {}", removal.error);
  }
  if (removed > 0)
    spdlog::info("dns: removed {} resolv.conf file(s) under {} of namespaces no endpoint of this node is in",
                 removed, config_.resolv_root.string());
}

std::vector<std::string> DnsAgent::prune() {
  std::vector<std::string> gone;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [context, attached] : attached_) {
      struct stat now {};
      if (::stat(attached.netns_path.c_str(), &now) != 0 || now.st_dev != attached.device ||
          now.st_ino != attached.inode)
        gone.push_back(context);
    }
  }
  for (const auto& context : gone) {
    spdlog::info("dns: namespace of {} is gone; no longer serving it", context);
    remove_namespace(context);
  }
  return gone;
}

std::size_t DnsAgent::namespaces() const {
  std::lock_guard lock(mutex_);
  return attached_.size();
}

bool DnsAgent::serves(const std::string& context) const {
  std::lock_guard lock(mutex_);
  return attached_.contains(context);
}

bool DnsAgent::on_io(std::function<void()> work) {
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  asio::post(io_, [work = std::move(work), done] {
    work();
    done->set_value();
  });
  if (finished.wait_for(io_wait) == std::future_status::ready) return true;
  spdlog::error("dns: the responder thread did not answer within {} s", io_wait.count());
  return false;
}

dns::ServerStats DnsAgent::stats() {
  auto stats = std::make_shared<dns::ServerStats>();
  if (!on_io([this, stats] { *stats = server_->stats(); })) return {};
  return *stats;
}

}  // namespace weft::control::discovery
