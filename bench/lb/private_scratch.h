// A scratch directory that nothing outside the process sees and nothing
// outlives: the process moves to a mount namespace of its own (call first
// thing in main, before any thread starts), mounts a tmpfs over /tmp there
// (the host's /tmp is neither seen nor written) and a bpffs in a
// /tmp/weft-bench-lb-* dir on it. Namespaces pinned there and maps pinned on
// the bpffs die with the process, even on SIGKILL.
#pragma once

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>

namespace weft::bench::lb {

class PrivateScratch {
 public:
  explicit PrivateScratch(const std::string& tag) {
    if (::unshare(CLONE_NEWNS) != 0) fail("unshare(CLONE_NEWNS)");
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("make / private");
    if (::mount("tmpfs", "/tmp", "tmpfs", 0, "size=16m,mode=1777") != 0) fail("mount tmpfs on /tmp");
    std::string tmpl = "/tmp/weft-bench-lb-" + tag + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) fail("mkdtemp");
    dir_ = tmpl;
    std::filesystem::create_directory(dir_ / "bpf");
    if (::mount("bpf", (dir_ / "bpf").c_str(), "bpf", 0, nullptr) != 0) fail("mount bpffs");
  }
  ~PrivateScratch() {
    ::umount2((dir_ / "bpf").c_str(), MNT_DETACH);
    ::umount2("/tmp", MNT_DETACH);
  }
  PrivateScratch(const PrivateScratch&) = delete;
  PrivateScratch& operator=(const PrivateScratch&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path bpffs() const { return dir_ / "bpf"; }

 private:
  [[noreturn]] void fail(const char* what) {
    const int err = errno;
    throw std::system_error(err, std::generic_category(), what);
  }
  std::filesystem::path dir_;
};

}  // namespace weft::bench::lb
