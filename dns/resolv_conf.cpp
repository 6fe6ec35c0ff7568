#include "dns/resolv_conf.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "dataplane/unique_fd.h"

namespace weft::dns {
namespace {

namespace fs = std::filesystem;

// Written on the second line when the agent created /etc/netns/NAME, so the
// agent that removes the file later (maybe after a restart) knows the
// directory is its own to remove too. No extra file: `ip netns exec`
// bind-mounts every file of the directory over /etc.
constexpr const char* made_directory_line = "# weftd made this directory";

constexpr std::size_t max_search_domains = 6;
constexpr std::size_t max_domain_length = 253;
constexpr std::size_t max_name_length = 255;

bool clean_text(const std::string& s) {
  for (unsigned char c : s)
    if (c <= 0x20 || c == 0x7f) return false;
  return true;
}

// The first two lines, or nothing when the file cannot be read.
bool read_head(const fs::path& path, std::string& first, std::string& second) {
  std::ifstream in(path);
  if (!in) return false;
  std::getline(in, first);
  std::getline(in, second);
  return true;
}

std::string errno_text(int error) { return std::strerror(error); }

constexpr std::string_view temp_prefix = ".resolv.conf.weftd-";

// A kill between creating and renaming the temporary file leaves it behind;
// `ip netns exec` would try to bind-mount it over /etc and complain.
void remove_stale_temps(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.starts_with(temp_prefix) && name.ends_with(".tmp")) fs::remove(it->path(), ec);
  }
}

}  // namespace

ResolvConfFiles::ResolvConfFiles(ResolvConfConfig config) : config_(std::move(config)) {
  if (config_.search.size() > max_search_domains)
    throw std::invalid_argument("at most " + std::to_string(max_search_domains) + " DNS search domains");
  for (const auto& domain : config_.search) {
    if (domain.empty() || domain.size() > max_domain_length || !clean_text(domain))
      throw std::invalid_argument("DNS search domain \"" + domain +
                                  "\" is empty, longer than 253 characters or has blanks or control characters");
  }
  // The marker is one line: a node name or path with a line break would
  // break the "is this ours" test.
  for (char c : config_.node_name + config_.state_dir)
    if (c == '\n' || c == '\r') throw std::invalid_argument("node name and state dir must be one line each");
}

bool ResolvConfFiles::valid_name(const std::string& name) {
  if (name.empty() || name.size() > max_name_length || name == "." || name == "..") return false;
  for (unsigned char c : name)
    if (c == '/' || c < 0x20 || c == 0x7f) return false;
  return true;
}

std::string ResolvConfFiles::marker() const {
  return "# written by weftd (node " + config_.node_name + ", state dir " + config_.state_dir + ")";
}

std::string ResolvConfFiles::contents(bool made_directory) const {
  std::string text = marker() + "\n";
  if (made_directory) text += std::string(made_directory_line) + "\n";
  text += "nameserver " + config_.nameserver + "\n";
  text += "options ndots:0\n";
  if (!config_.search.empty()) {
    text += "search";
    for (const auto& domain : config_.search) text += " " + domain;
    text += "\n";
  }
  return text;
}

ResolvConfFiles::Result ResolvConfFiles::write(const std::string& name) const {
  if (!valid_name(name)) return {Outcome::bad_name, "\"" + name + "\" is not a namespace name"};
  const fs::path dir = config_.root / name;
  const fs::path file = dir / "resolv.conf";
  bool made_directory = false;
  std::error_code ec;
  int error = ::mkdir(dir.c_str(), 0755) == 0 ? 0 : errno;
  if (error == ENOENT) {  // a fresh machine without /etc/netns yet
    fs::create_directories(config_.root, ec);
    if (ec) return {Outcome::failed, "create " + config_.root.string() + ": " + ec.message()};
    error = ::mkdir(dir.c_str(), 0755) == 0 ? 0 : errno;
  }
  if (error == 0)
    made_directory = true;
  else if (error != EEXIST)
    return {Outcome::failed, "create " + dir.string() + ": " + errno_text(error)};
  if (!made_directory) {
    std::string first, second;
    if (read_head(file, first, second)) {
      if (first != marker()) return {Outcome::foreign, file.string() + " is not ours (no weftd marker of this agent)"};
      made_directory = second == made_directory_line;
    } else if (fs::exists(file, ec) || fs::is_symlink(file, ec)) {
      return {Outcome::foreign, file.string() + " exists and cannot be read: left alone"};
    }
  }

  remove_stale_temps(dir);
  std::random_device random;
  const fs::path temp = dir / (std::string(temp_prefix) + std::to_string(random()) + ".tmp");
  const std::string text = contents(made_directory);
  dataplane::UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return {Outcome::failed, "create " + temp.string() + ": " + errno_text(errno)};
  auto fail = [&](const std::string& what) {
    const int error = errno;
    fd.reset();
    ::unlink(temp.c_str());
    return Result{Outcome::failed, what + " " + temp.string() + ": " + errno_text(error)};
  };
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    done += static_cast<std::size_t>(n);
  }
  // No fsync: the file describes a namespace under /run/netns, which no
  // reboot keeps, and an agent killed after the rename leaves it whole in
  // the page cache; the rename alone makes the change atomic. An fsync here
  // was most of what the DNS added to an attach.
  if (::close(fd.release()) != 0) return fail("close");
  if (::rename(temp.c_str(), file.c_str()) != 0) return fail("rename over " + file.string() + ":");
  return {Outcome::written, {}};
}

ResolvConfFiles::Removal ResolvConfFiles::remove(const std::string& name) const {
  if (!valid_name(name)) return {false, "\"" + name + "\" is not a namespace name"};
  const fs::path dir = config_.root / name;
  const fs::path file = dir / "resolv.conf";
  std::string first, second;
  if (!read_head(file, first, second)) return {};
  if (first != marker()) return {false, file.string() + " is not ours (no weftd marker of this agent): left alone"};
  if (::unlink(file.c_str()) != 0 && errno != ENOENT)
    return {false, "remove " + file.string() + ": " + errno_text(errno)};
  // rmdir refuses a directory that is not empty, which is what we want.
  remove_stale_temps(dir);
  if (second == made_directory_line) ::rmdir(dir.c_str());
  return {true, {}};
}

}  // namespace weft::dns
