#include "control/gossip/codec.h"

#include <array>

#include <fmt/format.h>

#include "control/gossip/lzw.h"

namespace weft::control::gossip {

Bytes make_compound(const std::vector<Bytes>& parts) {
  if (parts.size() > kMaxCompoundParts) throw std::invalid_argument("compound message has more than 255 parts");
  Bytes out;
  std::size_t total = 2 + 2 * parts.size();
  for (const auto& p : parts) total += p.size();
  out.reserve(total);
  out.push_back(static_cast<std::uint8_t>(MessageType::kCompound));
  out.push_back(static_cast<std::uint8_t>(parts.size()));
  for (const auto& p : parts) {
    if (p.size() > 0xffff) throw std::invalid_argument("compound part longer than 65535 bytes");
    out.push_back(static_cast<std::uint8_t>(p.size() >> 8));
    out.push_back(static_cast<std::uint8_t>(p.size()));
  }
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

CompoundParts split_compound(ByteView body) {
  if (body.empty()) throw DecodeError("compound message is missing its part count");
  const std::size_t count = body[0];
  body = body.subspan(1);
  if (body.size() < count * 2) throw DecodeError("compound message length table is truncated");
  CompoundParts result;
  std::vector<std::size_t> lengths(count);
  for (std::size_t i = 0; i < count; ++i) lengths[i] = (std::size_t{body[2 * i]} << 8) | body[2 * i + 1];
  body = body.subspan(count * 2);
  for (std::size_t i = 0; i < count; ++i) {
    if (body.size() < lengths[i]) {
      result.truncated = count - i;
      break;
    }
    result.parts.push_back(body.first(lengths[i]));
    body = body.subspan(lengths[i]);
  }
  return result;
}

namespace {
// Reflected CRC-32, polynomial 0xEDB88320: Go's crc32.IEEE table.
constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kCrcTable = make_crc_table();
}  // namespace

std::uint32_t crc32_ieee(ByteView data) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::uint8_t b : data) crc = kCrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

Bytes add_crc(ByteView msg) {
  const std::uint32_t crc = crc32_ieee(msg);
  Bytes out;
  out.reserve(5 + msg.size());
  out.push_back(static_cast<std::uint8_t>(MessageType::kHasCrc));
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(crc >> shift));
  out.insert(out.end(), msg.begin(), msg.end());
  return out;
}

std::optional<ByteView> strip_crc(ByteView packet) {
  if (packet.size() < 5 || packet[0] != static_cast<std::uint8_t>(MessageType::kHasCrc)) return packet;
  const std::uint32_t expected = (std::uint32_t{packet[1]} << 24) | (std::uint32_t{packet[2]} << 16) |
                                 (std::uint32_t{packet[3]} << 8) | std::uint32_t{packet[4]};
  const ByteView rest = packet.subspan(5);
  if (crc32_ieee(rest) != expected) return std::nullopt;
  return rest;
}

Bytes compress_message(ByteView msg) {
  Compress c;
  c.algo = 0;
  c.buf = lzw_compress(msg);
  return encode_message(c);
}

Bytes decompress_message(ByteView body, std::size_t max_output) {
  const auto c = decode_message_body<Compress>(body);
  if (c.algo != 0) throw DecodeError(fmt::format("cannot decompress unknown algorithm {}", c.algo));
  Bytes inner = lzw_decompress(c.buf, max_output);
  // memberlist indexes decomp[0] right away; an empty result carries no message.
  if (inner.empty()) throw DecodeError("compressed message is empty");
  return inner;
}

}  // namespace weft::control::gossip
