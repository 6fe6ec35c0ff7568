// Test helper: a bpffs of the test's own, so pinned maps and programs of one
// test never meet another's or the host's. The process first moves to a mount
// namespace of its own (once; not possible once threads exist, then the mount
// is simply ours to undo), so even a crashed test leaves no mount behind.
#pragma once

#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

namespace weft::testing {

class PrivateBpffs {
 public:
  // Under a fresh temporary directory, removed again afterwards.
  PrivateBpffs() {
    enter_own_mount_namespace();
    char tmpl[] = "/tmp/weft-lb-test-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      error_ = std::string("mkdtemp: ") + std::strerror(errno);
      return;
    }
    dir_ = tmpl;
    owns_dir_ = true;
    mount_here();
  }
  // At `dir` (created if missing; its owner removes it, e.g. a ScratchDir).
  explicit PrivateBpffs(const std::filesystem::path& dir) : dir_(dir) {
    enter_own_mount_namespace();
    std::filesystem::create_directories(dir_);
    mount_here();
  }
  ~PrivateBpffs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    if (owns_dir_) ::rmdir(dir_.c_str());
  }
  PrivateBpffs(const PrivateBpffs&) = delete;
  PrivateBpffs& operator=(const PrivateBpffs&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  static void enter_own_mount_namespace() {
    static const bool own_namespace = [] {
      return ::unshare(CLONE_NEWNS) == 0 && ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
    }();
    (void)own_namespace;
  }
  void mount_here() {
    if (::mount("bpf", dir_.c_str(), "bpf", 0, nullptr) != 0) {
      error_ = std::string("mount -t bpf: ") + std::strerror(errno);
    } else {
      mounted_ = true;
    }
  }

  std::filesystem::path dir_;
  std::string error_;
  bool owns_dir_ = false;
  bool mounted_ = false;
};

}  // namespace weft::testing
