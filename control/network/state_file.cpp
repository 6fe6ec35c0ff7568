#include "control/network/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace weft::control::network {

namespace {

// Owns a file descriptor. Close errors are only checked where they matter
// (see close_checked), so the destructor may ignore them.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset(std::exchange(other.fd_, -1));
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = fd;
  }
  // Closes now and reports failure: on some file systems (NFS) a failed
  // write only surfaces at close.
  int close_checked() { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

// Takes the pieces of the message rather than a built string so errno is read
// before any allocation could overwrite it.
[[noreturn]] void throw_errno(std::string_view action, std::string_view subject) {
  const int error = errno;
  throw std::system_error(error, std::generic_category(), std::string(action).append(" ").append(subject));
}

[[noreturn]] void throw_error(int error, const std::string& message) {
  throw std::system_error(error, std::generic_category(), message);
}

// ".tmp." and the six characters mkostemp puts in place of "XXXXXX".
constexpr std::string_view kTempMarker = ".tmp.";
constexpr std::size_t kTempSuffixLength = 6;

bool is_temp_file_name(std::string_view name) {
  if (name.size() < 2 + kTempMarker.size() + kTempSuffixLength || name.front() != '.') return false;
  const auto suffix = name.substr(name.size() - kTempSuffixLength);
  const auto marker = name.substr(name.size() - kTempSuffixLength - kTempMarker.size(), kTempMarker.size());
  return marker == kTempMarker && std::all_of(suffix.begin(), suffix.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
         });
}

// Deletes the temp file unless the rename consumed it, so every failure path
// cleans up, including exceptions thrown between creation and rename.
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string path) : path_(std::move(path)) {}
  ~TempFileGuard() {
    if (!path_.empty()) {
      ::unlink(path_.c_str());
    }
  }
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  const std::string& path() const { return path_; }
  void dismiss() { path_.clear(); }

 private:
  std::string path_;
};

// Like `mkdir -p` but every directory it creates gets mode 0700: the state
// describes other users' containers. Existing directories keep their mode.
void create_private_directories(const std::filesystem::path& dir, const std::filesystem::path& for_file) {
  std::filesystem::path partial;
  for (const auto& component : dir) {
    partial /= component;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      const int error = errno;
      throw_error(error, "cannot create directory " + partial.string() + " for " + for_file.string());
    }
  }
}

void write_all(int fd, std::string_view content, const std::string& path) {
  while (!content.empty()) {
    const ssize_t written = ::write(fd, content.data(), content.size());
    if (written < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw_errno("cannot write", path);
    }
    content.remove_prefix(static_cast<std::size_t>(written));
  }
}

}  // namespace

namespace {

enum class Sync { ToDisk, No };

void replace_file(const std::filesystem::path& path, const std::function<void(const ContentWriter&)>& produce,
                  Sync sync) {
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  create_private_directories(dir, path);

  // The temp file lives next to the target: rename is atomic only within one
  // file system.
  // (Built by appending: `"." + std::string` trips a GCC 12 -Wrestrict false
  // positive.)
  std::string temp_name = ".";
  temp_name.append(path.filename().native()).append(".tmp.XXXXXX");
  std::string temp_template = (dir / temp_name).native();
  UniqueFd fd(::mkostemp(temp_template.data(), O_CLOEXEC));
  if (!fd.valid()) {
    throw_errno("cannot create temporary file for", path.native());
  }
  TempFileGuard temp(std::move(temp_template));

  produce([&](std::string_view piece) { write_all(fd.get(), piece, path.native()); });
  if (sync == Sync::ToDisk && ::fsync(fd.get()) != 0) {
    throw_errno("cannot sync", path.native());
  }
  if (fd.close_checked() != 0) {
    throw_errno("cannot close", path.native());
  }
  if (::rename(temp.path().c_str(), path.c_str()) != 0) {
    throw_errno("cannot replace", path.native());
  }
  temp.dismiss();
  if (sync == Sync::ToDisk) sync_directory(dir);
}

}  // namespace

void write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  replace_file(path, [content](const ContentWriter& write) { write(content); }, Sync::ToDisk);
}

void write_file_atomically_in_pieces(const std::filesystem::path& path,
                                     const std::function<void(const ContentWriter&)>& produce) {
  replace_file(path, produce, Sync::ToDisk);
}

void replace_file_unsynced(const std::filesystem::path& path, std::string_view content) {
  replace_file(path, [content](const ContentWriter& write) { write(content); }, Sync::No);
}

std::vector<std::string> remove_leftover_temp_files(const std::filesystem::path& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return removed;
    throw std::system_error(ec, "cannot list " + dir.string());
  }
  for (const auto& entry : it) {
    const auto name = entry.path().filename().string();
    if (!is_temp_file_name(name) || !entry.is_regular_file(ec)) continue;
    if (::unlink(entry.path().c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove", entry.path().native());
    removed.push_back(name);
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

void sync_directory(const std::filesystem::path& dir) {
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid()) throw_errno("cannot open the directory", dir.native());
  if (::fsync(dir_fd.get()) != 0) throw_errno("cannot sync the directory", dir.native());
}

std::optional<std::string> read_file(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) {
      return std::nullopt;
    }
    throw_errno("cannot open", path.native());
  }
  std::string content;
  char buffer[65536];
  for (;;) {
    const ssize_t count = ::read(fd.get(), buffer, sizeof buffer);
    if (count < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw_errno("cannot read", path.native());
    }
    if (count == 0) {
      return content;
    }
    content.append(buffer, static_cast<std::size_t>(count));
  }
}

}  // namespace weft::control::network
