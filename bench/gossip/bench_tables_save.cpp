// bench_tables_save: what saving the replicated tables costs the gossip
// thread per second while entries change, at N entries: the whole snapshot
// written (tables.bin, as the agent did every second until the journal) vs
// the second's changes appended to tables.journal (control/cluster/
// tables_journal.h), both fsynced, in one run. Also the heap the whole write
// allocates at its peak (the snapshot copy and its encoding), and how often
// the journal is folded back into the snapshot at that rate of change, and
// the heap of that fold encoded from the tables as held (no copy of them).
//
//   bench_tables_save [--entries 100000] [--changes 300] [--rounds 5] [--dir DIR]
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "control/cluster/tables_journal.h"
#include "control/cluster/weft_messages.h"
#include "control/network/state_file.h"
#include "control/tables/replicated_tables.h"

namespace {
namespace fs = std::filesystem;
using weft::control::cluster::TablesJournal;
using weft::control::tables::ReplicatedTables;
using weft::control::tables::TableEntry;

// An endpoint record of the size the agent gossips (~420 bytes of JSON).
std::string endpoint_value(std::uint32_t i, std::uint64_t version) {
  return fmt::format(
      R"({{"id":"{:064x}","name":"svc{}.{}.task","network_id":"{:064x}","netns":"/run/weft/tasks/{:08x}/net",)"
      R"("ifname":"eth0","ip":"10.96.{}.{}","prefix_len":15,"mac":"02:42:0a:60:{:02x}:{:02x}","node":"fake2",)"
      R"("service_id":"{:064x}","backend_state":"active","vtep":"192.0.2.12","version":{}}})",
      i, i / 10, i % 10, 7, i, (i >> 8) & 0xff, i & 0xff, (i >> 8) & 0xff, i & 0xff, i / 10, version);
}

std::size_t heap_in_use() {
  const auto info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::uint32_t entries = 100000, changes = 300, rounds = 5;
  std::string dir_flag;
  CLI::App app{"bench_tables_save: tables.bin written whole vs tables.journal appended, per second of changes"};
  app.add_option("--entries", entries)->capture_default_str();
  app.add_option("--changes", changes, "entries changed per second")->capture_default_str();
  app.add_option("--rounds", rounds)->capture_default_str();
  app.add_option("--dir", dir_flag, "where to write (default: a temp dir, removed after)");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  const fs::path dir = dir_flag.empty() ? fs::temp_directory_path() / fmt::format("weft-bench-save-{}", ::getpid())
                                        : fs::path(dir_flag);
  fs::create_directories(dir);
  ReplicatedTables tables("fake2", {"endpoints"});
  for (std::uint32_t i = 0; i < entries; ++i) tables.put("endpoints", fmt::format("{:064x}", i), endpoint_value(i, 0));

  std::vector<double> whole, journal, held;
  std::size_t whole_bytes = 0, peak_extra = 0, held_peak_extra = 0, pieces_peak_extra = 0;
  bool same_bytes = true;
  TablesJournal j(dir / "tables.bin", dir / "tables.journal");
  j.open();
  j.compact(tables.snapshot());
  std::uint32_t next = 0, compactions = 0;
  std::uint64_t version = 1;
  double journal_seconds = 0;
  for (std::uint32_t r = 0; r < rounds; ++r) {
    // A second's changes.
    std::vector<TablesJournal::Key> changed;
    for (std::uint32_t c = 0; c < changes; ++c, next = (next + 1) % entries) {
      const auto key = fmt::format("{:064x}", next);
      tables.put("endpoints", key, endpoint_value(next, version++));
      changed.emplace_back("endpoints", key);
    }
    // Before: the whole snapshot, encoded and written atomically.
    const std::size_t heap_before = heap_in_use();
    auto start = std::chrono::steady_clock::now();
    {
      const auto snapshot = tables.snapshot();
      const auto bytes = weft::control::cluster::encode_snapshot(snapshot);
      peak_extra = std::max(peak_extra, heap_in_use() - heap_before);
      whole_bytes = bytes.size();
      weft::control::network::write_file_atomically(dir / "whole.bin", bytes);
    }
    whole.push_back(seconds_since(start));
    // The same bytes encoded from the tables as held (what a fold does now).
    start = std::chrono::steady_clock::now();
    {
      const std::size_t before = heap_in_use();
      const auto bytes = weft::control::cluster::encode_snapshot(tables);
      held_peak_extra = std::max(held_peak_extra, heap_in_use() - before);
      same_bytes = same_bytes && bytes == weft::control::cluster::encode_snapshot(tables.snapshot());
    }
    held.push_back(seconds_since(start));
    // Encoded in pieces as a fold writes them (TablesJournal::compact): the
    // heap seen at each piece.
    {
      const std::size_t before = heap_in_use();
      std::string all;  // (to compare, on the side: not counted)
      std::size_t piece_heap = 0;
      weft::control::cluster::encode_snapshot(tables, [&](std::string_view piece) {
        piece_heap = std::max(piece_heap, heap_in_use() - all.capacity() - before);
        all.append(piece);
      });
      pieces_peak_extra = std::max(pieces_peak_extra, piece_heap);
      same_bytes = same_bytes && all == weft::control::cluster::encode_snapshot(tables);
    }
    // Now: the changed keys appended, folded when the journal outgrows the snapshot.
    start = std::chrono::steady_clock::now();
    std::vector<TableEntry> stored;
    for (const auto& [table, key] : changed) stored.push_back(*tables.find(table, key));
    if (j.wants_compaction()) {
      j.compact(tables);
      ++compactions;
    } else {
      j.append(stored, {});
    }
    journal.push_back(seconds_since(start));
    journal_seconds += journal.back();
  }
  // How many seconds of changes before the journal is folded, at this rate.
  const double record_bytes = static_cast<double>(j.journal_bytes() - 16) / std::max<std::uint32_t>(rounds, 1);
  const double seconds_per_fold = record_bytes > 0 ? static_cast<double>(std::max<std::uintmax_t>(
                                                         j.snapshot_bytes(), TablesJournal::kMinCompactBytes)) /
                                                         record_bytes
                                                   : 0;
  std::sort(whole.begin(), whole.end());
  std::sort(journal.begin(), journal.end());
  const double whole_ms = whole[whole.size() / 2] * 1e3, journal_ms = journal[journal.size() / 2] * 1e3;
  std::printf("entries %u, changes per second %u, rounds %u\n", entries, changes, rounds);
  std::printf("whole tables.bin per second (before): median %.1f ms, %.1f MB written, %.1f MB extra heap at its peak\n",
              whole_ms, whole_bytes / 1e6, peak_extra / 1e6);
  std::sort(held.begin(), held.end());
  std::printf("tables.bin's bytes encoded from the tables as held: %.1f MB extra heap at its peak, %s bytes "
              "(median %.1f ms with a second encoding to compare)\n",
              held_peak_extra / 1e6, same_bytes ? "the same" : "OTHER", held[held.size() / 2] * 1e3);
  std::printf("tables.bin's bytes encoded in pieces (a fold now): %.1f MB extra heap at its peak\n",
              pieces_peak_extra / 1e6);
  std::printf("journal append per second (now):      median %.2f ms, %.0f bytes written\n", journal_ms,
              record_bytes);
  std::printf("journal folded into tables.bin every ~%.0f s at this rate (a whole write then: ~%.1f ms); "
              "%u folds in this run\n",
              seconds_per_fold, whole_ms, compactions);
  const double amortized_ms = journal_ms + (seconds_per_fold > 0 ? whole_ms / seconds_per_fold : 0);
  std::printf("gossip thread per second: before %.1f ms, now %.2f ms amortized: %.0fx less\n", whole_ms, amortized_ms,
              amortized_ms > 0 ? whole_ms / amortized_ms : 0);
  if (dir_flag.empty()) fs::remove_all(dir);
  return same_bytes ? 0 : 1;
}
