// The replicated tables on disk: tables.bin, a whole snapshot, and
// tables.journal, the changes made since it.
//
// Before, tables.bin was written whole (snapshot, encode, fsync) every second
// while entries changed: at 100 000 endpoints that is ~45 MB encoded and
// copied per second on the gossip thread, whatever the size of the change.
// Now a second's changes append one record to the journal (the changed
// keys' current versions, or that they are gone), and the snapshot is
// rewritten only when the journal has grown past it (so the cost per
// change stays bounded by a constant) and on a graceful stop.
//
// The journal begins with a stamp of the snapshot it follows (its size and
// CRC). A journal whose stamp is not the snapshot's is older than it (a
// crash between writing a new snapshot and starting the journal over) and
// is ignored: everything in it is in the snapshot already. Each record is
// length- and CRC-framed; a record cut by a crash can only be the last one,
// and replay stops there (the file is cut back to the last whole record
// before anything is appended again).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "control/tables/replicated_tables.h"
#include "dataplane/unique_fd.h"

namespace weft::control::cluster {

class TablesJournal {
 public:
  using Key = std::pair<std::string, std::string>;  // table, key

  // Bounds on what is read back: a record claiming more is damage.
  static constexpr std::size_t kMaxRecordBytes = 1u << 30;
  // The journal is folded into the snapshot once it is larger than the
  // snapshot and than this.
  static constexpr std::uintmax_t kMinCompactBytes = 1u << 20;

  TablesJournal(std::filesystem::path snapshot_path, std::filesystem::path journal_path);
  TablesJournal(const TablesJournal&) = delete;
  TablesJournal& operator=(const TablesJournal&) = delete;

  struct Loaded {
    std::vector<tables::TableEntry> entries;  // as last recorded, tombstones included
    std::size_t records_replayed = 0;
    std::size_t bytes_dropped = 0;  // a torn or damaged tail of the journal
  };
  // Reads the snapshot and the journal that follows it, and opens the
  // journal for appending (cut back to its last whole record, or started
  // over when missing, damaged or older than the snapshot). A damaged
  // snapshot is logged (naming the file) and read as empty. Throws
  // std::system_error when the files cannot be read or the journal cannot
  // be opened.
  Loaded open();

  // Records the current versions of changed keys, and the keys no longer
  // stored (withdrawn, reaped). Durable when it returns. Throws
  // std::system_error (e.g. ENOSPC); the journal is then unusable until the
  // next compact().
  void append(const std::vector<tables::TableEntry>& stored, const std::vector<Key>& gone);

  // Writes `snapshot` as the new tables.bin and starts the journal over.
  // Throws std::system_error.
  void compact(const std::vector<tables::TableEntry>& snapshot);
  // The same from the tables as they are held (no copy of them all).
  void compact(const tables::ReplicatedTables& tables);

  bool usable() const { return fd_.valid(); }
  bool wants_compaction() const;
  std::uintmax_t journal_bytes() const { return journal_bytes_; }
  std::uintmax_t snapshot_bytes() const { return snapshot_bytes_; }

 private:
  void start_over(std::uint64_t stamp);
  void write_snapshot(const std::string& bytes);

  std::filesystem::path snapshot_path_;
  std::filesystem::path journal_path_;
  dataplane::UniqueFd fd_;  // open for appending while usable
  std::uintmax_t journal_bytes_ = 0;
  std::uintmax_t snapshot_bytes_ = 0;
};

}  // namespace weft::control::cluster
