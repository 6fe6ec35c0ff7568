// The set of AES keys a node accepts, with one primary key used to encrypt.
// Same semantics as memberlist's Keyring: every installed key is tried when
// decrypting, which is how keys are rotated without a flag day.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/gossip/msgpack_wire.h"

namespace weft::control::gossip {

// Standard base64 (with padding), the form of serf's `-encrypt` key; decode
// gives nullopt for anything else.
std::string base64_encode(ByteView bytes);
std::optional<Bytes> base64_decode(std::string_view text);

class Keyring {
 public:
  // Throws std::invalid_argument unless the key is 16, 24 or 32 bytes
  // (AES-128/192/256). The first key given becomes the primary.
  explicit Keyring(Bytes primary);
  Keyring(Bytes primary, std::vector<Bytes> others);

  // Serf's `-encrypt` takes standard base64 of the raw key.
  static Bytes decode_base64_key(std::string_view b64);

  static bool valid_key_size(std::size_t size) { return size == 16 || size == 24 || size == 32; }
  static void validate_key(ByteView key);

  void add_key(Bytes key);      // no-op if already installed
  void use_key(ByteView key);   // make an installed key primary; throws if not installed
  void remove_key(ByteView key);  // throws if it is the primary

  const Bytes& primary() const { return keys_.front(); }
  // Primary first, then the others in install order.
  const std::vector<Bytes>& keys() const { return keys_; }

 private:
  std::vector<Bytes> keys_;
};

}  // namespace weft::control::gossip
