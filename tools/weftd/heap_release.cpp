#include "tools/weftd/heap_release.h"

#include <malloc.h>
#include <unistd.h>

#include <fstream>

#include <spdlog/spdlog.h>

namespace weft::tools {

std::optional<std::size_t> anon_rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size = 0, resident = 0, shared = 0;
  if (!(statm >> size >> resident >> shared)) return std::nullopt;
  static const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return (resident > shared ? resident - shared : 0) * page;
}

HeapReleaser::HeapReleaser(HeapReleaseConfig config)
    : config_(config), policy_(config), thread_([this] { run(); }) {}

HeapReleaser::~HeapReleaser() { stop(); }

void HeapReleaser::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HeapReleaser::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, config_.check_interval, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    const auto now = HeapReleasePolicy::Clock::now();
    if (const auto anon = anon_rss_bytes(); anon && policy_.check(*anon, now)) {
      const auto started = HeapReleasePolicy::Clock::now();
      ::malloc_trim(0);
      const auto after = anon_rss_bytes().value_or(*anon);
      policy_.trimmed(*anon, after, now);
      spdlog::debug("heap: gave back free pages, anon RSS {:.1f} -> {:.1f} MB in {} ms", *anon / 1e6, after / 1e6,
                    std::chrono::duration_cast<std::chrono::milliseconds>(HeapReleasePolicy::Clock::now() - started)
                        .count());
    }
    lock.lock();
  }
}

}  // namespace weft::tools
