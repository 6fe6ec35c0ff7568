#include "control/cluster/join_token.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace weft::control::cluster {
namespace {

constexpr const char* kPrefix = "WEFT-1-";


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

std::vector<unsigned char> generate_gossip_key() {
  std::vector<unsigned char> key(32);
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) throw std::runtime_error("no randomness for a gossip key");
  return key;
}

std::string encode_join_token(const JoinToken& token) {
  if (!gossip::Keyring::valid_key_size(token.gossip_key.size())) throw std::invalid_argument("gossip key must be 16, 24 or 32 bytes");
  return kPrefix + to_url_alphabet(base64_encode(token.gossip_key)) + "-" + check_value(token.gossip_key);
}

JoinToken decode_join_token(const std::string& text) {
  const std::string prefix = kPrefix;
  if (!text.starts_with(prefix)) throw std::invalid_argument("invalid join token: it does not start with " + prefix);
  const auto rest = text.substr(prefix.size());
  const auto dash = rest.rfind('-');
  if (dash == std::string::npos || dash == 0) throw std::invalid_argument("invalid join token: malformed");
  auto key = base64_decode(from_url_alphabet(rest.substr(0, dash)));
  if (!key || !gossip::Keyring::valid_key_size(key->size())) throw std::invalid_argument("invalid join token: bad key");
  if (rest.substr(dash + 1) != check_value(*key))
    throw std::invalid_argument("invalid join token: check value does not match (mistyped or tampered with)");
  return JoinToken{*key};
}

}  // namespace weft::control::cluster
