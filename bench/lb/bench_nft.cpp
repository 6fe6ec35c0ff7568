// bench_nft: time to program services into the nftables load balancer and
// to change one backend with them present, against a kube-proxy-style
// iptables-restore of the same services (iptables-nft and, if the kernel
// has ip_tables, iptables-legacy). Runs in a private network namespace of
// its own (unshare), so the host's firewall is never touched. Needs root.
//
//   bench_nft [--services N] [--backends M] [--changes K] [--no-iptables]
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dataplane/lb/nft_load_balancer.h"
#include "dataplane/netlink.h"

using namespace weft::dataplane;
using namespace weft::dataplane::lb;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// VIPs in 10.128.0.0/9, backends in 10.0.0.0/9: one /8 on the bridge.
std::uint32_t vip_of(std::uint32_t service) { return (10u << 24) | (1u << 23) | (service + 2); }
std::uint32_t backend_ip_of(std::uint32_t service, std::uint32_t j, std::uint32_t per) {
  return (10u << 24) | (service * per + j + 2);
}

// Runs `argv` with `input` on its stdin; returns the exit status (-1: could not run).
int run_with_input(const std::vector<std::string>& argv, const std::string& input) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    ::dup2(pipefd[0], 0);
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(pipefd[0]);
  std::size_t off = 0;
  while (off < input.size()) {
    const ssize_t n = ::write(pipefd[1], input.data() + off, input.size() - off);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  ::close(pipefd[1]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// kube-proxy's iptables mode: a chain per service and per endpoint, the
// endpoint picked by a cascade of `statistic --probability` rules.
std::string kube_proxy_rules(std::uint32_t services, std::uint32_t per, std::uint32_t skip_service = ~0u) {
  std::string chains, rules;
  chains.reserve(services * per * 40);
  rules.reserve(services * per * 160);
  chains += "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n";
  rules += "-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n";
  for (std::uint32_t s = 0; s < services; ++s) {
    const std::uint32_t n = s == skip_service ? per - 1 : per;
    chains += fmt::format(":KUBE-SVC-{} - [0:0]\n", s);
    rules += fmt::format("-A KUBE-SERVICES -d {}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-{}\n",
                         nft::ipv4_text(vip_of(s)), s);
    for (std::uint32_t j = 0; j < n; ++j) {
      chains += fmt::format(":KUBE-SEP-{}-{} - [0:0]\n", s, j);
      if (j + 1 < n)
        rules += fmt::format("-A KUBE-SVC-{} -m statistic --mode random --probability {:.5f} -j KUBE-SEP-{}-{}\n", s,
                             1.0 / (n - j), s, j);
      else
        rules += fmt::format("-A KUBE-SVC-{} -j KUBE-SEP-{}-{}\n", s, s, j);
      rules += fmt::format("-A KUBE-SEP-{}-{} -p tcp -m tcp -j DNAT --to-destination {}:80\n", s, j,
                           nft::ipv4_text(backend_ip_of(s, j, per)));
    }
  }
  return chains + rules + "COMMIT\n";
}

// kube-proxy's partial sync (--noflush): only the changed service's chains.
std::string kube_proxy_one_service(std::uint32_t s, std::uint32_t n) {
  std::string out = fmt::format("*nat\n:KUBE-SVC-{} - [0:0]\n", s);
  for (std::uint32_t j = 0; j < n; ++j)
    out += fmt::format("-A KUBE-SVC-{} -m statistic --mode random --probability {:.5f} -j KUBE-SEP-{}-{}\n", s,
                       1.0 / (n - j), s, j);
  return out + "COMMIT\n";
}

void bench_iptables(const char* tool, std::uint32_t services, std::uint32_t per, double nft_full, double nft_change) {
  auto start = Clock::now();
  if (run_with_input({tool}, kube_proxy_rules(services, per)) != 0) {
    fmt::print("{:<34} not available here (exit status non-zero)\n", tool);
    return;
  }
  const double full = ms_since(start);
  // One backend less for service 0: kube-proxy's partial sync rewrites the
  // service's chain (--noflush) ...
  start = Clock::now();
  const int partial_rc = run_with_input({tool, "--noflush"}, kube_proxy_one_service(0, per - 1));
  const double partial = ms_since(start);
  // ... its classic mode restores everything.
  start = Clock::now();
  const int resync_rc = run_with_input({tool}, kube_proxy_rules(services, per, 0));
  const double resync = ms_since(start);
  if (partial_rc != 0 || resync_rc != 0) fmt::print("{}: a change failed (exit {} / {})\n", tool, partial_rc, resync_rc);
  fmt::print("{:<34} full load {:9.1f} ms ({:.1f}x nft)   one change: full resync {:9.1f} ms ({:.0f}x nft), "
             "--noflush of one service {:7.2f} ms ({:.0f}x nft)\n",
             tool, full, full / nft_full, resync, resync / nft_change, partial, partial / nft_change);
  run_with_input({tool}, "*nat\nCOMMIT\n");  // leave the namespace's table empty for the next tool
}

}  // namespace

int main(int argc, char** argv) {
  std::uint32_t services = 10000, per = 10, changes = 200;
  bool iptables = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return static_cast<std::uint32_t>(std::stoul(argv[++i])); };
    if (a == "--services" && i + 1 < argc) services = next();
    else if (a == "--backends" && i + 1 < argc) per = next();
    else if (a == "--changes" && i + 1 < argc) changes = next();
    else if (a == "--no-iptables") iptables = false;
    else {
      std::fprintf(stderr, "usage: bench_nft [--services N] [--backends M] [--changes K] [--no-iptables]\n");
      return 2;
    }
  }
  if (per < 2 || services == 0 || services * per > (1u << 22)) {
    std::fprintf(stderr, "bench_nft: need 2+ backends and at most 4M backends in all\n");
    return 2;
  }
  if (::unshare(CLONE_NEWNET) != 0) {
    std::perror("bench_nft: unshare(CLONE_NEWNET) (needs root)");
    return 1;
  }
  {
    NetlinkSocket net;
    net.set_up("lo");
    net.create_bridge("br0");
    net.add_address("br0", *weft::dataplane::Ipv4::parse("10.0.0.1"), 8);
    net.set_up("br0");
  }
  NftOptions options;
  options.limits.max_services = services;
  options.limits.max_frontends = services;
  options.limits.max_backends = services * per + 1;
  auto start = Clock::now();
  auto lb = NftLoadBalancer::open(NetnsHandle::current(), options);
  const double open_ms = ms_since(start);

  std::vector<std::pair<Frontend, std::uint32_t>> frontends;
  std::vector<ServiceBackends> all;
  for (std::uint32_t s = 0; s < services; ++s) {
    frontends.push_back({Frontend{vip_of(s), 80, Protocol::tcp}, s});
    ServiceBackends sb{s, {}};
    for (std::uint32_t j = 0; j < per; ++j)
      sb.backends.push_back(
          {.id = s * per + j + 1, .ip = backend_ip_of(s, j, per), .mac = {}, .state = BackendState::active});
    all.push_back(std::move(sb));
  }
  start = Clock::now();
  lb.upsert_services(frontends);
  const double frontends_ms = ms_since(start);
  start = Clock::now();
  lb.set_backends(all);
  const double backends_ms = ms_since(start);
  const double full = frontends_ms + backends_ms;
  fmt::print("nftables: {} services x {} backends\n", services, per);
  fmt::print("{:<34} open {:.1f} ms, frontends+VIP routes {:.1f} ms, backends {:.1f} ms: full load {:.1f} ms\n",
             "weft nftables", open_ms, frontends_ms, backends_ms, full);

  // One backend change with all of them present: drain and re-activate a
  // backend of a different service each time.
  std::vector<double> samples;
  for (std::uint32_t i = 0; i < changes; ++i) {
    const std::uint32_t id = (i * 7919u) % (services * per) + 1;
    start = Clock::now();
    lb.set_backend_state(id, BackendState::draining);
    samples.push_back(ms_since(start));
    lb.set_backend_state(id, BackendState::active);
  }
  std::sort(samples.begin(), samples.end());
  const double median = samples[samples.size() / 2];
  fmt::print("{:<34} one backend change: median {:.3f} ms, p90 {:.3f} ms, max {:.3f} ms ({} changes)\n",
             "weft nftables", median, samples[samples.size() * 9 / 10], samples.back(), changes);
  if (iptables) {
    bench_iptables("iptables-nft-restore", services, per, full, median);
    bench_iptables("iptables-legacy-restore", services, per, full, median);
  }
  return 0;
}
