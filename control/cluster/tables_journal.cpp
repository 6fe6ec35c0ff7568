#include "control/cluster/tables_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <string_view>
#include <system_error>

#include <boost/crc.hpp>
#include <spdlog/spdlog.h>

#include "control/cluster/weft_messages.h"
#include "control/network/state_file.h"

namespace weft::control::cluster {
namespace fs = std::filesystem;
using tables::TableEntry;

namespace {

constexpr std::string_view kMagic = "WEFTTJ1\n";
constexpr std::size_t kHeaderBytes = 16;        // magic, stamp
constexpr std::size_t kRecordHeaderBytes = 8;   // length, crc
constexpr char kStored = 'S';  // entries: the keys' current versions
constexpr char kGone = 'G';    // entries naming keys no longer stored

std::uint32_t crc32(std::string_view bytes) {
  boost::crc_32_type crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

// Which snapshot a journal follows: its size and CRC.
std::uint64_t stamp_of(std::string_view snapshot) {
  return (static_cast<std::uint64_t>(crc32(snapshot)) << 32) | static_cast<std::uint32_t>(snapshot.size());
}

void put_le(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::uint64_t get_le(std::string_view in, std::size_t at, int bytes) {
  std::uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(in[at + i])) << (8 * i);
  return value;
}

std::system_error file_error(const fs::path& path, const char* what) {
  return std::system_error(errno, std::generic_category(), std::string(what) + " " + path.string());
}

void write_all(int fd, std::string_view bytes, const fs::path& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw file_error(path, "cannot write");
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string record(char kind, const std::vector<TableEntry>& entries) {
  std::string payload(1, kind);
  payload += encode_snapshot(entries);
  std::string out;
  out.reserve(kRecordHeaderBytes + payload.size());
  put_le(out, payload.size(), 4);
  put_le(out, crc32(payload), 4);
  out += payload;
  return out;
}

}  // namespace

TablesJournal::TablesJournal(fs::path snapshot_path, fs::path journal_path)
    : snapshot_path_(std::move(snapshot_path)), journal_path_(std::move(journal_path)) {}

TablesJournal::Loaded TablesJournal::open() {
  fd_.reset();
  Loaded loaded;
  const std::string snapshot = network::read_file(snapshot_path_).value_or(std::string());
  snapshot_bytes_ = snapshot.size();
  const std::uint64_t stamp = stamp_of(snapshot);
  std::map<Key, TableEntry> entries;
  if (!snapshot.empty()) {
    try {
      for (auto& e : decode_snapshot(snapshot)) entries[{e.table, e.key}] = std::move(e);
    } catch (const std::exception& e) {
      spdlog::warn("cluster: discarding {} ({} bytes that are not a table snapshot: {}); the tables will be rebuilt "
                   "from peers",
                   snapshot_path_.string(), snapshot.size(), e.what());
    }
  }

  const std::string journal = network::read_file(journal_path_).value_or(std::string());
  std::size_t valid = 0;  // bytes of the journal worth keeping
  if (journal.size() >= kHeaderBytes && std::string_view(journal).substr(0, kMagic.size()) == kMagic &&
      get_le(journal, kMagic.size(), 8) == stamp) {
    valid = kHeaderBytes;
    while (journal.size() - valid >= kRecordHeaderBytes) {
      const std::size_t length = get_le(journal, valid, 4);
      const auto crc = static_cast<std::uint32_t>(get_le(journal, valid + 4, 4));
      if (length == 0 || length > kMaxRecordBytes || length > journal.size() - valid - kRecordHeaderBytes) break;
      const std::string_view payload = std::string_view(journal).substr(valid + kRecordHeaderBytes, length);
      if (crc32(payload) != crc) break;
      std::vector<TableEntry> items;
      try {
        items = decode_snapshot(payload.substr(1));
      } catch (const std::exception&) {
        break;
      }
      if (payload[0] == kStored) {
        for (auto& e : items) entries[{e.table, e.key}] = std::move(e);
      } else if (payload[0] == kGone) {
        for (const auto& e : items) entries.erase({e.table, e.key});
      } else {
        break;
      }
      valid += kRecordHeaderBytes + length;
      ++loaded.records_replayed;
    }
    loaded.bytes_dropped = journal.size() - valid;
    if (loaded.bytes_dropped)
      spdlog::warn("cluster: {}: dropping the last {} bytes (a record cut short or damaged)", journal_path_.string(),
                   loaded.bytes_dropped);
  } else if (!journal.empty()) {
    spdlog::info("cluster: {} does not follow {} (older, or damaged): starting it over", journal_path_.string(),
                 snapshot_path_.string());
  }

  if (valid == 0) {
    start_over(stamp);
  } else {
    dataplane::UniqueFd fd(::open(journal_path_.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) throw file_error(journal_path_, "cannot open");
    if (::ftruncate(fd.get(), static_cast<off_t>(valid)) != 0 || ::lseek(fd.get(), 0, SEEK_END) < 0)
      throw file_error(journal_path_, "cannot cut back");
    fd_ = std::move(fd);
    journal_bytes_ = valid;
  }
  loaded.entries.reserve(entries.size());
  for (auto& [key, e] : entries) loaded.entries.push_back(std::move(e));
  return loaded;
}

void TablesJournal::start_over(std::uint64_t stamp) {
  fd_.reset();
  std::string header(kMagic);
  put_le(header, stamp, 8);
  // Replaced atomically: a crash leaves the old journal (whose stamp no
  // longer matches a new snapshot) or this empty one.
  network::write_file_atomically(journal_path_, header);
  fd_.reset(::open(journal_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  if (!fd_) throw file_error(journal_path_, "cannot open");
  journal_bytes_ = header.size();
}

void TablesJournal::append(const std::vector<TableEntry>& stored, const std::vector<Key>& gone) {
  if (!fd_) throw std::system_error(EBADF, std::generic_category(), "journal not open: " + journal_path_.string());
  std::string bytes;
  if (!stored.empty()) bytes += record(kStored, stored);
  if (!gone.empty()) {
    std::vector<TableEntry> keys;
    keys.reserve(gone.size());
    for (const auto& [table, key] : gone) keys.push_back(TableEntry{.table = table, .key = key, .owner = {}, .lamport = 0, .deleted = true, .value = {}});
    bytes += record(kGone, keys);
  }
  if (bytes.empty()) return;
  try {
    write_all(fd_.get(), bytes, journal_path_);
    if (::fdatasync(fd_.get()) != 0) throw file_error(journal_path_, "cannot sync");
  } catch (...) {
    // A part of a record may be on disk: nothing may follow it.
    fd_.reset();
    throw;
  }
  journal_bytes_ += bytes.size();
}

bool TablesJournal::wants_compaction() const {
  return journal_bytes_ > kMinCompactBytes && journal_bytes_ > snapshot_bytes_;
}

void TablesJournal::compact(const std::vector<TableEntry>& snapshot) { write_snapshot(encode_snapshot(snapshot)); }

void TablesJournal::compact(const tables::ReplicatedTables& tables) {
  // Written as it is encoded, its stamp computed as it goes: the file is
  // never held whole (~60 MB at 110 000 entries).
  boost::crc_32_type crc;
  std::uint64_t size = 0;
  network::write_file_atomically_in_pieces(snapshot_path_, [&](const network::ContentWriter& write) {
    encode_snapshot(tables, [&](std::string_view piece) {
      crc.process_bytes(piece.data(), piece.size());
      size += piece.size();
      write(piece);
    });
  });
  snapshot_bytes_ = size;
  start_over((static_cast<std::uint64_t>(crc.checksum()) << 32) | static_cast<std::uint32_t>(size));
}

void TablesJournal::write_snapshot(const std::string& bytes) {
  network::write_file_atomically(snapshot_path_, bytes);
  snapshot_bytes_ = bytes.size();
  start_over(stamp_of(bytes));
}

}  // namespace weft::control::cluster
