#include "control/gossip/packet.h"

#include <fmt/format.h>

#include "control/gossip/codec.h"
#include "control/gossip/security.h"

namespace weft::control::gossip {

namespace {

// Compound inside compress inside compound...: memberlist recurses without a
// bound; we stop at a depth no honest sender produces.
constexpr int kMaxNesting = 4;
// A UDP datagram is at most 64 KiB; LZW expands at most ~4096x per code but a
// decompressed packet bigger than this is not something memberlist sends.
constexpr std::size_t kMaxDecompressedPacket = 1024 * 1024;

void decode_command(ByteView buf, int depth, DecodedPacket& out) {
  if (buf.empty()) {
    out.errors.emplace_back("empty message");
    return;
  }
  if (depth > kMaxNesting) {
    out.errors.emplace_back("messages nested too deeply");
    return;
  }
  const std::uint8_t type = buf[0];
  const ByteView body = buf.subspan(1);
  try {
    switch (static_cast<MessageType>(type)) {
      case MessageType::kCompound: {
        auto parts = split_compound(body);
        if (parts.truncated > 0) out.errors.push_back(fmt::format("compound had {} truncated parts", parts.truncated));
        for (auto part : parts.parts) decode_command(part, depth + 1, out);
        return;
      }
      case MessageType::kCompress: {
        Bytes inner = decompress_message(body, kMaxDecompressedPacket);
        decode_command(inner, depth + 1, out);
        return;
      }
      case MessageType::kPing:
        out.messages.emplace_back(decode_message_body<Ping>(body));
        return;
      case MessageType::kIndirectPing:
        out.messages.emplace_back(decode_message_body<IndirectPingReq>(body));
        return;
      case MessageType::kAck:
        out.messages.emplace_back(decode_message_body<AckResp>(body));
        return;
      case MessageType::kNack:
        out.messages.emplace_back(decode_message_body<NackResp>(body));
        return;
      case MessageType::kSuspect:
        out.messages.emplace_back(decode_message_body<Suspect>(body));
        return;
      case MessageType::kAlive:
        out.messages.emplace_back(decode_message_body<Alive>(body));
        return;
      case MessageType::kDead:
        out.messages.emplace_back(decode_message_body<Dead>(body));
        return;
      case MessageType::kUser:
        out.messages.emplace_back(UserMessage{Bytes(body.begin(), body.end())});
        return;
      default:
        out.errors.push_back(fmt::format("message type {} ({}) not supported in a packet", type,
                                         message_type_name(type)));
        return;
    }
  } catch (const DecodeError& e) {
    out.errors.push_back(fmt::format("failed to decode {} message: {}", message_type_name(type), e.what()));
  }
}

}  // namespace

DecodedPacket decode_packet(ByteView packet, const Keyring* keyring, bool require_encryption) {
  DecodedPacket out;
  Bytes plain_storage;
  ByteView buf = packet;
  if (keyring != nullptr) {
    if (auto plain = decrypt_payload(*keyring, packet, {})) {
      plain_storage = std::move(*plain);
      buf = plain_storage;
      out.was_encrypted = true;
    } else if (require_encryption) {
      out.errors.emplace_back("decrypt packet failed: no installed key could decrypt it");
      return out;
    }
  }
  auto checked = strip_crc(buf);
  if (!checked) {
    out.errors.emplace_back("invalid CRC on packet");
    return out;
  }
  decode_command(*checked, 0, out);
  return out;
}

Bytes encode_packet(ByteView msg, const PacketOptions& options) {
  Bytes buf(msg.begin(), msg.end());
  if (options.compress) {
    Bytes compressed = compress_message(buf);
    if (compressed.size() < buf.size()) buf = std::move(compressed);
  }
  if (options.crc) buf = add_crc(buf);
  if (options.keyring != nullptr) buf = encrypt_payload(options.keyring->primary(), buf, {});
  return buf;
}

}  // namespace weft::control::gossip
