// memberlist's payload encryption (security.go): AES-GCM with a random
// 12-byte nonce, prefixed with an encryption-version byte.
//
//   version 0: plaintext PKCS7-padded to 16 bytes before sealing (decode only)
//   version 1: no padding (what protocol >= 2 peers, serf included, send)
//
// Wire layout: [version][nonce 12][ciphertext][GCM tag 16].
// UDP packets are sealed whole with empty additional data (memberlist 0.2.x
// has no packet labels). TCP streams send
//   [encrypt(10)][u32 BE length of the sealed payload][sealed payload]
// and authenticate those 5 header bytes as additional data, so the length
// cannot be altered without failing the tag.
#pragma once

#include <cstddef>
#include <optional>

#include "control/gossip/keyring.h"
#include "control/gossip/msgpack_wire.h"

namespace weft::control::gossip {

inline constexpr std::uint8_t kEncryptionVersion = 1;
inline constexpr std::size_t kNonceSize = 12;
inline constexpr std::size_t kTagSize = 16;
// Version 1 overhead: version byte + nonce + tag.
inline constexpr std::size_t kEncryptOverhead = 1 + kNonceSize + kTagSize;
inline constexpr std::size_t kStreamEncryptHeader = 5;  // type + u32 length

// Seals `plain` with version 1. Throws std::runtime_error if OpenSSL fails.
Bytes encrypt_payload(ByteView key, ByteView plain, ByteView additional_data);
// Same, with a caller-chosen nonce: only for known-answer tests.
Bytes encrypt_payload_with_nonce(ByteView key, ByteView nonce, ByteView plain, ByteView additional_data);

// Tries every key (primary first). nullopt if the version is unknown, the
// payload is too short, or no key authenticates it.
std::optional<Bytes> decrypt_payload(const Keyring& keyring, ByteView sealed, ByteView additional_data);

// Whole TCP frame: encrypt(10) + length + sealed(plain) with the header as AAD.
Bytes encrypt_stream_frame(ByteView key, ByteView plain);

}  // namespace weft::control::gossip
