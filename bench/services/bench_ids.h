// Ids for the services benches: 64 hex digits, distinct per (kind, n), as
// random as weft's ids look, the same in every program that makes them.
#pragma once

#include <cstdint>
#include <string>

#include <fmt/format.h>

namespace weft::bench {

inline std::string bench_id(std::uint64_t kind, std::uint64_t n) {
  auto mix = [](std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  const std::uint64_t seed = (kind << 40) ^ n;
  return fmt::format("{:016x}{:016x}{:016x}{:016x}", mix(seed), mix(seed + 1), mix(seed + 2), mix(seed + 3));
}

}  // namespace weft::bench
