// The replicated tables on disk (control/cluster/tables_journal.h): a
// snapshot plus a journal of the changes since, read back as they were last
// recorded, whatever a crash cut.
#include "control/cluster/tables_journal.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <tuple>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

#include "control/network/state_file.h"

namespace {
namespace fs = std::filesystem;
using weft::control::cluster::TablesJournal;
using weft::control::tables::TableEntry;

TableEntry entry(const std::string& key, std::uint64_t lamport, const std::string& value, bool deleted = false) {
  return TableEntry{.table = "networks", .key = key, .owner = "node1", .lamport = lamport, .deleted = deleted,
                    .value = value};
}

class TablesJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("weft-tables-journal-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  TablesJournal journal() { return TablesJournal(dir / "tables.bin", dir / "tables.journal"); }
  std::uintmax_t journal_size() { return fs::file_size(dir / "tables.journal"); }
  void cut_journal(std::uintmax_t bytes) { fs::resize_file(dir / "tables.journal", journal_size() - bytes); }

  fs::path dir;
};

TEST_F(TablesJournalTest, ASnapshotFromTheHeldTablesIsTheSameFile) {
  // compact(tables) packs each entry as it decodes it: the bytes must be
  // those of compact(tables.snapshot()), whatever the keys and values.
  weft::control::tables::ReplicatedTables tables("node1", {"endpoints"});
  std::string id(64, 'a');
  for (int i = 0; i < 300; ++i) {
    id[i % 64] = "0123456789abcdef"[i % 16];
    tables.put("endpoints", id, R"({"id":")" + id + R"(","n":)" + std::to_string(i) + "}");
    tables.put("networks", "net" + std::to_string(i), std::string(static_cast<std::size_t>(i), 'x'));
  }
  tables.remove("networks", "net7");
  ASSERT_GT(tables.size(), 600u - 300u);
  ASSERT_EQ(tables.size(), tables.snapshot().size());
  {
    auto j = journal();
    j.open();
    j.compact(tables.snapshot());
  }
  std::ifstream whole_in(dir / "tables.bin", std::ios::binary);
  const std::string whole((std::istreambuf_iterator<char>(whole_in)), std::istreambuf_iterator<char>());
  {
    auto j = journal();
    j.open();
    j.compact(tables);  // (written in pieces, its stamp computed as it goes)
    j.append({entry("zz", 9, "Z9")}, {});
  }
  std::ifstream held_in(dir / "tables.bin", std::ios::binary);
  const std::string held((std::istreambuf_iterator<char>(held_in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(held, whole);
  // The journal follows that snapshot: its record is replayed over it.
  auto j = journal();
  auto loaded = j.open();
  EXPECT_EQ(loaded.records_replayed, 1u);
  auto expected = tables.snapshot();
  expected.push_back(entry("zz", 9, "Z9"));
  std::sort(expected.begin(), expected.end(),
            [](const auto& a, const auto& b) { return std::tie(a.table, a.key) < std::tie(b.table, b.key); });
  EXPECT_EQ(loaded.entries, expected);
}

TEST_F(TablesJournalTest, ChangesAppendedAreReadBackOverTheSnapshot) {
  {
    auto j = journal();
    EXPECT_TRUE(j.open().entries.empty());
    j.compact({entry("a", 1, "A1"), entry("b", 2, "B2"), entry("c", 3, "C3")});
    j.append({entry("a", 4, "A4"), entry("d", 5, "D5")}, {});
    j.append({entry("b", 6, "", /*deleted=*/true)}, {{"networks", "c"}});  // a tombstone; c withdrawn
  }
  auto j = journal();
  auto loaded = j.open();
  EXPECT_EQ(loaded.records_replayed, 3u);  // two appends, the second with a store and a gone record
  EXPECT_EQ(loaded.bytes_dropped, 0u);
  EXPECT_EQ(loaded.entries, (std::vector<TableEntry>{entry("a", 4, "A4"), entry("b", 6, "", true),
                                                      entry("d", 5, "D5")}));
}

TEST_F(TablesJournalTest, ARecordCutByACrashIsDroppedAndAppendsContinueAfterTheLastWholeOne) {
  {
    auto j = journal();
    j.open();
    j.append({entry("a", 1, "A1")}, {});
    j.append({entry("b", 2, "B2")}, {});
  }
  cut_journal(3);  // the second record's last bytes never reached the disk
  {
    auto j = journal();
    auto loaded = j.open();
    EXPECT_EQ(loaded.records_replayed, 1u);
    EXPECT_GT(loaded.bytes_dropped, 0u);
    EXPECT_EQ(loaded.entries, std::vector<TableEntry>{entry("a", 1, "A1")});
    j.append({entry("c", 3, "C3")}, {});
  }
  auto loaded = journal().open();
  EXPECT_EQ(loaded.bytes_dropped, 0u);
  EXPECT_EQ(loaded.entries, (std::vector<TableEntry>{entry("a", 1, "A1"), entry("c", 3, "C3")}));
}

TEST_F(TablesJournalTest, ADamagedRecordEndsTheReplay) {
  {
    auto j = journal();
    j.open();
    j.append({entry("a", 1, "A1")}, {});
    j.append({entry("b", 2, "B2")}, {});
  }
  {
    std::fstream f(dir / "tables.journal", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(journal_size() - 2));
    f.put('X');  // inside "B2"'s record: its CRC no longer matches
  }
  auto loaded = journal().open();
  EXPECT_EQ(loaded.entries, std::vector<TableEntry>{entry("a", 1, "A1")});
  EXPECT_GT(loaded.bytes_dropped, 0u);
}

TEST_F(TablesJournalTest, AJournalOlderThanTheSnapshotIsIgnored) {
  // A crash after a new snapshot was written and before the journal was
  // started over: the old journal's changes are in the snapshot already,
  // and replaying them would bring back older versions.
  {
    auto j = journal();
    j.open();
    j.append({entry("a", 1, "A1")}, {});
  }
  const auto old_journal = weft::control::network::read_file(dir / "tables.journal").value();
  {
    auto j = journal();
    j.open();
    j.compact({entry("a", 7, "A7")});
  }
  weft::control::network::write_file_atomically(dir / "tables.journal", old_journal);
  auto loaded = journal().open();
  EXPECT_EQ(loaded.records_replayed, 0u);
  EXPECT_EQ(loaded.entries, std::vector<TableEntry>{entry("a", 7, "A7")});
}

TEST_F(TablesJournalTest, TheJournalAsksToBeFoldedOnceItOutgrowsTheSnapshot) {
  auto j = journal();
  j.open();
  j.compact({entry("a", 1, "A1")});
  const std::string big(64 * 1024, 'x');
  std::uint64_t lamport = 2;
  while (!j.wants_compaction()) {
    j.append({entry("a", lamport, big)}, {});
    ++lamport;
    ASSERT_LT(lamport, 100u) << "never asked to compact";
  }
  EXPECT_GT(j.journal_bytes(), TablesJournal::kMinCompactBytes);
  j.compact({entry("a", lamport, "small")});
  EXPECT_FALSE(j.wants_compaction());
  EXPECT_LT(journal_size(), 64u);
  auto loaded = journal().open();
  EXPECT_EQ(loaded.entries, std::vector<TableEntry>{entry("a", lamport, "small")});
}

TEST_F(TablesJournalTest, AGarbageSnapshotIsReadAsEmpty) {
  std::ofstream(dir / "tables.bin") << "garbage!garbage!";
  auto j = journal();
  auto loaded = j.open();
  EXPECT_TRUE(loaded.entries.empty());
  j.append({entry("a", 1, "A1")}, {});
  EXPECT_EQ(journal().open().entries, std::vector<TableEntry>{entry("a", 1, "A1")});
}

}  // namespace
