#include "control/cluster/join_token.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace weft::control::cluster {
namespace {

constexpr const char* kPrefix = "WEFT-1-";

bool valid_key_size(std::size_t n) { return n == 16 || n == 24 || n == 32; }

std::string check_value(const std::vector<unsigned char>& key) {
  std::vector<unsigned char> input{'w', 'e', 'f', 't', '-', 'j', 'o', 'i', 'n'};
  input.insert(input.end(), key.begin(), key.end());
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(input.data(), input.size(), digest);
  std::string hex;
  for (int i = 0; i < 8; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

std::string to_url_alphabet(std::string text) {
  std::replace(text.begin(), text.end(), '+', '-');
  std::replace(text.begin(), text.end(), '/', '_');
  text.erase(std::remove(text.begin(), text.end(), '='), text.end());
  return text;
}

std::string from_url_alphabet(std::string text) {
  std::replace(text.begin(), text.end(), '-', '+');
  std::replace(text.begin(), text.end(), '_', '/');
  while (text.size() % 4 != 0) text += '=';
  return text;
}

}  // namespace

std::string base64_encode(const std::vector<unsigned char>& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::vector<unsigned char>> base64_decode(const std::string& text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  std::vector<unsigned char> out(3 * text.size() / 4);
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts padding as zero bytes.
  std::size_t size = static_cast<std::size_t>(n);
  for (auto it = text.rbegin(); it != text.rend() && *it == '='; ++it) --size;
  out.resize(size);
  return out;
}

std::vector<unsigned char> generate_gossip_key() {
  std::vector<unsigned char> key(32);
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) throw std::runtime_error("no randomness for a gossip key");
  return key;
}

std::string encode_join_token(const JoinToken& token) {
  if (!valid_key_size(token.gossip_key.size())) throw std::invalid_argument("gossip key must be 16, 24 or 32 bytes");
  return kPrefix + to_url_alphabet(base64_encode(token.gossip_key)) + "-" + check_value(token.gossip_key);
}

JoinToken decode_join_token(const std::string& text) {
  const std::string prefix = kPrefix;
  if (!text.starts_with(prefix)) throw std::invalid_argument("invalid join token: it does not start with " + prefix);
  const auto rest = text.substr(prefix.size());
  const auto dash = rest.rfind('-');
  if (dash == std::string::npos || dash == 0) throw std::invalid_argument("invalid join token: malformed");
  auto key = base64_decode(from_url_alphabet(rest.substr(0, dash)));
  if (!key || !valid_key_size(key->size())) throw std::invalid_argument("invalid join token: bad key");
  if (rest.substr(dash + 1) != check_value(*key))
    throw std::invalid_argument("invalid join token: check value does not match (mistyped or tampered with)");
  return JoinToken{*key};
}

}  // namespace weft::control::cluster
