#include "control/gossip/keyring.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>
#include <openssl/evp.h>

namespace weft::control::gossip {

void Keyring::validate_key(ByteView key) {
  if (key.size() != 16 && key.size() != 24 && key.size() != 32) {
    throw std::invalid_argument(
        fmt::format("gossip key must be 16, 24 or 32 bytes (AES-128/192/256), got {} bytes", key.size()));
  }
}

Keyring::Keyring(Bytes primary) {
  validate_key(primary);
  keys_.push_back(std::move(primary));
}

Keyring::Keyring(Bytes primary, std::vector<Bytes> others) : Keyring(std::move(primary)) {
  for (auto& k : others) add_key(std::move(k));
}

Bytes Keyring::decode_base64_key(std::string_view b64) {
  std::string trimmed(b64);
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r' || trimmed.back() == ' ')) {
    trimmed.pop_back();
  }
  if (trimmed.empty() || trimmed.size() % 4 != 0) {
    throw std::invalid_argument("gossip key is not valid base64 (length must be a multiple of 4)");
  }
  Bytes out(trimmed.size() / 4 * 3);
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(trimmed.data()),
                                static_cast<int>(trimmed.size()));
  if (n < 0) throw std::invalid_argument("gossip key is not valid base64");
  // EVP_DecodeBlock does not account for '=' padding.
  std::size_t len = static_cast<std::size_t>(n);
  if (trimmed.ends_with("==")) {
    len -= 2;
  } else if (trimmed.ends_with("=")) {
    len -= 1;
  }
  out.resize(len);
  validate_key(out);
  return out;
}

void Keyring::add_key(Bytes key) {
  validate_key(key);
  if (std::find(keys_.begin(), keys_.end(), key) == keys_.end()) keys_.push_back(std::move(key));
}

void Keyring::use_key(ByteView key) {
  auto it = std::find_if(keys_.begin(), keys_.end(),
                         [&](const Bytes& k) { return std::equal(k.begin(), k.end(), key.begin(), key.end()); });
  if (it == keys_.end()) throw std::invalid_argument("requested primary key is not installed");
  std::rotate(keys_.begin(), it, it + 1);
}

void Keyring::remove_key(ByteView key) {
  auto it = std::find_if(keys_.begin(), keys_.end(),
                         [&](const Bytes& k) { return std::equal(k.begin(), k.end(), key.begin(), key.end()); });
  if (it == keys_.end()) return;
  if (it == keys_.begin()) throw std::invalid_argument("cannot remove the primary key");
  keys_.erase(it);
}

}  // namespace weft::control::gossip
