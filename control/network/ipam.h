// IPv4 address management. Addresses come from ranges the node owns: on one
// node it owns the whole pool; in a cluster ranges are split and donated
// between nodes (see RangeSet::split_off), so nothing here assumes a single
// owner of a subnet.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/address.h"

namespace weft::control::network::ipam {

class IpamError : public std::runtime_error {
 public:
  enum class Kind { Invalid, Overlap, Exhausted, InUse, OutOfRange, NotAllocated };
  IpamError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

using Ipv4 = dataplane::Ipv4;
using Cidr = dataplane::Cidr;

// Inclusive range [first, last].
struct Range {
  Ipv4 first;
  Ipv4 last;
  std::uint64_t size() const { return std::uint64_t{last.value} - first.value + 1; }
  auto operator<=>(const Range&) const = default;
};

// The addresses of `subnet` nodes may hand out: all but its network and
// broadcast address. `subnet` must be /30 or larger (networks are).
Range host_range(const Cidr& subnet);

// Disjoint, coalesced ranges.
class RangeSet {
 public:
  RangeSet() = default;
  explicit RangeSet(const Range& r) { add(r); }
  void add(const Range& r);
  void remove(const Range& r);
  bool contains(Ipv4 ip) const;
  bool contains(const Range& r) const;
  std::uint64_t size() const;
  bool empty() const { return ranges_.empty(); }
  const std::vector<Range>& ranges() const { return ranges_; }
  // Removes up to `count` addresses (the highest ones) and returns them: what
  // a node hands to a peer that ran out.
  RangeSet split_off(std::uint64_t count);
  RangeSet intersect(const Range& r) const;

 private:
  std::vector<Range> ranges_;  // sorted by first
};

// Addresses inside one network's subnet. The network and broadcast addresses
// are never handed out; the gateway is reserved by the caller.
class AddressAllocator {
 public:
  // `owned`: the addresses of the subnet this node may hand out.
  AddressAllocator(Cidr subnet, RangeSet owned);
  const Cidr& subnet() const { return subnet_; }
  // Lowest free owned address; IpamError::Exhausted when none is left.
  Ipv4 allocate();
  // Highest free owned address (kept for the node itself, away from the
  // low addresses services and endpoints get first); Exhausted when none.
  Ipv4 allocate_highest();
  // A specific address: OutOfRange outside the subnet, InUse when taken,
  // Invalid for network/broadcast. Works for addresses outside the owned
  // ranges too (an explicit --ip is the user's call).
  void allocate(Ipv4 ip);
  void release(Ipv4 ip);  // NotAllocated when it was not allocated
  bool is_allocated(Ipv4 ip) const;
  std::size_t allocated_count() const { return allocated_.size(); }
  void add_owned(const RangeSet& ranges);
  // Ranges handed to another node: they must hold no allocated address.
  void remove_owned(const RangeSet& ranges);
  const RangeSet& owned() const { return owned_; }
  // Owned addresses not handed out: what this node can donate.
  const RangeSet& free_ranges() const { return free_; }

 private:
  Cidr subnet_;
  RangeSet owned_;
  std::set<Ipv4> allocated_;
  // Owned addresses that allocate() may still hand out (owned minus
  // allocated minus network/broadcast), so it needs no scan of allocated_.
  RangeSet free_;
};

// Subnets of a fixed prefix length carved out of a pool (default 10.0.0.0/8
// into /24s), plus explicit subnets a user asks for.
class SubnetPool {
 public:
  SubnetPool(Cidr pool, int subnet_prefix);
  // Lowest free subnet of the default size inside owned ranges of the pool
  // that overlaps no reserved subnet; Exhausted when none.
  Cidr allocate();
  // An explicit subnet (may be outside the pool, may be larger than the
  // default size); Overlap when it overlaps any reserved subnet.
  void reserve(const Cidr& subnet);
  void release(const Cidr& subnet);  // NotAllocated when not reserved
  bool overlaps_reserved(const Cidr& subnet) const;
  const Cidr& pool() const { return pool_; }
  int subnet_prefix() const { return subnet_prefix_; }
  void set_owned(RangeSet owned) { owned_ = std::move(owned); }
  const RangeSet& owned() const { return owned_; }
  // Owned pool addresses in no reserved subnet: what this node can donate.
  RangeSet free_ranges() const;

 private:
  Cidr pool_;
  int subnet_prefix_;
  RangeSet owned_;
  std::set<Cidr> reserved_;
};

// The pool of weftd's --default-addr-pool and --default-addr-pool-mask-length:
// throws std::invalid_argument, naming the flag, when the pool is not a CIDR
// or the mask length is outside the pool's prefix..30 (/31 and /32 leave no
// address for an endpoint next to the gateway).
SubnetPool default_subnet_pool(std::string_view pool, int mask_length);

}  // namespace weft::control::network::ipam
