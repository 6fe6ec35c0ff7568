// /etc/netns/NAME/resolv.conf: written with our marker, removed only when
// ours, never over someone else's, atomically.
#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "dns/resolv_conf.h"
#include "tests/support/scratch_netns.h"

namespace weft::dns {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

void put(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

class ResolvConfTest : public ::testing::Test {
 protected:
  ResolvConfConfig config(std::vector<std::string> search = {}) {
    ResolvConfConfig c;
    c.root = dir_.path() / "netns";
    c.node_name = "node1";
    c.state_dir = "/var/lib/weft";
    c.search = std::move(search);
    return c;
  }
  weft::testing::ScratchDir dir_;
};

TEST_F(ResolvConfTest, WritesMarkerNameserverAndNdots) {
  ResolvConfFiles files(config());
  auto result = files.write("c1");
  ASSERT_EQ(result.outcome, ResolvConfFiles::Outcome::written) << result.error;
  const auto text = slurp(dir_.path() / "netns/c1/resolv.conf");
  EXPECT_THAT(text, StartsWith("# written by weftd (node node1, state dir /var/lib/weft)\n"));
  EXPECT_THAT(text, HasSubstr("\nnameserver 127.0.0.11\n"));
  EXPECT_THAT(text, HasSubstr("\noptions ndots:0\n"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("search")));
}

TEST_F(ResolvConfTest, SearchDomainsWhenConfigured) {
  ResolvConfFiles files(config({"svc.example", "example"}));
  ASSERT_EQ(files.write("c1").outcome, ResolvConfFiles::Outcome::written);
  EXPECT_THAT(slurp(dir_.path() / "netns/c1/resolv.conf"), HasSubstr("\nsearch svc.example example\n"));
}

TEST_F(ResolvConfTest, BadSearchDomainsAreRefusedAtStart) {
  EXPECT_THROW(ResolvConfFiles(config({"a b"})), std::invalid_argument);
  EXPECT_THROW(ResolvConfFiles(config({"x\nnameserver 6.6.6.6"})), std::invalid_argument);
  EXPECT_THROW(ResolvConfFiles(config({""})), std::invalid_argument);
  EXPECT_THROW(ResolvConfFiles(config({"a", "b", "c", "d", "e", "f", "g"})), std::invalid_argument);
  auto c = config();
  c.node_name = "evil\nnameserver 6.6.6.6";
  EXPECT_THROW(ResolvConfFiles{c}, std::invalid_argument);
}

TEST_F(ResolvConfTest, RemoveTakesFileAndTheDirectoryItMade) {
  ResolvConfFiles files(config());
  ASSERT_EQ(files.write("c1").outcome, ResolvConfFiles::Outcome::written);
  auto removal = files.remove("c1");
  EXPECT_TRUE(removal.removed) << removal.error;
  EXPECT_FALSE(fs::exists(dir_.path() / "netns/c1"));
  EXPECT_TRUE(fs::exists(dir_.path() / "netns"));
  // Nothing there any more: not an error.
  removal = files.remove("c1");
  EXPECT_FALSE(removal.removed);
  EXPECT_TRUE(removal.error.empty());
}

TEST_F(ResolvConfTest, ADirectoryThatWasThereStays) {
  fs::create_directories(dir_.path() / "netns/c1");
  put(dir_.path() / "netns/c1/hosts", "127.0.0.1 localhost\n");
  ResolvConfFiles files(config());
  ASSERT_EQ(files.write("c1").outcome, ResolvConfFiles::Outcome::written);
  EXPECT_TRUE(files.remove("c1").removed);
  EXPECT_FALSE(fs::exists(dir_.path() / "netns/c1/resolv.conf"));
  EXPECT_TRUE(fs::exists(dir_.path() / "netns/c1/hosts"));
  // Even once empty, a directory we did not make is not ours to remove.
  fs::remove(dir_.path() / "netns/c1/hosts");
  ASSERT_EQ(files.write("c1").outcome, ResolvConfFiles::Outcome::written);
  EXPECT_TRUE(files.remove("c1").removed);
  EXPECT_TRUE(fs::is_directory(dir_.path() / "netns/c1"));
}

TEST_F(ResolvConfTest, AForeignFileIsLeftAloneOnWriteAndRemove) {
  const auto path = dir_.path() / "netns/c1/resolv.conf";
  put(path, "nameserver 192.0.2.53\n");
  ResolvConfFiles files(config());
  auto result = files.write("c1");
  EXPECT_EQ(result.outcome, ResolvConfFiles::Outcome::foreign);
  EXPECT_THAT(result.error, HasSubstr(path.string()));
  EXPECT_EQ(slurp(path), "nameserver 192.0.2.53\n");
  auto removal = files.remove("c1");
  EXPECT_FALSE(removal.removed);
  EXPECT_THAT(removal.error, HasSubstr("not ours"));
  EXPECT_EQ(slurp(path), "nameserver 192.0.2.53\n");
}

TEST_F(ResolvConfTest, AnotherAgentsFileIsForeignToo) {
  auto other = config();
  other.state_dir = "/var/lib/weft-other";
  ASSERT_EQ(ResolvConfFiles(other).write("c1").outcome, ResolvConfFiles::Outcome::written);
  const auto before = slurp(dir_.path() / "netns/c1/resolv.conf");
  ResolvConfFiles ours(config());
  EXPECT_EQ(ours.write("c1").outcome, ResolvConfFiles::Outcome::foreign);
  EXPECT_FALSE(ours.remove("c1").removed);
  EXPECT_EQ(slurp(dir_.path() / "netns/c1/resolv.conf"), before);
}

// A restarted agent (a new instance) rewrites its own file and still knows
// it made the directory.
TEST_F(ResolvConfTest, OurFileSurvivesARestartWithItsDirectoryOwnership) {
  ASSERT_EQ(ResolvConfFiles(config()).write("c1").outcome, ResolvConfFiles::Outcome::written);
  ResolvConfFiles restarted(config({"example"}));
  ASSERT_EQ(restarted.write("c1").outcome, ResolvConfFiles::Outcome::written);
  EXPECT_THAT(slurp(dir_.path() / "netns/c1/resolv.conf"), HasSubstr("search example"));
  EXPECT_TRUE(restarted.remove("c1").removed);
  EXPECT_FALSE(fs::exists(dir_.path() / "netns/c1"));
}

// The file is replaced by a rename: a reader that opened the old one reads
// it whole, the path shows the new one whole, no temporary file stays.
TEST_F(ResolvConfTest, RewriteIsAtomicAndLeavesNoTemporaryFile) {
  const auto path = dir_.path() / "netns/c1/resolv.conf";
  ASSERT_EQ(ResolvConfFiles(config()).write("c1").outcome, ResolvConfFiles::Outcome::written);
  const auto old_text = slurp(path);
  const int old_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(old_fd, 0);
  // A temporary file a killed agent left behind is cleaned up.
  put(dir_.path() / "netns/c1/.resolv.conf.weftd-123.tmp", "partial");
  ASSERT_EQ(ResolvConfFiles(config({"example"})).write("c1").outcome, ResolvConfFiles::Outcome::written);
  std::string seen(4096, '\0');
  const auto n = ::pread(old_fd, seen.data(), seen.size(), 0);
  ::close(old_fd);
  ASSERT_GT(n, 0);
  seen.resize(static_cast<std::size_t>(n));
  EXPECT_EQ(seen, old_text);
  EXPECT_THAT(slurp(path), HasSubstr("search example"));
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir_.path() / "netns/c1")) names.push_back(entry.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"resolv.conf"});
}

TEST_F(ResolvConfTest, NamesThatAreNoNamespaceNamesAreRefused) {
  ResolvConfFiles files(config());
  for (const std::string& name : std::vector<std::string>{"", ".", "..", "a/b", "../etc", std::string(256, 'x'), std::string("a\nb")})
    EXPECT_EQ(files.write(name).outcome, ResolvConfFiles::Outcome::bad_name) << name;
  EXPECT_FALSE(fs::exists(dir_.path() / "netns"));
}

TEST_F(ResolvConfTest, AnUnwritableRootFailsWithTheReason) {
  put(dir_.path() / "netns", "a file, not a directory");
  auto result = ResolvConfFiles(config()).write("c1");
  EXPECT_EQ(result.outcome, ResolvConfFiles::Outcome::failed);
  EXPECT_THAT(result.error, HasSubstr((dir_.path() / "netns").string()));
}

}  // namespace
}  // namespace weft::dns
