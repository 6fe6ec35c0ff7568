#include "control/network/ipam.h"

#include <algorithm>
#include <iterator>

namespace weft::control::network::ipam {

namespace {

// Address arithmetic is done in 64 bits so "last + 1" of 255.255.255.255 does
// not wrap around to 0.0.0.0.
using Wide = std::uint64_t;

const Cidr& require_valid_cidr(const Cidr& cidr, const char* what) {
  if (cidr.prefix < 0 || cidr.prefix > 32) {
    throw IpamError(IpamError::Kind::Invalid,
                    std::string("invalid ") + what + " prefix length " + std::to_string(cidr.prefix));
  }
  if (!cidr.well_formed()) {
    throw IpamError(IpamError::Kind::Invalid,
                    std::string("invalid ") + what + " " + cidr.str() + ": host bits are set");
  }
  return cidr;
}

Range range_of(const Cidr& cidr) { return Range{cidr.first(), cidr.last()}; }

Wide align_up(Wide value, Wide alignment) { return (value + alignment - 1) / alignment * alignment; }

// A /31 is a point-to-point link (RFC 3021) and a /32 a single host: neither
// has a network or broadcast address to keep out.
bool has_network_and_broadcast(const Cidr& subnet) { return subnet.prefix < 31; }

bool is_network_or_broadcast(const Cidr& subnet, Ipv4 ip) {
  return has_network_and_broadcast(subnet) && (ip == subnet.first() || ip == subnet.last());
}

std::optional<Range> clip(const Range& r, const Range& window) {
  if (r.last < window.first || window.last < r.first) {
    return std::nullopt;
  }
  return Range{std::max(r.first, window.first), std::min(r.last, window.last)};
}

// Adds to `free` the addresses of `r` that are not in `allocated` and are
// neither network nor broadcast address. Walks only the allocations inside
// `r`, so a large range with many allocations costs O(allocations).
void add_free_addresses(RangeSet& free, const Range& r, const std::set<Ipv4>& allocated,
                        const Cidr& subnet) {
  Wide gap_start = r.first.value;
  const auto end = allocated.upper_bound(r.last);
  for (auto it = allocated.lower_bound(r.first); it != end; ++it) {
    if (Wide{it->value} > gap_start) {
      free.add(Range{Ipv4{static_cast<std::uint32_t>(gap_start)}, Ipv4{it->value - 1}});
    }
    gap_start = Wide{it->value} + 1;
  }
  if (gap_start <= r.last.value) {
    free.add(Range{Ipv4{static_cast<std::uint32_t>(gap_start)}, r.last});
  }
  if (has_network_and_broadcast(subnet)) {
    free.remove(Range{subnet.first(), subnet.first()});
    free.remove(Range{subnet.last(), subnet.last()});
  }
}

// Reserved subnets never overlap each other, so ordered by base they are also
// ordered by last address. Only the one just before `subnet` can reach into
// it from below; otherwise the first one starting inside it is the lowest
// overlap.
std::optional<Cidr> first_overlapping(const std::set<Cidr>& reserved, const Cidr& subnet) {
  const auto at_or_after = reserved.lower_bound(Cidr{subnet.first(), 0});
  if (at_or_after != reserved.begin()) {
    const Cidr& before = *std::prev(at_or_after);
    if (before.last() >= subnet.first()) {
      return before;
    }
  }
  if (at_or_after != reserved.end() && at_or_after->first() <= subnet.last()) {
    return *at_or_after;
  }
  return std::nullopt;
}

}  // namespace

Range host_range(const Cidr& subnet) { return Range{Ipv4{subnet.first().value + 1}, Ipv4{subnet.last().value - 1}}; }

// ---------------------------------------------------------------------------
// RangeSet

void RangeSet::add(const Range& r) {
  if (r.first > r.last) {
    throw IpamError(IpamError::Kind::Invalid,
                    "invalid range " + r.first.str() + "-" + r.last.str());
  }
  // Ranges that touch or overlap `r` merge with it; adjacency counts so that
  // 10.0.0.0-10.0.0.9 plus 10.0.0.10-10.0.0.19 is stored as one range.
  const auto merge_begin = std::lower_bound(
      ranges_.begin(), ranges_.end(), r,
      [](const Range& existing, const Range& added) { return Wide{existing.last.value} + 1 < added.first.value; });
  auto merge_end = merge_begin;
  Range merged = r;
  while (merge_end != ranges_.end() && Wide{merge_end->first.value} <= Wide{r.last.value} + 1) {
    merged.first = std::min(merged.first, merge_end->first);
    merged.last = std::max(merged.last, merge_end->last);
    ++merge_end;
  }
  const auto insert_at = ranges_.erase(merge_begin, merge_end);
  ranges_.insert(insert_at, merged);
}

void RangeSet::remove(const Range& r) {
  if (r.first > r.last) {
    return;
  }
  const auto cut_begin = std::lower_bound(
      ranges_.begin(), ranges_.end(), r,
      [](const Range& existing, const Range& removed) { return existing.last < removed.first; });
  auto cut_end = cut_begin;
  std::vector<Range> leftovers;
  while (cut_end != ranges_.end() && cut_end->first <= r.last) {
    if (cut_end->first < r.first) {
      leftovers.push_back(Range{cut_end->first, Ipv4{r.first.value - 1}});
    }
    if (cut_end->last > r.last) {
      leftovers.push_back(Range{Ipv4{r.last.value + 1}, cut_end->last});
    }
    ++cut_end;
  }
  const auto insert_at = ranges_.erase(cut_begin, cut_end);
  ranges_.insert(insert_at, leftovers.begin(), leftovers.end());
}

bool RangeSet::contains(Ipv4 ip) const { return contains(Range{ip, ip}); }

bool RangeSet::contains(const Range& r) const {
  if (r.first > r.last) {
    return false;
  }
  // The only candidate is the last range starting at or before r.first:
  // ranges are coalesced, so `r` cannot span two of them.
  auto after = std::upper_bound(ranges_.begin(), ranges_.end(), r.first,
                                [](Ipv4 ip, const Range& existing) { return ip < existing.first; });
  if (after == ranges_.begin()) {
    return false;
  }
  return std::prev(after)->last >= r.last;
}

std::uint64_t RangeSet::size() const {
  std::uint64_t total = 0;
  for (const Range& r : ranges_) {
    total += r.size();
  }
  return total;
}

RangeSet RangeSet::split_off(std::uint64_t count) {
  std::vector<Range> taken;  // collected highest first
  while (count > 0 && !ranges_.empty()) {
    Range& highest = ranges_.back();
    if (highest.size() <= count) {
      count -= highest.size();
      taken.push_back(highest);
      ranges_.pop_back();
    } else {
      const Ipv4 split_at{static_cast<std::uint32_t>(highest.last.value - count + 1)};
      taken.push_back(Range{split_at, highest.last});
      highest.last = Ipv4{split_at.value - 1};
      count = 0;
    }
  }
  RangeSet result;
  result.ranges_.assign(taken.rbegin(), taken.rend());
  return result;
}

RangeSet RangeSet::intersect(const Range& r) const {
  RangeSet result;
  if (r.first > r.last) {
    return result;
  }
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), r,
                             [](const Range& existing, const Range& window) { return existing.last < window.first; });
  for (; it != ranges_.end() && it->first <= r.last; ++it) {
    result.ranges_.push_back(Range{std::max(it->first, r.first), std::min(it->last, r.last)});
  }
  return result;
}

// ---------------------------------------------------------------------------
// AddressAllocator

AddressAllocator::AddressAllocator(Cidr subnet, RangeSet owned)
    : subnet_(require_valid_cidr(subnet, "subnet")) {
  add_owned(owned);
}

Ipv4 AddressAllocator::allocate() {
  if (free_.empty()) {
    throw IpamError(IpamError::Kind::Exhausted,
                    "no available IPv4 addresses in subnet " + subnet_.str());
  }
  const Ipv4 ip = free_.ranges().front().first;
  free_.remove(Range{ip, ip});
  allocated_.insert(ip);
  return ip;
}

Ipv4 AddressAllocator::allocate_highest() {
  if (free_.empty()) {
    throw IpamError(IpamError::Kind::Exhausted,
                    "no available IPv4 addresses in subnet " + subnet_.str());
  }
  const Ipv4 ip = free_.ranges().back().last;
  free_.remove(Range{ip, ip});
  allocated_.insert(ip);
  return ip;
}

void AddressAllocator::allocate(Ipv4 ip) {
  if (!subnet_.contains(ip)) {
    throw IpamError(IpamError::Kind::OutOfRange,
                    "address " + ip.str() + " is outside subnet " + subnet_.str());
  }
  if (is_network_or_broadcast(subnet_, ip)) {
    const char* which = ip == subnet_.first() ? "network" : "broadcast";
    throw IpamError(IpamError::Kind::Invalid,
                    "address " + ip.str() + " is the " + which + " address of subnet " + subnet_.str());
  }
  if (!allocated_.insert(ip).second) {
    throw IpamError(IpamError::Kind::InUse,
                    "address " + ip.str() + " is already in use in subnet " + subnet_.str());
  }
  free_.remove(Range{ip, ip});
}

void AddressAllocator::release(Ipv4 ip) {
  if (allocated_.erase(ip) == 0) {
    throw IpamError(IpamError::Kind::NotAllocated,
                    "address " + ip.str() + " is not allocated in subnet " + subnet_.str());
  }
  // An explicitly requested address outside the owned ranges goes back to
  // nobody: it was never ours to hand out automatically.
  if (owned_.contains(ip)) {
    free_.add(Range{ip, ip});
  }
}

bool AddressAllocator::is_allocated(Ipv4 ip) const { return allocated_.count(ip) != 0; }

void AddressAllocator::add_owned(const RangeSet& ranges) {
  for (const Range& offered : ranges.ranges()) {
    if (const auto inside = clip(offered, range_of(subnet_))) {
      owned_.add(*inside);
      add_free_addresses(free_, *inside, allocated_, subnet_);
    }
  }
}

void AddressAllocator::remove_owned(const RangeSet& ranges) {
  for (const Range& r : ranges.ranges()) {
    owned_.remove(r);
    free_.remove(r);
  }
}

// ---------------------------------------------------------------------------
// SubnetPool

RangeSet SubnetPool::free_ranges() const {
  RangeSet free = owned_.intersect(range_of(pool_));
  for (const Cidr& subnet : reserved_) free.remove(range_of(subnet));
  return free;
}

SubnetPool::SubnetPool(Cidr pool, int subnet_prefix)
    : pool_(require_valid_cidr(pool, "pool")), subnet_prefix_(subnet_prefix), owned_(range_of(pool_)) {
  if (subnet_prefix_ < pool_.prefix || subnet_prefix_ > 32) {
    throw IpamError(IpamError::Kind::Invalid,
                    "subnet size /" + std::to_string(subnet_prefix_) + " does not fit in pool " + pool_.str());
  }
}

Cidr SubnetPool::allocate() {
  const Wide subnet_size = Wide{1} << (32 - subnet_prefix_);
  const RangeSet usable_in_pool = owned_.intersect(range_of(pool_));
  for (const Range& usable : usable_in_pool.ranges()) {
    Wide candidate = align_up(usable.first.value, subnet_size);
    while (candidate + subnet_size - 1 <= usable.last.value) {
      const Cidr subnet{Ipv4{static_cast<std::uint32_t>(candidate)}, subnet_prefix_};
      const std::optional<Cidr> conflict = first_overlapping(reserved_, subnet);
      if (!conflict) {
        reserved_.insert(subnet);
        return subnet;
      }
      // Jump past the reserved subnet instead of probing every candidate it
      // covers: keeps a /8 with many large reservations cheap.
      candidate = align_up(Wide{conflict->last().value} + 1, subnet_size);
    }
  }
  throw IpamError(IpamError::Kind::Exhausted, "no available /" + std::to_string(subnet_prefix_) +
                                                  " subnets in pool " + pool_.str());
}

void SubnetPool::reserve(const Cidr& subnet) {
  require_valid_cidr(subnet, "subnet");
  if (const auto conflict = first_overlapping(reserved_, subnet)) {
    throw IpamError(IpamError::Kind::Overlap,
                    "subnet " + subnet.str() + " overlaps with existing subnet " + conflict->str());
  }
  reserved_.insert(subnet);
}

void SubnetPool::release(const Cidr& subnet) {
  if (reserved_.erase(subnet) == 0) {
    throw IpamError(IpamError::Kind::NotAllocated, "subnet " + subnet.str() + " is not allocated");
  }
}

bool SubnetPool::overlaps_reserved(const Cidr& subnet) const {
  return first_overlapping(reserved_, subnet).has_value();
}

SubnetPool default_subnet_pool(std::string_view pool, int mask_length) {
  const auto cidr = Cidr::parse(pool);
  if (!cidr) {
    throw std::invalid_argument("invalid --default-addr-pool \"" + std::string(pool) +
                                "\": not an IPv4 CIDR with host bits zero (e.g. 10.0.0.0/8)");
  }
  if (mask_length < cidr->prefix || mask_length > 30) {
    throw std::invalid_argument("invalid --default-addr-pool-mask-length " + std::to_string(mask_length) +
                                ": must be between " + std::to_string(cidr->prefix) + " (the pool's prefix) and 30");
  }
  return SubnetPool(*cidr, mask_length);
}

}  // namespace weft::control::network::ipam
