// The resolv.conf a named namespace's processes see: `ip netns exec NAME`
// bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf. The agent
// writes one pointing at its responder when an endpoint is attached and
// removes it on detach, but only a file it wrote itself: the first line is
// a marker naming the agent (node and state dir), and a file without that
// exact marker (the user's, another agent's) is never touched.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace weft::dns {

struct ResolvConfConfig {
  std::filesystem::path root = "/etc/netns";
  std::string node_name;  // who we are, in the marker
  std::string state_dir;
  std::string nameserver = "127.0.0.11";
  std::vector<std::string> search;  // search domains; none: no `search` line
};

class ResolvConfFiles {
 public:
  enum class Outcome {
    written,        // ours now (created or rewritten)
    foreign,        // a resolv.conf without our marker is there: left alone
    bad_name,       // not a namespace name (empty, `.`, `..`, a `/`, too long)
    failed,         // an I/O error; `error` says which
  };
  struct Result {
    Outcome outcome;
    std::string error;  // for foreign/bad_name/failed: what and where
  };

  // Throws std::invalid_argument for search domains resolv.conf cannot
  // carry (whitespace or control characters, over 6 domains or 255 chars
  // each), so a bad flag fails at start, not per namespace.
  explicit ResolvConfFiles(ResolvConfConfig config);

  // Atomic: a temporary file in the same directory, renamed over (not
  // fsync'ed: no reboot keeps the namespace the file is for).
  Result write(const std::string& netns_name) const;
  // Removes the file if it is ours, and the directory if we made it and it
  // is empty now. `removed` false with no error: nothing of ours was there.
  struct Removal {
    bool removed = false;
    std::string error;
  };
  Removal remove(const std::string& netns_name) const;

  std::filesystem::path path_of(const std::string& netns_name) const { return config_.root / netns_name / "resolv.conf"; }
  std::string marker() const;
  std::string contents(bool made_directory) const;
  static bool valid_name(const std::string& netns_name);

 private:
  ResolvConfConfig config_;
};

}  // namespace weft::dns
