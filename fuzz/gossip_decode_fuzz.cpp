// libFuzzer target for everything weft parses from the network in the gossip
// layer: the UDP packet path (decrypt, CRC, compound, LZW, msgpack bodies)
// and the TCP stream path (incremental push/pull / user / ping parsing),
// with and without a keyring, plus serf's user messages and tags, and the
// StreamReader a connection feeds, with its size limits and buffer budget.
//
// Build (clang 14; links weft_gossip), from the source root:
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DWEFT_BUILD_FUZZ=ON
//   cmake --build build-fuzz --target gossip_decode_fuzz
//   build-fuzz/bin/gossip_decode_fuzz -max_len=4096 -max_total_time=60
// (tests/integration/fuzz_gossip_decode.sh does this for a bounded run.)
// The first input byte selects the path; the rest is the payload.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "control/gossip/keyring.h"
#include "control/gossip/packet.h"
#include "control/gossip/security.h"
#include "control/gossip/serf_compat.h"
#include "control/gossip/stream.h"

namespace gossip = weft::control::gossip;

namespace {

// Feeds `wire` to a StreamReader in chunks as a socket would, under a small
// message limit and buffer budget, and checks the bounds hold whatever the
// bytes say: the buffer never passes the limit (plus the 5-byte frame
// header), the budget is never overdrawn and is whole again afterwards.
void feed_limited(gossip::ByteView wire, const gossip::Keyring* keyring, bool require, std::size_t max_bytes,
                  std::size_t budget_limit, std::size_t chunk) {
  gossip::StreamBufferBudget budget(budget_limit);
  {
    gossip::StreamReader reader(keyring, require, max_bytes, &budget);
    for (std::size_t off = 0; off < wire.size(); off += chunk) {
      std::optional<gossip::StreamMessage> msg;
      try {
        msg = reader.feed(wire.subspan(off, std::min(chunk, wire.size() - off)));
      } catch (const gossip::DecodeError&) {
        break;
      }
      if (reader.capacity() > max_bytes + gossip::kStreamEncryptHeader) std::abort();
      if (budget.in_use() > budget.limit()) std::abort();
      if (msg) {
        if (msg->user_state.size() > max_bytes || msg->user_msg.size() > max_bytes) std::abort();
        break;
      }
    }
  }
  if (budget.in_use() != 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static const gossip::Keyring keyring(gossip::Bytes(32, 0x42));
  const std::uint8_t selector = data[0];
  const gossip::ByteView input(data + 1, size - 1);

  switch (selector % 8) {
    case 0:  // plaintext packet
      (void)gossip::decode_packet(input, nullptr, true);
      break;
    case 1: {  // the same bytes sealed with our key: reaches the inner decoders with encryption on
      const auto sealed = gossip::encrypt_payload(keyring.primary(), input, {});
      (void)gossip::decode_packet(sealed, &keyring, true);
      (void)gossip::decode_packet(input, &keyring, false);
      break;
    }
    case 2:  // stream, fed in growing prefixes as the socket would deliver it
      for (std::size_t n = 1; n <= input.size(); n += 1 + n / 4) {
        try {
          if (gossip::parse_stream(input.first(n), nullptr, false).complete) break;
        } catch (const gossip::DecodeError&) {
          break;
        }
      }
      break;
    case 3: {  // encrypted stream frame around arbitrary plaintext
      const auto frame = gossip::encrypt_stream_frame(keyring.primary(), input);
      try {
        (void)gossip::parse_stream(frame, &keyring, true);
      } catch (const gossip::DecodeError&) {
      }
      try {
        (void)gossip::parse_stream(input, &keyring, true);
      } catch (const gossip::DecodeError&) {
      }
      break;
    }
    case 4:  // serf user messages and tags
      try {
        if (!input.empty()) {
          switch (input[0]) {
            case 0:
              (void)gossip::decode_serf_leave(input.subspan(1));
              break;
            case 1:
              (void)gossip::decode_serf_join(input.subspan(1));
              break;
            case 2:
              (void)gossip::decode_serf_push_pull(input.subspan(1));
              break;
            default:
              (void)gossip::decode_serf_tags(input);
          }
        }
      } catch (const gossip::DecodeError&) {
      }
      break;
    case 5: {  // undecryptable garbage must be rejected, never crash
      (void)gossip::decrypt_payload(keyring, input, {});
      break;
    }
    case 6:    // the stream reader with limits, plain bytes: [limit][budget][chunk] payload
    case 7: {  // the same around an encrypted frame of the payload, so the inner decoders run too
      if (input.size() < 3) break;
      const std::size_t max_bytes = 16 + std::size_t{input[0]} * 16;   // 16 B .. 4 KiB
      const std::size_t budget = 64 + std::size_t{input[1]} * 32;      // 64 B .. 8 KiB
      const std::size_t chunk = 1 + std::size_t{input[2]};
      const auto payload = input.subspan(3);
      if (selector % 8 == 6) {
        feed_limited(payload, nullptr, false, max_bytes, budget, chunk);
        feed_limited(payload, &keyring, true, max_bytes, budget, chunk);
      } else {
        const auto frame = gossip::encrypt_stream_frame(keyring.primary(), payload);
        feed_limited(frame, &keyring, true, max_bytes, budget, chunk);
      }
      break;
    }
  }
  return 0;
}
