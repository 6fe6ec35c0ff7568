#include "control/gossip/keyring.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>
#include <openssl/evp.h>

namespace weft::control::gossip {

std::string base64_encode(ByteView bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<Bytes> base64_decode(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  Bytes out(3 * text.size() / 4);
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts padding as zero bytes.
  std::size_t size = static_cast<std::size_t>(n);
  for (auto it = text.rbegin(); it != text.rend() && *it == '='; ++it) --size;
  out.resize(size);
  return out;
}

void Keyring::validate_key(ByteView key) {
  if (!valid_key_size(key.size())) {
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
  auto out = base64_decode(trimmed);
  if (!out) throw std::invalid_argument("gossip key is not valid base64");
  validate_key(*out);
  return *out;
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
