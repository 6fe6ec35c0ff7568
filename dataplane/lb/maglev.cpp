#include "dataplane/lb/maglev.h"

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <string>

namespace weft::dataplane::lb {
namespace {

// splitmix64's finaliser: a backend's offset and skip must look random and
// independent, and must not change between releases (tables would move).
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

bool is_prime(std::uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (std::uint64_t d = 3; d * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

std::uint32_t maglev_table_size_for(std::size_t active_backends, std::uint32_t current_size,
                                    std::uint32_t max_size) {
  if (active_backends == 0) return 0;
  static constexpr std::uint32_t kTiers[] = {251,  509,  1021,  2039, 4093,
                                             8191, 16381, 32749, 65521};
  const std::uint64_t wanted = 100ULL * active_backends;
  std::uint32_t size = max_size;
  std::size_t tier = 0;
  for (; tier < std::size(kTiers) && kTiers[tier] < max_size; ++tier) {
    if (kTiers[tier] >= wanted) {
      size = kTiers[tier];
      break;
    }
  }
  if (current_size == 0 || current_size > max_size) return size;
  const bool big_enough = current_size >= std::min<std::uint64_t>(wanted / 2, max_size);
  const bool far_too_big = current_size > 16ULL * size;  // 4 tiers up
  return big_enough && !far_too_big ? current_size : size;
}

std::vector<std::uint32_t> build_maglev_table(std::span<const std::uint32_t> backend_ids,
                                              std::uint32_t table_size) {
  if (!is_prime(table_size)) {
    throw std::invalid_argument("Maglev table size " + std::to_string(table_size) +
                                " is not a prime");
  }
  if (backend_ids.size() > table_size) {
    throw std::invalid_argument("more backends than Maglev table slots");
  }
  std::vector<std::uint32_t> table(table_size, 0);
  if (backend_ids.empty()) return table;

  // Sorted so the table depends on the set of backends, not on their order.
  std::vector<std::uint32_t> ids(backend_ids.begin(), backend_ids.end());
  std::sort(ids.begin(), ids.end());
  if (ids.front() == 0) throw std::invalid_argument("backend id 0 is reserved");
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
    throw std::invalid_argument("duplicate backend id");
  }
  const std::size_t n = ids.size();
  // pos[i] walks backend i's permutation offset, offset+skip, ... (mod M)
  // by addition: no multiplication or division per probe.
  std::vector<std::uint32_t> pos(n), skip(n);
  for (std::size_t i = 0; i < n; ++i) {
    pos[i] = static_cast<std::uint32_t>(mix(ids[i]) % table_size);
    skip[i] = static_cast<std::uint32_t>(
        mix(static_cast<std::uint64_t>(ids[i]) | (1ULL << 32)) % (table_size - 1) + 1);
  }
  auto advance = [&](std::size_t i) {
    pos[i] += skip[i];
    if (pos[i] >= table_size) pos[i] -= table_size;
  };

  std::uint32_t filled = 0;
  while (true) {
    for (std::size_t i = 0; i < n; ++i) {
      while (table[pos[i]] != 0) advance(i);
      table[pos[i]] = ids[i];
      advance(i);
      if (++filled == table_size) return table;
    }
  }
}

}  // namespace weft::dataplane::lb
