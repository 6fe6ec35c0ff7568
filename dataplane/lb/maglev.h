// Maglev consistent hashing (Eisenbud et al., NSDI 2016): the lookup table a
// service's flows are hashed into. Built here in user space, written to the
// kernel as one inner map per service, and used as is by lookup().
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace weft::dataplane::lb {

// A prime: every backend's permutation then visits every slot. 16381 keeps
// the imbalance between backends within ~1% up to ~160 backends (M >= 100 N).
inline constexpr std::uint32_t kDefaultMaglevTableSize = 16381;

bool is_prime(std::uint32_t n);

// Slot -> backend id for the given backends (distinct, non-zero ids; order
// does not matter). No backends: every slot is 0 (no backend). Throws
// std::invalid_argument when table_size is not a prime or is smaller than
// the number of backends.
std::vector<std::uint32_t> build_maglev_table(std::span<const std::uint32_t> backend_ids,
                                              std::uint32_t table_size);

}  // namespace weft::dataplane::lb
