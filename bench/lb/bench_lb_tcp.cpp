// bench_lb_tcp: short TCP connections per second (connect, one request, one
// reply, close) from a client endpoint, in one run, four ways:
//   direct       straight to one backend's IP, no load balancer anywhere
//   direct+bpf   the same with the eBPF programs attached (what traffic to
//                no VIP pays)
//   ebpf VIP     to a VIP balanced by the eBPF programs (LoadBalancer on the
//                client's host-side veth, as the agent attaches them)
//   nft VIP      to a VIP balanced by the nftables fallback (NftLoadBalancer
//                in the network's namespace)
//
// Layout as weft's overlay: a network namespace with bridge br0
// (10.0.0.1/24, bridge netfilter off), the client (10.0.0.2) and the
// backends (10.0.0.11...) in namespaces of their own on veths, MACs from
// their IPs. The backends' server is one epoll thread of this process
// (sockets made in the backend namespaces: each reads the request, writes
// the reply and closes), pinned to one CPU; the client is one epoll thread
// keeping --parallel connections going, pinned to the other. The modes are
// interleaved run by run (the order rotates); medians are printed with the
// ratios ebpf VIP / direct (target >= 0.95) and ebpf VIP / nft VIP
// (target > 1).
//
//   bench_lb_tcp [--backends 4] [--parallel 16] [--seconds 3] [--warmup-ms 500]
//                [--runs 5] [--client-cpu 0] [--server-cpu 1] [--direct-to-member 0|1]
//                [--modes direct,direct-bpf,ebpf,nft] [--conntrack-entries 262144]
//
// Needs root. Namespaces, bpffs and maps live in a private mount namespace
// (private_scratch.h): nothing outlives the process, even a SIGKILL.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bench/lb/private_scratch.h"
#include "dataplane/lb/load_balancer.h"
#include "dataplane/lb/nft_load_balancer.h"
#include "dataplane/netlink.h"
#include "dataplane/netns.h"
#include "dataplane/overlay.h"
#include "tests/support/scratch_netns.h"

extern "C" {
#include "ebpf/lb_abi.h"
}

namespace dp = weft::dataplane;
namespace dlb = weft::dataplane::lb;
using weft::bench::lb::PrivateScratch;
using Clock = std::chrono::steady_clock;

namespace {

std::atomic<bool> g_interrupted{false};
void on_signal(int) { g_interrupted = true; }

enum class Mode { direct, direct_bpf, ebpf_vip, nft_vip };
constexpr std::array<Mode, 4> kModes{Mode::direct, Mode::direct_bpf, Mode::ebpf_vip, Mode::nft_vip};
const char* name_of(Mode m) {
  switch (m) {
    case Mode::direct: return "direct";
    case Mode::direct_bpf: return "direct+bpf";
    case Mode::ebpf_vip: return "ebpf VIP";
    case Mode::nft_vip: return "nft VIP";
  }
  return "?";
}
// As --modes spells them.
const char* mode_flag(Mode m) {
  switch (m) {
    case Mode::direct: return "direct";
    case Mode::direct_bpf: return "direct-bpf";
    case Mode::ebpf_vip: return "ebpf";
    case Mode::nft_vip: return "nft";
  }
  return "?";
}

struct Options {
  std::uint32_t backends = 4;
  std::uint32_t parallel = 16;
  double seconds = 3;
  std::uint32_t warmup_ms = 500;
  std::uint32_t runs = 5;
  int client_cpu = 0;
  int server_cpu = 1;
  // Direct modes connect to the first backend of the service instead of a
  // server of their own. The backend then sees a direct connection from a
  // client port that carried a balanced flow seconds ago: its replies match
  // that flow's conntrack entry (closing, 10 s) and are reverse-NATed to the
  // VIP, so the connection fails (direct+bpf stalls).
  bool direct_to_member = false;
  std::vector<Mode> modes{kModes.begin(), kModes.end()};
  std::uint32_t conntrack_entries = dlb::Limits{}.conntrack_entries;
};

constexpr std::uint32_t ip4(std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t d) {
  return (a << 24) | (b << 16) | (c << 8) | d;
}
constexpr std::uint32_t kGateway = ip4(10, 0, 0, 1);
constexpr std::uint32_t kClient = ip4(10, 0, 0, 2);
// The direct modes' server: not a backend of the services (see
// --direct-to-member for why that matters).
constexpr std::uint32_t kDirectServer = ip4(10, 0, 0, 10);
constexpr std::uint32_t kFirstBackend = ip4(10, 0, 0, 11);
constexpr std::uint32_t kEbpfVip = ip4(10, 0, 0, 100);
constexpr std::uint32_t kNftVip = ip4(10, 0, 0, 101);
constexpr std::uint16_t kPort = 80;
constexpr std::uint32_t kService = 1;
constexpr char kRequest[] = "GET /\n";
constexpr char kReply[] = "OK\n";

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
    throw std::runtime_error("cannot pin a thread to CPU " + std::to_string(cpu));
  }
}

sockaddr_in addr_of(std::uint32_t ip, std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(ip);
  return sa;
}

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// The network namespace, bridge, client and backend endpoints.
class Testbed {
 public:
  Testbed(const std::filesystem::path& dir, std::uint32_t backends) : namespaces_(dir) {
    net_.emplace(dp::NetnsHandle::open(namespaces_.make("net").string()));
    {
      dp::NetlinkSocket net(*net_);
      net.set_up("lo");
      net.create_bridge("br0");
      net.add_address("br0", dp::Ipv4{kGateway}, 24);
      net.set_up("br0");
    }
    dp::disable_bridge_netfilter(*net_);
    client_.emplace(add_endpoint("client", kClient));
    servers_.push_back(add_endpoint("direct", kDirectServer));
    for (std::uint32_t i = 0; i < backends; ++i) {
      servers_.push_back(add_endpoint(fmt::format("b{}", i + 1), kFirstBackend + i));
    }
    client_ifindex_ = dp::NetlinkSocket(*net_).get_link("vclient").ifindex;
  }

  const dp::NetnsHandle& net() const { return *net_; }
  const dp::NetnsHandle& client() const { return *client_; }
  // The direct server, then the backends.
  const std::vector<dp::NetnsHandle>& servers() const { return servers_; }
  int client_ifindex() const { return client_ifindex_; }

 private:
  dp::NetnsHandle add_endpoint(const std::string& name, std::uint32_t ip) {
    auto ns = dp::NetnsHandle::open(namespaces_.make(name).string());
    dp::NetlinkSocket net(*net_);
    net.create_veth({.name = "v" + name,
                     .peer_name = "eth0",
                     .peer_netns_fd = ns.fd(),
                     .mtu = 0,
                     .peer_mac = dp::MacAddress::from_ipv4(dp::Ipv4{ip})});
    net.set_master("v" + name, "br0");
    net.set_up("v" + name);
    dp::NetlinkSocket inside(ns);
    inside.set_up("lo");
    inside.add_address("eth0", dp::Ipv4{ip}, 24);
    inside.set_up("eth0");
    inside.replace_default_route(dp::Ipv4{kGateway}, "eth0");
    return ns;
  }

  weft::testing::ScratchNamespaces namespaces_;
  std::optional<dp::NetnsHandle> net_, client_;
  std::vector<dp::NetnsHandle> servers_;
  int client_ifindex_ = 0;
};

// One epoll thread serving every backend's listener: read the request,
// write the reply, close (the server closes first, as an HTTP/1.0 server).
class Server {
 public:
  Server(const std::vector<dp::NetnsHandle>& backends, int cpu) : accepted_(backends.size()) {
    epoll_ = dp::UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) throw_errno("epoll_create1");
    for (std::size_t i = 0; i < backends.size(); ++i) {
      dp::UniqueFd fd = dp::open_socket_in(backends[i], AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      const int one = 1;
      ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in sa = addr_of(INADDR_ANY, kPort);
      if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) throw_errno("bind :80");
      if (::listen(fd.get(), 4096) != 0) throw_errno("listen");
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = kListenerTag | i;
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) throw_errno("epoll_ctl listener");
      listeners_.push_back(std::move(fd));
    }
    thread_ = std::thread([this, cpu] { loop(cpu); });
  }
  ~Server() {
    stop_ = true;
    thread_.join();
    for (int fd : open_) ::close(fd);
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::vector<std::uint64_t> accepted() const {
    std::vector<std::uint64_t> counts;
    for (const auto& a : accepted_) counts.push_back(a.load());
    return counts;
  }
  std::string error() const { return failed_ ? error_ : std::string(); }
  // The server thread's CPU clock (its softirq work included: the kernel
  // here has no IRQ time accounting, so packet processing raised by its own
  // sends is charged to it).
  clockid_t cpu_clock() {
    clockid_t id;
    if (pthread_getcpuclockid(thread_.native_handle(), &id) != 0) throw std::runtime_error("pthread_getcpuclockid");
    return id;
  }

 private:
  static constexpr std::uint64_t kListenerTag = 1ULL << 40;

  void loop(int cpu) {
    try {
      pin_to_cpu(cpu);
      std::array<epoll_event, 256> events;
      while (!stop_) {
        const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), 100);
        if (n < 0 && errno != EINTR) throw_errno("epoll_wait (server)");
        for (int e = 0; e < n; ++e) {
          const std::uint64_t tag = events[static_cast<std::size_t>(e)].data.u64;
          if (tag & kListenerTag) {
            accept_all(static_cast<std::size_t>(tag & ~kListenerTag));
          } else {
            serve(static_cast<int>(tag), false);
          }
        }
      }
    } catch (const std::exception& e) {
      error_ = e.what();
      failed_ = true;
    }
  }

  void accept_all(std::size_t backend) {
    for (;;) {
      const int fd = ::accept4(listeners_[backend].get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EAGAIN || errno == ECONNABORTED || errno == EINTR) return;
        throw_errno("accept4");
      }
      accepted_[backend].fetch_add(1, std::memory_order_relaxed);
      open_.push_back(fd);
      serve(fd, true);
    }
  }

  // The request usually arrives right after the handshake: try at once,
  // wait for it otherwise.
  void serve(int fd, bool fresh) {
    char buf[64];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EAGAIN) {
      if (fresh) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = static_cast<std::uint64_t>(fd);
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl conn");
      }
      return;
    }
    if (n > 0) ::send(fd, kReply, sizeof kReply - 1, MSG_NOSIGNAL);
    close_conn(fd);
  }

  void close_conn(int fd) {
    auto it = std::find(open_.rbegin(), open_.rend(), fd);
    if (it != open_.rend()) open_.erase(std::next(it).base());
    ::close(fd);
  }

  dp::UniqueFd epoll_;
  std::vector<dp::UniqueFd> listeners_;
  std::vector<std::atomic<std::uint64_t>> accepted_;
  std::vector<int> open_;  // accepted and not closed yet
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::string error_;
  std::thread thread_;
};

struct ClientResult {
  std::uint64_t completed = 0;  // in the measured window
  std::uint64_t errors = 0;
  std::uint64_t slow = 0;  // took longer than 200 ms (a lost SYN: 1 s)
  double seconds = 0;
  double p50_us = 0, p99_us = 0;
  // CPU time of the client and server threads over the measured window,
  // per completed connection: the cost, whatever else runs on the machine.
  double client_cpu_us = 0, server_cpu_us = 0;
  double cpu_us_per_conn() const {
    return completed ? (client_cpu_us + server_cpu_us) / static_cast<double>(completed) : 0;
  }
  double per_second() const { return seconds > 0 ? static_cast<double>(completed) / seconds : 0; }
};

// `parallel` connections to dst:port, each connect -> request -> reply +
// close by the server -> close, then a new one; from one thread in the
// client's namespace pinned to `cpu`.
double cpu_us(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

ClientResult run_client(const dp::NetnsHandle& ns, std::uint32_t dst, clockid_t server_clock, const Options& opt) {
  ClientResult result;
  std::string error;
  std::thread worker([&] {
    try {
      pin_to_cpu(opt.client_cpu);
      dp::NetnsGuard inside(ns);
      dp::UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
      if (!epoll) throw_errno("epoll_create1");
      struct Conn {
        int fd = -1;
        bool connected = false;
        Clock::time_point started;
      };
      std::vector<Conn> conns(opt.parallel);
      const sockaddr_in sa = addr_of(dst, kPort);
      std::vector<std::uint32_t> latencies_us;
      latencies_us.reserve(1 << 20);
      const auto begin = Clock::now();
      const auto measure_from = begin + std::chrono::milliseconds(opt.warmup_ms);
      const auto end = measure_from + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(opt.seconds));

      auto open_conn = [&](std::size_t slot) {
        Conn& c = conns[slot];
        c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) throw_errno("socket");
        c.connected = false;
        c.started = Clock::now();
        if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) {
          throw_errno("connect");
        }
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.u64 = slot;
        if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, c.fd, &ev) != 0) throw_errno("epoll_ctl client");
      };
      auto finish = [&](std::size_t slot, bool ok) {
        Conn& c = conns[slot];
        ::close(c.fd);
        c.fd = -1;
        const auto now = Clock::now();
        if (!ok) {
          ++result.errors;
        } else if (c.started >= measure_from && now <= end) {
          ++result.completed;
          const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - c.started).count();
          latencies_us.push_back(static_cast<std::uint32_t>(us));
          if (us > 200000) ++result.slow;
        }
        if (now < end && !g_interrupted) open_conn(slot);
      };

      for (std::size_t i = 0; i < conns.size(); ++i) open_conn(i);
      std::array<epoll_event, 256> events;
      std::size_t open_count = conns.size();
      enum { before_window, in_window, after_window } window = before_window;
      while (open_count > 0) {
        const int n = ::epoll_wait(epoll.get(), events.data(), static_cast<int>(events.size()), 100);
        if (n < 0 && errno != EINTR) throw_errno("epoll_wait (client)");
        const auto now = Clock::now();
        if (window == before_window && now >= measure_from) {
          result.client_cpu_us = -cpu_us(CLOCK_THREAD_CPUTIME_ID);
          result.server_cpu_us = -cpu_us(server_clock);
          window = in_window;
        } else if (window == in_window && now >= end) {
          result.client_cpu_us += cpu_us(CLOCK_THREAD_CPUTIME_ID);
          result.server_cpu_us += cpu_us(server_clock);
          window = after_window;
        }
        for (int e = 0; e < n; ++e) {
          const auto slot = static_cast<std::size_t>(events[static_cast<std::size_t>(e)].data.u64);
          Conn& c = conns[slot];
          if (c.fd < 0) continue;
          if (!c.connected) {
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0 || ::send(c.fd, kRequest, sizeof kRequest - 1, MSG_NOSIGNAL) < 0) {
              finish(slot, false);
              continue;
            }
            c.connected = true;
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u64 = slot;
            if (::epoll_ctl(epoll.get(), EPOLL_CTL_MOD, c.fd, &ev) != 0) throw_errno("epoll_ctl mod");
            continue;
          }
          char buf[64];
          for (;;) {
            const ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
            if (r > 0) continue;  // the reply; its end is the server's FIN
            if (r == 0) {
              finish(slot, true);
            } else if (errno != EAGAIN) {
              finish(slot, false);
            }
            break;
          }
        }
        // Past the end (or a stalled connection past it): stop what is left.
        if (now >= end + std::chrono::seconds(2) || g_interrupted) {
          for (auto& c : conns) {
            if (c.fd >= 0) ::close(c.fd), c.fd = -1;
          }
        }
        open_count = static_cast<std::size_t>(
            std::count_if(conns.begin(), conns.end(), [](const Conn& c) { return c.fd >= 0; }));
      }
      result.seconds = opt.seconds;
      if (!latencies_us.empty()) {
        std::sort(latencies_us.begin(), latencies_us.end());
        result.p50_us = latencies_us[latencies_us.size() / 2];
        result.p99_us = latencies_us[latencies_us.size() * 99 / 100];
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  worker.join();
  if (!error.empty()) throw std::runtime_error("client: " + error);
  return result;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string loadavg() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return "?";
  char buf[64] = {};
  if (!std::fgets(buf, sizeof buf, f)) buf[0] = 0;
  std::fclose(f);
  std::string s(buf);
  const auto third_space = s.find(' ', s.find(' ', s.find(' ') + 1) + 1);
  return s.substr(0, third_space);
}

void run(const PrivateScratch& scratch, const Options& opt) {
  Testbed bed(scratch.dir(), opt.backends);
  std::vector<dlb::Backend> backends;
  for (std::uint32_t i = 0; i < opt.backends; ++i) {
    const std::uint32_t ip = kFirstBackend + i;
    backends.push_back({i + 1, ip, dlb::mac_from_ip(ip), dlb::BackendState::active});
  }

  dlb::Limits limits;
  limits.max_services = 4;
  limits.max_frontends = 4;
  limits.max_backends = opt.backends + 2;
  limits.conntrack_entries = opt.conntrack_entries;
  dlb::LoadBalancer ebpf = dlb::LoadBalancer::open(scratch.bpffs() / "lb", limits);
  ebpf.upsert_service({kEbpfVip, kPort, dlb::Protocol::tcp}, kService);
  ebpf.set_backends(kService, backends);

  dlb::NftOptions nft_options;
  nft_options.limits.max_services = 4;
  nft_options.limits.max_frontends = 4;
  nft_options.limits.max_backends = opt.backends + 2;
  // Bridged traffic (direct, eBPF) never reaches this table: bridge
  // netfilter is off, so it stays in place for all runs.
  dlb::NftLoadBalancer nft = dlb::NftLoadBalancer::open(bed.net(), nft_options);
  nft.upsert_service({kNftVip, kPort, dlb::Protocol::tcp}, kService);
  nft.set_backends(kService, backends);

  Server server(bed.servers(), opt.server_cpu);

  auto attach = [&] {
    dp::NetnsGuard in_net(bed.net());
    ebpf.attach(bed.client_ifindex()).release();
  };
  auto detach = [&] {
    dp::NetnsGuard in_net(bed.net());
    dlb::LoadBalancer::detach(bed.client_ifindex());
  };

  std::printf("bench_lb_tcp: %u backends, %u parallel connections, %.1f s per run after %u ms warm-up, %u runs; "
              "client on CPU %d, server on CPU %d; eBPF conntrack map %u entries; load average %s\n",
              opt.backends, opt.parallel, opt.seconds, opt.warmup_ms, opt.runs, opt.client_cpu, opt.server_cpu,
              opt.conntrack_entries, loadavg().c_str());
  std::map<Mode, std::vector<double>> rates;
  std::map<Mode, std::vector<double>> p99s;
  std::map<Mode, std::vector<double>> costs;
  for (std::uint32_t r = 0; r < opt.runs; ++r) {
    for (std::size_t k = 0; k < opt.modes.size(); ++k) {
      if (g_interrupted) throw std::runtime_error("interrupted");
      const Mode mode = opt.modes[(k + r) % opt.modes.size()];
      const bool bpf = mode == Mode::direct_bpf || mode == Mode::ebpf_vip;
      const std::uint32_t dst = mode == Mode::ebpf_vip  ? kEbpfVip
                                : mode == Mode::nft_vip ? kNftVip
                                                        : opt.direct_to_member ? kFirstBackend
                                                                               : kDirectServer;
      if (bpf) attach();
      const auto accepted_before = server.accepted();
      const auto stats_before = ebpf.stats();
      ClientResult result;
      try {
        result = run_client(bed.client(), dst, server.cpu_clock(), opt);
      } catch (...) {
        if (bpf) detach();
        throw;
      }
      const auto stats_after = ebpf.stats();
      const std::uint64_t new_flows = stats_after[LB_STAT_NEW_FLOW] - stats_before[LB_STAT_NEW_FLOW];
      const std::uint64_t rev_nats = stats_after[LB_STAT_REV_NAT] - stats_before[LB_STAT_REV_NAT];
      // New flows on a reused tuple (a client port whose old flow's entries
      // are still there), and packets of other connections on a balanced
      // flow's tuple let through (direct modes after VIP runs).
      const std::uint64_t reopened =
          stats_after[LB_STAT_FLOW_REOPENED] - stats_before[LB_STAT_FLOW_REOPENED];
      const std::uint64_t foreign =
          stats_after[LB_STAT_FOREIGN_REPLY] - stats_before[LB_STAT_FOREIGN_REPLY];
      if (bpf) detach();
      if (!server.error().empty()) throw std::runtime_error("server: " + server.error());
      const auto accepted_after = server.accepted();
      // per_server[0]: the direct server.
      std::vector<std::uint64_t> per_server;
      std::uint64_t total = 0;
      for (std::size_t i = 0; i < accepted_after.size(); ++i) {
        per_server.push_back(accepted_after[i] - accepted_before[i]);
        total += per_server.back();
      }
      const std::vector<std::uint64_t> per_backend(per_server.begin() + 1, per_server.end());
      // Check that the traffic took the path it is named after.
      const bool balanced = mode == Mode::ebpf_vip || mode == Mode::nft_vip;
      if (mode != Mode::ebpf_vip && rev_nats != 0) {
        throw std::runtime_error(fmt::format("{}: the eBPF program reverse-NATed {} packets", name_of(mode), rev_nats));
      }
      if (result.completed == 0) throw std::runtime_error(fmt::format("{}: no connection completed ({} failed)", name_of(mode), result.errors));
      if (balanced && std::any_of(per_backend.begin(), per_backend.end(), [](std::uint64_t n) { return n == 0; })) {
        throw std::runtime_error(std::string(name_of(mode)) + ": a backend got no connection");
      }
      if (balanced && per_server[0] != 0) {
        throw std::runtime_error(std::string(name_of(mode)) + ": connections reached the direct server");
      }
      if (!balanced && total != per_server[opt.direct_to_member ? 1 : 0]) {
        throw std::runtime_error(std::string(name_of(mode)) + ": connections reached another server");
      }
      if (mode == Mode::ebpf_vip && new_flows < result.completed) {
        throw std::runtime_error("ebpf VIP: fewer new flows in the program than connections");
      }
      if (mode != Mode::ebpf_vip && new_flows != 0) {
        throw std::runtime_error(std::string(name_of(mode)) + ": the eBPF program balanced flows");
      }
      rates[mode].push_back(result.per_second());
      p99s[mode].push_back(result.p99_us);
      costs[mode].push_back(result.cpu_us_per_conn());
      std::string shares;
      if (balanced) {
        for (std::uint64_t n : per_backend) {
          shares += fmt::format("{}{:.0f}", shares.empty() ? ", backends " : "/",
                                100.0 * static_cast<double>(n) / static_cast<double>(total));
        }
        shares += " %";
      }
      if (mode == Mode::ebpf_vip) shares += fmt::format(", reused tuples {}", reopened);
      if (foreign != 0) shares += fmt::format(", other connections' packets let through {}", foreign);
      std::printf("run %u %-10s %8.0f conns/s  CPU %5.1f us/conn (client %5.1f, server %5.1f)  p50 %5.0f us  p99 %6.0f us  "
                  "errors %" PRIu64 "  slow %" PRIu64 "%s\n",
                  r + 1, name_of(mode), result.per_second(), result.cpu_us_per_conn(),
                  result.client_cpu_us / static_cast<double>(result.completed),
                  result.server_cpu_us / static_cast<double>(result.completed), result.p50_us, result.p99_us,
                  result.errors, result.slow, shares.c_str());
      std::fflush(stdout);
    }
  }
  std::printf("medians of %u runs (load average now %s):\n", opt.runs, loadavg().c_str());
  for (Mode m : opt.modes) {
    std::printf("  %-10s %8.0f conns/s  CPU %5.1f us/conn  p99 %6.0f us\n", name_of(m), median(rates[m]),
                median(costs[m]), median(p99s[m]));
  }
  // a / b by median rate, by median CPU per connection (b's cost / a's:
  // the rate the CPUs would allow, relative; steadier than rates on a busy
  // machine), and the median of the per-run rate ratios (each run measures
  // the modes back to back, so load that comes and goes cancels better).
  auto compare = [&](Mode a, Mode b, const char* target, double bound, bool strict) {
    if (!rates.count(a) || !rates.count(b)) return;
    const double by_rate = median(rates[a]) / median(rates[b]);
    const double by_cpu = median(costs[b]) / median(costs[a]);
    std::vector<double> per_run;
    std::string list;
    for (std::size_t i = 0; i < rates[a].size(); ++i) {
      per_run.push_back(rates[a][i] / rates[b][i]);
      list += fmt::format("{}{:.3f}", list.empty() ? "" : " ", per_run.back());
    }
    std::string verdict;
    if (target) {
      const bool met = strict ? by_rate > bound : by_rate >= bound;
      verdict = fmt::format(" (target {}: {})", target, met ? "met" : "NOT met");
    }
    std::printf("  %-10s / %-10s %.3f by rate%s; %.3f by CPU per connection; per run %s (median %.3f)\n",
                name_of(a), name_of(b), by_rate, verdict.c_str(), by_cpu, list.c_str(), median(per_run));
  };
  compare(Mode::ebpf_vip, Mode::direct, ">= 0.95", 0.95, false);
  compare(Mode::ebpf_vip, Mode::nft_vip, "> 1", 1.0, true);
  compare(Mode::direct_bpf, Mode::direct, nullptr, 0, false);
  compare(Mode::nft_vip, Mode::direct, nullptr, 0, false);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_lb_tcp: unknown argument or missing value: %s\n", arg.c_str());
      return 2;
    }
    const std::string value = argv[++i];
    try {
      if (arg == "--modes") {
        opt.modes.clear();
        std::stringstream list(value);
        for (std::string item; std::getline(list, item, ',');) {
          auto it = std::find_if(kModes.begin(), kModes.end(), [&](Mode m) { return item == mode_flag(m); });
          if (it == kModes.end()) throw std::invalid_argument(item);
          opt.modes.push_back(*it);
        }
        if (opt.modes.empty()) throw std::invalid_argument(value);
      } else if (arg == "--conntrack-entries") {
        opt.conntrack_entries = static_cast<std::uint32_t>(std::stoul(value));
      } else if (arg == "--direct-to-member") {
        opt.direct_to_member = value == "1" || value == "yes";
      } else if (arg == "--backends") {
        opt.backends = static_cast<std::uint32_t>(std::stoul(value));
      } else if (arg == "--parallel") {
        opt.parallel = static_cast<std::uint32_t>(std::stoul(value));
      } else if (arg == "--seconds") {
        opt.seconds = std::stod(value);
      } else if (arg == "--warmup-ms") {
        opt.warmup_ms = static_cast<std::uint32_t>(std::stoul(value));
      } else if (arg == "--runs") {
        opt.runs = static_cast<std::uint32_t>(std::stoul(value));
      } else if (arg == "--client-cpu") {
        opt.client_cpu = std::stoi(value);
      } else if (arg == "--server-cpu") {
        opt.server_cpu = std::stoi(value);
      } else {
        std::fprintf(stderr, "bench_lb_tcp: unknown argument %s\n", arg.c_str());
        return 2;
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "bench_lb_tcp: bad value for %s\n", arg.c_str());
      return 2;
    }
  }
  if (opt.backends < 1 || opt.backends > 80 || opt.parallel < 1 || opt.parallel > 4096 || opt.runs < 1 ||
      !(opt.seconds > 0 && opt.seconds <= 600)) {
    std::fprintf(stderr, "bench_lb_tcp: --backends 1..80, --parallel 1..4096, --runs >= 1, --seconds 0..600\n");
    return 2;
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "bench_lb_tcp: needs root (namespaces, BPF, nftables)\n");
    return 1;
  }
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  try {
    PrivateScratch scratch("tcp");
    run(scratch, opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_lb_tcp: %s\n", e.what());
    return 1;
  }
  return 0;
}
