#include "control/network/reservation_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "control/network/state_file.h"

namespace weft::control::network {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void throw_errno(const std::string& what, const fs::path& path) {
  throw std::system_error(errno, std::generic_category(), what + " " + path.string());
}

void write_all(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write", path);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

ReservationJournal::ReservationJournal(fs::path path) : path_(std::move(path)) {}

ReservationJournal::~ReservationJournal() { close(); }

void ReservationJournal::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::vector<ReservationChange> ReservationJournal::read(std::uint64_t generation) const {
  std::vector<ReservationChange> changes;
  const auto text = read_file(path_);
  if (!text) return changes;
  std::istringstream lines(*text);
  std::string line;
  bool header = true;
  std::size_t number = 0;
  while (std::getline(lines, line)) {
    ++number;
    // Only a complete line counts: the last one without its newline was cut.
    if (lines.eof()) {
      spdlog::warn("{}: ignoring a last line cut short (a crash during a write)", path_.string());
      break;
    }
    try {
      const auto j = json::parse(line);
      if (header) {
        header = false;
        const auto g = j.at("generation").get<std::uint64_t>();
        if (g != generation) {
          spdlog::info("{}: generation {}, the state file's is {}: already in the state file", path_.string(), g,
                       generation);
          return changes;
        }
        continue;
      }
      const auto op = j.at("op").get<std::string>();
      if (op != "+" && op != "-") throw std::invalid_argument("unknown op " + op);
      const auto ip = ipam::Ipv4::parse(j.at("ip").get<std::string>());
      if (!ip || *ip == ipam::Ipv4{}) throw std::invalid_argument("bad address");
      changes.push_back(ReservationChange{.reserved = op == "+",
                                          .reservation = {.network_id = j.at("network_id").get<std::string>(),
                                                          .ip = *ip,
                                                          .owner = j.value("owner", "")}});
    } catch (const std::exception& e) {
      // Lines are only ever appended whole and fsynced; anything else
      // stops the replay where the damage is.
      spdlog::warn("{}: line {} is unreadable ({}): replaying the {} changes before it", path_.string(), number,
                   e.what(), changes.size());
      break;
    }
  }
  return changes;
}

void ReservationJournal::reset(std::uint64_t generation) {
  close();
  appended_ = 0;
  const bool existed = fs::exists(path_);
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw_errno("cannot open", path_);
  try {
    write_all(fd, json{{"generation", generation}}.dump() + "\n", path_);
    if (::fdatasync(fd) != 0) throw_errno("cannot sync", path_);
    if (!existed) sync_directory(path_.has_parent_path() ? path_.parent_path() : fs::path("."));
  } catch (...) {
    ::close(fd);
    throw;
  }
  fd_ = fd;
}

void ReservationJournal::append(const ReservationChange& change) {
  if (fd_ < 0) throw std::system_error(std::make_error_code(std::errc::bad_file_descriptor),
                                       "the reservation journal " + path_.string() + " is not open");
  json j = {{"op", change.reserved ? "+" : "-"},
            {"network_id", change.reservation.network_id},
            {"ip", change.reservation.ip.str()}};
  if (change.reserved) j["owner"] = change.reservation.owner;
  try {
    write_all(fd_, j.dump() + "\n", path_);
    if (::fdatasync(fd_) != 0) throw_errno("cannot sync", path_);
  } catch (...) {
    close();
    throw;
  }
  ++appended_;
}

}  // namespace weft::control::network
