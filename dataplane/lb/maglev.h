// Maglev consistent hashing (Eisenbud et al., NSDI 2016): the lookup table a
// service's flows are hashed into. Built here in user space, written to the
// kernel as one run of the shared table pool, and used as is by lookup().
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace weft::dataplane::lb {

// The largest table a service gets (a prime: every backend's permutation
// then visits every slot). 16381 keeps the imbalance between backends
// within ~1% up to ~160 backends (M >= 100 N); smaller services get smaller
// tables (maglev_table_size_for).
inline constexpr std::uint32_t kDefaultMaglevTableSize = 16381;

bool is_prime(std::uint32_t n);

// Every service's table is sized for its own backends: the smallest of the
// prime tiers 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521 with at
// least 100 slots per active backend (imbalance within ~1%), at most
// max_size (a prime, itself a tier then). A table keeps its size while it
// has at least 50 slots per backend (imbalance within ~2%) and is not 4
// tiers too big, so that a backend more or less (which Maglev answers by
// moving ~1/N of the slots) seldom also resizes it (which moves nearly all
// new flows; tracked ones stay). No backends: 0.
std::uint32_t maglev_table_size_for(std::size_t active_backends, std::uint32_t current_size,
                                    std::uint32_t max_size);

// Slot -> backend id for the given backends (distinct, non-zero ids; order
// does not matter). No backends: every slot is 0 (no backend). Throws
// std::invalid_argument when table_size is not a prime or is smaller than
// the number of backends.
std::vector<std::uint32_t> build_maglev_table(std::span<const std::uint32_t> backend_ids,
                                              std::uint32_t table_size);

}  // namespace weft::dataplane::lb
