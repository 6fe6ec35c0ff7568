// swarm.json (issue 7, item 8): a corrupt file is reported with its path and
// what is wrong, like the state file's errors.
#include <gtest/gtest.h>

#include <stdexcept>

#include "control/cluster/swarm_file.h"

namespace weft::control::cluster {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_swarm_file("/var/lib/weft/cluster/swarm.json", text);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(SwarmFileTest, RoundTrips) {
  SavedSwarm swarm{.node_id = "1z6win08hn039pkmew1fru9x5", .key = std::vector<unsigned char>(32, 7),
                   .peers = {"192.0.2.11:7946"}};
  auto back = parse_swarm_file("swarm.json", encode_swarm_file(swarm));
  EXPECT_EQ(back.node_id, swarm.node_id);
  EXPECT_EQ(back.key, swarm.key);
  EXPECT_EQ(back.peers, swarm.peers);
}

TEST(SwarmFileTest, CorruptFileIsNamedWithWhatIsWrong) {
  const std::vector<std::string> corrupt = {R"({"node_id": "abc", "key": )", "garbage\x01\x02", "[]",
                                            R"({"key": "AAAA"})", R"({"node_id": "abc", "key": "AAAA"})"};
  for (const auto& text : corrupt) {
    auto message = error_of(text);
    EXPECT_NE(message.find("/var/lib/weft/cluster/swarm.json"), std::string::npos) << message;
    EXPECT_NE(message.find("corrupt"), std::string::npos) << message;
  }
  auto bad_key = error_of(R"({"node_id": "abc", "key": "not base64!"})");
  EXPECT_NE(bad_key.find("/var/lib/weft/cluster/swarm.json"), std::string::npos) << bad_key;
  EXPECT_NE(bad_key.find("gossip key"), std::string::npos) << bad_key;
  EXPECT_NE(error_of(R"({"key": "AAAA"})").find("node_id"), std::string::npos);
}

}  // namespace
}  // namespace weft::control::cluster
