// Network namespaces: handles, entering one on the current thread, and named
// namespaces kept alive by a bind mount (as `ip netns add` does, but under a
// directory of the caller's choosing so agents never share names).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>

#include "dataplane/unique_fd.h"

namespace weft::dataplane {

// An open network namespace. Identity is (device, inode) of the nsfs file, so
// a name and a /proc path that refer to one namespace compare equal.
class NetnsHandle {
 public:
  // `name_or_path`: a name under /run/netns, or a path (contains '/').
  // Throws std::system_error naming the namespace when it cannot be opened or
  // is not a network namespace.
  static NetnsHandle open(const std::string& name_or_path);
  static NetnsHandle current();

  int fd() const { return fd_.get(); }
  dev_t device() const { return device_; }
  ino_t inode() const { return inode_; }
  bool same_as(const NetnsHandle& other) const {
    return device_ == other.device_ && inode_ == other.inode_;
  }

 private:
  NetnsHandle(UniqueFd fd, std::string description);
  UniqueFd fd_;
  dev_t device_ = 0;
  ino_t inode_ = 0;
};

// Resolves a user's namespace reference: a bare name means /run/netns/NAME.
std::filesystem::path netns_path_of(const std::string& name_or_path);

// Switches the calling thread into a namespace and always switches it back.
class NetnsGuard {
 public:
  explicit NetnsGuard(const NetnsHandle& target);
  ~NetnsGuard();
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;

 private:
  UniqueFd original_;
};

// A socket created inside `ns`; it stays bound to that namespace.
UniqueFd open_socket_in(const NetnsHandle& ns, int domain, int type, int protocol);

// Creates a new, empty network namespace and pins it at `path` with a bind
// mount. Throws if `path` already holds one.
void create_pinned_netns(const std::filesystem::path& path);
// Unmounts and removes a pinned namespace; absent is not an error.
void remove_pinned_netns(const std::filesystem::path& path);
// True when `path` is a bind mount of a network namespace.
bool is_pinned_netns(const std::filesystem::path& path);

}  // namespace weft::dataplane
