// Packet building and checking for the load balancer's packet-in/packet-out
// tests and benchmark: Ethernet + IPv4 + TCP/UDP/ICMP, ARP. Checksums are
// computed from scratch here (not incrementally, as the program does), so a
// wrong incremental update in the program shows as a mismatch.
#pragma once

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace weft::lbtest {

using Bytes = std::vector<std::uint8_t>;
using MacBytes = std::array<std::uint8_t, 6>;

constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

inline std::uint32_t ip4(int a, int b, int c, int d) {
  return (static_cast<std::uint32_t>(a) << 24) | (static_cast<std::uint32_t>(b) << 16) |
         (static_cast<std::uint32_t>(c) << 8) | static_cast<std::uint32_t>(d);
}

inline MacBytes mac_of(std::uint32_t ip) {
  return {0x02, 0x42, static_cast<std::uint8_t>(ip >> 24), static_cast<std::uint8_t>(ip >> 16),
          static_cast<std::uint8_t>(ip >> 8), static_cast<std::uint8_t>(ip)};
}

inline std::uint16_t get16(const Bytes& p, std::size_t off) {
  return static_cast<std::uint16_t>((p.at(off) << 8) | p.at(off + 1));
}
inline std::uint32_t get32(const Bytes& p, std::size_t off) {
  return (static_cast<std::uint32_t>(get16(p, off)) << 16) | get16(p, off + 2);
}
inline void put16(Bytes& p, std::size_t off, std::uint16_t v) {
  p.at(off) = static_cast<std::uint8_t>(v >> 8);
  p.at(off + 1) = static_cast<std::uint8_t>(v);
}
inline void put32(Bytes& p, std::size_t off, std::uint32_t v) {
  put16(p, off, static_cast<std::uint16_t>(v >> 16));
  put16(p, off + 2, static_cast<std::uint16_t>(v));
}
inline MacBytes get_mac(const Bytes& p, std::size_t off) {
  MacBytes m{};
  std::memcpy(m.data(), &p.at(off), 6);
  return m;
}

// One's complement sum over [off, off+len) plus `initial`, folded.
inline std::uint32_t ones_sum(const Bytes& p, std::size_t off, std::size_t len,
                              std::uint32_t initial = 0) {
  std::uint64_t sum = initial;
  for (std::size_t i = 0; i + 1 < len; i += 2) sum += get16(p, off + i);
  if (len % 2) sum += static_cast<std::uint32_t>(p.at(off + len - 1)) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint32_t>(sum);
}

constexpr std::size_t kEth = 14, kIp = 14, kL4 = 34;

inline std::uint32_t pseudo_sum(const Bytes& p) {
  std::uint16_t ip_len = get16(p, kIp + 2);
  std::uint32_t sum = 0;
  sum += get16(p, kIp + 12) + get16(p, kIp + 14) + get16(p, kIp + 16) + get16(p, kIp + 18);
  sum += p.at(kIp + 9);
  sum += static_cast<std::uint32_t>(ip_len - 20);
  return sum;
}

// Checks as a receiver would: the sum over the covered bytes is 0xffff.
inline bool ip_checksum_ok(const Bytes& p) { return ones_sum(p, kIp, 20) == 0xffff; }
inline bool l4_checksum_ok(const Bytes& p) {
  std::uint8_t proto = p.at(kIp + 9);
  std::size_t l4_len = get16(p, kIp + 2) - 20u;
  if (proto == IPPROTO_UDP && get16(p, kL4 + 6) == 0) return true;  // no checksum
  if (proto == IPPROTO_ICMP) return ones_sum(p, kL4, l4_len) == 0xffff;
  return ones_sum(p, kL4, l4_len, pseudo_sum(p)) == 0xffff;
}

inline void fill_checksums(Bytes& p) {
  put16(p, kIp + 10, 0);
  put16(p, kIp + 10, static_cast<std::uint16_t>(~ones_sum(p, kIp, 20)));
  std::uint8_t proto = p.at(kIp + 9);
  std::size_t l4_len = get16(p, kIp + 2) - 20u;
  std::size_t csum_off = proto == IPPROTO_TCP ? kL4 + 16 : proto == IPPROTO_UDP ? kL4 + 6 : kL4 + 2;
  put16(p, csum_off, 0);
  std::uint32_t sum = proto == IPPROTO_ICMP ? ones_sum(p, kL4, l4_len)
                                            : ones_sum(p, kL4, l4_len, pseudo_sum(p));
  std::uint16_t csum = static_cast<std::uint16_t>(~sum);
  if (proto == IPPROTO_UDP && csum == 0) csum = 0xffff;
  put16(p, csum_off, csum);
}

inline Bytes ipv4_packet(MacBytes src_mac, MacBytes dst_mac, std::uint32_t saddr,
                         std::uint32_t daddr, std::uint8_t proto, std::size_t l4_len) {
  Bytes p(kL4 + l4_len, 0);
  std::memcpy(&p[0], dst_mac.data(), 6);
  std::memcpy(&p[6], src_mac.data(), 6);
  put16(p, 12, 0x0800);
  p[kIp] = 0x45;
  put16(p, kIp + 2, static_cast<std::uint16_t>(20 + l4_len));
  put16(p, kIp + 4, 0x1234);
  put16(p, kIp + 6, 0x4000);
  p[kIp + 8] = 64;
  p[kIp + 9] = proto;
  put32(p, kIp + 12, saddr);
  put32(p, kIp + 16, daddr);
  return p;
}

struct Tcp {
  std::uint32_t saddr = 0, daddr = 0;
  std::uint16_t sport = 0, dport = 0;
  std::uint8_t flags = kSyn;
  std::uint32_t seq = 1000, ack = 0;
  std::string payload;
  MacBytes src_mac{}, dst_mac{};
};

inline Bytes tcp_packet(const Tcp& t) {
  MacBytes src = t.src_mac[0] ? t.src_mac : mac_of(t.saddr);
  MacBytes dst = t.dst_mac[0] ? t.dst_mac : mac_of(t.daddr);
  Bytes p = ipv4_packet(src, dst, t.saddr, t.daddr, IPPROTO_TCP, 20 + t.payload.size());
  put16(p, kL4, t.sport);
  put16(p, kL4 + 2, t.dport);
  put32(p, kL4 + 4, t.seq);
  put32(p, kL4 + 8, t.ack);
  p[kL4 + 12] = 5 << 4;
  p[kL4 + 13] = t.flags;
  put16(p, kL4 + 14, 64240);
  std::memcpy(p.data() + kL4 + 20, t.payload.data(), t.payload.size());
  fill_checksums(p);
  return p;
}

inline Bytes udp_packet(std::uint32_t saddr, std::uint16_t sport, std::uint32_t daddr,
                        std::uint16_t dport, const std::string& payload, bool with_csum = true) {
  Bytes p = ipv4_packet(mac_of(saddr), mac_of(daddr), saddr, daddr, IPPROTO_UDP,
                        8 + payload.size());
  put16(p, kL4, sport);
  put16(p, kL4 + 2, dport);
  put16(p, kL4 + 4, static_cast<std::uint16_t>(8 + payload.size()));
  std::memcpy(p.data() + kL4 + 8, payload.data(), payload.size());
  fill_checksums(p);
  if (!with_csum) put16(p, kL4 + 6, 0);
  return p;
}

inline Bytes icmp_echo(std::uint32_t saddr, std::uint32_t daddr, std::uint16_t id,
                       std::uint16_t seq) {
  Bytes p = ipv4_packet(mac_of(saddr), mac_of(daddr), saddr, daddr, IPPROTO_ICMP, 8 + 16);
  p[kL4] = 8;
  put16(p, kL4 + 4, id);
  put16(p, kL4 + 6, seq);
  for (int i = 0; i < 16; ++i) p[kL4 + 8 + i] = static_cast<std::uint8_t>(i);
  fill_checksums(p);
  return p;
}

inline Bytes arp_request(std::uint32_t sender_ip, std::uint32_t target_ip) {
  Bytes p(42, 0);
  MacBytes sender = mac_of(sender_ip);
  std::memset(&p[0], 0xff, 6);
  std::memcpy(&p[6], sender.data(), 6);
  put16(p, 12, 0x0806);
  put16(p, 14, 1);
  put16(p, 16, 0x0800);
  p[18] = 6;
  p[19] = 4;
  put16(p, 20, 1);
  std::memcpy(&p[22], sender.data(), 6);
  put32(p, 28, sender_ip);
  put32(p, 38, target_ip);
  return p;
}

}  // namespace weft::lbtest
