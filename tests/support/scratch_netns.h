// Test helpers: throwaway network namespaces pinned under a temporary
// directory, removed when the fixture goes, whatever happens in the test.
#pragma once

#include <unistd.h>

#include <filesystem>
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
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
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
