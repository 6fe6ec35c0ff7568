#include "control/network/ipam.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace weft::control::network::ipam {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Ipv4 ip(std::string_view text) {
  const auto parsed = Ipv4::parse(text);
  if (!parsed) {
    ADD_FAILURE() << "test helper: bad address " << text;
    return Ipv4{};
  }
  return *parsed;
}

Cidr cidr(std::string_view text) {
  const auto parsed = Cidr::parse(text);
  if (!parsed) {
    ADD_FAILURE() << "test helper: bad CIDR " << text;
    return Cidr{};
  }
  return *parsed;
}

Range range(std::string_view first, std::string_view last) { return Range{ip(first), ip(last)}; }

RangeSet whole(const Cidr& c) { return RangeSet(Range{c.first(), c.last()}); }

// Runs `action`, expects an IpamError of `kind`, returns its message.
template <typename Action>
std::string expect_ipam_error(IpamError::Kind kind, Action action) {
  try {
    action();
  } catch (const IpamError& error) {
    EXPECT_EQ(error.kind(), kind) << error.what();
    return error.what();
  }
  ADD_FAILURE() << "expected IpamError";
  return {};
}

std::vector<std::string> strs(const RangeSet& set) {
  std::vector<std::string> out;
  for (const Range& r : set.ranges()) {
    out.push_back(r.first.str() + "-" + r.last.str());
  }
  return out;
}

// ---------------------------------------------------------------------------
// Ipv4

TEST(Ipv4Parse, AcceptsDottedQuads) {
  EXPECT_EQ(Ipv4::parse("0.0.0.0")->value, 0u);
  EXPECT_EQ(Ipv4::parse("255.255.255.255")->value, 0xFFFFFFFFu);
  EXPECT_EQ(Ipv4::parse("10.1.2.3")->value, 0x0A010203u);
  EXPECT_EQ(Ipv4::parse("192.168.100.200")->value, 0xC0A864C8u);
  EXPECT_EQ(Ipv4::parse("1.0.0.0")->value, 0x01000000u);
}

TEST(Ipv4Parse, RejectsMalformedText) {
  for (const char* bad :
       {"", "1", "1.2.3", "1.2.3.4.5", "1..3.4", ".1.2.3", "1.2.3.", "1.2.3.4.", "a.b.c.d", "1.2.3.x",
        "256.0.0.1", "1.2.3.256", "1.2.3.999", "1000.2.3.4", " 1.2.3.4", "1.2.3.4 ", "1.2. 3.4",
        "1.2.3.4\n", "+1.2.3.4", "1.2.3.-4", "1.2.3.0x4", "0x1.2.3.4", "01.2.3.4", "1.2.3.04",
        "1.2.3.4/24", "::1", "1,2,3,4"}) {
    EXPECT_FALSE(Ipv4::parse(bad).has_value()) << '"' << bad << '"';
  }
}

TEST(Ipv4Parse, RejectsEmbeddedNul) {
  using namespace std::string_view_literals;
  EXPECT_FALSE(Ipv4::parse("1.2.3.4\0"sv).has_value());
  EXPECT_FALSE(Ipv4::parse("1.2\0.3.4"sv).has_value());
}

TEST(Ipv4, StrRoundTrips) {
  for (const char* text : {"0.0.0.0", "255.255.255.255", "10.0.0.1", "172.16.254.3"}) {
    EXPECT_EQ(ip(text).str(), text);
  }
  EXPECT_EQ(Ipv4{0x0A000005}.str(), "10.0.0.5");
}

TEST(Ipv4, OrdersNumerically) {
  EXPECT_LT(ip("10.0.0.2"), ip("10.0.0.10"));
  EXPECT_LT(ip("9.255.255.255"), ip("10.0.0.0"));
  EXPECT_EQ(ip("10.0.0.1"), Ipv4{0x0A000001});
}

// ---------------------------------------------------------------------------
// Cidr

TEST(CidrParse, AcceptsNetworks) {
  const Cidr eight = cidr("10.0.0.0/8");
  EXPECT_EQ(eight.base.value, 0x0A000000u);
  EXPECT_EQ(eight.prefix, 8);
  EXPECT_EQ(eight.first(), ip("10.0.0.0"));
  EXPECT_EQ(eight.last(), ip("10.255.255.255"));
  EXPECT_EQ(eight.size(), 1u << 24);

  const Cidr all = cidr("0.0.0.0/0");
  EXPECT_EQ(all.prefix, 0);
  EXPECT_EQ(all.last(), ip("255.255.255.255"));
  EXPECT_EQ(all.size(), std::uint64_t{1} << 32);

  const Cidr host = cidr("10.0.0.5/32");
  EXPECT_EQ(host.first(), ip("10.0.0.5"));
  EXPECT_EQ(host.last(), ip("10.0.0.5"));
  EXPECT_EQ(host.size(), 1u);

  EXPECT_EQ(cidr("192.168.1.128/25").last(), ip("192.168.1.255"));
}

TEST(CidrParse, RejectsHostBitsSet) {
  EXPECT_FALSE(Cidr::parse("10.0.0.1/24").has_value());
  EXPECT_FALSE(Cidr::parse("10.0.1.0/23").has_value());
  EXPECT_FALSE(Cidr::parse("10.0.0.0/0").has_value());
  EXPECT_FALSE(Cidr::parse("10.128.0.0/8").has_value());
}

TEST(CidrParse, RejectsMalformedText) {
  for (const char* bad :
       {"", "/", "10.0.0.0", "10.0.0.0/", "/24", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8",
        "10.0.0.0/08", "10.0.0.0/ 8", "10.0.0.0 /8", " 10.0.0.0/8", "10.0.0.0/8 ", "10.0.0.0/8/8",
        "10.0.0/8", "10.0.0.0/x", "10.0.0.0/100", "256.0.0.0/8"}) {
    EXPECT_FALSE(Cidr::parse(bad).has_value()) << '"' << bad << '"';
  }
}

TEST(Cidr, StrRoundTrips) {
  EXPECT_EQ(cidr("10.0.0.0/8").str(), "10.0.0.0/8");
  EXPECT_EQ(cidr("0.0.0.0/0").str(), "0.0.0.0/0");
  EXPECT_EQ(cidr("192.168.1.7/32").str(), "192.168.1.7/32");
}

TEST(Cidr, ContainsHonoursBoundaries) {
  const Cidr net = cidr("10.0.1.0/24");
  EXPECT_TRUE(net.contains(ip("10.0.1.0")));
  EXPECT_TRUE(net.contains(ip("10.0.1.255")));
  EXPECT_FALSE(net.contains(ip("10.0.0.255")));
  EXPECT_FALSE(net.contains(ip("10.0.2.0")));
  EXPECT_TRUE(cidr("0.0.0.0/0").contains(ip("255.255.255.255")));
  EXPECT_TRUE(cidr("10.0.0.5/32").contains(ip("10.0.0.5")));
  EXPECT_FALSE(cidr("10.0.0.5/32").contains(ip("10.0.0.4")));
}

TEST(Cidr, OverlapsIsSymmetricAndExcludesNeighbours) {
  const Cidr big = cidr("10.0.0.0/16");
  const Cidr inside = cidr("10.0.3.0/24");
  const Cidr next = cidr("10.1.0.0/16");
  EXPECT_TRUE(big.overlaps(inside));
  EXPECT_TRUE(inside.overlaps(big));
  EXPECT_TRUE(big.overlaps(big));
  EXPECT_FALSE(big.overlaps(next));
  EXPECT_FALSE(next.overlaps(big));
  EXPECT_FALSE(cidr("10.0.0.0/25").overlaps(cidr("10.0.0.128/25")));
}

TEST(Cidr, ContainingClearsHostBits) {
  EXPECT_EQ(Cidr::containing(ip("10.0.0.1"), 24), cidr("10.0.0.0/24"));
  EXPECT_EQ(Cidr::containing(ip("10.0.1.77"), 23), cidr("10.0.0.0/23"));
  EXPECT_EQ(Cidr::containing(ip("255.255.255.255"), 0), cidr("0.0.0.0/0"));
  EXPECT_EQ(Cidr::containing(ip("10.0.0.5"), 32), cidr("10.0.0.5/32"));
}

TEST(Cidr, WellFormedIsWhatParseGuarantees) {
  EXPECT_TRUE(cidr("10.0.0.0/8").well_formed());
  EXPECT_FALSE((Cidr{ip("10.0.0.1"), 24}).well_formed());
  EXPECT_FALSE((Cidr{ip("10.0.0.0"), 33}).well_formed());
  EXPECT_FALSE((Cidr{ip("10.0.0.0"), -1}).well_formed());
}

// The numbers nodes hand out and claim for a network (network manager and
// cluster both use it): everything but network and broadcast address.
TEST(HostRange, LeavesOutNetworkAndBroadcast) {
  EXPECT_EQ(host_range(cidr("10.0.0.0/24")), range("10.0.0.1", "10.0.0.254"));
  EXPECT_EQ(host_range(cidr("10.5.0.0/16")), range("10.5.0.1", "10.5.255.254"));
  EXPECT_EQ(host_range(cidr("192.168.7.4/30")), range("192.168.7.5", "192.168.7.6"));
}

// ---------------------------------------------------------------------------
// RangeSet

TEST(RangeSet, KeepsDisjointRangesSorted) {
  RangeSet set;
  set.add(range("10.0.0.50", "10.0.0.60"));
  set.add(range("10.0.0.1", "10.0.0.5"));
  set.add(range("10.0.0.20", "10.0.0.30"));
  EXPECT_THAT(strs(set), ElementsAre("10.0.0.1-10.0.0.5", "10.0.0.20-10.0.0.30", "10.0.0.50-10.0.0.60"));
  EXPECT_EQ(set.size(), 5u + 11u + 11u);
}

TEST(RangeSet, CoalescesAdjacentAndOverlapping) {
  RangeSet set(range("10.0.0.10", "10.0.0.19"));
  set.add(range("10.0.0.20", "10.0.0.29"));  // adjacent above
  set.add(range("10.0.0.0", "10.0.0.9"));    // adjacent below
  EXPECT_THAT(strs(set), ElementsAre("10.0.0.0-10.0.0.29"));
  set.add(range("10.0.0.25", "10.0.0.40"));  // overlapping
  set.add(range("10.0.0.5", "10.0.0.6"));    // already covered
  EXPECT_THAT(strs(set), ElementsAre("10.0.0.0-10.0.0.40"));
  EXPECT_EQ(set.size(), 41u);
}

TEST(RangeSet, AddBridgesSeveralRanges) {
  RangeSet set;
  set.add(range("10.0.0.1", "10.0.0.2"));
  set.add(range("10.0.0.5", "10.0.0.6"));
  set.add(range("10.0.0.9", "10.0.0.10"));
  set.add(range("10.0.0.20", "10.0.0.20"));
  set.add(range("10.0.0.3", "10.0.0.8"));
  EXPECT_THAT(strs(set), ElementsAre("10.0.0.1-10.0.0.10", "10.0.0.20-10.0.0.20"));
}

TEST(RangeSet, HandlesEdgesOfAddressSpace) {
  RangeSet set;
  set.add(range("255.255.255.250", "255.255.255.255"));
  set.add(range("0.0.0.0", "0.0.0.3"));
  EXPECT_THAT(strs(set), ElementsAre("0.0.0.0-0.0.0.3", "255.255.255.250-255.255.255.255"));
  set.remove(range("255.255.255.255", "255.255.255.255"));
  set.remove(range("0.0.0.0", "0.0.0.0"));
  EXPECT_THAT(strs(set), ElementsAre("0.0.0.1-0.0.0.3", "255.255.255.250-255.255.255.254"));

  RangeSet everything(range("0.0.0.0", "255.255.255.255"));
  EXPECT_EQ(everything.size(), std::uint64_t{1} << 32);
}

TEST(RangeSet, AddRejectsInvertedRange) {
  RangeSet set;
  expect_ipam_error(IpamError::Kind::Invalid, [&] { set.add(range("10.0.0.9", "10.0.0.1")); });
  EXPECT_TRUE(set.empty());
}

TEST(RangeSet, RemoveSplitsAndTrims) {
  RangeSet set(range("10.0.0.0", "10.0.0.255"));
  set.remove(range("10.0.0.100", "10.0.0.109"));
  EXPECT_THAT(strs(set), ElementsAre("10.0.0.0-10.0.0.99", "10.0.0.110-10.0.0.255"));
  set.remove(range("10.0.0.0", "10.0.0.9"));
  set.remove(range("10.0.0.250", "10.0.1.5"));
  EXPECT_THAT(strs(set), ElementsAre("10.0.0.10-10.0.0.99", "10.0.0.110-10.0.0.249"));
  EXPECT_EQ(set.size(), 90u + 140u);
}

TEST(RangeSet, RemoveAcrossSeveralRanges) {
  RangeSet set;
  set.add(range("10.0.0.1", "10.0.0.10"));
  set.add(range("10.0.0.20", "10.0.0.30"));
  set.add(range("10.0.0.40", "10.0.0.50"));
  set.remove(range("10.0.0.5", "10.0.0.45"));
  EXPECT_THAT(strs(set), ElementsAre("10.0.0.1-10.0.0.4", "10.0.0.46-10.0.0.50"));
  set.remove(range("10.0.0.60", "10.0.0.70"));  // nothing there
  EXPECT_THAT(strs(set), ElementsAre("10.0.0.1-10.0.0.4", "10.0.0.46-10.0.0.50"));
  set.remove(range("0.0.0.0", "255.255.255.255"));
  EXPECT_TRUE(set.empty());
  EXPECT_EQ(set.size(), 0u);
}

TEST(RangeSet, ContainsAddressesAndRanges) {
  RangeSet set;
  set.add(range("10.0.0.10", "10.0.0.20"));
  set.add(range("10.0.0.30", "10.0.0.40"));
  EXPECT_TRUE(set.contains(ip("10.0.0.10")));
  EXPECT_TRUE(set.contains(ip("10.0.0.20")));
  EXPECT_TRUE(set.contains(ip("10.0.0.35")));
  EXPECT_FALSE(set.contains(ip("10.0.0.9")));
  EXPECT_FALSE(set.contains(ip("10.0.0.25")));
  EXPECT_FALSE(set.contains(ip("10.0.0.41")));
  EXPECT_TRUE(set.contains(range("10.0.0.12", "10.0.0.18")));
  EXPECT_TRUE(set.contains(range("10.0.0.30", "10.0.0.40")));
  EXPECT_FALSE(set.contains(range("10.0.0.15", "10.0.0.35")));  // spans the gap
  EXPECT_FALSE(set.contains(range("10.0.0.5", "10.0.0.12")));
  EXPECT_FALSE(RangeSet().contains(ip("10.0.0.1")));
}

TEST(RangeSet, SplitOffTakesHighestAddresses) {
  RangeSet set(range("10.0.0.0", "10.0.0.255"));
  const RangeSet given = set.split_off(64);
  EXPECT_THAT(strs(given), ElementsAre("10.0.0.192-10.0.0.255"));
  EXPECT_THAT(strs(set), ElementsAre("10.0.0.0-10.0.0.191"));
  EXPECT_EQ(given.size() + set.size(), 256u);
}

TEST(RangeSet, SplitOffSpansRanges) {
  RangeSet set;
  set.add(range("10.0.0.0", "10.0.0.9"));
  set.add(range("10.0.0.20", "10.0.0.24"));
  set.add(range("10.0.0.30", "10.0.0.32"));
  const RangeSet given = set.split_off(10);  // 3 + 5 + 2
  EXPECT_THAT(strs(given), ElementsAre("10.0.0.8-10.0.0.9", "10.0.0.20-10.0.0.24", "10.0.0.30-10.0.0.32"));
  EXPECT_THAT(strs(set), ElementsAre("10.0.0.0-10.0.0.7"));
}

TEST(RangeSet, SplitOffMoreThanHeldTakesAll) {
  RangeSet set(range("10.0.0.0", "10.0.0.3"));
  EXPECT_EQ(set.split_off(0).size(), 0u);
  EXPECT_EQ(set.size(), 4u);
  const RangeSet given = set.split_off(100);
  EXPECT_THAT(strs(given), ElementsAre("10.0.0.0-10.0.0.3"));
  EXPECT_TRUE(set.empty());
  EXPECT_TRUE(set.split_off(1).empty());
}

TEST(RangeSet, IntersectClipsToWindow) {
  RangeSet set;
  set.add(range("10.0.0.0", "10.0.0.9"));
  set.add(range("10.0.0.20", "10.0.0.29"));
  set.add(range("10.0.0.40", "10.0.0.49"));
  EXPECT_THAT(strs(set.intersect(range("10.0.0.5", "10.0.0.42"))),
              ElementsAre("10.0.0.5-10.0.0.9", "10.0.0.20-10.0.0.29", "10.0.0.40-10.0.0.42"));
  EXPECT_TRUE(set.intersect(range("10.0.0.10", "10.0.0.19")).empty());
  EXPECT_EQ(set.size(), 30u);  // the source is untouched
}

// ---------------------------------------------------------------------------
// AddressAllocator

TEST(AddressAllocator, AllocatesLowestFirst) {
  AddressAllocator alloc(cidr("10.0.0.0/24"), whole(cidr("10.0.0.0/24")));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.1"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.2"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.3"));
  EXPECT_EQ(alloc.allocated_count(), 3u);
  EXPECT_TRUE(alloc.is_allocated(ip("10.0.0.2")));
  EXPECT_FALSE(alloc.is_allocated(ip("10.0.0.4")));
}

TEST(AddressAllocator, ExhaustsSlash30) {
  const Cidr subnet = cidr("10.0.0.0/30");
  AddressAllocator alloc(subnet, whole(subnet));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.1"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.2"));
  const std::string message = expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });
  EXPECT_EQ(message, "no available IPv4 addresses in subnet 10.0.0.0/30");
  EXPECT_EQ(alloc.allocated_count(), 2u);
}

TEST(AddressAllocator, ExhaustsSlash29) {
  const Cidr subnet = cidr("192.168.7.8/29");
  AddressAllocator alloc(subnet, whole(subnet));
  std::vector<std::string> got;
  for (int i = 0; i < 6; ++i) {
    got.push_back(alloc.allocate().str());
  }
  EXPECT_THAT(got, ElementsAre("192.168.7.9", "192.168.7.10", "192.168.7.11", "192.168.7.12", "192.168.7.13",
                               "192.168.7.14"));
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });
}

TEST(AddressAllocator, NeverHandsOutNetworkOrBroadcast) {
  const Cidr subnet = cidr("10.0.0.16/28");
  AddressAllocator alloc(subnet, whole(subnet));
  std::set<Ipv4> got;
  for (int i = 0; i < 14; ++i) {
    got.insert(alloc.allocate());
  }
  EXPECT_EQ(got.size(), 14u);
  EXPECT_EQ(got.count(ip("10.0.0.16")), 0u);
  EXPECT_EQ(got.count(ip("10.0.0.31")), 0u);
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });

  const std::string network = expect_ipam_error(IpamError::Kind::Invalid, [&] { alloc.allocate(ip("10.0.0.16")); });
  EXPECT_THAT(network, HasSubstr("10.0.0.16"));
  EXPECT_THAT(network, HasSubstr("network"));
  const std::string broadcast =
      expect_ipam_error(IpamError::Kind::Invalid, [&] { alloc.allocate(ip("10.0.0.31")); });
  EXPECT_THAT(broadcast, HasSubstr("broadcast"));
}

TEST(AddressAllocator, Slash31UsesBothAddresses) {
  const Cidr subnet = cidr("10.0.0.4/31");
  AddressAllocator alloc(subnet, whole(subnet));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.4"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.5"));
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });
}

TEST(AddressAllocator, Slash32UsesItsOnlyAddress) {
  const Cidr subnet = cidr("10.0.0.7/32");
  AddressAllocator alloc(subnet, whole(subnet));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.7"));
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });
  alloc.release(ip("10.0.0.7"));
  alloc.allocate(ip("10.0.0.7"));
  EXPECT_TRUE(alloc.is_allocated(ip("10.0.0.7")));
}

TEST(AddressAllocator, ExplicitAllocationConflicts) {
  const Cidr subnet = cidr("10.0.0.0/24");
  AddressAllocator alloc(subnet, whole(subnet));
  alloc.allocate(ip("10.0.0.5"));
  EXPECT_TRUE(alloc.is_allocated(ip("10.0.0.5")));
  const std::string in_use = expect_ipam_error(IpamError::Kind::InUse, [&] { alloc.allocate(ip("10.0.0.5")); });
  EXPECT_EQ(in_use, "address 10.0.0.5 is already in use in subnet 10.0.0.0/24");
  const std::string outside = expect_ipam_error(IpamError::Kind::OutOfRange, [&] { alloc.allocate(ip("10.1.0.5")); });
  EXPECT_EQ(outside, "address 10.1.0.5 is outside subnet 10.0.0.0/24");
  EXPECT_EQ(alloc.allocated_count(), 1u);
}

TEST(AddressAllocator, AutomaticAllocationSkipsExplicitOnes) {
  const Cidr subnet = cidr("10.0.0.0/24");
  AddressAllocator alloc(subnet, whole(subnet));
  alloc.allocate(ip("10.0.0.1"));
  alloc.allocate(ip("10.0.0.3"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.2"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.4"));
  // An automatically chosen address cannot be claimed explicitly afterwards.
  expect_ipam_error(IpamError::Kind::InUse, [&] { alloc.allocate(ip("10.0.0.4")); });
}

TEST(AddressAllocator, ReleasedAddressIsReusedLowestFirst) {
  const Cidr subnet = cidr("10.0.0.0/24");
  AddressAllocator alloc(subnet, whole(subnet));
  for (int i = 0; i < 5; ++i) {
    alloc.allocate();
  }
  alloc.release(ip("10.0.0.4"));
  alloc.release(ip("10.0.0.2"));
  EXPECT_FALSE(alloc.is_allocated(ip("10.0.0.2")));
  EXPECT_EQ(alloc.allocated_count(), 3u);
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.2"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.4"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.6"));
}

TEST(AddressAllocator, ReleaseOfUnallocatedFails) {
  const Cidr subnet = cidr("10.0.0.0/24");
  AddressAllocator alloc(subnet, whole(subnet));
  const std::string message = expect_ipam_error(IpamError::Kind::NotAllocated, [&] { alloc.release(ip("10.0.0.9")); });
  EXPECT_THAT(message, HasSubstr("10.0.0.9"));
  alloc.allocate(ip("10.0.0.9"));
  alloc.release(ip("10.0.0.9"));
  expect_ipam_error(IpamError::Kind::NotAllocated, [&] { alloc.release(ip("10.0.0.9")); });
  expect_ipam_error(IpamError::Kind::NotAllocated, [&] { alloc.release(ip("192.168.0.1")); });
}

TEST(AddressAllocator, ExhaustionRecoversAfterRelease) {
  const Cidr subnet = cidr("10.0.0.0/30");
  AddressAllocator alloc(subnet, whole(subnet));
  alloc.allocate();
  alloc.allocate();
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });
  alloc.release(ip("10.0.0.2"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.2"));
}

TEST(AddressAllocator, OwnsOnlyPartOfSubnet) {
  const Cidr subnet = cidr("10.0.0.0/24");
  AddressAllocator alloc(subnet, RangeSet(range("10.0.0.128", "10.0.0.255")));
  EXPECT_THAT(strs(alloc.owned()), ElementsAre("10.0.0.128-10.0.0.255"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.128"));

  // An explicit address outside the owned part is the user's call...
  alloc.allocate(ip("10.0.0.5"));
  EXPECT_TRUE(alloc.is_allocated(ip("10.0.0.5")));
  // ...and on release does not become part of what this node hands out.
  alloc.release(ip("10.0.0.5"));

  int handed_out = 1;
  for (;;) {
    try {
      const Ipv4 got = alloc.allocate();
      EXPECT_GE(got, ip("10.0.0.128"));
      EXPECT_LE(got, ip("10.0.0.254"));  // broadcast stays out even when owned
      ++handed_out;
    } catch (const IpamError& error) {
      EXPECT_EQ(error.kind(), IpamError::Kind::Exhausted);
      break;
    }
  }
  EXPECT_EQ(handed_out, 127);
}

TEST(AddressAllocator, OwnedRangesAreClippedToSubnet) {
  const Cidr subnet = cidr("10.0.0.0/24");
  RangeSet offered(range("9.255.255.250", "10.0.0.3"));
  offered.add(range("10.0.0.250", "10.0.1.10"));
  AddressAllocator alloc(subnet, offered);
  EXPECT_THAT(strs(alloc.owned()), ElementsAre("10.0.0.0-10.0.0.3", "10.0.0.250-10.0.0.255"));
  std::vector<std::string> got;
  for (int i = 0; i < 8; ++i) {
    got.push_back(alloc.allocate().str());
  }
  EXPECT_THAT(got, ElementsAre("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.250", "10.0.0.251", "10.0.0.252",
                               "10.0.0.253", "10.0.0.254"));
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });
}

TEST(AddressAllocator, EmptyOwnershipIsExhausted) {
  AddressAllocator alloc(cidr("10.0.0.0/24"), RangeSet{});
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });
  alloc.allocate(ip("10.0.0.10"));  // explicit addresses still work
  EXPECT_EQ(alloc.allocated_count(), 1u);
}

TEST(AddressAllocator, AddOwnedExtendsWhatCanBeHandedOut) {
  const Cidr subnet = cidr("10.0.0.0/24");
  AddressAllocator alloc(subnet, RangeSet(range("10.0.0.1", "10.0.0.2")));
  alloc.allocate();
  alloc.allocate();
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });

  alloc.allocate(ip("10.0.0.11"));  // taken explicitly before we own it
  RangeSet donated(range("10.0.0.10", "10.0.0.12"));
  donated.add(range("10.1.0.0", "10.1.0.255"));  // not in this subnet: ignored
  alloc.add_owned(donated);
  EXPECT_THAT(strs(alloc.owned()), ElementsAre("10.0.0.1-10.0.0.2", "10.0.0.10-10.0.0.12"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.10"));
  EXPECT_EQ(alloc.allocate(), ip("10.0.0.12"));
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });
}

// A node's own load-balancer address comes from the top of what it owns,
// leaving the low addresses to endpoints and services.
TEST(AddressAllocator, AllocateHighestTakesTheTopOfTheOwnedRanges) {
  RangeSet owned(Range{ip("10.0.0.1"), ip("10.0.0.20")});
  owned.add(Range{ip("10.0.0.100"), ip("10.0.0.101")});
  AddressAllocator a(cidr("10.0.0.0/24"), owned);
  a.allocate(ip("10.0.0.101"));
  EXPECT_EQ(a.allocate_highest(), ip("10.0.0.100"));
  EXPECT_EQ(a.allocate_highest(), ip("10.0.0.20"));
  EXPECT_EQ(a.allocate(), ip("10.0.0.1")) << "allocate() still starts at the bottom";
  EXPECT_TRUE(a.is_allocated(ip("10.0.0.20")));
  a.release(ip("10.0.0.20"));
  EXPECT_EQ(a.allocate_highest(), ip("10.0.0.20"));
  AddressAllocator none(cidr("10.0.0.0/24"), RangeSet{});
  EXPECT_THROW(none.allocate_highest(), IpamError);
}

TEST(AddressAllocator, LargeSubnetAllocatesInOrderAndExhausts) {
  const Cidr subnet = cidr("10.20.0.0/16");
  AddressAllocator alloc(subnet, whole(subnet));
  for (std::uint32_t i = 1; i <= 65534; ++i) {
    const Ipv4 got = alloc.allocate();
    ASSERT_EQ(got.value, subnet.base.value + i);
  }
  EXPECT_EQ(alloc.allocated_count(), 65534u);
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });
  EXPECT_FALSE(alloc.is_allocated(ip("10.20.0.0")));
  EXPECT_FALSE(alloc.is_allocated(ip("10.20.255.255")));

  // Free every third address of the upper half, then get them back in order.
  std::vector<Ipv4> released;
  for (std::uint32_t offset = 40000; offset < 65000; offset += 3) {
    released.push_back(Ipv4{subnet.base.value + offset});
    alloc.release(released.back());
  }
  for (const Ipv4& expected : released) {
    ASSERT_EQ(alloc.allocate(), expected);
  }
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { alloc.allocate(); });
}

TEST(AddressAllocator, RejectsSubnetWithHostBits) {
  expect_ipam_error(IpamError::Kind::Invalid,
                    [] { AddressAllocator(Cidr{Ipv4{0x0A000001}, 24}, RangeSet{}); });
  expect_ipam_error(IpamError::Kind::Invalid, [] { AddressAllocator(Cidr{Ipv4{0}, 40}, RangeSet{}); });
}

// ---------------------------------------------------------------------------
// SubnetPool

TEST(SubnetPool, CarvesSlash8IntoSlash24InOrder) {
  SubnetPool pool(cidr("10.0.0.0/8"), 24);
  EXPECT_EQ(pool.pool(), cidr("10.0.0.0/8"));
  EXPECT_EQ(pool.subnet_prefix(), 24);
  EXPECT_EQ(pool.allocate(), cidr("10.0.0.0/24"));
  EXPECT_EQ(pool.allocate(), cidr("10.0.1.0/24"));
  EXPECT_EQ(pool.allocate(), cidr("10.0.2.0/24"));
  for (int i = 3; i < 300; ++i) {
    pool.allocate();
  }
  EXPECT_EQ(pool.allocate(), cidr("10.1.44.0/24"));  // the 301st: 300 = 1 * 256 + 44
}

TEST(SubnetPool, AllocationSkipsReservedSubnets) {
  SubnetPool pool(cidr("10.0.0.0/8"), 24);
  pool.reserve(cidr("10.0.0.0/24"));
  pool.reserve(cidr("10.0.2.0/23"));
  pool.reserve(cidr("10.0.4.128/25"));  // a partial overlap blocks 10.0.4.0/24 too
  EXPECT_EQ(pool.allocate(), cidr("10.0.1.0/24"));
  EXPECT_EQ(pool.allocate(), cidr("10.0.5.0/24"));
}

TEST(SubnetPool, AllocationJumpsOverLargeReservation) {
  SubnetPool pool(cidr("10.0.0.0/8"), 24);
  pool.reserve(cidr("10.0.0.0/16"));
  EXPECT_EQ(pool.allocate(), cidr("10.1.0.0/24"));
  EXPECT_TRUE(pool.overlaps_reserved(cidr("10.0.200.0/24")));
}

TEST(SubnetPool, RejectsBiggerSubnetOverSmallerOne) {
  SubnetPool pool(cidr("10.0.0.0/8"), 24);
  pool.reserve(cidr("10.0.3.0/24"));
  const std::string message = expect_ipam_error(IpamError::Kind::Overlap, [&] { pool.reserve(cidr("10.0.0.0/16")); });
  EXPECT_EQ(message, "subnet 10.0.0.0/16 overlaps with existing subnet 10.0.3.0/24");
  EXPECT_FALSE(pool.overlaps_reserved(cidr("10.0.4.0/24")));  // the /16 was not kept
}

TEST(SubnetPool, RejectsSmallerSubnetInsideBiggerOne) {
  SubnetPool pool(cidr("10.0.0.0/8"), 24);
  pool.reserve(cidr("10.0.0.0/16"));
  const std::string message = expect_ipam_error(IpamError::Kind::Overlap, [&] { pool.reserve(cidr("10.0.3.0/24")); });
  EXPECT_EQ(message, "subnet 10.0.3.0/24 overlaps with existing subnet 10.0.0.0/16");
  expect_ipam_error(IpamError::Kind::Overlap, [&] { pool.reserve(cidr("10.0.255.255/32")); });
  expect_ipam_error(IpamError::Kind::Overlap, [&] { pool.reserve(cidr("10.0.0.0/16")); });  // exact repeat
  expect_ipam_error(IpamError::Kind::Overlap, [&] { pool.reserve(cidr("0.0.0.0/0")); });
  pool.reserve(cidr("10.1.0.0/24"));  // the neighbour is fine
}

TEST(SubnetPool, OverlapNamesLowestConflict) {
  SubnetPool pool(cidr("10.0.0.0/8"), 24);
  pool.reserve(cidr("10.0.7.0/24"));
  pool.reserve(cidr("10.0.3.0/24"));
  const std::string message = expect_ipam_error(IpamError::Kind::Overlap, [&] { pool.reserve(cidr("10.0.0.0/20")); });
  EXPECT_EQ(message, "subnet 10.0.0.0/20 overlaps with existing subnet 10.0.3.0/24");
}

TEST(SubnetPool, ReservesOutsidePool) {
  SubnetPool pool(cidr("10.0.0.0/8"), 24);
  pool.reserve(cidr("192.168.0.0/16"));
  EXPECT_TRUE(pool.overlaps_reserved(cidr("192.168.5.0/24")));
  EXPECT_FALSE(pool.overlaps_reserved(cidr("192.169.0.0/24")));
  EXPECT_EQ(pool.allocate(), cidr("10.0.0.0/24"));
}

TEST(SubnetPool, SmallPoolExhausts) {
  SubnetPool pool(cidr("10.0.0.0/22"), 24);
  EXPECT_EQ(pool.allocate(), cidr("10.0.0.0/24"));
  EXPECT_EQ(pool.allocate(), cidr("10.0.1.0/24"));
  EXPECT_EQ(pool.allocate(), cidr("10.0.2.0/24"));
  EXPECT_EQ(pool.allocate(), cidr("10.0.3.0/24"));
  const std::string message = expect_ipam_error(IpamError::Kind::Exhausted, [&] { pool.allocate(); });
  EXPECT_THAT(message, HasSubstr("10.0.0.0/22"));

  pool.release(cidr("10.0.2.0/24"));
  EXPECT_FALSE(pool.overlaps_reserved(cidr("10.0.2.0/24")));
  EXPECT_EQ(pool.allocate(), cidr("10.0.2.0/24"));
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { pool.allocate(); });
}

TEST(SubnetPool, ReleaseOfUnknownSubnetFails) {
  SubnetPool pool(cidr("10.0.0.0/8"), 24);
  pool.reserve(cidr("10.0.0.0/16"));
  expect_ipam_error(IpamError::Kind::NotAllocated, [&] { pool.release(cidr("10.0.0.0/24")); });
  expect_ipam_error(IpamError::Kind::NotAllocated, [&] { pool.release(cidr("10.5.0.0/24")); });
  pool.release(cidr("10.0.0.0/16"));
  expect_ipam_error(IpamError::Kind::NotAllocated, [&] { pool.release(cidr("10.0.0.0/16")); });
}

TEST(SubnetPool, AllocatesOnlyInsideOwnedRanges) {
  SubnetPool pool(cidr("10.0.0.0/8"), 24);
  EXPECT_THAT(strs(pool.owned()), ElementsAre("10.0.0.0-10.255.255.255"));
  // Starts and ends mid-/24: only 10.0.6.0/24 fits entirely.
  RangeSet owned(range("10.0.5.128", "10.0.7.127"));
  owned.add(range("192.168.0.0", "192.168.255.255"));  // outside the pool: ignored
  pool.set_owned(owned);
  EXPECT_EQ(pool.allocate(), cidr("10.0.6.0/24"));
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { pool.allocate(); });
}

TEST(SubnetPool, ManyReservationsInSlash8) {
  SubnetPool pool(cidr("10.0.0.0/8"), 24);
  std::vector<Cidr> reserved;
  for (std::uint32_t i = 0; i < 400; ++i) {
    // Every other /24 in a stretch, plus a few /16s further up.
    const Cidr subnet{Ipv4{0x0A000000u + (i * 2) * 256}, 24};
    pool.reserve(subnet);
    reserved.push_back(subnet);
  }
  for (std::uint32_t i = 4; i < 7; ++i) {
    pool.reserve(Cidr{Ipv4{0x0A000000u + (i << 16)}, 16});
  }
  std::vector<Cidr> got;
  for (int i = 0; i < 1000; ++i) {
    got.push_back(pool.allocate());
  }
  // 399 gaps in the alternating stretch 10.0.0.0-10.3.30.255, then 225 up
  // to the end of 10.3.0.0/16, then past the /16s at 10.4-10.6.
  EXPECT_EQ(got.front(), cidr("10.0.1.0/24"));
  EXPECT_EQ(got[398], cidr("10.3.29.0/24"));
  EXPECT_EQ(got[399], cidr("10.3.31.0/24"));
  EXPECT_EQ(got[623], cidr("10.3.255.0/24"));
  EXPECT_EQ(got[624], cidr("10.7.0.0/24"));
  EXPECT_EQ(got.back(), cidr("10.8.119.0/24"));
  for (std::size_t i = 1; i < got.size(); ++i) {
    ASSERT_LT(got[i - 1], got[i]);
    ASSERT_FALSE(got[i].overlaps(cidr("10.4.0.0/15")));
    ASSERT_FALSE(got[i].overlaps(cidr("10.6.0.0/16")));
  }
  for (const Cidr& r : reserved) {
    ASSERT_FALSE(std::binary_search(got.begin(), got.end(), r)) << r.str();
  }
}

TEST(SubnetPool, FillsWholeSlash16) {
  SubnetPool pool(cidr("172.16.0.0/16"), 24);
  for (std::uint32_t i = 0; i < 256; ++i) {
    ASSERT_EQ(pool.allocate(), (Cidr{Ipv4{0xAC100000u + i * 256}, 24}));
  }
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { pool.allocate(); });
}

TEST(SubnetPool, RejectsBadConfiguration) {
  expect_ipam_error(IpamError::Kind::Invalid, [] { SubnetPool(cidr("10.0.0.0/16"), 8); });
  expect_ipam_error(IpamError::Kind::Invalid, [] { SubnetPool(cidr("10.0.0.0/16"), 33); });
  expect_ipam_error(IpamError::Kind::Invalid, [] { SubnetPool(Cidr{Ipv4{0x0A000001}, 8}, 24); });
  SubnetPool pool(cidr("10.0.0.0/16"), 24);
  expect_ipam_error(IpamError::Kind::Invalid, [&] { pool.reserve(Cidr{Ipv4{0x0A000001}, 24}); });
}

TEST(DefaultSubnetPool, TakesTheFlagsAndNamesTheBadOne) {
  auto pool = default_subnet_pool("10.0.0.0/8", 24);
  EXPECT_EQ(pool.pool(), cidr("10.0.0.0/8"));
  EXPECT_EQ(pool.subnet_prefix(), 24);
  EXPECT_EQ(pool.allocate(), cidr("10.0.0.0/24"));
  EXPECT_EQ(default_subnet_pool("10.9.0.0/24", 24).allocate(), cidr("10.9.0.0/24"));
  auto refused = [](std::string_view text, int mask) -> std::string {
    try {
      default_subnet_pool(text, mask);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    ADD_FAILURE() << "accepted " << text << " /" << mask;
    return {};
  };
  EXPECT_THAT(refused("10.0.0.1/8", 24), HasSubstr("invalid --default-addr-pool \"10.0.0.1/8\""));
  EXPECT_THAT(refused("ten", 24), HasSubstr("--default-addr-pool "));
  EXPECT_THAT(refused("10.0.0.0/16", 8), HasSubstr("invalid --default-addr-pool-mask-length 8: must be between 16"));
  // /31 and /32 leave no endpoint address next to the gateway.
  EXPECT_THAT(refused("10.0.0.0/8", 31), HasSubstr("--default-addr-pool-mask-length 31"));
  EXPECT_EQ(default_subnet_pool("10.0.0.0/8", 30).allocate(), cidr("10.0.0.0/30"));
}

TEST(SubnetPool, SubnetSizeEqualToPool) {
  SubnetPool pool(cidr("10.9.0.0/24"), 24);
  EXPECT_EQ(pool.allocate(), cidr("10.9.0.0/24"));
  expect_ipam_error(IpamError::Kind::Exhausted, [&] { pool.allocate(); });
}

}  // namespace
}  // namespace weft::control::network::ipam
