// In-process clusters with fast timings. Every node runs on one io_context
// driven by the test thread, so the tests are deterministic in structure and
// bounded in time (each wait has a deadline). Most clusters talk over an
// InProcessNetwork (no sockets: nothing is lost to a loaded machine's UDP,
// and a test can cut a node off); the *OverSockets tests and the plaintext
// one use UDP and TCP on 127.0.0.1.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "control/gossip/inprocess_transport.h"
#include "control/gossip/memberlist.h"
#include "control/gossip/serf_compat.h"
#include "tests/support/fast_gossip.h"

namespace gossip = weft::control::gossip;
namespace asio = boost::asio;
using gossip::Bytes;
using namespace std::chrono_literals;

namespace {

// Stands in for weft's replicated tables: one broadcast, one state blob.
class RecordingApp : public gossip::Delegate {
 public:
  explicit RecordingApp(std::string name) : name_(std::move(name)) {}
  Bytes node_meta(std::size_t) override { return {}; }
  void notify_msg(gossip::ByteView msg) override { messages.emplace_back(msg.begin(), msg.end()); }
  std::vector<Bytes> get_broadcasts(std::size_t, std::size_t limit) override {
    if (pending.empty() || pending.front().size() > limit) return {};
    std::vector<Bytes> out{pending.front()};
    // Sent with a number of gossip rounds, as a retransmit limit would: enough
    // that a datagram lost on a loaded machine does not fail the test.
    if (++sent_times >= 20) {
      pending.clear();
      sent_times = 0;
    }
    return out;
  }
  Bytes local_state(bool) override { return Bytes(name_.begin(), name_.end()); }
  void merge_remote_state(gossip::ByteView state, bool) override { states.emplace_back(state.begin(), state.end()); }

  std::vector<Bytes> pending;
  int sent_times = 0;
  std::vector<std::string> messages;
  std::vector<std::string> states;

 private:
  std::string name_;
};

gossip::Config fast_config(const std::string& name, std::shared_ptr<gossip::Keyring> keyring) {
  gossip::Config c = weft::testing::fast_gossip_timings();
  c.name = name;
  c.bind_addr = "127.0.0.1";
  c.bind_port = 0;
  c.keyring = std::move(keyring);
  return c;
}

struct TestNode {
  // Without a transport: UDP and TCP on 127.0.0.1.
  TestNode(asio::io_context& io, const std::string& name, std::shared_ptr<gossip::Keyring> keyring,
           std::unique_ptr<gossip::Transport> transport = nullptr)
      : app(name),
        serf(io, name, {{"role", "weft"}}, &app),
        ml(io, fast_config(name, std::move(keyring)), &serf, &serf, std::move(transport)) {
    serf.attach(&ml);
    ml.start();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(ml.bound_port()); }
  gossip::HostPort host_port() const { return {asio::ip::make_address("127.0.0.1"), ml.bound_port()}; }
  std::optional<gossip::NodeStateKind> state_of(const std::string& name) const {
    for (const auto& m : ml.members()) {
      if (m.name == name) return m.state;
    }
    return std::nullopt;
  }

  RecordingApp app;
  gossip::SerfCompat serf;
  gossip::Memberlist ml;  // declared last: destroyed first, before its delegates
};

class GossipCluster : public ::testing::Test {
 protected:
  void SetUp() override { key = std::make_shared<gossip::Keyring>(Bytes(32, 0x5a)); }

  TestNode& add(const std::string& name, std::shared_ptr<gossip::Keyring> keyring = nullptr) {
    nodes.push_back(std::make_unique<TestNode>(io, name, keyring ? keyring : key,
                                               over_sockets ? nullptr : network->transport()));
    return *nodes.back();
  }

  // Runs the io_context until `done()` or the deadline; returns done().
  template <class Pred>
  bool run_until(Pred done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io.run_for(10ms);
    }
    return true;
  }

  int join(TestNode& node, const TestNode& seed) {
    int result = -1;
    node.ml.join({seed.address()}, [&](int ok, std::string err) {
      result = ok;
      if (ok == 0) last_join_error = err;
    });
    EXPECT_TRUE(run_until([&] { return result >= 0; }, 3s));
    if (result > 0) node.serf.broadcast_join();
    return result;
  }

  bool all_see(const std::vector<std::string>& names, gossip::NodeStateKind state,
               const std::vector<TestNode*>& observers) {
    for (auto* o : observers) {
      for (const auto& n : names) {
        if (o->state_of(n) != state) return false;
      }
    }
    return true;
  }

  std::vector<TestNode*> live(std::initializer_list<std::size_t> idx) {
    std::vector<TestNode*> out;
    for (auto i : idx) out.push_back(nodes[i].get());
    return out;
  }

  void form_cluster(std::size_t n) {
    add("node0");
    for (std::size_t i = 1; i < n; ++i) ASSERT_EQ(join(add("node" + std::to_string(i)), *nodes[0]), 1) << last_join_error;
    std::vector<std::string> names;
    std::vector<TestNode*> observers;
    for (auto& node : nodes) {
      names.push_back(node->ml.config().name);
      observers.push_back(node.get());
    }
    ASSERT_TRUE(run_until([&] { return all_see(names, gossip::NodeStateKind::kAlive, observers); }, 5s))
        << "cluster of " << n << " did not converge";
  }

  asio::io_context io;
  std::shared_ptr<gossip::InProcessNetwork> network = gossip::InProcessNetwork::create(io);
  bool over_sockets = false;
  std::shared_ptr<gossip::Keyring> key;
  std::vector<std::unique_ptr<TestNode>> nodes;
  std::string last_join_error;
};

}  // namespace

TEST_F(GossipCluster, AllNodesConvergeAlive) {
  form_cluster(4);
  for (auto& n : nodes) {
    EXPECT_EQ(n->ml.num_alive(), 4u);
    for (const auto& m : n->ml.members()) {
      EXPECT_EQ(gossip::decode_serf_tags(m.meta).at("role"), "weft");
      EXPECT_EQ(m.vsn, gossip::kDefaultVersions);
    }
  }
}

TEST_F(GossipCluster, StoppedNodeIsDetectedDead) {
  form_cluster(4);
  nodes[3]->ml.shutdown();  // crash: no leave
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_until([&] { return all_see({"node3"}, gossip::NodeStateKind::kDead, live({0, 1, 2})); }, 6s))
      << "node3 not declared dead";
  // Suspicion min timeout here is 4 * 100 ms; with confirmations from the
  // other two nodes it should take well under the 2.4 s maximum.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  EXPECT_TRUE(all_see({"node0", "node1", "node2"}, gossip::NodeStateKind::kAlive, live({0, 1, 2})));
}

TEST_F(GossipCluster, GracefulLeaveShowsLeft) {
  form_cluster(4);
  std::optional<bool> left;
  nodes[2]->serf.leave(1s, 100ms, [&](bool ok) { left = ok; });
  ASSERT_TRUE(run_until([&] { return left.has_value(); }, 3s));
  EXPECT_TRUE(*left);
  ASSERT_TRUE(run_until([&] { return all_see({"node2"}, gossip::NodeStateKind::kLeft, live({0, 1, 3})); }, 3s));
  // The serf-level leave intent arrives too (serf needs it to say "left").
  // It is gossiped apart from memberlist's leave, so it may reach node0 a
  // gossip round after the memberlist state does: wait for it, bounded.
  EXPECT_TRUE(run_until([&] { return nodes[0]->serf.is_leaving("node2"); }, 2s));
  nodes[2]->ml.shutdown();
  // A left node is not suspected or marked dead afterwards.
  run_until([] { return false; }, 1s);
  EXPECT_TRUE(all_see({"node2"}, gossip::NodeStateKind::kLeft, live({0, 1, 3})));
}

// A push/pull between a node's leave intent and the intent's arrival (a
// peer's periodic sync as the node leaves) must not hide the leave: the
// leaving status, sent as a join with the intent's time, made the peer
// drop the intent (same time), so real serf agents showed the node failed,
// not left. (weft peers healed on a later push/pull; serf does not.)
TEST_F(GossipCluster, PushPullDuringLeaveKeepsTheLeaveIntent) {
  form_cluster(3);
  const std::uint64_t intent_time = nodes[2]->serf.clock().time();  // what leave() stamps
  std::optional<bool> left;
  nodes[2]->serf.leave(1s, 100ms, [&](bool ok) { left = ok; });
  // node2's state merged by node0 before any gossip round ran, then the
  // intent as node2 gossips it.
  nodes[0]->serf.merge_remote_state(nodes[2]->serf.local_state(false), false);
  EXPECT_FALSE(nodes[0]->serf.is_leaving("node2"));
  nodes[0]->serf.notify_msg(gossip::encode_serf_leave({intent_time, "node2", false}));
  EXPECT_TRUE(nodes[0]->serf.is_leaving("node2"));
  ASSERT_TRUE(run_until([&] { return left.has_value(); }, 3s));
  EXPECT_TRUE(*left);
  EXPECT_TRUE(run_until([&] { return nodes[1]->serf.is_leaving("node2"); }, 2s));
}

TEST_F(GossipCluster, NodeWithWrongKeyStaysOut) {
  form_cluster(3);
  auto& intruder = add("intruder", std::make_shared<gossip::Keyring>(Bytes(32, 0x11)));
  EXPECT_EQ(join(intruder, *nodes[0]), 0);
  EXPECT_NE(last_join_error.find("decrypt"), std::string::npos) << last_join_error;
  run_until([] { return false; }, 1s);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_FALSE(nodes[i]->state_of("intruder").has_value());
  EXPECT_EQ(intruder.ml.members().size(), 1u);
}

TEST_F(GossipCluster, KeyRotationKeepsClusterTogether) {
  // node1 already prefers a new key but still accepts the old one.
  add("node0");
  auto rotated = std::make_shared<gossip::Keyring>(Bytes(16, 0x77), std::vector<Bytes>{Bytes(32, 0x5a)});
  auto& n1 = add("node1", rotated);
  ASSERT_EQ(join(n1, *nodes[0]), 0) << "node0 cannot read the new key yet";
  key->add_key(Bytes(16, 0x77));
  ASSERT_EQ(join(n1, *nodes[0]), 1) << last_join_error;
  EXPECT_TRUE(run_until([&] { return all_see({"node0", "node1"}, gossip::NodeStateKind::kAlive, live({0, 1})); }, 3s));
}

TEST_F(GossipCluster, ApplicationMessagesAndStateFlowThroughSerfCompat) {
  form_cluster(3);
  nodes[0]->app.pending.push_back(Bytes{'h', 'e', 'l', 'l', 'o'});
  ASSERT_TRUE(run_until(
      [&] {
        return std::count(nodes[1]->app.messages.begin(), nodes[1]->app.messages.end(), "hello") > 0 &&
               std::count(nodes[2]->app.messages.begin(), nodes[2]->app.messages.end(), "hello") > 0;
      },
      10s));
  // Join push/pull carried node0's app state to the joiners, inside serf's
  // push/pull map ("WeftState").
  EXPECT_GT(std::count(nodes[1]->app.states.begin(), nodes[1]->app.states.end(), "node0"), 0);
}

TEST_F(GossipCluster, PlaintextClusterWithoutKeyring) {
  // add() substitutes the fixture key for null, so build plaintext nodes by hand.
  TestNode p0(io, "p0", nullptr), p1(io, "p1", nullptr);
  int joined = -1;
  p1.ml.join({p0.address()}, [&](int ok, std::string) { joined = ok; });
  ASSERT_TRUE(run_until([&] { return joined >= 0; }, 3s));
  EXPECT_EQ(joined, 1);
  EXPECT_TRUE(run_until([&] { return p0.state_of("p1") == gossip::NodeStateKind::kAlive; }, 3s));
}

TEST_F(GossipCluster, NodeWithBlockedUdpIsKeptAliveByTcpPings) {
  form_cluster(3);
  // node2's UDP is firewalled; its TCP port still answers. Probes of it fail
  // over UDP, but the TCP ping fallback finds it alive, so it is never
  // suspected (memberlist's "UDP probes failed, network may be misconfigured").
  network->drop_packets(nodes[2]->host_port());
  run_until([] { return false; }, 1500ms);
  EXPECT_TRUE(all_see({"node2"}, gossip::NodeStateKind::kAlive, live({0, 1})));
  EXPECT_GT(network->streams_opened(), 0u);
}

TEST_F(GossipCluster, CutOffNodeIsDetectedDeadWhileItKeepsRunning) {
  form_cluster(4);
  network->cut_off(nodes[3]->host_port());
  ASSERT_TRUE(run_until([&] { return all_see({"node3"}, gossip::NodeStateKind::kDead, live({0, 1, 2})); }, 6s))
      << "node3 not declared dead";
  EXPECT_TRUE(all_see({"node0", "node1", "node2"}, gossip::NodeStateKind::kAlive, live({0, 1, 2})));
}

class GossipClusterOverSockets : public GossipCluster {
 protected:
  void SetUp() override {
    GossipCluster::SetUp();
    over_sockets = true;
  }
};

TEST_F(GossipClusterOverSockets, FourNodesConvergeAndCarryMessagesAndState) {
  form_cluster(4);
  for (auto& n : nodes) EXPECT_EQ(n->ml.num_alive(), 4u);
  nodes[0]->app.pending.push_back(Bytes{'h', 'e', 'l', 'l', 'o'});
  ASSERT_TRUE(run_until(
      [&] {
        for (std::size_t i = 1; i < nodes.size(); ++i) {
          if (std::count(nodes[i]->app.messages.begin(), nodes[i]->app.messages.end(), "hello") == 0) return false;
        }
        return true;
      },
      10s));
  EXPECT_GT(std::count(nodes[1]->app.states.begin(), nodes[1]->app.states.end(), "node0"), 0);
}

TEST_F(GossipClusterOverSockets, StoppedNodeIsDetectedDead) {
  form_cluster(3);
  nodes[2]->ml.shutdown();
  ASSERT_TRUE(run_until([&] { return all_see({"node2"}, gossip::NodeStateKind::kDead, live({0, 1})); }, 6s));
}

TEST_F(GossipCluster, JoinErrorsNameThePeerAndTheCause) {
  auto& n0 = add("node0");
  auto& n1 = add("node1");
  std::optional<std::string> refused, timed_out, unparsable;
  n0.ml.join({"127.0.0.1:1"}, [&](int, std::string err) { refused = err; });
  network->cut_off(n1.host_port());
  n0.ml.join({n1.address()}, [&](int, std::string err) { timed_out = err; });
  n0.ml.join({"127.0.0.1:"}, [&](int, std::string err) { unparsable = err; });
  ASSERT_TRUE(run_until([&] { return refused && timed_out && unparsable; }, 3s));
  EXPECT_EQ(*refused, "failed to join 127.0.0.1: connect to 127.0.0.1:1 failed: Connection refused");
  EXPECT_EQ(*timed_out, "failed to join 127.0.0.1: connect to " + n1.address() + " failed: timed out");
  EXPECT_EQ(*unparsable, "peer '127.0.0.1:': bad port ''");
}
