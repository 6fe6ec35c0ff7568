// Small helpers around ldns: owning pointers, the header fields read
// straight from the wire, and encoding.
#pragma once

// Without this first, ldns/common.h defines `bool`, `true` and `false` as
// macros, which breaks the C++ headers that follow.
#include <stdbool.h>  // NOLINT(modernize-deprecated-headers)

#include <ldns/ldns.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace weft::dns {

struct PktFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using PktPtr = std::unique_ptr<ldns_pkt, PktFree>;

constexpr std::size_t header_size = 12;
constexpr std::size_t classic_udp_size = 512;

// Null when ldns refuses the bytes, or when the additional section holds
// more than one TSIG record (see wire.cpp).
PktPtr parse(std::span<const uint8_t> wire);
// Empty when ldns cannot encode the packet.
std::vector<uint8_t> encode(const ldns_pkt* pkt);

inline uint16_t wire_id(std::span<const uint8_t> wire) {
  return static_cast<uint16_t>(wire[0] << 8 | wire[1]);
}
inline void set_wire_id(std::span<uint8_t> wire, uint16_t id) {
  wire[0] = static_cast<uint8_t>(id >> 8);
  wire[1] = static_cast<uint8_t>(id);
}
inline bool wire_is_response(std::span<const uint8_t> wire) { return wire[2] & 0x80; }
inline uint8_t wire_opcode(std::span<const uint8_t> wire) { return (wire[2] >> 3) & 0x0f; }
inline bool wire_truncated(std::span<const uint8_t> wire) { return wire[2] & 0x02; }
inline uint8_t wire_rcode(std::span<const uint8_t> wire) { return wire[3] & 0x0f; }

// A header-only answer to a query whose header is readable: same ID,
// opcode and RD, QR set, the given rcode, no records.
std::vector<uint8_t> header_only_reply(std::span<const uint8_t> query, uint8_t rcode);

// An error answer that repeats the query's question when it parses,
// else header_only_reply.
std::vector<uint8_t> error_reply(std::span<const uint8_t> query, uint8_t rcode);

// The owner name of a record as lower-case text without the final dot
// ("" for the root).
std::string owner_name(const ldns_rr* rr);

// The response cut down to header, question and OPT with TC set, for a UDP
// client whose limit it exceeds. Empty when it cannot be parsed.
std::vector<uint8_t> truncated_copy(std::span<const uint8_t> response);

}  // namespace weft::dns
