// The agent side of the embedded DNS with real clients in scratch
// namespaces: sockets on 127.0.0.11:53 inside each namespace (dig through
// nsenter), names per namespace, forwarding from the agent's namespace to a
// real dnsmasq on loopback, and glibc (`getent hosts` under `ip netns exec`)
// through the resolv.conf the agent wrote. Needs root (privileged tests).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "control/discovery/dns_agent.h"
#include "dns/netns_listener.h"
#include "tests/support/discovery_records.h"
#include "tests/support/scratch_netns.h"
#include "tests/unit/dns_test_support.h"

namespace weft::control::discovery {
namespace {

using testing::endpoint;
using testing::ip;

namespace fs = std::filesystem;
using dns::testing::Dnsmasq;
using dns::testing::have;
using dns::testing::run;
using ::testing::HasSubstr;
using ::testing::StartsWith;


std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

// dig at 127.0.0.11 from inside the namespace.
std::string dig_in(const fs::path& ns, const std::string& args) {
  return run("nsenter --net=" + ns.string() + " dig @127.0.0.11 +time=2 +tries=1 " + args);
}

// front: web (vip), cache (dnsrr), the client; back: db (vip).
Snapshot names(const std::string& front_context, const std::string& back_context) {
  Snapshot s;
  s.networks = {{"id-front", "front"}, {"id-back", "back"}};
  s.services = {{"svc-web", "web", EndpointMode::vip, {"id-front"}, {{"id-front", ip("10.0.1.2")}}, {}},
                {"svc-cache", "cache", EndpointMode::dnsrr, {"id-front"}, {}, {}},
                {"svc-db", "db", EndpointMode::vip, {"id-back"}, {{"id-back", ip("10.0.2.2")}}, {}}};
  s.endpoints = {endpoint("w1", "", "id-front", "10.0.1.5", "svc-web"),
                 endpoint("w2", "", "id-front", "10.0.1.6", "svc-web"),
                 endpoint("w3", "", "id-front", "10.0.1.7", "svc-web", BackendState::draining),
                 endpoint("c1", "", "id-front", "10.0.1.8", "svc-cache"),
                 endpoint("c2", "", "id-front", "10.0.1.9", "svc-cache"),
                 endpoint("c3", "", "id-front", "10.0.1.10", "svc-cache"),
                 endpoint("me", "client", "id-front", "10.0.1.20"),
                 endpoint("d1", "db-1", "id-back", "10.0.2.5", "svc-db")};
  s.contexts = {{front_context, {"id-front"}}, {back_context, {"id-back"}}};
  return s;
}

class DnsAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have("dig") || !have("nsenter")) GTEST_SKIP() << "dig or nsenter missing: run scripts/setup";
    if (!have("dnsmasq")) GTEST_SKIP() << "dnsmasq missing: run scripts/setup";
    front_ = ns_.make("front");
    back_ = ns_.make("back");
  }

  // No upstreams given: none at all (not the host's resolv.conf).
  DnsAgentConfig config(std::vector<std::string> upstreams) {
    DnsAgentConfig c;
    c.host_resolv_conf = dir_.path() / "no-resolv.conf";
    c.node_name = "node1";
    c.state_dir = (dir_.path() / "state").string();
    c.resolv_root = dir_.path() / "etc-netns";
    c.upstreams = std::move(upstreams);
    c.timeout = std::chrono::milliseconds(400);
    return c;
  }

  static std::string upstream_of(const Dnsmasq& d) { return "127.0.0.1:" + std::to_string(d.port()); }

  weft::testing::ScratchDir dir_;
  weft::testing::ScratchNamespaces ns_{dir_.path()};
  fs::path front_;
  fs::path back_;
};

TEST(NetnsListenerTest, BringsLoUpAndBindsInsideTheNamespace) {
  weft::testing::ScratchDir dir;
  weft::testing::ScratchNamespaces ns(dir.path());
  const auto path = ns.make("c");
  ASSERT_THAT(run("nsenter --net=" + path.string() + " ip -o link show lo"), ::testing::Not(HasSubstr(",UP")));
  boost::asio::io_context io;
  auto sockets = dns::open_dns_sockets(io, path);
  EXPECT_THAT(run("nsenter --net=" + path.string() + " ip -o link show lo"), HasSubstr(",UP"));
  EXPECT_EQ(sockets.udp.local_endpoint().address().to_string(), "127.0.0.11");
  EXPECT_EQ(sockets.udp.local_endpoint().port(), 53);
  EXPECT_EQ(sockets.tcp.local_endpoint().port(), 53);
  // Bound in that namespace, not in ours: the tests' own namespace has no
  // listener on 127.0.0.11:53 (ss shows it only inside).
  EXPECT_THAT(run("nsenter --net=" + path.string() + " ss -Hlnu"), HasSubstr("127.0.0.11:53"));
  EXPECT_THAT(run("nsenter --net=" + path.string() + " ss -Hlnt"), HasSubstr("127.0.0.11:53"));
}

TEST(NetnsListenerTest, ClearErrorsForAGoneNamespaceAndATakenPort) {
  weft::testing::ScratchDir dir;
  weft::testing::ScratchNamespaces ns(dir.path());
  const auto path = ns.make("c");
  boost::asio::io_context io;
  try {
    dns::open_dns_sockets(io, dir.path() / "ns" / "missing");
    ADD_FAILURE() << "opened sockets in a namespace that does not exist";
  } catch (const dns::ListenError& e) {
    EXPECT_EQ(e.error(), ENOENT);
    EXPECT_THAT(e.what(), HasSubstr("missing is gone"));
  }
  auto first = dns::open_dns_sockets(io, path);
  try {
    dns::open_dns_sockets(io, path);
    ADD_FAILURE() << "bound 127.0.0.11:53 twice";
  } catch (const dns::ListenError& e) {
    EXPECT_EQ(e.error(), EADDRINUSE);
    EXPECT_THAT(e.what(), HasSubstr("127.0.0.11:53/udp in namespace " + path.string() + " is taken"));
  }
  // A regular file is no namespace.
  std::ofstream(dir.path() / "plain") << "x";
  EXPECT_THROW(dns::open_dns_sockets(io, dir.path() / "plain"), dns::ListenError);
}

TEST_F(DnsAgentTest, AnswersTheNamesOfTheNamespacesNetworks) {
  Dnsmasq upstream({"--address=/up.example/192.0.2.77"});
  DnsAgent agent(config({upstream_of(upstream)}));
  agent.publish(names(front_.string(), back_.string()));
  ASSERT_TRUE(agent.add_namespace(front_.string(), front_.string(), front_));
  ASSERT_TRUE(agent.add_namespace(back_.string(), back_.string(), back_));

  EXPECT_EQ(dig_in(front_, "+short web"), "10.0.1.2\n");
  EXPECT_EQ(dig_in(front_, "+short +tcp web"), "10.0.1.2\n");
  EXPECT_THAT(dig_in(front_, "web"), HasSubstr("\t5\tIN\tA\t10.0.1.2"));  // TTL 5 s
  auto tasks = lines(dig_in(front_, "+short tasks.web"));
  std::sort(tasks.begin(), tasks.end());
  EXPECT_EQ(tasks, (std::vector<std::string>{"10.0.1.5", "10.0.1.6"}));  // w3 drains
  EXPECT_EQ(dig_in(front_, "+short client.front"), "10.0.1.20\n");
  EXPECT_EQ(dig_in(front_, "+short -x 10.0.1.20"), "client.front.\n");

  // Each namespace sees its own network's names only.
  EXPECT_THAT(dig_in(front_, "db"), HasSubstr("status: NXDOMAIN"));
  EXPECT_THAT(dig_in(back_, "web"), HasSubstr("status: NXDOMAIN"));
  EXPECT_EQ(dig_in(back_, "+short db"), "10.0.2.2\n");

  // Owned names are never forwarded: AAAA is NOERROR/empty.
  auto aaaa = dig_in(front_, "AAAA web");
  EXPECT_THAT(aaaa, HasSubstr("status: NOERROR"));
  EXPECT_THAT(aaaa, HasSubstr("ANSWER: 0"));
  EXPECT_EQ(upstream.queries_for("web"), 0);
  // Other names go to the upstream, from the agent's namespace.
  EXPECT_EQ(dig_in(front_, "+short up.example"), "192.0.2.77\n");
  EXPECT_EQ(upstream.queries_for("up.example"), 1);
  EXPECT_GE(agent.stats().forwarded, 1u);
}

TEST_F(DnsAgentTest, DnsrrAnswersRotate) {
  DnsAgent agent(config({}));
  agent.publish(names(front_.string(), back_.string()));
  ASSERT_TRUE(agent.add_namespace(front_.string(), front_.string(), front_));
  std::set<std::string> firsts;
  for (int i = 0; i < 3; ++i) {
    auto answer = lines(dig_in(front_, "+short cache"));
    ASSERT_EQ(answer.size(), 3u);
    firsts.insert(answer.front());
  }
  EXPECT_EQ(firsts.size(), 3u);
}

TEST_F(DnsAgentTest, ADeadUpstreamIsServfail) {
  const uint16_t nobody = dns::testing::free_port();  // nothing listens there
  DnsAgent agent(config({"127.0.0.1:" + std::to_string(nobody)}));
  agent.publish(names(front_.string(), back_.string()));
  ASSERT_TRUE(agent.add_namespace(front_.string(), front_.string(), front_));
  EXPECT_THAT(dig_in(front_, "up.example"), HasSubstr("status: SERVFAIL"));
  EXPECT_EQ(dig_in(front_, "+short web"), "10.0.1.2\n");  // its own names still answer
}

TEST_F(DnsAgentTest, AddIsIdempotentRemoveStopsServingAndFreesThePort) {
  DnsAgent agent(config({}));
  agent.publish(names(front_.string(), back_.string()));
  ASSERT_TRUE(agent.add_namespace(front_.string(), front_.string(), front_));
  ASSERT_TRUE(agent.add_namespace(front_.string(), front_.string(), front_));
  EXPECT_EQ(agent.namespaces(), 1u);
  EXPECT_EQ(dig_in(front_, "+short web"), "10.0.1.2\n");
  agent.remove_namespace(front_.string());
  EXPECT_EQ(agent.namespaces(), 0u);
  EXPECT_THAT(dig_in(front_, "web"), HasSubstr("no servers could be reached"));
  // Removed at once, so the same namespace can be served again.
  ASSERT_TRUE(agent.add_namespace(front_.string(), front_.string(), front_));
  EXPECT_EQ(dig_in(front_, "+short web"), "10.0.1.2\n");
  // A namespace that is gone is refused with a reason, nothing kept.
  EXPECT_FALSE(agent.add_namespace("gone", "gone", dir_.path() / "ns" / "gone"));
  EXPECT_EQ(agent.namespaces(), 1u);
}

TEST_F(DnsAgentTest, ARepublishedSnapshotChangesAnswersAtOnce) {
  DnsAgent agent(config({}));
  auto s = names(front_.string(), back_.string());
  agent.publish(s);
  ASSERT_TRUE(agent.add_namespace(front_.string(), front_.string(), front_));
  EXPECT_EQ(dig_in(front_, "+short web"), "10.0.1.2\n");
  s.services.erase(s.services.begin());  // web removed
  agent.publish(s);
  // Not ours any more, and with no upstream that is SERVFAIL, not the old VIP.
  EXPECT_THAT(dig_in(front_, "web"), HasSubstr("status: SERVFAIL"));
}

TEST_F(DnsAgentTest, TheLimitOnNamespacesHolds) {
  auto c = config({});
  c.max_namespaces = 1;
  DnsAgent agent(c);
  EXPECT_TRUE(agent.add_namespace(front_.string(), front_.string(), front_));
  EXPECT_FALSE(agent.add_namespace(back_.string(), back_.string(), back_));
  EXPECT_EQ(agent.namespaces(), 1u);
}

// A named namespace (under /run/netns) and the real /etc/netns, because
// that is where `ip netns exec` looks: glibc in the namespace resolves
// through the resolv.conf the agent wrote.
class NamedNamespace {
 public:
  NamedNamespace() : name_("weft-dns-test-" + std::to_string(::getpid())) {
    run("ip netns del " + name_);
    ok_ = run("ip netns add " + name_ + " && echo added").find("added") != std::string::npos;
  }
  ~NamedNamespace() { run("ip netns del " + name_); }
  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }
  fs::path path() const { return fs::path("/run/netns") / name_; }

 private:
  std::string name_;
  bool ok_ = false;
};

TEST_F(DnsAgentTest, GetentResolvesThroughTheWrittenResolvConf) {
  if (!have("getent") || !have("ip")) GTEST_SKIP() << "getent or ip missing";
  NamedNamespace named;
  ASSERT_TRUE(named.ok());
  const fs::path etc = fs::path("/etc/netns") / named.name();
  ASSERT_FALSE(fs::exists(etc)) << etc << " exists already";
  // The agent makes /etc/netns when the machine has none; the test leaves
  // the machine as it found it.
  struct RootCleanup {
    bool existed = fs::exists("/etc/netns");
    ~RootCleanup() {
      if (!existed) ::rmdir("/etc/netns");
    }
  } root_cleanup;
  Dnsmasq upstream({"--address=/up.example/192.0.2.77"});
  auto c = config({upstream_of(upstream)});
  c.resolv_root = "/etc/netns";
  {
    DnsAgent agent(c);
    const std::string context = named.path().string();
    agent.publish(names(context, "unused"));
    ASSERT_TRUE(agent.add_namespace(context, named.name(), named.path()));
    std::ifstream written(etc / "resolv.conf");
    std::string first;
    std::getline(written, first);
    EXPECT_THAT(first, StartsWith("# written by weftd (node node1, state dir "));

    const std::string exec = "ip netns exec " + named.name() + " ";
    EXPECT_THAT(run(exec + "cat /etc/resolv.conf"), HasSubstr("nameserver 127.0.0.11"));
    EXPECT_THAT(run(exec + "getent hosts web"), StartsWith("10.0.1.2 "));
    // gethostbyname, not getaddrinfo: AI_ADDRCONFIG (getent ahosts) finds
    // no IPv4 address but loopback in this namespace and asks nothing.
    auto tasks = lines(run(exec + "getent hosts tasks.web"));
    std::sort(tasks.begin(), tasks.end());
    EXPECT_EQ(tasks, (std::vector<std::string>{"10.0.1.5        tasks.web", "10.0.1.6        tasks.web"}));
    EXPECT_THAT(run(exec + "getent hosts up.example"), StartsWith("192.0.2.77 "));
    EXPECT_EQ(run(exec + "getent hosts db; echo status $?"), "status 2\n");  // NXDOMAIN: not found
    EXPECT_EQ(upstream.queries_for("web"), 0);  // AAAA web was answered here, empty

    agent.remove_namespace(context);
    EXPECT_FALSE(fs::exists(etc)) << "the resolv.conf (and the directory the agent made) should be gone";
  }
  std::error_code ec;
  fs::remove_all(etc, ec);
}

// sync(): the one call the wiring makes. From the model's objects it
// publishes the names and serves exactly the namespaces of local endpoints.
TEST_F(DnsAgentTest, SyncServesTheLocalNamespacesAndFollowsChanges) {
  DnsAgent agent(config({}));
  Network front_net;
  front_net.id = "id-front";
  front_net.name = "front";
  Network back_net;
  back_net.id = "id-back";
  back_net.name = "back";
  Service web;
  web.id = "svc-web";
  web.name = "web";
  web.network_ids = {"id-front"};
  web.vips = {{"id-front", ip("10.0.1.2"), 24}};
  auto make = [](std::string id, std::string name, std::string net, const char* addr, const fs::path& netns) {
    Endpoint e;
    e.id = std::move(id);
    e.name = std::move(name);
    e.network_id = std::move(net);
    e.ip = ip(addr);
    e.netns = netns.string();
    return e;
  };
  DnsInputs inputs;
  inputs.services = {web};
  inputs.networks = {front_net, back_net};
  // front_ is on both networks (two endpoints, one namespace, one socket).
  inputs.local_endpoints = {make("a", "alpha", "id-front", "10.0.1.20", front_),
                            make("b", "alpha-b", "id-back", "10.0.2.20", front_),
                            make("c", "gamma", "id-back", "10.0.2.21", back_)};
  inputs.endpoints = inputs.local_endpoints;
  agent.sync(inputs);
  EXPECT_EQ(agent.namespaces(), 2u);
  EXPECT_EQ(dig_in(front_, "+short web"), "10.0.1.2\n");
  EXPECT_EQ(dig_in(front_, "+short gamma"), "10.0.2.21\n");  // front_ sees back too
  EXPECT_THAT(dig_in(back_, "web"), HasSubstr("status: NXDOMAIN"));
  EXPECT_EQ(dig_in(back_, "+short alpha-b.back"), "10.0.2.20\n");

  // gamma detached: back_ is served no more; its name is gone everywhere.
  inputs.local_endpoints.pop_back();
  inputs.endpoints = inputs.local_endpoints;
  // The service went too.
  inputs.services.clear();
  agent.sync([&] { return inputs; });
  EXPECT_EQ(agent.namespaces(), 1u);
  EXPECT_FALSE(agent.serves(back_.string()));
  EXPECT_THAT(dig_in(back_, "web"), HasSubstr("no servers could be reached"));
  EXPECT_THAT(dig_in(front_, "gamma"), HasSubstr("status: SERVFAIL"));  // not ours: forwarded, no upstream
  EXPECT_THAT(dig_in(front_, "web"), HasSubstr("status: SERVFAIL"));
  EXPECT_EQ(dig_in(front_, "+short alpha"), "10.0.1.20\n");
}

// A namespace deleted without a detach: prune() lets it go (our sockets
// were the last thing keeping it), also a path that names a new namespace.
TEST_F(DnsAgentTest, PruneDropsNamespacesWhosePathIsGoneOrReplaced) {
  DnsAgent agent(config({}));
  ASSERT_TRUE(agent.add_namespace("front", front_.string(), front_));
  ASSERT_TRUE(agent.add_namespace("back", back_.string(), back_));
  EXPECT_TRUE(agent.prune().empty());
  dataplane::remove_pinned_netns(front_);
  dataplane::remove_pinned_netns(back_);
  dataplane::create_pinned_netns(back_);  // same path, another namespace
  EXPECT_EQ(agent.prune(), (std::vector<std::string>{"back", "front"}));
  EXPECT_EQ(agent.namespaces(), 0u);
  // The new namespace at that path can be served.
  ASSERT_TRUE(agent.add_namespace("back", back_.string(), back_));
  agent.publish(names("front", "back"));
  EXPECT_EQ(dig_in(back_, "+short db"), "10.0.2.2\n");
}

// A namespace whose sockets cannot be opened is tried once, not on every
// sync (no log flood), and again after it left the inputs.
TEST_F(DnsAgentTest, SyncDoesNotRetryAFailedNamespaceUntilItLeaves) {
  DnsAgent agent(config({}));
  const fs::path later = dir_.path() / "ns" / "later";
  Endpoint e;
  e.id = "a";
  e.name = "alpha";
  e.network_id = "n";
  e.ip = ip("10.0.0.2");
  e.netns = later.string();
  DnsInputs inputs;
  inputs.networks = {Network{}};
  inputs.networks[0].id = "n";
  inputs.networks[0].name = "net";
  inputs.local_endpoints = inputs.endpoints = {e};
  agent.sync(inputs);
  EXPECT_EQ(agent.namespaces(), 0u);
  ns_.make("later");
  agent.sync(inputs);
  EXPECT_EQ(agent.namespaces(), 0u);
  DnsInputs empty;
  agent.sync(empty);
  agent.sync(inputs);
  EXPECT_EQ(agent.namespaces(), 1u);
  EXPECT_EQ(dig_in(later, "+short alpha"), "10.0.0.2\n");
}

TEST(UpstreamsFromResolvConfTest, SkipsLoopbackAndIpv6) {
  weft::testing::ScratchDir dir;
  const auto path = dir.path() / "resolv.conf";
  std::ofstream(path) << "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver ::1\n"
                         "search example\nnameserver 198.51.100.2\n";
  std::vector<std::string> skipped;
  auto upstreams = upstreams_from_resolv_conf(path, &skipped);
  ASSERT_EQ(upstreams.size(), 2u);
  EXPECT_EQ(upstreams[0].address().to_string(), "192.0.2.1");
  EXPECT_EQ(upstreams[0].port(), 53);
  EXPECT_EQ(upstreams[1].address().to_string(), "198.51.100.2");
  EXPECT_EQ(skipped, (std::vector<std::string>{"127.0.0.53", "::1"}));
  EXPECT_TRUE(upstreams_from_resolv_conf(dir.path() / "missing").empty());
  DnsAgentConfig c;
  c.upstreams = {"not an address"};
  EXPECT_THROW(DnsAgent{c}, std::invalid_argument);
}

}  // namespace
}  // namespace weft::control::discovery

namespace weft::control::discovery {
namespace {

// A client inside `ns` sending A queries for `name` to 127.0.0.11:53 as fast
// as the agent answers, until stopped; counts the answers.
void flood_inside(const fs::path& ns, const std::string& name, const std::atomic<bool>& stop,
                  std::atomic<uint64_t>& answers) {
  const int ns_fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns_fd < 0 || ::setns(ns_fd, CLONE_NEWNET) != 0) return;  // this thread only
  ::close(ns_fd);
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(53);
  to.sin_addr.s_addr = htonl(0x7f00000b);  // 127.0.0.11
  ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  std::array<uint8_t, 1024> buffer{};
  uint16_t id = 0;
  while (!stop.load()) {
    for (int i = 0; i < 64; ++i) {
      const auto query = dns::testing::make_query(name, 1, id++);
      ::send(fd, query.data(), query.size(), MSG_DONTWAIT);
    }
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 1);
    while (::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT) > 0) answers.fetch_add(1);
  }
  ::close(fd);
}

std::size_t threads_of_this_process() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// A namespace flooding its resolver gets a receive thread; detaching it
// under that load stops the thread and closes the socket inside the
// namespace before remove_namespace returns, and the rest is still served.
TEST_F(DnsAgentTest, DetachUnderLoadLeavesNoReceiveThreadAndNoSocket) {
  DnsAgent agent(config({}));
  agent.publish(names(front_.string(), back_.string()));
  ASSERT_TRUE(agent.add_namespace(front_.string(), front_.string(), front_));
  ASSERT_TRUE(agent.add_namespace(back_.string(), back_.string(), back_));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> answers{0};
  std::thread load([&] { flood_inside(front_, "web", stop, answers); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (agent.stats().udp_threads == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(agent.stats().udp_threads, 1u) << "no receive thread for the flooded namespace";
  EXPECT_GT(agent.stats().promotions, 0u);
  const std::size_t threads_busy = threads_of_this_process();

  agent.remove_namespace(front_.string());
  EXPECT_EQ(agent.stats().udp_threads, 0u);
  EXPECT_EQ(threads_of_this_process(), threads_busy - 1) << "the receive thread outlived the detach";
  // Closed inside the namespace: 127.0.0.11:53 is free there again.
  boost::asio::io_context io;
  EXPECT_NO_THROW(dns::open_dns_sockets(io, front_));
  stop = true;
  load.join();
  EXPECT_GT(answers.load(), 0u);
  EXPECT_EQ(dig_in(back_, "+short db"), "10.0.2.2\n");
}

}  // namespace
}  // namespace weft::control::discovery
