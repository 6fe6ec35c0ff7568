// The token `weft swarm init` prints and `weft swarm join --token` takes. It
// carries what a joiner needs, the cluster's gossip key, and a check value so
// a mistyped or tampered token is refused before any packet is sent:
//   WEFT-1-<base64url(key)>-<hex(first 8 bytes of SHA-256("weft-join" | key))>
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "control/gossip/keyring.h"

namespace weft::control::cluster {

struct JoinToken {
  std::vector<unsigned char> gossip_key;  // 16, 24 or 32 bytes (AES-128/192/256)
};

std::string encode_join_token(const JoinToken& token);
// Throws std::invalid_argument with a reason on a malformed or tampered token.
JoinToken decode_join_token(const std::string& text);

// A fresh 32-byte key from OpenSSL's CSPRNG.
std::vector<unsigned char> generate_gossip_key();
// Standard base64, the form serf's -encrypt flag takes.
using gossip::base64_decode;
using gossip::base64_encode;

}  // namespace weft::control::cluster
