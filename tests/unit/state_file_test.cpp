#include "control/network/state_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace weft::control::network {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class StateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "weft-state-file-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << "mkdtemp failed";
    dir_ = pattern;
  }

  void TearDown() override {
    // A test may have left a directory read-only; make everything removable.
    std::error_code ignored;
    for (const auto& entry : fs::recursive_directory_iterator(dir_, ignored)) {
      if (entry.is_directory(ignored)) {
        fs::permissions(entry.path(), fs::perms::owner_all, fs::perm_options::add, ignored);
      }
    }
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ignored);
    fs::remove_all(dir_, ignored);
  }

  static std::vector<std::string> entries(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  static unsigned mode_of(const fs::path& path) {
    struct stat info {};
    EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
    return info.st_mode & 07777;
  }

  // Runs `action`, expects std::system_error, returns its message.
  template <typename Action>
  static std::string expect_system_error(Action action) {
    try {
      action();
    } catch (const std::system_error& error) {
      EXPECT_NE(error.code().value(), 0);
      return error.what();
    }
    ADD_FAILURE() << "expected std::system_error";
    return {};
  }

  fs::path dir_;
};

TEST_F(StateFileTest, RoundTrip) {
  const fs::path path = dir_ / "state.json";
  write_file_atomically(path, R"({"networks": []})");
  EXPECT_EQ(read_file(path), std::optional<std::string>(R"({"networks": []})"));
  EXPECT_THAT(entries(dir_), ElementsAre("state.json"));
}

TEST_F(StateFileTest, RoundTripsEmptyAndBinaryContent) {
  const fs::path path = dir_ / "blob";
  write_file_atomically(path, "");
  EXPECT_EQ(read_file(path), std::optional<std::string>(""));

  std::string binary;
  for (int i = 0; i < 256; ++i) {
    binary.push_back(static_cast<char>(i));
  }
  write_file_atomically(path, binary);
  EXPECT_EQ(read_file(path), std::optional<std::string>(binary));
}

TEST_F(StateFileTest, RoundTripsLargeContent) {
  // Bigger than one read buffer, so both the write and the read loop repeat.
  std::string big;
  for (int i = 0; big.size() < 3 * 1024 * 1024 + 17; ++i) {
    big += "line " + std::to_string(i) + "\n";
  }
  const fs::path path = dir_ / "big";
  write_file_atomically(path, big);
  const auto back = read_file(path);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->size(), big.size());
  EXPECT_TRUE(*back == big);
}

TEST_F(StateFileTest, ReplaceLeavesOnlyNewContentAndNoTempFile) {
  const fs::path path = dir_ / "state.json";
  write_file_atomically(path, "old content that is longer than the new one");
  write_file_atomically(path, "new");
  EXPECT_EQ(read_file(path), std::optional<std::string>("new"));
  EXPECT_THAT(entries(dir_), ElementsAre("state.json"));
}

TEST_F(StateFileTest, ReplaceSwapsTheInode) {
  // A reader that opened the old file keeps seeing the old content: proof
  // that the file was renamed over, not rewritten in place.
  const fs::path path = dir_ / "state.json";
  write_file_atomically(path, "old");
  std::ifstream reader(path);
  ASSERT_TRUE(reader.is_open());
  write_file_atomically(path, "new");
  std::string seen;
  std::getline(reader, seen);
  EXPECT_EQ(seen, "old");
  EXPECT_EQ(read_file(path), std::optional<std::string>("new"));
}

TEST_F(StateFileTest, MissingFileIsNullopt) {
  EXPECT_EQ(read_file(dir_ / "absent.json"), std::nullopt);
  EXPECT_EQ(read_file(dir_ / "no-such-dir" / "absent.json"), std::nullopt);
}

TEST_F(StateFileTest, ReadingDirectoryThrows) {
  const std::string message = expect_system_error([&] { read_file(dir_); });
  EXPECT_THAT(message, HasSubstr(dir_.string()));
}

TEST_F(StateFileTest, CreatesPrivateParentDirectories) {
  const fs::path path = dir_ / "a" / "b" / "state.json";
  write_file_atomically(path, "x");
  EXPECT_EQ(read_file(path), std::optional<std::string>("x"));
  EXPECT_EQ(mode_of(dir_ / "a"), 0700u);
  EXPECT_EQ(mode_of(dir_ / "a" / "b"), 0700u);
  // The state file itself is not readable by other users either.
  EXPECT_EQ(mode_of(path) & 077, 0u);
}

TEST_F(StateFileTest, ParentThatIsAFileThrows) {
  const fs::path blocker = dir_ / "plain-file";
  write_file_atomically(blocker, "not a directory");
  const fs::path path = blocker / "sub" / "state.json";
  const std::string message = expect_system_error([&] { write_file_atomically(path, "x"); });
  EXPECT_THAT(message, HasSubstr(path.string()));
  EXPECT_THAT(entries(dir_), ElementsAre("plain-file"));
  EXPECT_EQ(read_file(blocker), std::optional<std::string>("not a directory"));
}

TEST_F(StateFileTest, FailedRenameLeavesNoTempFile) {
  // Renaming a file over a directory fails even for root.
  const fs::path path = dir_ / "state.json";
  fs::create_directory(path);
  const std::string message = expect_system_error([&] { write_file_atomically(path, "x"); });
  EXPECT_THAT(message, HasSubstr(path.string()));
  EXPECT_THAT(entries(dir_), ElementsAre("state.json"));
  EXPECT_TRUE(fs::is_directory(path));
}

TEST_F(StateFileTest, UnwritableDirectoryThrowsAndKeepsOldContent) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "root ignores directory permissions";
  }
  const fs::path locked = dir_ / "locked";
  const fs::path path = locked / "state.json";
  write_file_atomically(path, "old");
  fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec);
  const std::string message = expect_system_error([&] { write_file_atomically(path, "new"); });
  EXPECT_THAT(message, HasSubstr(path.string()));
  EXPECT_EQ(read_file(path), std::optional<std::string>("old"));
  EXPECT_THAT(entries(locked), ElementsAre("state.json"));
}

TEST_F(StateFileTest, LeftoverTempFilesAreRemovedAndNothingElse) {
  const fs::path state = dir_ / "state.json";
  write_file_atomically(state, "{}");
  // What write_file_atomically leaves when the process is killed mid-write,
  // for the state file and for another file in the same dir.
  for (const char* name : {".state.json.tmp.Ab12Cd", ".state.json.tmp.zzzzzz", ".tables.tmp.000000"})
    std::ofstream(dir_ / name) << "partial";
  // Look-alikes that are not its temp files stay.
  for (const char* name : {"state.json.tmp.Ab12Cd", ".state.json.tmp.short", ".state.json.tmp.Ab12Cd7", ".notes"})
    std::ofstream(dir_ / name) << "keep";
  fs::create_directory(dir_ / ".dir.tmp.Ab12Cd");

  EXPECT_THAT(remove_leftover_temp_files(dir_),
              ElementsAre(".state.json.tmp.Ab12Cd", ".state.json.tmp.zzzzzz", ".tables.tmp.000000"));
  EXPECT_THAT(entries(dir_), ElementsAre(".dir.tmp.Ab12Cd", ".notes", ".state.json.tmp.Ab12Cd7",
                                         ".state.json.tmp.short", "state.json", "state.json.tmp.Ab12Cd"));
  EXPECT_EQ(read_file(state), "{}");
  EXPECT_TRUE(remove_leftover_temp_files(dir_).empty());
  EXPECT_TRUE(remove_leftover_temp_files(dir_ / "missing").empty());
}

TEST_F(StateFileTest, UnsyncedReplaceIsAtomicAndLeavesNoTempFile) {
  const fs::path file = dir_ / "sub" / "state.json";
  replace_file_unsynced(file, "one");
  replace_file_unsynced(file, "two");
  EXPECT_EQ(read_file(file), "two");
  EXPECT_THAT(entries(dir_ / "sub"), ElementsAre("state.json"));
  EXPECT_EQ(mode_of(dir_ / "sub"), 0700u);
}

}  // namespace
}  // namespace weft::control::network
