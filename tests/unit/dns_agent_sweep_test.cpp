// DnsAgent's first sync removes the resolv.conf files it wrote for named
// namespaces that no local endpoint is in any more (left by a kill -9, or
// by endpoints the start's reconcile dropped), and nothing else. No root:
// the namespaces it would serve do not exist, so only the files are looked at.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "control/discovery/dns_agent.h"
#include "dns/resolv_conf.h"
#include "tests/support/scratch_netns.h"

namespace weft::control::discovery {
namespace {

namespace fs = std::filesystem;

TEST(DnsAgentSweepTest, FirstSyncRemovesOnlyThisAgentsStaleFiles) {
  weft::testing::ScratchDir dir;
  DnsAgentConfig c;
  c.host_resolv_conf = dir.path() / "no-resolv.conf";
  c.node_name = "node1";
  c.state_dir = (dir.path() / "state").string();
  c.resolv_root = dir.path() / "etc-netns";
  // What an earlier run of the same agent (node and state dir) wrote.
  dns::ResolvConfConfig ours;
  ours.root = c.resolv_root;
  ours.node_name = c.node_name;
  ours.state_dir = c.state_dir;
  dns::ResolvConfConfig node2 = ours;
  node2.node_name = "node2";
  const dns::ResolvConfFiles earlier(ours);
  const dns::ResolvConfFiles other_agent(node2);
  ASSERT_EQ(earlier.write("gone").outcome, dns::ResolvConfFiles::Outcome::written);
  ASSERT_EQ(earlier.write("kept").outcome, dns::ResolvConfFiles::Outcome::written);
  ASSERT_EQ(other_agent.write("node2s").outcome, dns::ResolvConfFiles::Outcome::written);
  fs::create_directories(c.resolv_root / "users");
  std::ofstream(c.resolv_root / "users" / "resolv.conf") << "nameserver 192.0.2.1\n";

  DnsAgent agent(c);
  DnsInputs inputs;
  Endpoint e;
  e.id = "e1";
  e.network_id = "n1";
  e.netns = "kept";  // its namespace does not exist: not served, but still an endpoint's
  inputs.local_endpoints.push_back(e);
  agent.sync(inputs);

  EXPECT_FALSE(fs::exists(c.resolv_root / "gone")) << "ours, and no endpoint is in that namespace";
  EXPECT_TRUE(fs::exists(c.resolv_root / "kept" / "resolv.conf"));
  EXPECT_TRUE(fs::exists(c.resolv_root / "node2s" / "resolv.conf")) << "another agent's";
  EXPECT_TRUE(fs::exists(c.resolv_root / "users" / "resolv.conf")) << "the user's";

  // Only the first sync sweeps: a later file of ours for a namespace this
  // agent does not serve (not that it would write one) is left alone.
  ASSERT_EQ(earlier.write("later").outcome, dns::ResolvConfFiles::Outcome::written);
  agent.sync(inputs);
  EXPECT_TRUE(fs::exists(c.resolv_root / "later" / "resolv.conf"));
}

}  // namespace
}  // namespace weft::control::discovery
