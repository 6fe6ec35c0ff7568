// bench_gossip: N weft gossip instances in one process on 127.0.0.1, each
// wired the way the agent wires them (Memberlist + SerfCompat + the agent's
// own TableGossip and ReplicatedTables, as control/cluster/cluster.cpp does),
// with a shared AES key and memberlist's LAN timings. For one cluster size per run it measures:
//
//  * membership convergence: from issuing every join (all nodes join node 0)
//    until the observers 0, N/2 and N-1 (the agents serf_peer.py asks of
//    serf) report N alive, polled every 20 ms; also until all N do;
//  * endpoint-change convergence: one `put` into "endpoints" on a random
//    instance until every instance has applied it (p50 / p99 / max over
//    --trials), after --settle-seconds; plus one change made right as
//    membership converged, while the queues still carry the joins;
//  * traffic at rest: `lo` transmit counters over --rest-seconds, / N; with
//    --nft-table, split into UDP (probes, gossip) and TCP (push/pull), and
//    TCP bytes per connection scaled to one exchange per node per push/pull
//    interval. Only meaningful in a network namespace of our own (run.sh);
//  * memory per instance: VmRSS growth since before the first instance was
//    created (after malloc_trim), / N;
//  * --burst K: K endpoint puts at once, one per instance, until every
//    instance has all of them;
//  * --entries E: E live endpoint entries installed in every copy (put by
//    their owners, merged into the other copies, as after convergence), then
//    memory per instance and traffic at rest again.
//
//   bench_gossip --nodes N [--trials T] [--rest-seconds S] [--settle-seconds S]
//                [--burst K] [--entries E] [--threads K] [--key BASE64]
//                [--nft-table NAME] [--json FILE] [--log-level L]
//
// Progress goes to stderr, one JSON object with the results to --json (or
// stdout). Exit status 1 if membership did not converge.
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <limits>
#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "control/cluster/join_token.h"
#include "control/cluster/table_gossip.h"
#include "control/gossip/keyring.h"
#include "control/gossip/memberlist.h"
#include "control/gossip/serf_compat.h"
#include "control/tables/replicated_tables.h"

namespace {

namespace asio = boost::asio;
namespace gossip = weft::control::gossip;
namespace tables = weft::control::tables;
namespace cluster = weft::control::cluster;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using tables::TableEntry;

constexpr const char* kEndpointsTable = "endpoints";
constexpr const char* kTrialPrefix = "trial-";

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}
double ms_between(std::int64_t from_ns, std::int64_t to_ns) { return static_cast<double>(to_ns - from_ns) / 1e6; }


struct Options {
  int nodes = 10;
  int trials = 30;
  double rest_seconds = 10;
  int entries = 0;  // 0: no memory-with-entries phase
  int threads = 2;
  std::string key_b64;
  std::string json_file;
  std::string log_level = "warn";
  double membership_timeout = 90;
  double trial_timeout = 0;  // 0: one push/pull interval + 15 s, time for anti-entropy to repair a miss
  double settle_seconds = 5;
  std::string nft_table;  // nft counters udp_out/tcp_out in table inet <this> (run.sh sets them up)
  int burst = 0;
  double burst_timeout = 90;
};

// Exits (status 2, or 0 for --help) on bad arguments.
Options parse(int argc, char** argv) {
  Options o;
  CLI::App app{"bench_gossip: N weft gossip instances in one process (bench/gossip/run.sh drives it)", "bench_gossip"};
  app.add_option("--nodes", o.nodes, "Instances")->check(CLI::Range(2, 100000))->capture_default_str();
  app.add_option("--trials", o.trials, "Endpoint-change trials")->capture_default_str();
  app.add_option("--rest-seconds", o.rest_seconds, "Traffic-at-rest window")->capture_default_str();
  app.add_option("--entries", o.entries, "Endpoint entries for the memory-with-entries phase (0: none)");
  app.add_option("--threads", o.threads, "io threads")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--key", o.key_b64, "Gossip key, base64 (default: random)");
  app.add_option("--json", o.json_file, "Write the results here (default: stdout)");
  app.add_option("--log-level", o.log_level, "spdlog level")->capture_default_str();
  app.add_option("--membership-timeout", o.membership_timeout, "Seconds")->capture_default_str();
  app.add_option("--trial-timeout", o.trial_timeout, "Seconds (0: one push/pull interval + 15 s)");
  app.add_option("--settle-seconds", o.settle_seconds, "Wait after membership settled")->capture_default_str();
  app.add_option("--nft-table", o.nft_table, "inet table with udp_out/tcp_out counters (run.sh)");
  app.add_option("--burst", o.burst, "Endpoint puts at once, one per instance (0: no burst)");
  app.add_option("--burst-timeout", o.burst_timeout, "Seconds")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::Error& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);
  }
  return o;
}

// ---- process measurements ------------------------------------------------------

long status_kb(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string want = std::string(field) + ":";
  while (std::getline(f, line)) {
    if (line.rfind(want, 0) == 0) return std::stol(line.substr(want.size()));
  }
  return -1;
}

// RSS after handing freed heap back to the kernel, so what is left is what
// the instances hold.
long rss_kb() {
  malloc_trim(0);
  return status_kb("VmRSS");
}

struct NetCounters {
  std::uint64_t lo_bytes = 0, lo_packets = 0;  // lo transmit
  bool nft = false;                              // the per-protocol counters below are set
  std::uint64_t udp_bytes = 0, udp_packets = 0, tcp_bytes = 0, tcp_packets = 0;  // IP level, from nft
  std::uint64_t tcp_active_opens = 0, udp_rcvbuf_errors = 0;                     // /proc/net/snmp
};

// "Proto: name name..." / "Proto: value value..." pairs.
std::uint64_t snmp_value(const std::string& proto, const std::string& field) {
  std::ifstream f("/proc/self/net/snmp");
  std::string names, values;
  while (std::getline(f, names) && std::getline(f, values)) {
    if (names.rfind(proto + ":", 0) != 0) continue;
    std::istringstream n(names), v(values);
    std::string name, value;
    while (n >> name && v >> value)
      if (name == field) return std::stoull(value);
  }
  return 0;
}

// /proc/net/dev is per network namespace (unlike /sys without a remount);
// nft counters, when run.sh installed them in this namespace (--nft-table).
NetCounters net_counters(const std::string& nft_table) {
  NetCounters c;
  std::ifstream f("/proc/self/net/dev");
  std::string line;
  while (std::getline(f, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    if (name != "lo") continue;
    std::istringstream in(line.substr(colon + 1));
    std::uint64_t v[16] = {};
    for (auto& x : v) in >> x;
    c.lo_bytes = v[8];
    c.lo_packets = v[9];
  }
  c.tcp_active_opens = snmp_value("Tcp", "ActiveOpens");
  c.udp_rcvbuf_errors = snmp_value("Udp", "RcvbufErrors");
  if (!nft_table.empty()) {
    const std::string cmd = "nft -j list counters table inet " + nft_table + " 2>/dev/null";
    if (FILE* p = popen(cmd.c_str(), "r")) {
      std::string text;
      char buf[4096];
      std::size_t got;
      while ((got = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, got);
      pclose(p);
      try {
        int found = 0;
        const json doc = json::parse(text);
        for (const auto& item : doc.at("nftables")) {
          if (!item.contains("counter")) continue;
          const auto& k = item["counter"];
          const auto name = k.value("name", "");
          if (name == "udp_out") {
            c.udp_bytes = k.value("bytes", 0ull);
            c.udp_packets = k.value("packets", 0ull);
            ++found;
          } else if (name == "tcp_out") {
            c.tcp_bytes = k.value("bytes", 0ull);
            c.tcp_packets = k.value("packets", 0ull);
            ++found;
          }
        }
        c.nft = found == 2;
      } catch (const std::exception&) {
      }
    }
  }
  return c;
}

// A namespace of our own (run.sh makes one per run) has nothing but `lo`, and
// then all of lo's traffic is ours. (/proc/1/ns/net may not be readable in a
// container, so that's not compared.)
bool in_own_netns() {
  std::ifstream f("/proc/self/net/dev");
  std::string line;
  int interfaces = 0;
  bool lo = false;
  while (std::getline(f, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    ++interfaces;
    lo = lo || name == "lo";
  }
  return lo && interfaces == 1;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // Nearest rank.
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  rank = std::clamp<std::size_t>(rank, 1, v.size());
  return v[rank - 1];
}

// ---- event loops ---------------------------------------------------------------

// One io_context + thread; a 100 ms ticker measures how late timers fire, to
// tell whether the loop keeps up with the instances it hosts.
struct Shard {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{asio::make_work_guard(io)};
  asio::steady_timer ticker{io};
  std::thread thread;
  std::atomic<std::int64_t> max_lag_ns{0};
  std::atomic<bool> measure_lag{false};
  bool stopping = false;  // io thread only

  void start() {
    thread = std::thread([this] { io.run(); });
    tick(Clock::now() + std::chrono::milliseconds(100));
  }
  void tick(Clock::time_point due) {
    ticker.expires_at(due);
    ticker.async_wait([this, due](const boost::system::error_code& ec) {
      // cancel() does not stop a handler already queued: check the flag too.
      if (ec || stopping) return;
      const auto lag = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - due).count();
      if (measure_lag.load() && lag > max_lag_ns.load()) max_lag_ns.store(lag);
      tick(due + std::chrono::milliseconds(100));
    });
  }
  void stop() {
    asio::post(io, [this] {
      stopping = true;
      ticker.cancel();
      work.reset();
    });
    thread.join();
  }
  template <class F>
  auto call(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(io, [&task] { task(); });
    return result.get();
  }
};

// ---- one weft node, wired like Cluster::State -------------------------------------

struct Bench;

struct Instance {
  Instance(Bench& b, Shard& s, int i, std::string n) : bench(b), shard(s), index(i), name(std::move(n)) {}

  void start(const gossip::Bytes& key);
  void join(const std::string& seed, std::atomic<int>& joined, std::atomic<int>& failed);
  void broadcast(const std::vector<TableEntry>& entries) {
    if (table_gossip) table_gossip->broadcast(entries);
  }
  void stop() {
    if (ml) ml->shutdown();
    ml.reset();
    serf.reset();
    table_gossip.reset();
    tables.reset();
  }
  std::size_t queued() const { return table_gossip ? table_gossip->queued() : 0; }
  int push_pulls() const { return table_gossip ? table_gossip->counters().push_pulls.load() : 0; }
  int syncs_sent() const { return table_gossip ? table_gossip->counters().syncs_sent.load() : 0; }
  int leaves() const { return table_gossip ? table_gossip->counters().members_gone.load() : 0; }

  void on_table_change(const std::optional<TableEntry>& before, const std::optional<TableEntry>& now);

  Bench& bench;
  Shard& shard;
  int index;
  std::string name;
  std::uint16_t port = 0;
  std::unique_ptr<tables::ReplicatedTables> tables;
  std::unique_ptr<cluster::TableGossip> table_gossip;
  std::unique_ptr<gossip::SerfCompat> serf;
  std::unique_ptr<gossip::Memberlist> ml;
  std::atomic<int> live_endpoints{0};
};

struct Bench {
  Options opt;
  gossip::Bytes key;
  std::vector<std::unique_ptr<Shard>> shards;
  std::vector<std::unique_ptr<Instance>> nodes;
  std::atomic<int> current_trial{-1};
  std::vector<std::atomic<std::int64_t>> arrivals;  // per instance, ns of the current trial's entry
  std::vector<std::atomic<bool>> via_push_pull;     // per instance: the entry came by anti-entropy
  std::mt19937_64 rng{std::random_device{}()};

  explicit Bench(Options o) : opt(std::move(o)), arrivals(static_cast<std::size_t>(opt.nodes)),
        via_push_pull(static_cast<std::size_t>(opt.nodes)) {}

  template <class F>
  auto on(Instance& n, F f) -> decltype(f()) {
    return n.shard.call(std::move(f));
  }
  // f(instance) on every instance, one post per instance, waiting for all.
  template <class F>
  auto each(F f) {
    using R = decltype(f(*nodes.front()));
    std::vector<std::future<R>> futures;
    futures.reserve(nodes.size());
    for (auto& n : nodes) {
      auto task = std::make_shared<std::packaged_task<R()>>([&f, p = n.get()] { return f(*p); });
      futures.push_back(task->get_future());
      asio::post(n->shard.io, [task] { (*task)(); });
    }
    std::vector<R> out;
    out.reserve(futures.size());
    for (auto& fu : futures) out.push_back(fu.get());
    return out;
  }
};

void Instance::start(const gossip::Bytes& k) {
  tables = std::make_unique<tables::ReplicatedTables>(name, std::set<std::string>{kEndpointsTable});
  tables->subscribe([this](const auto& before, const auto& now) { on_table_change(before, now); });
  table_gossip = std::make_unique<cluster::TableGossip>(
      shard.io, cluster::TableGossipConfig{.node_name = name, .node_scoped_tables = {kEndpointsTable}}, *tables);
  gossip::Config gc;  // LAN defaults
  gc.name = name;
  gc.bind_addr = "127.0.0.1";
  gc.bind_port = 0;
  gc.keyring = std::make_shared<gossip::Keyring>(k);
  serf = std::make_unique<gossip::SerfCompat>(shard.io, name,
                                              gossip::Tags{{"role", "weft"}, {"id", "bench" + std::to_string(index)}},
                                              table_gossip.get(), table_gossip.get());
  ml = std::make_unique<gossip::Memberlist>(shard.io, gc, serf.get(), serf.get());
  serf->attach(ml.get());
  table_gossip->attach(ml.get());
  ml->start();
  port = ml->bound_port();
}

void Instance::join(const std::string& seed, std::atomic<int>& joined, std::atomic<int>& failed) {
  ml->join({seed}, [this, &joined, &failed](int contacted, std::string error) {
    if (contacted > 0) {
      if (serf) serf->broadcast_join();
      ++joined;
    } else {
      spdlog::error("bench {}: join failed: {}", name, error);
      ++failed;
    }
  });
}

void Instance::on_table_change(const std::optional<TableEntry>& before, const std::optional<TableEntry>& now) {
  const TableEntry& e = now ? *now : *before;
  if (e.table != kEndpointsTable) return;
  if (!before && now) ++live_endpoints;
  if (before && !now) --live_endpoints;
  if (now && !before && e.key.rfind(kTrialPrefix, 0) == 0) {
    const int trial = std::atoi(e.key.c_str() + std::char_traits<char>::length(kTrialPrefix));
    if (trial == bench.current_trial.load()) {
      bench.via_push_pull[static_cast<std::size_t>(index)].store(table_gossip->applying_anti_entropy());
      bench.arrivals[static_cast<std::size_t>(index)].store(now_ns());
    }
  }
}

// An endpoint record as the agent publishes it (control/model/record_json.cpp's
// endpoint_record plus "vtep"): ~330 bytes of JSON.
std::string endpoint_value(std::mt19937_64& rng, const std::string& id, const std::string& node, int n) {
  char mac[32];
  std::snprintf(mac, sizeof mac, "02:42:0a:%02x:%02x:%02x", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
  static const char* hex = "0123456789abcdef";
  std::string network_id;
  for (int i = 0; i < 64; ++i) network_id += hex[rng() % 16];
  json j = {{"id", id},
            {"name", "ep" + std::to_string(n)},
            {"network_id", network_id},
            {"netns", "/run/netns/c" + std::to_string(n)},
            {"ifname", "eth0"},
            {"ip", "10." + std::to_string((n >> 16) & 0xff) + "." + std::to_string((n >> 8) & 0xff) + "." +
                       std::to_string(n & 0xff)},
            {"prefix_len", 8},
            {"mac", mac},
            {"node", node},
            {"vtep", "127.0.0.1"}};
  return j.dump();
}

std::string endpoint_key(std::mt19937_64& rng, const std::string& prefix) {
  static const char* hex = "0123456789abcdef";
  std::string id = prefix;
  while (id.size() < 64) id += hex[rng() % 16];
  return id;
}

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

template <class Pred>
bool wait_until(double timeout_s, double poll_s, Pred pred) {
  const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= end) return false;
    sleep_s(poll_s);
  }
}

struct RestSample {
  double seconds = 0;
  double bytes_per_s_per_node = -1;  // everything on lo (link-level bytes)
  double packets_per_s_per_node = -1;
  bool split = false;                // UDP/TCP split available (nft counters)
  double udp_bytes_per_s_per_node = -1;  // probes, acks, gossip (IP-level bytes)
  double tcp_bytes_per_s_per_node = -1;  // push/pull (and TCP fallback pings)
  int tcp_connections = 0;
  double bytes_per_tcp_connection = -1;
  double push_pull_interval_s = 0;
  // Steady state: UDP as measured + one push/pull per node per interval.
  double steady_bytes_per_s_per_node = -1;
  int push_pulls = 0;                         // exchanges seen by the instances in the window
  int full_syncs = 0;                         // digest mismatches in the window (each sends the differing owners' entries)
  double push_pull_state_bytes = 0;           // one node's push/pull message, approximately
  double push_pull_bytes_per_s_per_node = 0;  // computed from it: 2 x state / interval
  std::uint64_t udp_rcvbuf_errors = 0;        // datagrams dropped, whole run so far
  double cpu_percent = 0;                     // of one core, whole process
};

// memberlist's pushPullScale (memberlist.cpp): 30 s, one more 30 s per
// doubling past 32 nodes.
double push_pull_interval_s(std::size_t n) {
  if (n <= 32) return 30;
  return 30 * (std::ceil(std::log2(static_cast<double>(n)) - 5) + 1);
}

RestSample rest_window(Bench& b, double seconds) {
  RestSample r;
  r.seconds = seconds;
  auto merges = [&b] {
    int m = 0;
    for (auto& x : b.nodes) m += x->push_pulls();
    return m;
  };
  auto syncs = [&b] {
    int m = 0;
    for (auto& x : b.nodes) m += x->syncs_sent();
    return m;
  };
  const int m0 = merges(), s0 = syncs();
  const auto c0 = net_counters(b.opt.nft_table);
  const double cpu0 = cpu_seconds();
  const auto t0 = Clock::now();
  sleep_s(seconds);
  const auto c1 = net_counters(b.opt.nft_table);
  const double cpu1 = cpu_seconds();
  const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
  const double n = static_cast<double>(b.nodes.size());
  r.push_pull_interval_s = push_pull_interval_s(b.nodes.size());
  if (in_own_netns()) {
    r.bytes_per_s_per_node = static_cast<double>(c1.lo_bytes - c0.lo_bytes) / dt / n;
    r.packets_per_s_per_node = static_cast<double>(c1.lo_packets - c0.lo_packets) / dt / n;
    r.tcp_connections = static_cast<int>(c1.tcp_active_opens - c0.tcp_active_opens);
    if (c0.nft && c1.nft) {
      r.split = true;
      r.udp_bytes_per_s_per_node = static_cast<double>(c1.udp_bytes - c0.udp_bytes) / dt / n;
      r.tcp_bytes_per_s_per_node = static_cast<double>(c1.tcp_bytes - c0.tcp_bytes) / dt / n;
      if (r.tcp_connections > 0) {
        r.bytes_per_tcp_connection = static_cast<double>(c1.tcp_bytes - c0.tcp_bytes) / r.tcp_connections;
        r.steady_bytes_per_s_per_node =
            r.udp_bytes_per_s_per_node + r.bytes_per_tcp_connection / r.push_pull_interval_s;
      }
    }
  }
  r.udp_rcvbuf_errors = c1.udp_rcvbuf_errors;
  r.cpu_percent = (cpu1 - cpu0) / dt * 100.0;
  r.push_pulls = (merges() - m0) / 2;  // both ends merge
  r.full_syncs = syncs() - s0;
  // The push/pull message: serf's state with weft's table digest in it, plus
  // one node record per member (name, address, meta, versions: ~40 bytes +
  // name + meta). Each node sends it twice per interval on average (once as
  // initiator, once as the peer someone else picked).
  auto& x = *b.nodes.front();
  const auto sizes = b.on(x, [&x] {
    std::size_t members = 0;
    for (const auto& m : x.ml->members()) members += 40 + m.name.size() + m.meta.size();
    return std::make_pair(x.serf->local_state(false).size(), members);
  });
  r.push_pull_state_bytes = static_cast<double>(sizes.first + sizes.second);
  r.push_pull_bytes_per_s_per_node = 2 * r.push_pull_state_bytes / r.push_pull_interval_s;
  return r;
}

json rest_json(const RestSample& r) {
  auto opt = [](double v) { return v < 0 ? json(nullptr) : json(v); };
  return {{"seconds", r.seconds},
          {"bytes_per_s_per_node", opt(r.bytes_per_s_per_node)},
          {"packets_per_s_per_node", opt(r.packets_per_s_per_node)},
          {"udp_bytes_per_s_per_node", opt(r.udp_bytes_per_s_per_node)},
          {"tcp_bytes_per_s_per_node", opt(r.tcp_bytes_per_s_per_node)},
          {"tcp_connections", r.tcp_connections},
          {"bytes_per_tcp_connection", opt(r.bytes_per_tcp_connection)},
          {"push_pull_interval_s", r.push_pull_interval_s},
          {"steady_bytes_per_s_per_node", opt(r.steady_bytes_per_s_per_node)},
          {"push_pulls_in_window", r.push_pulls},
          {"full_syncs_in_window", r.full_syncs},
          {"push_pull_state_bytes", r.push_pull_state_bytes},
          {"push_pull_bytes_per_s_per_node_computed", r.push_pull_bytes_per_s_per_node},
          {"udp_rcvbuf_errors_so_far", r.udp_rcvbuf_errors},
          {"process_cpu_percent", r.cpu_percent}};
}

// Waits until nothing is left in the instances' table broadcast queues.
bool wait_queues_drained(Bench& b, double timeout_s) {
  return wait_until(timeout_s, 0.1, [&] {
    auto sizes = b.each([](Instance& n) { return n.queued(); });
    return std::all_of(sizes.begin(), sizes.end(), [](std::size_t s) { return s == 0; });
  });
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  spdlog::set_level(spdlog::level::from_str(opt.log_level));
  auto log = [](const std::string& s) { std::cerr << "[bench_gossip] " << s << std::endl; };

  Bench b(opt);
  if (opt.key_b64.empty()) {
    auto k = weft::control::cluster::generate_gossip_key();
    b.key.assign(k.begin(), k.end());
  } else {
    b.key = gossip::Keyring::decode_base64_key(opt.key_b64);
  }
  const int n = opt.nodes;
  // A change that gossip fails to deliver to some node is repaired by the
  // next push/pull involving it: give trials the time that takes.
  if (opt.trial_timeout <= 0) opt.trial_timeout = push_pull_interval_s(static_cast<std::size_t>(n)) + 15;
  json out;
  out["nodes"] = n;
  out["threads"] = opt.threads;
  out["own_netns"] = in_own_netns();

  for (int i = 0; i < opt.threads; ++i) b.shards.push_back(std::make_unique<Shard>());
  for (auto& s : b.shards) s->start();
  sleep_s(0.2);
  const long rss_base = rss_kb();
  out["rss_base_kb"] = rss_base;

  // ---- create and start N instances ----
  for (int i = 0; i < n; ++i) {
    auto& shard = *b.shards[static_cast<std::size_t>(i % opt.threads)];
    b.nodes.push_back(std::make_unique<Instance>(b, shard, i, "weft-" + std::to_string(i)));
  }
  b.each([&](Instance& x) {
    x.start(b.key);
    return 0;
  });
  const std::string seed = "127.0.0.1:" + std::to_string(b.nodes.front()->port);
  log("started " + std::to_string(n) + " instances on " + std::to_string(opt.threads) + " thread(s); seed " + seed);

  // ---- membership convergence ----
  std::atomic<int> joined{0}, failed{0};
  const std::vector<int> observers = {0, n / 2, n - 1};
  const std::int64_t join_start = now_ns();
  for (int i = 1; i < n; ++i) {
    Instance* x = b.nodes[static_cast<std::size_t>(i)].get();
    asio::post(x->shard.io, [x, &seed, &joined, &failed] { x->join(seed, joined, failed); });
  }
  std::optional<double> observers_ms, all_ms;
  wait_until(opt.membership_timeout, 0.02, [&] {
    if (!observers_ms) {
      bool ok = true;
      for (int o : observers) {
        auto& x = *b.nodes[static_cast<std::size_t>(o)];
        if (b.on(x, [&x] { return x.ml->num_alive(); }) != static_cast<std::size_t>(n)) ok = false;
      }
      if (ok) observers_ms = ms_between(join_start, now_ns());
    }
    auto alive = b.each([](Instance& x) { return x.ml->num_alive(); });
    if (std::all_of(alive.begin(), alive.end(), [n](std::size_t a) { return a == static_cast<std::size_t>(n); })) {
      all_ms = ms_between(join_start, now_ns());
      if (!observers_ms) observers_ms = all_ms;
      return true;
    }
    return false;
  });
  out["joins_ok"] = joined.load();
  out["joins_failed"] = failed.load();
  out["membership_observers_ms"] = observers_ms ? json(*observers_ms) : json(nullptr);
  out["membership_all_ms"] = all_ms ? json(*all_ms) : json(nullptr);
  out["membership_poll_ms"] = 20;
  if (!all_ms) {
    auto alive = b.each([](Instance& x) { return x.ml->num_alive(); });
    log("membership did NOT converge within " + std::to_string(opt.membership_timeout) + " s; min alive seen " +
        std::to_string(*std::min_element(alive.begin(), alive.end())));
  } else {
    log("membership: observers saw " + std::to_string(n) + " alive after " + std::to_string(*observers_ms) +
        " ms, all instances after " + std::to_string(*all_ms) + " ms");
  }
  const long rss_members = rss_kb();
  out["rss_members_kb"] = rss_members;
  out["rss_per_instance_members_kb"] = static_cast<double>(rss_members - rss_base) / n;

  // ---- endpoint-change convergence: the trial ----
  std::uniform_int_distribution<int> pick(0, n - 1);
  std::uniform_real_distribution<double> gap(0.1, 0.4);
  struct TrialResult {
    bool ok = false;
    double ms = 0, half_ms = 0, ninety_ms = 0;
    int via_sync = 0, last_index = -1, missing = 0;
  };
  // One put on a random instance; waits until every instance applied it.
  auto run_trial = [&](int t) {
    TrialResult r;
    for (auto& a : b.arrivals) a.store(0);
    for (auto& v : b.via_push_pull) v.store(false);
    b.current_trial = t;
    Instance& origin = *b.nodes[static_cast<std::size_t>(pick(b.rng))];
    char prefix[32];
    std::snprintf(prefix, sizeof prefix, "%s%04d-", kTrialPrefix, t);
    const std::string key = endpoint_key(b.rng, prefix);
    const std::string value = endpoint_value(b.rng, key, origin.name, 100000 + t);
    const std::int64_t t0 = b.on(origin, [&origin, &key, &value] {
      const std::int64_t start = now_ns();
      origin.broadcast({origin.tables->put(kEndpointsTable, key, value)});
      return start;
    });
    std::int64_t last = 0;
    r.ok = wait_until(opt.trial_timeout, 0.002, [&] {
      last = 0;
      for (auto& a : b.arrivals) {
        const auto v = a.load();
        if (v == 0) return false;
        last = std::max(last, v);
      }
      return true;
    });
    b.current_trial = -1;
    if (!r.ok) {
      for (auto& a : b.arrivals) r.missing += a.load() == 0;
      log("trial " + std::to_string(t) + ": " + std::to_string(r.missing) +
          " instance(s) still without the entry after " + std::to_string(opt.trial_timeout) + " s");
      return r;
    }
    r.ms = ms_between(t0, last);
    std::vector<double> at;
    for (std::size_t i = 0; i < b.arrivals.size(); ++i) {
      at.push_back(ms_between(t0, b.arrivals[i].load()));
      if (b.via_push_pull[i].load()) ++r.via_sync;
      if (b.arrivals[i].load() == last) r.last_index = static_cast<int>(i);
    }
    r.half_ms = percentile(at, 50);
    r.ninety_ms = percentile(at, 90);
    if (r.ms > 1000) {
      log("trial " + std::to_string(t) + ": slow, " + std::to_string(r.ms) + " ms; 50%/90% of instances had it at " +
          std::to_string(r.half_ms) + "/" + std::to_string(r.ninety_ms) + " ms; last was weft-" +
          std::to_string(r.last_index) +
          (b.via_push_pull[static_cast<std::size_t>(r.last_index)].load() ? " (via anti-entropy)" : " (via gossip)"));
    }
    return r;
  };
  auto min_live = [&] {
    int m = INT32_MAX;
    for (auto& x : b.nodes) m = std::min(m, x->live_endpoints.load());
    return m;
  };
  auto total_syncs = [&] {
    int m = 0;
    for (auto& x : b.nodes) m += x->syncs_sent();
    return m;
  };

  if (all_ms) {
    // Right after the joins every queue still carries alive messages and
    // serf join intents, which go out before table entries: one change made
    // then shows that cost. The measured trials come later.
    auto first = run_trial(9999);
    out["endpoint_change_right_after_join_ms"] = first.ok ? json(first.ms) : json(nullptr);
    log("endpoint change made right after the joins converged: " +
        (first.ok ? std::to_string(first.ms) + " ms" : std::string("timeout")));
  }

  // ---- table entries: memory ----
  // What memory E entries in every copy cost, not how fast gossip delivers
  // them (--burst measures that): the entries are put by their owners (spread
  // over the instances) and merged into every other copy directly, the state
  // a converged cluster is in. Nothing is queued for gossip.
  if (opt.entries > 0 && all_ms) {
    const int have = min_live();
    const int to_put = std::max(0, opt.entries - have);
    std::vector<std::vector<TableEntry>> made(b.nodes.size());
    for (int k = 0; k < to_put; ++k) {
      auto& x = *b.nodes[static_cast<std::size_t>(k % n)];
      std::string key = endpoint_key(b.rng, "mem-");
      std::string value = endpoint_value(b.rng, key, x.name, k);
      made[static_cast<std::size_t>(x.index)].push_back(
          TableEntry{.table = kEndpointsTable, .key = key, .owner = x.name, .lamport = 0, .deleted = false, .value = value});
    }
    auto owned = b.each([&made](Instance& x) {
      std::vector<TableEntry> put;
      for (const auto& e : made[static_cast<std::size_t>(x.index)]) put.push_back(x.tables->put(e.table, e.key, e.value));
      return put;
    });
    std::vector<TableEntry> all;
    for (auto& v : owned) all.insert(all.end(), v.begin(), v.end());
    b.each([&all](Instance& x) { return x.tables->merge(all); });
    const int live = min_live();
    auto digests = b.each([](Instance& x) { return x.tables->digest(); });
    const bool same = std::all_of(digests.begin(), digests.end(), [&](auto d) { return d == digests.front(); });
    const long rss_entries = rss_kb();
    out["memory_with_entries"] = {{"entries", live},
                                  {"digests_equal", same},
                                  {"rss_kb", rss_entries},
                                  {"rss_per_instance_kb", static_cast<double>(rss_entries - rss_base) / n}};
    log("memory: " + std::to_string((rss_entries - rss_base) / n) + " kB per instance with " + std::to_string(n) +
        " members and " + std::to_string(live) + " entries in every copy (copies identical: " + (same ? "yes" : "no") +
        ")");
  }

  // ---- at rest ----
  // Same place in the run as serf_peer.py's window (settle after membership),
  // so push/pull timers (first one at a random point of the first 30 s, all
  // instances started together) are in the same phase for both.
  const bool drained = wait_queues_drained(b, 30);
  sleep_s(opt.settle_seconds);
  out["settle_seconds"] = opt.settle_seconds;
  for (auto& sh : b.shards) sh->measure_lag = true;
  auto rest = rest_window(b, opt.rest_seconds);
  out["rest"] = rest_json(rest);
  out["rest"]["table_queues_drained_before"] = drained;
  log("at rest: " + std::to_string(rest.bytes_per_s_per_node) + " B/s per node on lo (UDP " +
      std::to_string(rest.udp_bytes_per_s_per_node) + ", TCP " + std::to_string(rest.tcp_bytes_per_s_per_node) +
      " over " + std::to_string(rest.tcp_connections) + " connections); steady state with push/pull " +
      std::to_string(rest.steady_bytes_per_s_per_node) + " B/s; process CPU " + std::to_string(rest.cpu_percent) + "%");

  // ---- endpoint-change convergence: the trials ----
  std::vector<double> conv, spread50, spread90;
  int timeouts = 0, via_sync = 0;
  const auto c0 = net_counters(opt.nft_table);
  const int syncs0 = total_syncs();
  const auto trials_start = Clock::now();
  for (int t = 0; t < opt.trials && all_ms; ++t) {
    auto r = run_trial(t);
    if (r.ok) {
      conv.push_back(r.ms);
      spread50.push_back(r.half_ms);
      spread90.push_back(r.ninety_ms);
      via_sync += r.via_sync;
    } else {
      ++timeouts;
    }
    sleep_s(gap(b.rng));
  }
  const double trials_s = std::chrono::duration<double>(Clock::now() - trials_start).count();
  const auto c1 = net_counters(opt.nft_table);
  for (auto& sh : b.shards) sh->measure_lag = false;
  json ep = {{"trials", opt.trials}, {"converged", conv.size()}, {"timeouts", timeouts},
             {"timeout_s", opt.trial_timeout}};
  if (!conv.empty()) {
    // Trials that timed out count as slower than everything (infinite): a
    // percentile that lands on one is reported as null (> timeout).
    std::vector<double> all_trials = conv;
    all_trials.insert(all_trials.end(), static_cast<std::size_t>(timeouts), std::numeric_limits<double>::infinity());
    auto finite = [](double v) { return std::isinf(v) ? json(nullptr) : json(v); };
    ep["p50_ms"] = finite(percentile(all_trials, 50));
    ep["p99_ms"] = finite(percentile(all_trials, 99));
    ep["max_ms"] = *std::max_element(conv.begin(), conv.end());
    ep["min_ms"] = *std::min_element(conv.begin(), conv.end());
    ep["samples_ms"] = conv;
    // Per trial: when half / 90 % of the instances had it; medians over trials.
    ep["half_of_nodes_p50_ms"] = percentile(spread50, 50);
    ep["ninety_pct_of_nodes_p50_ms"] = percentile(spread90, 50);
    ep["arrivals_via_full_sync"] = via_sync;
    log("endpoint change: p50 " + std::to_string(percentile(all_trials, 50)) + " ms, p99 " +
        std::to_string(percentile(all_trials, 99)) + " ms over " + std::to_string(all_trials.size()) + " trials");
  }
  // Traffic while the trials ran (about 2 changes/s): push/pulls that find
  // the tables mid-change see different digests and send the entries of the
  // owners that differ.
  ep["seconds"] = trials_s;
  ep["full_syncs"] = total_syncs() - syncs0;
  if (in_own_netns()) {
    ep["bytes_per_s_per_node"] = static_cast<double>(c1.lo_bytes - c0.lo_bytes) / trials_s / n;
    ep["tcp_connections"] = c1.tcp_active_opens - c0.tcp_active_opens;
    if (c0.nft && c1.nft) {
      ep["udp_bytes_per_s_per_node"] = static_cast<double>(c1.udp_bytes - c0.udp_bytes) / trials_s / n;
      ep["tcp_bytes_per_s_per_node"] = static_cast<double>(c1.tcp_bytes - c0.tcp_bytes) / trials_s / n;
    }
  }
  out["endpoint_convergence"] = ep;
  {
    std::int64_t lag = 0;
    for (auto& sh : b.shards) lag = std::max(lag, sh->max_lag_ns.load());
    out["max_loop_lag_ms"] = static_cast<double>(lag) / 1e6;  // timers firing late, at rest and during trials
  }

  // ---- a burst of endpoint changes through gossip ----
  if (opt.burst > 0 && all_ms) {
    wait_queues_drained(b, 30);
    const int have = min_live();
    const int target = have + opt.burst;
    log("burst: " + std::to_string(opt.burst) + " endpoint puts spread over the instances at once");
    const int syncs_before = total_syncs();
    const std::int64_t burst_start = now_ns();
    for (int k = 0; k < opt.burst; ++k) {
      Instance* x = b.nodes[static_cast<std::size_t>(k % n)].get();
      std::string key = endpoint_key(b.rng, "burst-");
      std::string value = endpoint_value(b.rng, key, x->name, 200000 + k);
      asio::post(x->shard.io, [x, key = std::move(key), value = std::move(value)] {
        x->broadcast({x->tables->put(kEndpointsTable, key, value)});
      });
    }
    std::optional<double> half_ms;
    const bool converged = wait_until(opt.burst_timeout, 0.05, [&] {
      int complete = 0;
      for (auto& x : b.nodes) complete += x->live_endpoints.load() >= target;
      if (!half_ms && complete * 2 >= n) half_ms = ms_between(burst_start, now_ns());
      return complete == n;
    });
    const double burst_ms = ms_between(burst_start, now_ns());
    auto q = b.each([](Instance& x) { return x.queued(); });
    const std::size_t max_queue = *std::max_element(q.begin(), q.end());
    const bool burst_drained = wait_queues_drained(b, opt.burst_timeout);
    const double drained_ms = ms_between(burst_start, now_ns());
    out["burst"] = {{"entries", opt.burst},
                    {"converged", converged},
                    {"all_instances_ms", converged ? json(burst_ms) : json(nullptr)},
                    {"half_of_instances_ms", half_ms ? json(*half_ms) : json(nullptr)},
                    {"min_entries_at_end", min_live() - have},
                    {"largest_table_queue_at_convergence", max_queue},
                    {"full_syncs", total_syncs() - syncs_before},
                    {"queues_drained", burst_drained},
                    {"queues_drained_ms", burst_drained ? json(drained_ms) : json(nullptr)}};
    log("burst: " + std::string(converged ? "every instance had all " : "NOT every instance had all ") +
        std::to_string(opt.burst) + " after " + std::to_string(burst_ms) + " ms (half of them after " +
        (half_ms ? std::to_string(*half_ms) : std::string("-")) + " ms); table queues " +
        (burst_drained ? "empty after " + std::to_string(drained_ms) + " ms" : std::string("still busy")));
  }

  // Suspicions/failures during the run would mean the loop didn't keep up.
  auto leaves = b.each([](Instance& x) { return x.leaves(); });
  int total_leaves = 0;
  for (int l : leaves) total_leaves += l;
  out["false_failures"] = total_leaves;
  out["peak_rss_kb"] = status_kb("VmHWM");

  // ---- shutdown ----
  b.each([](Instance& x) {
    x.stop();
    return 0;
  });
  for (auto& s : b.shards) s->stop();
  b.nodes.clear();

  const std::string text = out.dump();
  if (opt.json_file.empty()) {
    std::cout << text << std::endl;
  } else {
    std::ofstream f(opt.json_file);
    f << text << "\n";
  }
  return all_ms ? 0 : 1;
}
