#include "control/gossip/security.h"

#include <memory>
#include <stdexcept>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "control/gossip/messages.h"

namespace weft::control::gossip {

namespace {

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

const EVP_CIPHER* gcm_for_key(std::size_t key_size) {
  switch (key_size) {
    case 16:
      return EVP_aes_128_gcm();
    case 24:
      return EVP_aes_192_gcm();
    case 32:
      return EVP_aes_256_gcm();
    default:
      throw std::invalid_argument("AES key must be 16, 24 or 32 bytes");
  }
}

// Returns the plaintext or nullopt if the tag does not verify.
std::optional<Bytes> open_gcm(ByteView key, ByteView nonce, ByteView ciphertext_and_tag, ByteView aad) {
  if (ciphertext_and_tag.size() < kTagSize) return std::nullopt;
  const ByteView ct = ciphertext_and_tag.first(ciphertext_and_tag.size() - kTagSize);
  const ByteView tag = ciphertext_and_tag.last(kTagSize);

  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw std::runtime_error("EVP_CIPHER_CTX_new failed");
  if (EVP_DecryptInit_ex(ctx.get(), gcm_for_key(key.size()), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce.size()), nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce.data()) != 1) {
    throw std::runtime_error("AES-GCM decrypt init failed");
  }
  int len = 0;
  if (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    return std::nullopt;
  }
  Bytes plain(ct.size() + 16);
  int out_len = 0;
  if (!ct.empty() &&
      EVP_DecryptUpdate(ctx.get(), plain.data(), &out_len, ct.data(), static_cast<int>(ct.size())) != 1) {
    return std::nullopt;
  }
  // The tag buffer is only read by OpenSSL; the API just isn't const.
  Bytes tag_copy(tag.begin(), tag.end());
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize), tag_copy.data()) != 1) {
    return std::nullopt;
  }
  int final_len = 0;
  if (EVP_DecryptFinal_ex(ctx.get(), plain.data() + out_len, &final_len) != 1) return std::nullopt;
  plain.resize(static_cast<std::size_t>(out_len + final_len));
  return plain;
}

}  // namespace

Bytes encrypt_payload_with_nonce(ByteView key, ByteView nonce, ByteView plain, ByteView aad) {
  if (nonce.size() != kNonceSize) throw std::invalid_argument("AES-GCM nonce must be 12 bytes");
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw std::runtime_error("EVP_CIPHER_CTX_new failed");
  if (EVP_EncryptInit_ex(ctx.get(), gcm_for_key(key.size()), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceSize), nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce.data()) != 1) {
    throw std::runtime_error("AES-GCM encrypt init failed");
  }
  Bytes out;
  out.reserve(kEncryptOverhead + plain.size());
  out.push_back(kEncryptionVersion);
  out.insert(out.end(), nonce.begin(), nonce.end());
  int len = 0;
  if (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    throw std::runtime_error("AES-GCM additional data failed");
  }
  const std::size_t ct_off = out.size();
  out.resize(ct_off + plain.size() + 16);
  int out_len = 0;
  if (!plain.empty() &&
      EVP_EncryptUpdate(ctx.get(), out.data() + ct_off, &out_len, plain.data(), static_cast<int>(plain.size())) != 1) {
    throw std::runtime_error("AES-GCM encrypt failed");
  }
  int final_len = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), out.data() + ct_off + out_len, &final_len) != 1) {
    throw std::runtime_error("AES-GCM encrypt final failed");
  }
  out.resize(ct_off + static_cast<std::size_t>(out_len + final_len));
  std::uint8_t tag[kTagSize];
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize), tag) != 1) {
    throw std::runtime_error("AES-GCM get tag failed");
  }
  out.insert(out.end(), tag, tag + kTagSize);
  return out;
}

Bytes encrypt_payload(ByteView key, ByteView plain, ByteView aad) {
  std::uint8_t nonce[kNonceSize];
  if (RAND_bytes(nonce, sizeof(nonce)) != 1) throw std::runtime_error("RAND_bytes failed to produce a nonce");
  return encrypt_payload_with_nonce(key, ByteView(nonce, kNonceSize), plain, aad);
}

std::optional<Bytes> decrypt_payload(const Keyring& keyring, ByteView sealed, ByteView aad) {
  if (sealed.empty()) return std::nullopt;
  const std::uint8_t version = sealed[0];
  if (version > 1) return std::nullopt;
  // Version 0 always carries at least one block of padding.
  const std::size_t min_len = kEncryptOverhead + (version == 0 ? 16 : 0);
  if (sealed.size() < min_len) return std::nullopt;
  const ByteView nonce = sealed.subspan(1, kNonceSize);
  const ByteView body = sealed.subspan(1 + kNonceSize);
  for (const auto& key : keyring.keys()) {
    auto plain = open_gcm(key, nonce, body, aad);
    if (!plain) continue;
    if (version == 0) {
      // PKCS7: the last byte says how many padding bytes to drop.
      if (plain->empty()) return std::nullopt;
      const std::size_t pad = plain->back();
      if (pad == 0 || pad > 16 || pad > plain->size()) return std::nullopt;
      plain->resize(plain->size() - pad);
    }
    return plain;
  }
  return std::nullopt;
}

Bytes encrypt_stream_frame(ByteView key, ByteView plain) {
  const std::size_t sealed_len = kEncryptOverhead + plain.size();
  Bytes header{static_cast<std::uint8_t>(MessageType::kEncrypt), static_cast<std::uint8_t>(sealed_len >> 24),
               static_cast<std::uint8_t>(sealed_len >> 16), static_cast<std::uint8_t>(sealed_len >> 8),
               static_cast<std::uint8_t>(sealed_len)};
  Bytes sealed = encrypt_payload(key, plain, header);
  header.insert(header.end(), sealed.begin(), sealed.end());
  return header;
}

}  // namespace weft::control::gossip
