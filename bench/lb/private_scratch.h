// A scratch directory that nothing outside the process sees and nothing
// outlives: the process moves to a mount namespace of its own (call first
// thing in main, before any thread starts), mounts a tmpfs on a fresh
// /tmp/weft-bench-lb-* dir and a bpffs below it. Namespaces pinned there and
// maps pinned on the bpffs die with the process even on SIGKILL; only the
// empty directory can be left in /tmp then.
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
    std::string tmpl = "/tmp/weft-bench-lb-" + tag + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) fail("mkdtemp");
    dir_ = tmpl;
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=16m") != 0) fail("mount tmpfs");
    std::filesystem::create_directory(dir_ / "bpf");
    if (::mount("bpf", (dir_ / "bpf").c_str(), "bpf", 0, nullptr) != 0) fail("mount bpffs");
  }
  ~PrivateScratch() {
    ::umount2((dir_ / "bpf").c_str(), MNT_DETACH);
    ::umount2(dir_.c_str(), MNT_DETACH);
    ::rmdir(dir_.c_str());
  }
  PrivateScratch(const PrivateScratch&) = delete;
  PrivateScratch& operator=(const PrivateScratch&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path bpffs() const { return dir_ / "bpf"; }

 private:
  [[noreturn]] void fail(const char* what) {
    const int err = errno;
    if (!dir_.empty()) ::rmdir(dir_.c_str());
    throw std::system_error(err, std::generic_category(), what);
  }
  std::filesystem::path dir_;
};

}  // namespace weft::bench::lb
