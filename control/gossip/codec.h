// Packet-level framing around memberlist messages: compound messages, the
// CRC wrapper and the compress wrapper. Encryption lives in security.h.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "control/gossip/messages.h"
#include "control/gossip/msgpack_wire.h"

namespace weft::control::gossip {

// memberlist's sizing constants for piggybacking onto a UDP packet.
inline constexpr std::size_t kCompoundHeaderOverhead = 2;  // type + count
inline constexpr std::size_t kCompoundOverhead = 2;        // uint16 length per part
inline constexpr std::size_t kUserMsgOverhead = 1;         // the user type byte
inline constexpr std::size_t kMaxCompoundParts = 255;      // count is one byte

// compound: type(7), count(u8), count * u16 BE lengths, then the parts.
// At most 255 parts; lengths must fit in 16 bits.
Bytes make_compound(const std::vector<Bytes>& parts);

struct CompoundParts {
  std::vector<ByteView> parts;
  std::size_t truncated = 0;  // parts announced but missing (memberlist logs and keeps the rest)
};
// `body` is what follows the compound type byte. Throws DecodeError if even
// the length table is incomplete.
CompoundParts split_compound(ByteView body);

// hasCrc(12) + CRC-32 (IEEE) big-endian over `msg`, then `msg`.
Bytes add_crc(ByteView msg);
// If `packet` starts with a CRC header, verifies it and returns the rest;
// returns `packet` unchanged when there is no header; nullopt on mismatch.
std::optional<ByteView> strip_crc(ByteView packet);

std::uint32_t crc32_ieee(ByteView data);

// compress(9) + msgpack {Algo: 0, Buf: lzw(msg)}.
Bytes compress_message(ByteView msg);
// `body` follows the compress type byte; returns the inner message (with its
// own type byte). Throws DecodeError.
Bytes decompress_message(ByteView body, std::size_t max_output = 20 * 1024 * 1024);

}  // namespace weft::control::gossip
