// The address reservations' write-ahead journal, beside state.json: a
// reservation made or released appends one fsynced line, instead of
// rewriting the whole state file (with every reservation in it) per
// service create or remove.
//
// state.json is the snapshot: it names the journal generation that follows
// it ("reservation_journal"). Every full (fsynced) write of state.json takes
// a new generation and then starts the journal over with it; at load, the
// journal is replayed on the snapshot's reservations only when its
// generation is the snapshot's, so a crash between the two writes (new
// snapshot, old journal) replays nothing that is not in the snapshot already.
// Each line makes one reservation present or absent, so replay is
// idempotent. A line cut by a crash can only be the last one: it was never
// acknowledged, and the replay stops there.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "control/network/network_manager.h"

namespace weft::control::network {

struct ReservationChange {
  bool reserved = true;  // false: released
  AddressReservation reservation;
};

class ReservationJournal {
 public:
  explicit ReservationJournal(std::filesystem::path path);
  ~ReservationJournal();
  ReservationJournal(const ReservationJournal&) = delete;
  ReservationJournal& operator=(const ReservationJournal&) = delete;

  // The changes recorded after the snapshot of `generation` (none when the
  // journal is missing or of another generation). Throws std::system_error
  // when the file cannot be read.
  std::vector<ReservationChange> read(std::uint64_t generation) const;

  // Starts the journal over for `generation` (after its snapshot is
  // durable). Throws std::system_error; the journal is then unusable until
  // a reset succeeds (usable() says so).
  void reset(std::uint64_t generation);
  // Durable when it returns. Throws std::system_error (e.g. ENOSPC), after
  // which the journal is unusable until the next reset: a partly written
  // line may be on disk, and nothing may follow it.
  void append(const ReservationChange& change);

  bool usable() const { return fd_ >= 0; }
  // Lines appended since the last reset (when to compact).
  std::size_t appended() const { return appended_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void close();
  std::filesystem::path path_;
  int fd_ = -1;
  std::size_t appended_ = 0;
};

}  // namespace weft::control::network
