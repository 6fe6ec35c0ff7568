// Test helpers: throwaway network namespaces pinned under a temporary
// directory, removed when the fixture goes, whatever happens in the test.
#pragma once

#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <random>
#include <string>
#include <vector>

#include "dataplane/netns.h"

namespace weft::testing {

class ScratchDir {
 public:
  ScratchDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("weft-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    // Code under test pins namespaces with bind mounts below the directory;
    // a mounted file cannot be removed, so unmount everything below first.
    for (const auto& mount_point : mounts_below(path_)) ::umount2(mount_point.c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  // Deepest first.
  static std::vector<std::string> mounts_below(const std::filesystem::path& dir) {
    std::vector<std::string> found;
    std::ifstream mountinfo("/proc/self/mountinfo");
    const std::string prefix = dir.string() + "/";
    for (std::string line; std::getline(mountinfo, line);) {
      std::istringstream fields(line);
      std::string id, parent, devices, root, mount_point;
      fields >> id >> parent >> devices >> root >> mount_point;
      if (mount_point.starts_with(prefix)) found.push_back(mount_point);
    }
    std::sort(found.begin(), found.end(), std::greater<>());
    return found;
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Pinned namespaces that are unmounted and removed on destruction.
class ScratchNamespaces {
 public:
  explicit ScratchNamespaces(const std::filesystem::path& dir) : dir_(dir / "ns") {}
  ~ScratchNamespaces() {
    for (const auto& p : made_) {
      try {
        dataplane::remove_pinned_netns(p);
      } catch (...) {
      }
    }
  }
  std::filesystem::path make(const std::string& name) {
    auto p = dir_ / name;
    dataplane::create_pinned_netns(p);
    made_.push_back(p);
    return p;
  }

 private:
  std::filesystem::path dir_;
  std::vector<std::filesystem::path> made_;
};

}  // namespace weft::testing
